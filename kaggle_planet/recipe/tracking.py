"""Experiment trackers: where a run's curves and scores go besides ``history.csv``.

``TRACKERS`` is the one table of trackers (config key ``log``): each entry owns its builder, the
optional dependency it needs, the ``pip install "kaggle-planet[<extra>]"`` extra that provides it, and
its help text; the config's choices, the docs' table (docs/training.md) and the "not installed" error read it.

A builder takes ``(cfg, model_name, model_dir)`` and returns a sink for one model run with
``step(fold, update, loss, lr)``, ``epoch(fold, row)`` (a ``history.csv`` row), ``end_fold(fold)``,
``summary(values)`` and ``close()``. :class:`Tracking` fans the calls out to the config's sinks; it
is what training and the pipeline hold. Per-step losses arrive as device tensors and are buffered
until the end of the epoch, so tracking adds no GPU synchronisation per step. Under torchrun only
rank 0 tracks (the other ranks get an empty :class:`Tracking`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

TB_DIR = "tb"  # runs/<exp>/<model>/tb/fold<k>/ event files
WANDB_DIR = "wandb"  # runs/<exp>/<model>/wandb/offline-run-*/


@dataclass(frozen=True)
class TrackerEntry:
    """One tracker: ``build(cfg, model_name, model_dir) -> sink`` (None: nothing to open), the module it
    imports (None: always available) and the package extra that installs it."""

    build: Callable[[Any, str, Path], Any] | None
    module: str | None
    extra: str | None
    help: str


# ------------------------------------------------------------------------------------- tensorboard


class _TensorBoard:
    """One ``SummaryWriter`` per fold (``tb/fold<k>/``): TensorBoard overlays the folds as runs.
    Per-update scalars ``step/loss``, ``step/lr`` (x: optimizer update); per-epoch ``epoch/<history column>``
    (x: epoch, 1-based)."""

    def __init__(self, cfg: Any, model_name: str, model_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class = SummaryWriter
        self.root = Path(model_dir) / TB_DIR
        self.writers: dict[int, Any] = {}

    def _writer(self, fold: int) -> Any:
        if fold not in self.writers:
            self.writers[fold] = self._writer_class(log_dir=str(self.root / f"fold{fold}"))
        return self.writers[fold]

    def step(self, fold: int, update: int, loss: float, lr: float) -> None:
        w = self._writer(fold)
        w.add_scalar("step/loss", loss, update)
        w.add_scalar("step/lr", lr, update)

    def epoch(self, fold: int, row: dict[str, float]) -> None:
        w = self._writer(fold)
        for key, value in row.items():
            if key != "epoch":
                w.add_scalar(f"epoch/{key}", value, int(row["epoch"]))
        w.flush()

    def end_fold(self, fold: int) -> None:
        writer = self.writers.pop(fold, None)
        if writer is not None:
            writer.close()

    def summary(self, values: dict[str, Any]) -> None:
        pass  # the scores live in scores.json and W&B; TensorBoard shows curves

    def close(self) -> None:
        for fold in list(self.writers):
            self.end_fold(fold)


# ------------------------------------------------------------------------------------------- wandb


class _WandB:
    """A W&B run per model (group: the experiment, name: the model) in ``<model_dir>/wandb/``; offline
    unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads it later). Fold k's curves are
    ``fold<k>/loss``, ``fold<k>/lr`` against ``fold<k>/update`` and ``fold<k>/<history column>`` against
    ``fold<k>/epoch``; the summary gets the model's and the blend's OOF scores and the submission path."""

    def __init__(self, cfg: Any, model_name: str, model_dir: Path):
        import wandb
        import yaml

        from ..core.artifacts import MODEL_CONFIG

        root = Path(model_dir)
        root.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", f"kaggle-planet-{cfg.competition}"),
            group=cfg.name,
            name=model_name,
            dir=str(root),
            mode=os.environ.get("WANDB_MODE", "offline"),
            config=yaml.safe_load((root / MODEL_CONFIG).read_text()),  # the model folder's config.yaml, written before training
            reinit="create_new",  # one run per model, open together until the pipeline's scores are known
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
        )
        self.defined: set[int] = set()

    def _define(self, fold: int) -> None:
        if fold in self.defined:
            return
        self.run.define_metric(f"fold{fold}/update", hidden=True)
        self.run.define_metric(f"fold{fold}/epoch", hidden=True)
        for name in ("loss", "lr"):
            self.run.define_metric(f"fold{fold}/{name}", step_metric=f"fold{fold}/update")
        self.defined.add(fold)

    def step(self, fold: int, update: int, loss: float, lr: float) -> None:
        self._define(fold)
        self.run.log({f"fold{fold}/update": update, f"fold{fold}/loss": loss, f"fold{fold}/lr": lr})

    def epoch(self, fold: int, row: dict[str, float]) -> None:
        self._define(fold)
        values = {f"fold{fold}/{k}": v for k, v in row.items() if k not in ("epoch", "lr")}
        for key in values:
            self.run.define_metric(key, step_metric=f"fold{fold}/epoch")
        self.run.log({f"fold{fold}/epoch": int(row["epoch"]), **values})

    def end_fold(self, fold: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        self.run.summary.update(values)

    def close(self) -> None:
        self.run.finish()


TRACKERS: dict[str, TrackerEntry] = {
    "csv": TrackerEntry(None, None, None, "history.csv and curves.png per fold (always written: the report and resume read them)"),
    "tensorboard": TrackerEntry(
        _TensorBoard, "tensorboard", "tensorboard",
        "per-update loss and lr and per-epoch history of every fold in `<model>/tb/fold<k>/` (torch.utils.tensorboard)",
    ),
    "wandb": TrackerEntry(
        _WandB, "wandb", "wandb",
        "the same in a W&B run per model (group: experiment) in `<model>/wandb/`, offline unless WANDB_MODE is set, "
        "+ OOF/blend scores and the submission path in its summary",
    ),
}


def check_installed(names: Iterable[str], source: str = "log") -> None:
    """One line naming the extra to install for the first tracker in ``names`` whose package is missing."""
    for name in names:
        entry = TRACKERS[name]
        if entry.module is not None and importlib.util.find_spec(entry.module) is None:
            raise KagglePlanetError(
                f"{source}: tracker {name!r} needs the {entry.module} package, which is not installed; "
                f'pip install "kaggle-planet[{entry.extra}]"'
            )


def is_main_process() -> bool:
    """Rank 0 under torchrun (``RANK`` unset: a single process)."""
    return int(os.environ.get("RANK", "0")) == 0


@dataclass
class Tracking:
    """The config's trackers for every model of a run; ``names`` empty (or a non-zero rank): does nothing.

    ``start_model`` opens each tracker's sink for a model; the sinks stay open until ``close`` so that
    the pipeline can add the final scores (:meth:`summary`) after blending.
    """

    cfg: Any
    names: list[str]
    sinks: dict[str, list[Any]] = field(default_factory=dict)
    # (model, fold) -> (lr of an update, [(update, loss tensor)]) not yet handed to the sinks
    _pending: dict[tuple[str, int], tuple[Callable[[int], float], list[tuple[int, Any]]]] = field(default_factory=dict)

    @classmethod
    def for_config(cls, cfg: Any) -> Tracking:
        names = [n for n in cfg.log if TRACKERS[n].build is not None] if is_main_process() else []
        check_installed(names, f"config {cfg.name!r}: log")
        return cls(cfg, names)

    def start_model(self, model_name: str, model_dir: Path) -> None:
        if model_name in self.sinks:
            return
        self.sinks[model_name] = []
        for name in self.names:
            try:
                self.sinks[model_name].append(TRACKERS[name].build(self.cfg, model_name, Path(model_dir)))
            except Exception as exc:  # noqa: BLE001 - a tracker's own failure (bad install, bad env) becomes one line
                text = " ".join(str(exc).split())
                raise KagglePlanetError(f"{model_dir}: tracker {name!r} failed to start ({type(exc).__name__}: {text}); "
                                        f"fix it or remove {name} from the config's log") from None

    def on_update(self, model_name: str, fold: int, lr_of: Callable[[int], float]) -> Callable[[int, Any], None] | None:
        """The per-update callback for :func:`kaggle_planet.recipe.engine.train_one_epoch` (None when nothing tracks):
        ``(update index, loss tensor)``; ``lr_of(update)`` gives the scheduled lr, read at the end of the epoch."""
        if not self.sinks.get(model_name):
            return None
        buffer: list[tuple[int, Any]] = []
        self._pending[(model_name, fold)] = (lr_of, buffer)
        return lambda update, loss: buffer.append((update, loss))

    def _flush_steps(self, model_name: str, fold: int) -> None:
        lr_of, buffer = self._pending.pop((model_name, fold), (None, []))
        if not buffer:
            return
        import torch

        losses = torch.stack([loss.float().reshape(()) for _, loss in buffer]).cpu().tolist()  # one device sync
        for (update, _), loss in zip(buffer, losses):
            lr = lr_of(update)
            for sink in self.sinks[model_name]:
                sink.step(fold, update, loss, lr)

    def epoch(self, model_name: str, fold: int, row: dict[str, float]) -> None:
        if not self.sinks.get(model_name):
            return
        self._flush_steps(model_name, fold)
        for sink in self.sinks[model_name]:
            sink.epoch(fold, {k: float(v) for k, v in row.items()})

    def end_fold(self, model_name: str, fold: int) -> None:
        for sink in self.sinks.get(model_name, []):
            sink.end_fold(fold)

    def summary(self, model_name: str, values: dict[str, Any]) -> None:
        for sink in self.sinks.get(model_name, []):
            sink.summary(values)

    def close(self) -> None:
        for name, sinks in self.sinks.items():
            for sink in sinks:
                try:
                    sink.close()
                except Exception as exc:  # noqa: BLE001 - a tracker failing to close must not lose the run's files
                    log.warning("%s: closing tracker %s failed: %s", name, type(sink).__name__, exc)
        self.sinks.clear()


def summary_values(model_scores: dict[str, Any], blend_scores: dict[str, Any] | None, submission: Path | str | None) -> dict[str, Any]:
    """What a model's tracker summary holds: its OOF score (and per fold), the blend's OOF, the submission."""
    values: dict[str, Any] = {"oof": model_scores.get("oof"), "metric": model_scores.get("metric")}
    for fold, value in (model_scores.get("per_fold") or {}).items():
        values[f"oof_fold{fold}"] = value
    if blend_scores is not None:
        values["blend_oof"] = blend_scores.get("oof")
        values["blend_method"] = blend_scores.get("method")
    if submission is not None:
        values["submission"] = str(submission)
    return {k: v for k, v in values.items() if v is not None}


def tracker_table_markdown() -> str:
    """The docs' table of trackers (docs/training.md) (``log`` values), from :data:`TRACKERS`."""
    lines = ["| `log` entry | install | what it writes |", "|---|---|---|"]
    for name, entry in TRACKERS.items():
        install = f'`pip install "kaggle-planet[{entry.extra}]"`' if entry.extra else "built in"
        lines.append(f"| `{name}` | {install} | {entry.help} |")
    return "\n".join(lines)
