"""The full-data refit: after cross-validation, each model is trained once more on every training image.

Winners do this when the test set is shifted from the training set (other regions, other hospitals): a
model that saw all the training data generalises better than any fold model, which saw (k-1)/k of it.
There is no validation set, so there is no early stopping: the refit trains for the epoch count
cross-validation chose (the mean of the folds' best epochs, rounded, at least one) and keeps its last
weights (the EMA weights when ``ema`` is on), with the learning-rate schedule laid over those epochs.

``<model>/refit/`` holds what a fold folder holds (``best.pt``, ``history.csv``, ``curves.png``,
``done.json``, ``last.pt`` while it trains: a killed refit resumes). Its ``done.json`` records the epoch
count and the fold models it was derived from; when those change (folds retrained), the refit is trained
again. The refit has no OOF score of its own: the model's OOF predictions stay the fold models'; only the
test predictions use it (config ``refit: alone | with_folds``).
"""
from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config.schema import ExperimentConfig, ModelSettings
from ..core import artifacts, locks
from ..core.artifacts import DONE, LAST, REFIT_DIR, fold_dir
from ..core.errors import KagglePlanetError
from ..core.metrics import score
from ..data.competitions import DatasetTable
from .distributed import Dist
from .trainer import FoldRun, TrainedEpoch, prepare_fold

log = logging.getLogger(__name__)


def refit_epochs(model_dir: Path, k: int) -> tuple[int, list[int]]:
    """(epochs, the folds' best epochs): the mean best epoch of the ``k`` fold models, rounded, at least 1."""
    best = []
    for fold in range(k):
        done = artifacts.read_json(fold_dir(model_dir, fold) / DONE)
        best.append(int(done.get("best_epoch", done.get("epochs_run", 1))))
    return max(1, math.floor(np.mean(best) + 0.5)), best


class RefitRun(FoldRun):
    """A :class:`FoldRun` over every training image: no validation (each epoch's row holds the training loss
    and metric; the valid columns are NaN), no early stopping, best.pt = the last epoch's weights."""

    def __init__(self, *args: Any, model_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out_dir = Path(model_dir) / REFIT_DIR
        self.last_path = self.out_dir / LAST

    @property
    def title(self) -> str:
        return f"{self.cfg.name} / {self.settings.name} / full-data refit"

    @property
    def where(self) -> str:
        return "refit"

    def evaluate(self, trained: TrainedEpoch) -> dict[str, float]:
        tr = trained.result
        if not math.isfinite(tr.loss) or not np.isfinite(tr.probs).all():
            raise KagglePlanetError(f"{self.settings.name} refit: the training loss or predictions turned NaN/inf in epoch {trained.epoch + 1}; "
                                    f"lower lr or turn amp off")
        return {"epoch": trained.epoch + 1, "lr": trained.lr, "train_loss": tr.loss, "valid_loss": math.nan,
                "train_metric": score(self.metric, tr.targets.astype(np.int64), tr.probs, self.table.task), "valid_metric": math.nan,
                "seconds": time.time() - trained.started}

    def record(self, row: dict[str, float]) -> bool:
        state = self.state
        state.history.append(row)
        state.epoch = row["epoch"]
        last = state.epoch >= self.settings.epochs
        if last:
            state.best_epoch, state.best_score = row["epoch"], row["train_metric"]
        log.info("%s refit epoch %d/%d: train loss %.4f %s %.4f (%.0fs)", self.settings.name, row["epoch"], self.settings.epochs,
                 row["train_loss"], self.metric, row["train_metric"], row["seconds"])
        return last

    def _desc(self, epoch: int) -> str:
        return f"{self.settings.name} refit e{epoch + 1}/{self.settings.epochs}"


def train_refit(cfg: ExperimentConfig, name: str, table: DatasetTable, fold_ids: np.ndarray, ctx: Dist, wait: bool = False) -> Path | None:
    """Train model ``name``'s full-data refit when ``cfg.refit`` asks for one and the one there (if any) was not
    derived from today's fold models; returns ``<model>/refit/`` (None with ``refit: off``)."""
    if cfg.refit == "off":
        return None
    model_dir = cfg.model_dir(name)
    out = model_dir / REFIT_DIR
    k = cfg.folds.k
    if artifacts.refit_current(model_dir, k):
        log.info("%s: full-data refit up to date (%s), kept", name, out)
        return out
    epochs, best = refit_epochs(model_dir, k)
    settings: ModelSettings = cfg.resolved_model(name).model_copy(update={"epochs": epochs, "patience": 0, "freeze_epochs": min(
        cfg.resolved_model(name).freeze_epochs, epochs - 1)})
    lock = out / locks.LOCK
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        locks.acquire(lock, f"model {name} refit", wait)
    try:
        stale = out / DONE
        if ctx.main and stale.is_file():  # derived from other fold models: trained again from scratch
            log.info("%s: the refit there was derived from other fold models; training it again", name)
            for path in out.iterdir():
                if path != lock:
                    path.unlink() if path.is_file() else shutil.rmtree(path)
        ctx.barrier()
        log.info("%s: full-data refit on all %d training images for %d epochs (the mean of the folds' best epochs %s)",
                 name, len(table.train), epochs, best)
        setup = prepare_fold(settings, table, np.asarray(fold_ids), k, ctx)  # fold k: no training row is held out
        run = RefitRun(cfg, settings, table, k, model_dir, ctx, setup, model_dir=model_dir)
        run.restore()
        while run.should_continue():
            row, improved = run.epoch()
            run.checkpoint(row, improved)
        done = run.finish()
        if ctx.main:
            done.update(refit=True, epochs=epochs, folds_best_epochs=best, fold_models=artifacts.fold_model_digests(model_dir, k))
            artifacts.write_json(out / DONE, done)
        ctx.barrier()
    finally:
        if ctx.main:
            locks.release(lock)
    return out
