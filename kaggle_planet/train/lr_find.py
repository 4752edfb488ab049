"""The learning-rate range test (Smith 2015; fastai's ``lr_find``).

On fold 0 of a model, with the model, loss, optimizer, mixing and precision exactly as training builds
them (head at the prior, timm's parameter groups with their ``lr_scale``), the lr grows exponentially
from ``start_lr`` to ``end_lr`` over ``num_steps`` updates; the loss is smoothed (bias-corrected EMA) and
the test stops once the smoothed loss exceeds ``diverge`` x its minimum. The suggestion is fastai's
``valley``: the longest stretch over which the smoothed loss keeps falling, and a point two thirds of
the way down it. Nothing is written into run folders: the plot goes where ``out`` says.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    raw: list[float]
    suggestion: float
    stopped: str  # why the sweep ended

    def summary(self) -> str:
        return (f"lr-find: {len(self.lrs)} updates from {self.lrs[0]:.2e} to {self.lrs[-1]:.2e} ({self.stopped}); "
                f"min smoothed loss {min(self.losses):.4f} at lr {self.lrs[int(np.argmin(self.losses))]:.2e}; "
                f"suggested lr (valley) {self.suggestion:.2e}")


def exponential_lrs(start_lr: float, end_lr: float, num_steps: int) -> np.ndarray:
    return start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / max(1, num_steps - 1))


def check_sweep(start_lr: float, end_lr: float, num_steps: int) -> None:
    """One-line errors for a sweep that cannot run (before any data is read)."""
    if not 0 < start_lr < end_lr:
        raise KagglePlanetError(f"lr-find: need 0 < start lr < end lr, got {start_lr} and {end_lr}")
    if num_steps < 10:
        raise KagglePlanetError(f"lr-find: need at least 10 steps, got {num_steps}")


def range_test(
    step: Callable[[float], float],
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 200,
    beta: float = 0.98,
    diverge: float = 4.0,
) -> RangeTest:
    """Run ``step(lr) -> loss`` (one update at ``lr``) over the exponential sweep; returns the curve and the valley."""
    check_sweep(start_lr, end_lr, num_steps)
    lrs, smoothed, raw = [], [], []
    avg, best, stopped = 0.0, math.inf, f"reached end lr {end_lr:g}"
    for i, lr in enumerate(exponential_lrs(start_lr, end_lr, num_steps)):
        loss = float(step(float(lr)))
        if not math.isfinite(loss):
            stopped = f"loss not finite at lr {lr:.2e}"
            break
        avg = beta * avg + (1 - beta) * loss
        value = avg / (1 - beta ** (i + 1))
        lrs.append(float(lr))
        smoothed.append(value)
        raw.append(loss)
        best = min(best, value)
        if i > 5 and value > diverge * best:
            stopped = f"diverged at lr {lr:.2e}"
            break
    if len(lrs) < 5:
        raise KagglePlanetError(f"lr-find: the loss diverged after {len(lrs)} updates; lower the start lr (now {start_lr:g})")
    return RangeTest(lrs, smoothed, raw, valley(lrs, smoothed), stopped)


def valley(lrs: list[float], losses: list[float]) -> float:
    """fastai's valley: the longest decreasing subsequence of the loss, then 2/3 of the way along it
    (the lr to pick is below the minimum's, where the loss still falls fast)."""
    n = len(losses)
    run = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end = i
            start = end - run[end]
    third = (end - start) / 3
    return lrs[min(n - 1, max(0, start + int(third) + int(third / 2)))]


def _batches(loader: Any) -> Iterator[Any]:
    epoch = 0
    while True:
        loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def lr_find(cfg: Any, model_name: str | None, device: Any, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 200, out: str | Path | None = None) -> tuple[RangeTest, Path]:
    """The range test for ``model_name`` (default: the config's first model) on fold 0; writes the plot
    to ``out`` (default ``lr-find-<experiment>-<model>.png`` in the working directory)."""
    from ..core import artifacts
    from ..data.competitions import load_dataset
    from ..data.folds import load_or_make_folds
    from ..recipe.engine import optimizer_step, set_train_mode
    from .distributed import Dist
    from .trainer import build_trainer, prepare_fold

    check_sweep(start_lr, end_lr, num_steps)
    name = model_name or cfg.model_names[0]
    out = artifacts.check_output_file(Path(out) if out else Path(f"lr-find-{cfg.name}-{name}.png"), "range-test plot", ".png",
                                      lambda path: path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n")
    settings = cfg.resolved_model(name)
    table = load_dataset(cfg.competition, cfg.data_dir, cfg.options)
    folds = load_or_make_folds(table, cfg.folds.k, cfg.folds.seed)
    setup = prepare_fold(settings, table, folds, 0, Dist(0, 1, device))
    trainer = build_trainer(setup.model, settings, table.task, setup.train_targets, len(setup.train_loader), device, setup.seed)
    model, t = setup.model, trainer
    set_train_mode(model, False)
    batches = _batches(setup.train_loader)
    count = [0]

    def step(lr: float) -> float:
        for group in t.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        total = 0.0
        for _ in range(settings.grad_accum):
            images, target, _ = next(batches)
            images = t.precision.to_device(images)
            target = target.to(device)
            images, target = t.mixer(images, target, 0, count[0])
            count[0] += 1
            with t.precision.autocast():
                logits = model(images)
            loss = t.loss_fn(logits.float(), target)
            scaled = loss / settings.grad_accum
            (t.scaler.scale(scaled) if t.precision.use_scaler else scaled).backward()
            total += loss.item() / settings.grad_accum
        optimizer_step(model, t)  # training's own update: unscale, clip_grad, step, clear
        return total

    result = range_test(step, start_lr, end_lr, num_steps)
    plot_range_test(result, out, f"{cfg.name} / {name} / fold 0")
    return result, out


def plot_range_test(result: RangeTest, path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..core import artifacts

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(result.lrs, result.raw, color="0.8", linewidth=0.8, label="loss")
    ax.plot(result.lrs, result.losses, label="smoothed loss")
    ax.axvline(result.suggestion, color="C3", linestyle="--", label=f"valley {result.suggestion:.1e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    low, high = min(result.losses), result.losses[0]
    ax.set_ylim(low - 0.1 * (high - low + 1e-9), max(high, low) + 0.5 * (high - low + 1e-9))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    return artifacts.atomic_write(path, lambda p: fig.savefig(p, format="png"))
