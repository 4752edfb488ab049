"""Training losses: one table, ``LOSSES``, from a name to everything about that loss.

Each entry owns its builder, the task kinds it suits, its own parameters (``loss_args`` in a config,
checked against ``params``) and its help text; config validation, the docs' key table and error messages read
this table. Losses take logits ``(B, C)`` and float targets ``(B, C)`` in [0, 1] (multi-hot, one-hot,
or soft after mixup / label smoothing) and return a scalar averaged over the batch (and over the
classes for the sigmoid losses, so their lr scale matches ``BCEWithLogitsLoss``).

Library first: ``bce`` is torch's ``BCEWithLogitsLoss``, ``focal`` is torchvision's
``sigmoid_focal_loss``, ``asl`` is timm's ``AsymmetricLossMultiLabel``, ``ce`` torch's
``CrossEntropyLoss``; only ``soft_f2`` (the differentiable F2 of Planet teams) is written here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.params import Param
from ..core.tasks import resolve_loss

SIGMOID_TASKS = ("multilabel", "binary")


def smooth_binary_targets(targets: torch.Tensor, eps: float) -> torch.Tensor:
    """0/1 targets moved to eps/2 and 1 - eps/2 (each sigmoid output is its own two-class problem)."""
    return targets * (1.0 - eps) + 0.5 * eps if eps else targets


class SmoothedTargets(nn.Module):
    """``loss(logits, smooth_binary_targets(targets, eps))``: label smoothing for the sigmoid losses."""

    def __init__(self, loss: nn.Module, eps: float):
        super().__init__()
        self.loss = loss
        self.eps = eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, smooth_binary_targets(targets, self.eps))


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017; torchvision's implementation), mean over elements.

    ``pos_weight`` scales the positive part of each element as in ``BCEWithLogitsLoss``.
    """

    def __init__(self, gamma: float, alpha: float, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import sigmoid_focal_loss

        loss = sigmoid_focal_loss(logits, targets, alpha=self.alpha, gamma=self.gamma, reduction="none")
        if self.pos_weight is not None:
            loss = loss * (1.0 + (self.pos_weight - 1.0) * targets)
        return loss.mean()


class SoftF2Loss(nn.Module):
    """``1 - mean_i F_beta_i`` with soft counts per sample i: tp = sum_c p*y, fp = sum_c p*(1-y),
    fn = sum_c (1-p)*y, F = (1+b^2) tp / ((1+b^2) tp + b^2 fn + fp + eps); plus ``bce_weight`` x BCE
    (pure soft-F2 gives weak gradients to confident mistakes; Planet teams often mixed in BCE)."""

    def __init__(self, beta: float, bce_weight: float, eps: float = 1e-7, pos_weight: torch.Tensor | None = None):
        super().__init__()
        self.beta2 = beta * beta
        self.bce_weight = bce_weight
        self.eps = eps
        self.bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        tp = (p * targets).sum(1)
        fp = (p * (1.0 - targets)).sum(1)
        fn = ((1.0 - p) * targets).sum(1)
        f = (1.0 + self.beta2) * tp / ((1.0 + self.beta2) * tp + self.beta2 * fn + fp + self.eps)
        loss = 1.0 - f.mean()
        return loss + self.bce_weight * self.bce(logits, targets) if self.bce_weight else loss


@dataclass(frozen=True)
class LossSpec:
    """build(args, label_smoothing, pos_weight) -> nn.Module; ``args`` completed from ``params``."""

    build: Callable[[dict[str, Any], float, torch.Tensor | None], nn.Module]
    tasks: tuple[str, ...]
    help: str
    params: dict[str, Param] = field(default_factory=dict)


def _bce(args: dict, eps: float, pos_weight: torch.Tensor | None) -> nn.Module:
    return SmoothedTargets(nn.BCEWithLogitsLoss(pos_weight=pos_weight), eps)


def _focal(args: dict, eps: float, pos_weight: torch.Tensor | None) -> nn.Module:
    return SmoothedTargets(FocalLoss(args["gamma"], args["alpha"], pos_weight), eps)


def _asl(args: dict, eps: float, pos_weight: torch.Tensor | None) -> nn.Module:
    from timm.loss import AsymmetricLossMultiLabel

    return AsymmetricLossMultiLabel(
        gamma_neg=args["gamma_neg"], gamma_pos=args["gamma_pos"], clip=args["clip"], smoothing=eps,
        reduction="mean", pos_weight=pos_weight,
    )


def _soft_f2(args: dict, eps: float, pos_weight: torch.Tensor | None) -> nn.Module:
    return SmoothedTargets(SoftF2Loss(args["beta"], args["bce_weight"], pos_weight=pos_weight), eps)


def _ce(args: dict, eps: float, pos_weight: torch.Tensor | None) -> nn.Module:
    # one-hot / mixed float targets are class probabilities for CrossEntropyLoss
    return nn.CrossEntropyLoss(label_smoothing=eps)


LOSSES: dict[str, LossSpec] = {
    "bce": LossSpec(_bce, SIGMOID_TASKS, "binary cross-entropy per class (torch BCEWithLogitsLoss)"),
    "focal": LossSpec(
        _focal, SIGMOID_TASKS, "sigmoid focal loss, down-weights easy examples (torchvision sigmoid_focal_loss)",
        {
            "gamma": Param(2.0, "focusing exponent", lo=0.0, hi=10.0),
            "alpha": Param(-1.0, "weight of positives in [0, 1]; -1: off", lo=-1.0, hi=1.0),
        },
    ),
    "asl": LossSpec(
        _asl, SIGMOID_TASKS, "asymmetric loss for multi-label, focuses harder on negatives (timm AsymmetricLossMultiLabel, mean)",
        {
            "gamma_neg": Param(4.0, "focusing exponent of negatives", lo=0.0, hi=10.0),
            "gamma_pos": Param(1.0, "focusing exponent of positives", lo=0.0, hi=10.0),
            "clip": Param(0.05, "probability margin shifted onto negatives", lo=0.0, hi=0.5),
        },
    ),
    "soft_f2": LossSpec(
        _soft_f2, ("multilabel",), "1 - differentiable per-sample F-beta (Planet), plus bce_weight x BCE",
        {
            "beta": Param(2.0, "F-beta's beta", lo=0.1, hi=10.0),
            "bce_weight": Param(0.0, "weight of an added BCE term", lo=0.0, hi=100.0),
        },
    ),
    "ce": LossSpec(_ce, ("multiclass",), "softmax cross-entropy (torch CrossEntropyLoss; label_smoothing applies)"),
}

def build_loss(
    name: str,
    task: str,
    args: dict[str, Any] | None = None,
    label_smoothing: float = 0.0,
    pos_weight: torch.Tensor | None = None,
) -> nn.Module:
    """The loss module for ``name`` (or ``auto``) on ``task``; ``args`` checked against the entry's params.

    pos_weight: (C,) weights of positive targets, sigmoid losses only.
    """
    from ..core.errors import KagglePlanetError
    from ..core.params import ArgError, check_args

    name = resolve_loss(name, task)
    if name not in LOSSES:
        raise KagglePlanetError(f"loss: unknown loss {name!r}; valid: auto, {', '.join(LOSSES)}")
    spec = LOSSES[name]
    if task not in spec.tasks:
        raise KagglePlanetError(f"loss {name}: not for {task} tasks (it suits {', '.join(spec.tasks)})")
    if pos_weight is not None and task not in SIGMOID_TASKS:
        raise KagglePlanetError(f"pos_weight: only for sigmoid (multilabel/binary) losses, not {task}")
    try:
        full = check_args(args, spec.params, f"loss {name}")
    except ArgError as exc:
        raise KagglePlanetError(f"loss_args.{exc}") from None
    return spec.build(full, float(label_smoothing), pos_weight)


def pos_weight_for(setting: float | str | None, targets: Any) -> torch.Tensor | None:
    """The (C,) pos_weight tensor of a config value: None, a number for every class, or ``auto``
    (negatives / positives of each class in ``targets`` (N, C), the training rows; at least 1 positive
    counted so an absent class does not divide by zero)."""
    import numpy as np

    if setting is None:
        return None
    targets = np.asarray(targets, dtype=np.float64)
    if setting == "auto":
        pos = targets.sum(0)
        neg = len(targets) - pos
        return torch.tensor(neg / np.maximum(pos, 1.0), dtype=torch.float32)
    return torch.full((targets.shape[1],), float(setting), dtype=torch.float32)
