"""One fold's training: build the model and loaders (prepare), resume (restore), train and evaluate an epoch,
checkpoint, finish; :class:`FoldRun` holds the steps, :func:`train_fold` runs them in a loop.

Per fold ``fold<k>/``: ``best.pt`` (best valid metric; weights, or the EMA weights when ``ema`` is on),
``last.pt`` (resume state, written atomically after every completed epoch, removed once the fold is done),
``history.csv``, ``curves.png`` and ``done.json`` (the fold is finished; later runs skip it). The experiment
around it (models, folds, locks, the model folder) is :mod:`kaggle_planet.train.experiment`.

Reproducibility: the weights are seeded from ``seed + fold``; each epoch reseeds torch from
``(seed, fold, epoch)`` and the training data are shuffled and augmented from the same numbers
(:mod:`kaggle_planet.data.loader`), so an epoch's result does not depend on how the run got there: a run
killed with ``kill -9`` and started again with the same command ends with the same files.

A loss, metric, prediction or weight that turns NaN/inf stops the fold at once (one line naming epoch,
update and lr); such an epoch is never the best. Under torchrun each rank trains on its share of every
epoch, predictions are gathered on all ranks (so all take the same early-stopping decision), and only rank
0 writes files (:mod:`kaggle_planet.train.distributed`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config.schema import ExperimentConfig, ModelSettings
from ..core import artifacts
from ..core.artifacts import (
    BEST,
    CURVES,
    DONE,
    HISTORY,
    HISTORY_COLUMNS,
    LAST,
    fold_dir,
    load_checkpoint,
    save_checkpoint,
)
from ..core.errors import KagglePlanetError
from ..core.metrics import get_metric, score
from ..data.competitions import DatasetTable
from ..data.loader import image_dataset, make_loader, resolve_workers
from ..recipe.engine import NonFiniteError, Trainer, evaluate, get_head, non_finite_message, resolve_precision, train_one_epoch
from ..recipe.tracking import Tracking
from .distributed import Dist

log = logging.getLogger(__name__)



# ----------------------------------------------------------------------------------- checkpoints


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------- one fold


@dataclass
class FoldState:
    """What survives between epochs (and in last.pt): next epoch, best score, history rows.

    ``best_score`` starts at the metric's worst value (:meth:`FoldRun.fresh_state`: -inf, or +inf for a loss);
    the default -inf is what resume payloads written before metrics had a direction hold."""

    epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    step0_loss: float = math.nan  # loss of the first batch before any update
    prior_loss: float = math.nan  # the training loss of predicting the class prior for every training row
    history: list[dict[str, float]] = field(default_factory=list)


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    artifacts.write_csv(path, pd.DataFrame(rows, columns=HISTORY_COLUMNS), float_format="%.6g")


CURVES_EVERY_S = 60  # curves.png (matplotlib, a noticeable cost on short epochs) is redrawn at most this often, and when the fold ends


def plot_curves(path: Path, rows: list[dict[str, float]], metric: str, title: str) -> None:
    """Loss and metric per epoch, train vs valid (matplotlib's Agg canvas: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    fig = Figure(figsize=(9, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    for ax, what, label in zip(fig.subplots(1, 2), ("loss", "metric"), ("loss", metric)):
        for split, style in (("train", "o-"), ("valid", "s-")):
            ax.plot(frame["epoch"], frame[f"{split}_{what}"], style, label=split, markersize=4)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    artifacts.atomic_write(path, lambda p: fig.savefig(p, format="png"))


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class FoldSetup:
    """A fold's model (head at the training prior) and loaders, as training and lr-find start them."""

    model: nn.Module
    train_loader: Any
    valid_loader: Any
    train_idx: np.ndarray
    valid_idx: np.ndarray
    prior: np.ndarray  # (C,) class frequencies of the training rows
    head: Any  # engine.Head of the task
    seed: int
    train_targets: np.ndarray  # (N, C) what the model trains on: the other folds' rows + any extra images


# fold -> (files, (n, C) targets) of extra training images for that fold (pseudo-labelled test images)
ExtraTrain = Callable[[int], tuple[np.ndarray, np.ndarray]]


def prepare_fold(settings: ModelSettings, table: DatasetTable, folds: np.ndarray, fold: int, ctx: Dist,
                 extra: ExtraTrain | None = None) -> FoldSetup:
    """Seed, build the model with its head at the training rows' prior, and the fold's loaders; ``extra``
    adds training images for this fold only (never to its validation images)."""
    from ..recipe import models

    head = get_head(table.task)
    seed = settings.seed + fold
    seed_everything(seed)
    files = table.train["file"].to_numpy()
    targets = table.targets
    train_idx, valid_idx = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
    train_files, train_targets = files[train_idx], targets[train_idx]
    if extra is not None:
        extra_files, extra_targets = extra(fold)
        train_files = np.concatenate([train_files, np.asarray(extra_files, dtype=train_files.dtype)])
        train_targets = np.concatenate([train_targets, np.asarray(extra_targets, dtype=train_targets.dtype).reshape(-1, targets.shape[1])])
    prior = train_targets.mean(0)
    model = models.create_model(settings.backbone, len(table.classes), settings.pretrained, settings.drop_rate,
                                settings.drop_path_rate, head_bias=head.prior_logits(prior))
    size, universe = settings.image_size, table.all_files()
    train_set = image_dataset(train_files, train_targets, settings.augment, size, train=True, seed=seed,
                              cache=settings.cache, universe=universe)
    valid_set = image_dataset(files[valid_idx], targets[valid_idx], settings.augment, size, train=False,
                              cache=settings.cache, universe=universe)
    loader_args = dict(device=ctx.device, num_workers=resolve_workers(settings.num_workers), seed=seed, rank=ctx.rank, world=ctx.world)
    train_loader = make_loader(train_set, settings.batch_size, train=True, **loader_args)
    valid_loader = make_loader(valid_set, settings.batch_size, train=False, persistent=True, **loader_args)
    if len(train_loader) == 0:
        raise KagglePlanetError(f"fold {fold}: {len(train_files)} training images give no batch of {settings.batch_size}; lower batch_size")
    return FoldSetup(model, train_loader, valid_loader, train_idx, valid_idx, prior, head, seed, train_targets)


def train_fold(
    cfg: ExperimentConfig,
    settings: ModelSettings,
    table: DatasetTable,
    folds: np.ndarray,
    fold: int,
    model_dir: Path,
    ctx: Dist,
    extra: ExtraTrain | None = None,
    tracking: Tracking | None = None,
) -> dict[str, Any]:
    """Train one fold (resuming from ``last.pt`` when present); returns the fold's done.json content.
    ``extra`` adds training images to the fold (pseudo-labels); ``tracking`` gets each update's loss and lr
    and each epoch's history row (TensorBoard, W&B)."""
    run = FoldRun.prepare(cfg, settings, table, folds, fold, model_dir, ctx, extra, tracking)
    run.restore()
    while run.should_continue():
        row, improved = run.epoch()
        run.checkpoint(row, improved)
    return run.finish()


@dataclass
class TrainedEpoch:
    """One epoch's training pass, handed to :meth:`FoldRun.evaluate`."""

    epoch: int  # 0-based
    lr: float  # the scheduled base lr at the epoch's first update
    started: float  # time.time() before the first batch
    result: Any  # engine.EpochOutput of the training batches (loss, probs, targets, first_loss)


class FoldRun:
    """One fold's training, step by step: :meth:`prepare` (seed, model, loaders, trainer), :meth:`restore`
    (``last.pt``), then per epoch :meth:`train_epoch`, :meth:`evaluate` and :meth:`record` (together
    :meth:`epoch`) and :meth:`checkpoint` (rank 0 writes, every rank meets at a barrier), and :meth:`finish`
    (``done.json``). Each step reads and updates :attr:`state`, the part that survives in ``last.pt``."""

    def __init__(self, cfg: ExperimentConfig, settings: ModelSettings, table: DatasetTable, fold: int, model_dir: Path,
                 ctx: Dist, setup: FoldSetup, tracking: Tracking | None = None, started: float | None = None) -> None:
        from ..recipe import losses

        self.cfg, self.settings, self.table, self.fold, self.ctx, self.setup, self.tracking = cfg, settings, table, fold, ctx, setup, tracking
        self.started = time.time() if started is None else started
        self.out_dir = fold_dir(model_dir, fold)
        self.last_path = self.out_dir / LAST
        self.metric = cfg.metric
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels
        self.trainer = build_trainer(setup.model, settings, table.task, setup.train_targets, len(setup.train_loader), ctx.device, setup.seed)
        # valid loss: the task's plain log loss, comparable across recipes (no smoothing, no focusing)
        self.valid_loss_fn = losses.build_loss("auto", table.task).to(ctx.device)
        self.prior_loss = constant_prior_loss(self.trainer.loss_fn, setup.head.prior_logits(setup.prior), setup.train_targets, ctx.device)
        self.state = self.fresh_state()
        self._net: nn.Module | None = None  # the model as trained: DDP- and compile-wrapped
        self._frozen: bool | None = None  # whether _net was built with the backbone frozen
        self._last_plot = time.time()

    @classmethod
    def prepare(cls, cfg: ExperimentConfig, settings: ModelSettings, table: DatasetTable, folds: np.ndarray, fold: int,
                model_dir: Path, ctx: Dist, extra: ExtraTrain | None = None, tracking: Tracking | None = None) -> FoldRun:
        """Seed and build the fold's model, loaders and trainer (:func:`prepare_fold`, :func:`build_trainer`)."""
        started = time.time()
        return cls(cfg, settings, table, fold, model_dir, ctx, prepare_fold(settings, table, folds, fold, ctx, extra), tracking, started)

    @property
    def model(self) -> nn.Module:
        return self.setup.model

    @property
    def eval_model(self) -> nn.Module:
        """What is validated and saved as best: the EMA weights when ``ema`` is on."""
        return self.trainer.ema.module if self.trainer.ema is not None else self.setup.model

    @property
    def title(self) -> str:
        return f"{self.cfg.name} / {self.settings.name} / fold {self.fold}"

    @property
    def where(self) -> str:
        """What the log lines call this run: ``fold <k>``."""
        return f"fold {self.fold}"

    def fresh_state(self) -> FoldState:
        """The state before the first epoch: no best yet (the metric's worst value, -inf or +inf for a loss)."""
        return FoldState(best_score=get_metric(self.metric).worst)

    def restore(self) -> FoldState:
        """Resume from ``last.pt`` when present (weights, optimizer, scaler, EMA, state); else a fresh state.
        Temporary files a killed writer left in the fold folder are removed first (the fold's lock is held)."""
        stale = artifacts.remove_stale_temporaries(self.last_path.parent) if self.ctx.main else []
        if stale:
            log.info("%s fold %d: removed %d temporary file(s) a stopped run left behind: %s", self.settings.name, self.fold,
                     len(stale), ", ".join(p.name for p in stale))
        if self.last_path.is_file():
            t = self.trainer
            self.state = _restore(load_checkpoint(self.last_path), self.model, t.optimizer, t.scaler, t.ema)
            log.info("%s fold %d: resuming after epoch %d (best %s %.4f)", self.settings.name, self.fold, self.state.epoch,
                     self.metric, self.state.best_score)
        self._last_plot = time.time()
        return self.state

    def should_continue(self) -> bool:
        """Epochs left and (with ``patience``) not stopped early."""
        s = self.settings
        return self.state.epoch < s.epochs and not (s.patience and self.state.bad_epochs >= s.patience)

    def epoch(self) -> tuple[dict[str, float], bool]:
        """Train and validate the next epoch and record it in :attr:`state`: (history row, improved)."""
        row = self.evaluate(self.train_epoch())
        return row, self.record(row)

    def train_epoch(self) -> TrainedEpoch:
        """One training pass over epoch ``state.epoch``: (un)freeze the backbone (rebuilding the DDP/compiled
        wrapper when that changes), reseed torch from (seed, epoch) and the sampler, train; after the first
        epoch's first batch compare its loss with the constant-prior loss."""
        from ..recipe import models

        settings, trainer, state, fold = self.settings, self.trainer, self.state, self.fold
        epoch = state.epoch
        frozen = epoch < settings.freeze_epochs
        if frozen != self._frozen:  # DDP must be (re)built after the set of trainable parameters changes
            models.set_backbone_trainable(self.model, not frozen)
            self._net = _compile(_wrap(self.model, self.ctx), settings, self.ctx)
            self._frozen = frozen
        trainer.frozen_backbone = frozen
        torch.manual_seed(int(np.random.SeedSequence([self.setup.seed, epoch]).generate_state(1)[0]))
        self.setup.train_loader.sampler.set_epoch(epoch)
        t0 = time.time()
        lr = trainer.schedule.base_lr(state.step)
        on_update = self.tracking.on_update(settings.name, fold, trainer.schedule.base_lr) if self.tracking is not None else None
        tr = train_one_epoch(self._net, self.setup.train_loader, trainer, epoch=epoch, step=state.step, desc=self._desc(epoch),
                             show_progress=self.ctx.main, on_update=on_update)
        if epoch == 0:
            state.step0_loss, state.prior_loss = tr.first_loss, self.prior_loss
            _check_step0(settings.name, self.where, tr.first_loss, self.prior_loss)
        state.step += trainer.schedule.steps_per_epoch
        return TrainedEpoch(epoch, lr, t0, tr)

    def evaluate(self, trained: TrainedEpoch) -> dict[str, float]:
        """Validate :attr:`eval_model` and make the epoch's history row; a NaN/inf loss, prediction or metric
        raises :class:`NonFiniteError`."""
        epoch, lr, tr, metric = trained.epoch, trained.lr, trained.result, self.metric
        precision, step = self.trainer.precision, self.state.step
        desc = self._desc(epoch)
        ev = evaluate(self.eval_model, self.setup.valid_loader, self.valid_loss_fn, self.setup.head.activation, precision,
                      desc=f"{desc} valid", show_progress=self.ctx.main)
        _check_finite_epoch(tr, ev, epoch, step, self.trainer)
        row = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": tr.loss,
            "valid_loss": ev.loss,
            "train_metric": score(metric, tr.targets.astype(np.int64), tr.probs, self.table.task),
            "valid_metric": score(metric, ev.targets.astype(np.int64), ev.probs, self.table.task),
            "seconds": time.time() - trained.started,
        }
        if not all(math.isfinite(row[k]) for k in ("train_metric", "valid_metric")):
            bad = "valid_metric" if not math.isfinite(row["valid_metric"]) else "train_metric"
            raise NonFiniteError(non_finite_message(f"{self.settings.name} fold {self.fold}: {bad.replace('_', ' ')} {metric}",
                                                    row[bad], epoch, step, lr, precision))
        return row

    def record(self, row: dict[str, float]) -> bool:
        """Add ``row`` to the history, update best score / patience count and the next epoch, log the epoch's
        line; True when the row beats the best so far in the metric's direction (a loss: lower)."""
        state, settings, metric = self.state, self.settings, self.metric
        state.history.append(row)
        # finite, checked by evaluate: NaN never counts as better; the first epoch always improves (a resume payload
        # from before metrics had a direction holds -inf whatever the metric)
        improved = state.best_epoch < 0 or get_metric(metric).is_better(row["valid_metric"], state.best_score)
        if improved:
            state.best_score, state.best_epoch, state.bad_epochs = row["valid_metric"], row["epoch"], 0
        else:
            state.bad_epochs += 1
        state.epoch = row["epoch"]
        log.info(
            "%s fold %d epoch %d/%d: train loss %.4f %s %.4f | valid loss %.4f %s %.4f%s (%.0fs)",
            settings.name, self.fold, row["epoch"], settings.epochs, row["train_loss"], metric, row["train_metric"],
            row["valid_loss"], metric, row["valid_metric"], " *" if improved else "", row["seconds"],
        )
        return improved

    def checkpoint(self, row: dict[str, float], improved: bool) -> None:
        """Rank 0: best.pt (when ``improved``; never with NaN/inf weights), history.csv, curves.png (at most
        every :data:`CURVES_EVERY_S`), last.pt, the tracker's epoch row; then every rank meets at a barrier."""
        if self.ctx.main:
            t, out_dir = self.trainer, self.out_dir
            if improved:
                payload = _best_payload(self.eval_model, self.settings, self.table, self.fold, row, self.metric)
                _check_finite_weights(payload["model"], int(row["epoch"]) - 1, self.state.step, row["lr"], t.precision)
                save_checkpoint(out_dir / BEST, payload)
            write_history(out_dir / HISTORY, self.state.history)
            if time.time() - self._last_plot > CURVES_EVERY_S:  # long epochs: watch the curves grow; short ones: at the end
                plot_curves(out_dir / CURVES, self.state.history, self.metric, self.title)
                self._last_plot = time.time()
            save_checkpoint(self.last_path, _resume_payload(self.state, self.model, t.optimizer, t.scaler, t.ema))
            if self.tracking is not None:
                self.tracking.epoch(self.settings.name, self.fold, row)
        self.ctx.barrier()

    def done_info(self) -> dict[str, Any]:
        """The content of done.json for the fold as it stands."""
        state, setup = self.state, self.setup
        return {
            "fold": self.fold,
            "best_epoch": state.best_epoch,
            "best_score": state.best_score,
            "metric": self.metric,
            "epochs_run": state.epoch,
            "stopped_early": state.epoch < self.settings.epochs,
            "seconds": round(time.time() - self.started, 1),
            "step0_loss": state.step0_loss,
            "prior_loss": state.prior_loss,
            "train_images": int(len(setup.train_idx)),
            "extra_train_images": int(len(setup.train_targets) - len(setup.train_idx)),
            "valid_images": int(len(setup.valid_idx)),
            "world_size": self.ctx.world,
            "device": str(self.ctx.device),
            "command": artifacts.command_line(),
        }

    def finish(self) -> dict[str, Any]:
        """Rank 0: the final curves.png, done.json, remove last.pt, end the tracker's fold; then a barrier.
        Returns the done.json content."""
        done = self.done_info()
        if self.ctx.main:
            plot_curves(self.out_dir / CURVES, self.state.history, self.metric, self.title)
            artifacts.write_json(self.out_dir / DONE, done)
            self.last_path.unlink(missing_ok=True)  # a finished fold needs no resume state (saves 2-3x the model size)
            if self.tracking is not None:
                self.tracking.end_fold(self.settings.name, self.fold)
        self.ctx.barrier()
        return done

    def _desc(self, epoch: int) -> str:
        return f"{self.settings.name} f{self.fold} e{epoch + 1}/{self.settings.epochs}"


def _check_finite_epoch(tr: Any, ev: Any, epoch: int, step: int, trainer: Trainer) -> None:
    """Stop the fold when an epoch's losses or predictions are NaN/inf (a NaN probability would
    otherwise pass silently through a thresholded metric such as F2)."""
    lr = trainer.optimizer.param_groups[-1]["lr"]
    checks = (("training loss", tr.loss, True), ("training predictions", tr.probs, False),
              ("validation loss", ev.loss, True), ("validation predictions", ev.probs, False))
    for what, values, scalar in checks:
        finite = math.isfinite(values) if scalar else bool(np.isfinite(values).all())
        if not finite:
            shown = values if scalar else "nan/inf"
            raise NonFiniteError(non_finite_message(what, shown, epoch, step, lr, trainer.precision))


def _check_finite_weights(state: dict[str, torch.Tensor], epoch: int, step: int, lr: float, precision: Any) -> None:
    """A checkpoint with NaN/inf weights is never saved as best."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(non_finite_message(f"weight {name}", "nan/inf", epoch, step, lr, precision))


def _make_ema(model: nn.Module, settings: ModelSettings) -> Any:
    if not settings.ema:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(model, decay=settings.ema_decay, use_warmup=True)


def build_trainer(
    model: nn.Module,
    settings: ModelSettings,
    task: str,
    train_targets: np.ndarray,
    batches_per_epoch: int,
    device: torch.device,
    seed: int,
) -> Trainer:
    """Everything a training step needs, from the settings: moves ``model`` to ``device`` (channels_last
    when on), builds the loss (pos_weight from ``train_targets`` (N, C)), timm's optimizer (call this
    before freezing anything), the schedule over ``batches_per_epoch``, EMA, mixing and precision."""
    from ..recipe import losses, models, optim
    from ..recipe.mixing import Mixer

    data_cfg = models.model_data_config(model)
    precision = resolve_precision(device, settings.amp, settings.channels_last, data_cfg["mean"], data_cfg["std"])
    model.to(device, memory_format=torch.channels_last if precision.channels_last else torch.preserve_format)
    loss_fn = losses.build_loss(settings.loss, task, settings.loss_args, settings.label_smoothing,
                                losses.pos_weight_for(settings.pos_weight, train_targets)).to(device)
    optimizer = optim.make_optimizer(model, settings)
    return Trainer(
        optimizer=optimizer,
        schedule=optim.LRSchedule(optimizer, settings, optim.steps_per_epoch(batches_per_epoch, settings.grad_accum)),
        loss_fn=loss_fn,
        activation=get_head(task).activation,
        precision=precision,
        scaler=torch.amp.GradScaler(device.type, enabled=precision.use_scaler),
        ema=_make_ema(model, settings),
        mixer=Mixer(settings, seed),
        grad_accum=settings.grad_accum,
        clip_grad=settings.clip_grad,
    )


def constant_prior_loss(loss_fn: nn.Module, prior_logits: np.ndarray, targets: np.ndarray, device: torch.device) -> float:
    """The loss of predicting the class prior for every row of ``targets`` (N, C): where a calibrated
    head starts, and the bar every epoch must clear."""
    with torch.no_grad():
        y = torch.as_tensor(targets, dtype=torch.float32, device=device)
        logits = torch.as_tensor(prior_logits, dtype=torch.float32, device=device).expand_as(y)
        return float(loss_fn(logits, y))


def _check_step0(name: str, where: str, step0: float, prior: float) -> None:
    """Log the first batch's loss beside the constant-prior loss (``where``: "fold 2", "refit"); warn when far above."""
    log.info("%s %s: loss at step 0 %.4f, constant-prior loss %.4f", name, where, step0, prior)
    if math.isfinite(step0) and math.isfinite(prior) and step0 > 1.5 * prior + 0.05:
        log.warning("%s %s: the loss at step 0 (%.4f) is far above the constant-prior loss (%.4f): the head does "
                    "not start at the prior (a loaded classifier, or augmentation/mixing that changes the targets?)",
                    name, where, step0, prior)


def _compile(net: nn.Module, settings: ModelSettings, ctx: Dist) -> nn.Module:
    """torch.compile when ``compile`` says so (auto: on CUDA only; CPU compile costs more than it saves)."""
    wanted = ctx.device.type == "cuda" if settings.compile == "auto" else bool(settings.compile)
    return torch.compile(net) if wanted else net


def _wrap(model: nn.Module, ctx: Dist) -> nn.Module:
    if ctx.world <= 1:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _best_payload(model: nn.Module, settings: ModelSettings, table: DatasetTable, fold: int, row: dict, metric: str) -> dict[str, Any]:
    return {
        "model": _cpu_state(model),
        "settings": settings.to_dict(),
        "task": table.task,
        "classes": list(table.classes),
        "fold": fold,
        "epoch": int(row["epoch"]),
        "metric": metric,
        "score": float(row["valid_metric"]),
    }


def _resume_payload(state: FoldState, model: nn.Module, optimizer, scaler, ema) -> dict[str, Any]:
    # no scheduler state: the schedule is a function of the update count (state.step)
    return {
        "state": dataclasses.asdict(state),
        "model": _cpu_state(model),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": _cpu_state(ema.module) if ema is not None else None,
    }


def _restore(payload: dict[str, Any], model: nn.Module, optimizer, scaler, ema) -> FoldState:
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    if payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    if ema is not None and payload.get("ema") is not None:
        ema.module.load_state_dict(payload["ema"])
    return FoldState(**payload["state"])


