"""Optimizers and learning-rate schedules, from timm (and torch for one-cycle).

``make_optimizer`` is ``timm.optim.create_optimizer_v2`` (any optimizer name it knows, no weight decay
on norm layers and biases, ``layer_decay``) with one change: the classifier's parameters move into
groups of their own whose ``lr_scale`` is multiplied by ``head_lr_scale``.

``SCHEDULERS`` is the table of schedules (name -> builder, help, own parameters). Every schedule is
a pure function of the optimizer-update count, so a resumed run needs no scheduler state: ``LRSchedule``
sets each group's lr to ``value(step) x lr_scale`` before each update. The frozen stage of two-stage
fine-tuning (``freeze_epochs``) runs at the constant ``freeze_lr`` before the schedule starts.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.params import Param


def _fused_kwargs(name: str, model: nn.Module) -> dict[str, bool]:
    """``fused=True`` where the optimizer class takes it (torch's Adam, AdamW, SGD...) and the parameters sit
    on a device with fused kernels (CPU, CUDA): one kernel for every tensor's update instead of a Python loop
    over them (tf_efficientnet_lite0 has 245 parameter tensors)."""
    import inspect

    from timm.optim import get_optimizer_class

    try:
        cls = get_optimizer_class(name)
    except Exception:  # noqa: BLE001 - an unknown name: create_optimizer_v2 reports it
        return {}
    cls = getattr(cls, "func", cls)  # functools.partial (e.g. momentum = SGD with nesterov=False)
    device = next((p.device.type for p in model.parameters()), "cpu")
    takes_fused = "fused" in inspect.signature(cls).parameters
    return {"fused": True} if takes_fused and device in ("cpu", "cuda") else {}


def make_optimizer(model: nn.Module, settings: Any, head_params: list[nn.Parameter] | None = None) -> torch.optim.Optimizer:
    """timm's optimizer for ``model`` with the classifier (``head_params``, default the timm
    classifier) in its own groups at ``lr_scale x settings.head_lr_scale``.

    Build it while every parameter is trainable: timm's grouping skips frozen parameters.
    """
    from timm.optim import create_optimizer_v2

    from . import models

    optimizer = create_optimizer_v2(
        model, opt=settings.optimizer, lr=settings.lr, weight_decay=settings.weight_decay,
        layer_decay=settings.layer_decay, **_fused_kwargs(settings.optimizer, model),
    )
    head = {id(p) for p in (head_params if head_params is not None else models.classifier_parameters(model))}
    groups = []
    for group in optimizer.param_groups:
        body = [p for p in group["params"] if id(p) not in head]
        own = [p for p in group["params"] if id(p) in head]
        if body:
            groups.append({**group, "params": body})
        if own:
            groups.append({**group, "params": own, "head": True,
                           "lr_scale": group.get("lr_scale", 1.0) * settings.head_lr_scale})
    # same optimizer class and defaults, regrouped before any step (no state to move)
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)
    return optimizer


# ------------------------------------------------------------------------------------ schedules


@dataclass(frozen=True)
class Span:
    """What a schedule builder gets: base ``lr``, ``min_lr``, update counts and its own ``args``."""

    lr: float
    min_lr: float
    total_steps: int  # updates after the frozen stage, warmup included
    warmup_steps: int
    steps_per_epoch: int
    args: dict[str, Any]

    @property
    def warmup_lr_init(self) -> float:
        # first update at lr / (warmup + 1) rather than 0: no wasted step
        return self.lr / (self.warmup_steps + 1)


@dataclass(frozen=True)
class SchedulerSpec:
    """build(optimizer, span) -> set_lr(step): sets every group's lr for the update ``step`` (0-based)."""

    build: Callable[[torch.optim.Optimizer, Span], Callable[[int], None]]
    help: str
    params: dict[str, Param] = field(default_factory=dict)


def _timm(cls_name: str, kwargs_of: Callable[[Span], dict[str, Any]]) -> Callable[[torch.optim.Optimizer, Span], Callable[[int], None]]:
    """A builder for timm scheduler ``cls_name`` stepped per update, warmup before (not inside) the decay."""

    def build(optimizer: torch.optim.Optimizer, span: Span) -> Callable[[int], None]:
        import timm.scheduler

        # timm warns that a one-update decay "will have no effect": true and harmless on tiny runs
        quiet = logging.getLogger("timm.scheduler")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            scheduler = getattr(timm.scheduler, cls_name)(
                optimizer, warmup_t=span.warmup_steps, warmup_lr_init=span.warmup_lr_init, warmup_prefix=True,
                t_in_epochs=False, **kwargs_of(span),
            )
        finally:
            quiet.setLevel(level)
        return scheduler.step_update

    return build


def _decay(span: Span) -> dict[str, Any]:
    return {"t_initial": max(1, span.total_steps - span.warmup_steps), "lr_min": span.min_lr}


def _onecycle(optimizer: torch.optim.Optimizer, span: Span) -> Callable[[int], None]:
    div = span.args["div_factor"]
    # the cycle ends at min_lr: final_div_factor counts from the start lr (lr / div)
    final_div = (span.lr / div) / span.min_lr if span.min_lr > 0 else 1e4
    cycle_momentum = any("momentum" in g or "betas" in g for g in optimizer.param_groups)
    for group in optimizer.param_groups:
        group.pop("initial_lr", None)
    # torch divides by each phase's length: keep both phases at least one step long on tiny runs
    total = max(4, span.total_steps + 1)
    pct = min(max(max(span.warmup_steps, 1) / total, 1.5 / total), 1 - 1.5 / total)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[span.lr * g.get("lr_scale", 1.0) for g in optimizer.param_groups],
        total_steps=total,
        pct_start=pct,
        div_factor=div,
        final_div_factor=max(final_div, 1e-12),
        cycle_momentum=cycle_momentum and all("momentum" in g or "betas" in g for g in optimizer.param_groups),
    )

    def set_lr(step: int) -> None:
        # OneCycleLR computes from last_epoch alone: set it and read the closed form
        scheduler.last_epoch = min(step, scheduler.total_steps - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lrs = scheduler.get_lr()
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr

    return set_lr


SCHEDULERS: dict[str, SchedulerSpec] = {
    "cosine": SchedulerSpec(_timm("CosineLRScheduler", _decay), "cosine decay from lr to min_lr after the warmup (timm CosineLRScheduler)"),
    "linear": SchedulerSpec(_timm("PolyLRScheduler", lambda s: {**_decay(s), "power": 1.0}), "linear decay from lr to min_lr after the warmup (timm PolyLRScheduler, power 1)"),
    "step": SchedulerSpec(
        _timm("StepLRScheduler", lambda s: {"decay_t": s.args["decay_epochs"] * s.steps_per_epoch, "decay_rate": s.args["decay_rate"]}), "lr x decay_rate every decay_epochs after the warmup (timm StepLRScheduler)",
        {
            "decay_epochs": Param(2.0, "epochs between decays", lo=0.01, hi=1e4),
            "decay_rate": Param(0.5, "factor per decay", lo=0.0, hi=1.0),
        },
    ),
    "constant": SchedulerSpec(_timm("StepLRScheduler", lambda s: {"decay_t": 2**62, "decay_rate": 1.0}),
                              "lr after the warmup, unchanged (timm StepLRScheduler without decay)"),
    "onecycle": SchedulerSpec(
        _onecycle, "one-cycle policy: rises over warmup_epochs from lr/div_factor to lr, anneals to min_lr (torch OneCycleLR)",
        {"div_factor": Param(25.0, "start lr = lr / div_factor", lo=1.0, hi=1e6)},
    ),
}


class LRSchedule:
    """Sets the learning rate of every group before each optimizer update.

    Frozen stage (the first ``frozen_steps`` updates): ``freeze_lr`` for every group (only the
    classifier has gradients then); afterwards the chosen schedule over the remaining updates.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, settings: Any, steps_per_epoch: int):
        from ..core.params import check_args

        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch  # optimizer updates per epoch
        self.freeze_lr = settings.freeze_lr
        self.frozen_steps = settings.freeze_epochs * steps_per_epoch
        total = max(1, (settings.epochs - settings.freeze_epochs) * steps_per_epoch)
        warmup = min(int(round(settings.warmup_epochs * steps_per_epoch)), total - 1)
        spec = SCHEDULERS[settings.scheduler]
        args = check_args(settings.scheduler_args, spec.params, f"scheduler {settings.scheduler}")
        # min_lr above lr would make the "decay" a rise
        span = Span(settings.lr, min(settings.min_lr, settings.lr), total, max(0, warmup), steps_per_epoch, args)
        self._set = spec.build(optimizer, span)

    def step_update(self, step: int) -> None:
        if step < self.frozen_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = self.freeze_lr
        else:
            self._set(step - self.frozen_steps)

    def base_lr(self, step: int) -> float:
        """The scheduled lr at update ``step`` before any group's ``lr_scale`` (freeze_lr while frozen)."""
        self.step_update(step)
        group = self.optimizer.param_groups[0]
        return group["lr"] if step < self.frozen_steps else group["lr"] / group.get("lr_scale", 1.0)


def steps_per_epoch(batches: int, grad_accum: int) -> int:
    """Optimizer updates per epoch: one per ``grad_accum`` batches, the last group may be short."""
    return max(1, math.ceil(batches / grad_accum))
