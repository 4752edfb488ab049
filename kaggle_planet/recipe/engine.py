"""One epoch of training or evaluation, and the pieces that depend on the task kind.

``HEADS`` maps a task kind to its output activation and its prior logits: multi-label and binary tasks
train one sigmoid per class (prior logit: the log-odds of the class frequency); multiclass tasks a
softmax (prior logit: the log of the class frequency). The losses live in :mod:`kaggle_planet.recipe.losses`.
Predictions always leave this module as probabilities, never logits.

A training step (:class:`Trainer`) is: optional mixup/cutmix, forward under autocast, loss divided by
``grad_accum``, backward; every ``grad_accum`` batches: unscale, clip the gradient norm, optimizer step,
EMA update; the learning rate is set by the schedule before each update from the update count alone.
A NaN/inf loss stops training before its update (:class:`NonFiniteError`, one line naming epoch, update
and lr): a flag kept on the device and read once per update, so the weights never take a NaN step;
under torch.distributed the flag is AND-ed over the ranks first, so every rank stops at the same update
(a rank that stopped alone would leave the others waiting in their next collective).
Under DistributedDataParallel each rank sees a share of the data; :func:`gather_outputs` puts
the shares back together (by sample index, dropping the sampler's padding) on every rank, so that
every rank computes the same metric and takes the same early-stopping decision.
"""
from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import KagglePlanetError
from ..core.metrics import logit

log = logging.getLogger(__name__)

# the prior's logits are clipped so that an absent or universal class gets a finite bias
_PRIOR_EPS = 1e-4


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


def _log_odds(prior: np.ndarray) -> np.ndarray:
    return logit(prior, _PRIOR_EPS)


def _log_frequency(prior: np.ndarray) -> np.ndarray:
    return np.log(np.clip(prior, _PRIOR_EPS, None))


@dataclass(frozen=True)
class Head:
    activation: Callable[[torch.Tensor], torch.Tensor]
    prior_logits: Callable[[np.ndarray], np.ndarray]  # (C,) class frequencies -> (C,) logits


HEADS: dict[str, Head] = {
    "multilabel": Head(torch.sigmoid, _log_odds),
    "binary": Head(torch.sigmoid, _log_odds),
    "multiclass": Head(_softmax, _log_frequency),
}


def get_head(task: str) -> Head:
    try:
        return HEADS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(HEADS)}") from None


class ProbabilityModel(nn.Module):
    """``model`` followed by the task's activation: (B, 3, S, S) images -> (B, C) probabilities.

    TTA wrappers average what this returns, so test-time augmentation merges probabilities.
    """

    def __init__(self, model: nn.Module, task: str):
        super().__init__()
        self.model = model
        self.task = task
        self.activation = get_head(task).activation

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.activation(self.model(images).float())


@dataclass
class Precision:
    """How tensors run on the device: autocast dtype (None: fp32), channels_last, GradScaler use, and the
    normalisation of uint8 batches (the backbone's mean/std, RGB in [0, 1])."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        self._scale: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.mean is not None and self.std is not None:
            # (x - 255 mean) / (255 std) as one multiply-add: x * a + b
            a = 1.0 / (255.0 * torch.tensor(self.std, dtype=torch.float32))
            b = -torch.tensor(self.mean, dtype=torch.float32) / torch.tensor(self.std, dtype=torch.float32)
            self._scale = (a.view(1, 3, 1, 1).to(self.device), b.view(1, 3, 1, 1).to(self.device))

    @property
    def use_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    def autocast(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """A batch on the device, float32 NCHW and normalised: uint8 NHWC batches (4x fewer bytes from the
        workers and over PCIe, no transposition in the workers) are converted, normalised and laid out here;
        float NCHW batches are taken as already normalised."""
        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:  # NHWC from the loader
            if self._scale is None:
                raise RuntimeError("a uint8 batch needs the backbone's mean and std: resolve_precision(..., mean=, std=)")
            a, b = self._scale
            # NHWC viewed as NCHW is channels_last already; the multiply-add writes the float batch in that layout
            images = torch.addcmul(b, images.permute(0, 3, 1, 2).float(), a)
            return images if self.channels_last else images.contiguous()
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def resolve_precision(device: torch.device, amp: str | bool = "auto", channels_last: str | bool = "auto",
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Precision:
    """``auto``: AMP on CUDA only (bf16 where the GPU supports it, else fp16), channels_last on CUDA and CPU
    (oneDNN's convolutions are faster in it: tf_efficientnet_lite0 trains 1.75x faster on CPU); ``mean``,
    ``std``: the backbone's normalisation, applied on the device to uint8 batches."""
    cuda = device.type == "cuda"
    use_amp = cuda if amp == "auto" else bool(amp)
    dtype = None
    if use_amp:
        dtype = torch.bfloat16 if (not cuda or torch.cuda.is_bf16_supported()) else torch.float16
    nhwc = device.type in ("cuda", "cpu") if channels_last == "auto" else bool(channels_last)
    return Precision(device, dtype, nhwc, mean, std)


@dataclass
class EpochOutput:
    """Mean loss and predictions of one pass; rows ordered by dataset index."""

    loss: float
    indices: np.ndarray  # (N,) int dataset indices
    probs: np.ndarray  # (N, C) float probabilities
    targets: np.ndarray  # (N, C) float 0/1 targets (empty columns for unlabelled data)
    first_loss: float = float("nan")  # training: the loss of the first batch, before any update


def _progress(loader: Any, desc: str, enabled: bool) -> Any:
    # disable=None turns the bar off when stderr is not a terminal (logs, CI)
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=None if enabled else True)


@dataclass
class Trainer:
    """Everything a training step needs besides the model and the data."""

    optimizer: torch.optim.Optimizer
    schedule: Any  # optim.LRSchedule: step_update(update_index) sets the lr
    loss_fn: nn.Module
    activation: Callable[[torch.Tensor], torch.Tensor]
    precision: Precision
    scaler: torch.amp.GradScaler
    ema: Any = None
    mixer: Any = None  # mixing.Mixer
    grad_accum: int = 1
    clip_grad: float | None = None
    frozen_backbone: bool = False


def set_train_mode(model: nn.Module, frozen_backbone: bool) -> None:
    """``model.train()``; with the backbone frozen, every module outside the classifier is put in eval
    mode (flag by flag, not recursively), so BatchNorm running statistics stay as loaded."""
    model.train()
    if not frozen_backbone:
        return
    base = _unwrap(model)
    head = set(base.get_classifier().modules())
    for module in base.modules():
        if module is not base and module not in head:
            module.training = False


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    trainer: Trainer,
    epoch: int = 0,
    step: int = 0,
    desc: str = "train",
    show_progress: bool = True,
    on_update: Callable[[int, torch.Tensor], None] | None = None,
) -> EpochOutput:
    """One pass over ``loader`` updating ``model``; ``step`` counts optimizer updates before this epoch.
    ``on_update(update index, loss)`` is called after each optimizer update with the loss of the batch
    that closed it (a detached device tensor: reading it is the caller's choice, e.g. experiment tracking).

    Returns the loss and the training predictions (on the augmented, possibly mixed images) against the
    unmixed targets, gathered over ranks.
    """
    t = trainer
    set_train_mode(model, t.frozen_backbone)
    # losses and predictions stay on the device until the end of the epoch: reading them back every
    # step (loss.item(), .cpu()) would make the CPU wait for the GPU at each step
    loss_sum = torch.zeros((), device=t.precision.device)
    count = 0
    indices, probs, targets = [], [], []
    bar = _progress(loader, desc, show_progress)
    batches = len(loader)
    t.optimizer.zero_grad(set_to_none=True)
    group_finite = torch.ones((), dtype=torch.bool, device=t.precision.device)  # every loss of this update finite
    for i, (images, target, index) in enumerate(bar):
        images = t.precision.to_device(images)
        target = target.to(t.precision.device, non_blocking=True)
        inputs, mixed = (images, target) if t.mixer is None else t.mixer(images, target, epoch, i)
        closes_group = (i + 1) % t.grad_accum == 0 or i + 1 == batches
        if (i % t.grad_accum) == 0:
            t.schedule.step_update(step)
        with _no_sync(model, closes_group):  # DDP needs forward and backward inside
            with t.precision.autocast():
                logits = _forward(model, inputs)
            loss = t.loss_fn(logits.float(), mixed)
            if t.precision.use_scaler:
                t.scaler.scale(loss / t.grad_accum).backward()
            else:
                (loss / t.grad_accum).backward()
        # a flag on the device, read once per update (not per batch): the update is never taken with a
        # non-finite loss, so the weights saved so far stay finite
        group_finite = torch.isfinite(loss.detach()) if (i % t.grad_accum) == 0 else group_finite & torch.isfinite(loss.detach())
        if closes_group:
            if not bool(_on_every_rank(group_finite)):  # every rank stops at the same update: none waits for the others
                shown = float(loss.detach()) if not bool(group_finite) else "finite here, nan/inf on another rank"
                raise NonFiniteError(non_finite_message("training loss", shown, epoch, step, t.optimizer.param_groups[-1]["lr"], t.precision))
            optimizer_step(model, t)
            step += 1
            if t.ema is not None:
                t.ema.update(_unwrap(model), step=step)
            if on_update is not None:
                on_update(step - 1, loss.detach())
        if i == 0:
            first_loss = loss.detach()
        loss_sum += loss.detach() * len(images)
        count += len(images)
        indices.append(index)
        probs.append(t.activation(logits.detach().float()))
        targets.append(target)
        if (i + 1) % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / count:.4f}", refresh=False)
    total = loss_sum.item()
    indices = [torch.cat(indices).numpy()] if indices else []
    probs = [torch.cat(probs).cpu().numpy()] if probs else []
    targets = [torch.cat(targets).cpu().numpy()] if targets else []
    out = gather_outputs(total, count, indices, probs, targets)
    if not math.isfinite(out.loss):  # a finite loss per batch can still sum to inf; gathered, so every rank stops
        raise NonFiniteError(non_finite_message("training loss", out.loss, epoch, step, t.optimizer.param_groups[-1]["lr"], t.precision))
    out.first_loss = float(first_loss) if count else float("nan")
    return out


class NonFiniteError(KagglePlanetError):
    """Training diverged: a loss, a prediction or the weights are NaN or infinite."""


def non_finite_message(what: str, value: float | str, epoch: int, step: int, lr: float, precision: Precision | None = None) -> str:
    """One line: what went non-finite where (epoch 1-based, update count, lr) and what to change."""
    advice = ["lower lr", "set clip_grad (e.g. 1.0)"]
    if precision is not None and precision.amp_dtype is not None:
        advice.append("set amp: false (half precision can overflow)")
    return f"{what} is {value} in epoch {epoch + 1} at update {step} (lr {lr:.3g}): training diverged; {', '.join(advice[:-1])} or {advice[-1]}"


# BatchNorm's refusal of a batch with one value per channel (one image reaching a 1x1 feature map)
_ONE_VALUE_PER_CHANNEL = "Expected more than 1 value per channel when training"


def _forward(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    try:
        return model(inputs)
    except ValueError as exc:
        if _ONE_VALUE_PER_CHANNEL not in str(exc):
            raise
        raise KagglePlanetError(
            f"a training batch of {len(inputs)} image(s) at {inputs.shape[-1]} px leaves BatchNorm one value per channel "
            f"(a 1x1 feature map or a BatchNorm1d layer): set batch_size >= 2 (grad_accum keeps memory low) or a larger image_size"
        ) from None


def optimizer_step(model: nn.Module, t: Trainer) -> None:
    """The optimizer step closing an accumulation group: unscale, clip, step, clear."""
    if t.precision.use_scaler:
        if t.clip_grad:
            t.scaler.unscale_(t.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        if t.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
        t.optimizer.step()
    t.optimizer.zero_grad(set_to_none=True)


def _no_sync(model: nn.Module, closes_group: bool) -> Any:
    """DDP: skip the gradient all-reduce on accumulation steps that do not update."""
    ddp = getattr(model, "_orig_mod", model)  # torch.compile wraps the DDP module
    if closes_group or not isinstance(ddp, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return ddp.no_sync()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    loss_fn: nn.Module | None,
    activation: Callable[[torch.Tensor], torch.Tensor] | None,
    precision: Precision,
    desc: str = "valid",
    show_progress: bool = True,
    distributed: bool = True,
) -> EpochOutput:
    """Predictions of ``model`` in eval mode over ``loader``, gathered over ranks (``distributed``: every
    rank takes part; False: this process alone, e.g. rank 0 writing predictions).

    ``activation`` None: the model already returns probabilities (e.g. a TTA wrapper); the loss is then
    not computed (reported as nan).
    """
    model.eval()
    total, count = 0.0, 0
    indices, probs, targets = [], [], []
    for images, target, index in _progress(loader, desc, show_progress):
        images = precision.to_device(images)
        with precision.autocast():
            out = model(images)
        out = out.float()
        if loss_fn is not None and activation is not None and target.numel():
            total += loss_fn(out, target.to(precision.device)).item() * len(images)
            count += len(images)
        indices.append(index.numpy())
        probs.append((activation(out) if activation is not None else out).cpu().numpy())
        targets.append(target.numpy())
    result = gather_outputs(total, count, indices, probs, targets, distributed)
    if count == 0:
        result.loss = float("nan")
    return result


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel and torch.compile wrappers (in either order)."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model._orig_mod
    return model


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _on_every_rank(flag: torch.Tensor) -> torch.Tensor:
    """A 0-d bool flag AND-ed over the ranks of a torch.distributed job (as it is without one)."""
    if not _distributed():
        return flag
    flag = flag.to(torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return flag.bool()


def _concat(parts: list[np.ndarray], empty_shape: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=np.float32)


def gather_outputs(total: float, count: int, indices: list, probs: list, targets: list, distributed: bool = True) -> EpochOutput:
    """Concatenate a pass's batches; under torch.distributed, all ranks' shares, each index once."""
    idx = _concat(indices, (0,)).astype(np.int64)
    p = _concat(probs, (0, 0))
    t = _concat(targets, (0, 0))
    if distributed and _distributed():
        shares: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shares, (total, count, idx, p, t))
        total = sum(s[0] for s in shares)
        count = sum(s[1] for s in shares)
        idx = np.concatenate([s[2] for s in shares])
        p = np.concatenate([s[3] for s in shares])
        t = np.concatenate([s[4] for s in shares])
    # sort by index and keep the first copy of each (DistributedSampler pads with repeats)
    idx, first = np.unique(idx, return_index=True)
    return EpochOutput(total / max(count, 1), idx, p[first], t[first])
