"""Mixup and CutMix on training batches, through timm's ``Mixup``, reproducible per step.

timm's ``Mixup`` (batch mode) mixes each image with the batch's reversed order and returns the mixing
weight ``lam``; the targets are mixed here with the same ``lam``, which works alike for one-hot
(multiclass, what timm's ``mixup_target`` does) and multi-hot (multi-label) targets:
``lam * t + (1 - lam) * t.flip(0)``. timm draws from numpy's global generator, so every call is
preceded by a reseed from ``(seed, epoch, step)``: a resumed run draws exactly what an uninterrupted
run draws, whatever happened before.

Per batch: with both methods on, cutmix is chosen with ``mix_switch_prob``, else mixup (one draw);
the chosen method then mixes the batch with its own ``prob``. In the last ``mix_off_epochs`` epochs
nothing is mixed.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


class Mixer:
    """``mixer(images, targets, epoch, step) -> (images, targets)``; identity when mixing is off."""

    def __init__(self, settings: Any, seed: int):
        from timm.data import Mixup

        self.seed = seed
        self.switch_prob = settings.mix_switch_prob
        self.last_mix_epoch = settings.epochs - settings.mix_off_epochs  # epochs >= this are not mixed
        self.mixup = self.cutmix = None
        if settings.mixup:
            self.mixup = Mixup(mixup_alpha=settings.mixup["alpha"], cutmix_alpha=0.0, prob=settings.mixup["prob"],
                               mode="batch", label_smoothing=0.0)
        if settings.cutmix:
            self.cutmix = Mixup(mixup_alpha=0.0, cutmix_alpha=settings.cutmix["alpha"], prob=settings.cutmix["prob"],
                                mode="batch", label_smoothing=0.0)

    @property
    def enabled(self) -> bool:
        return self.mixup is not None or self.cutmix is not None

    def active(self, epoch: int) -> bool:
        return self.enabled and epoch < self.last_mix_epoch

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) float, targets (B, C) float in [0, 1]; ``step`` counts batches in the epoch."""
        if not self.active(epoch) or len(images) < 2:
            return images, targets
        np.random.seed(int(np.random.SeedSequence([self.seed, epoch, step, 0x6D6978]).generate_state(1)[0]))
        mixer = self.mixup
        if self.cutmix is not None and (mixer is None or np.random.rand() < self.switch_prob):
            mixer = self.cutmix
        images = images.clone()  # timm mixes in place
        lam = float(mixer._mix_batch(images))  # noqa: SLF001 - timm's batch mixing, without its one-hot targets
        if lam >= 1.0:
            return images, targets
        return images, lam * targets + (1.0 - lam) * targets.flip(0)
