"""K-fold training of an experiment: for each model of a config and each fold, train (:mod:`.trainer`), skip
what is done, resume what was stopped.

Layout (``runs/<exp>/<model>/``): ``config.yaml`` (the experiment restricted to this model), ``labels.csv``
and the fold folders. When every fold of a model is done -- also when other processes or machines trained
some of them into the same folder -- ``on_model_done`` is called: the pipeline writes the model's
predictions there (:func:`kaggle_planet.predict.tta.predict_model`); training itself never imports
prediction.

One trainer per fold: training a fold holds ``fold<k>/train.lock`` (pid, host, start time, command); a
second process refuses naming the holder, or waits with ``--wait``; a lock left by a killed process on
this host is taken over (:mod:`kaggle_planet.core.locks`). Under torchrun rank 0 takes the lock and tells
the other ranks; separate processes or machines may also train different folds into one model folder
(``--folds``); whichever finishes the last fold writes the predictions.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config.schema import ExperimentConfig, load_config, save_config, settings_differences, single_model_config
from ..core import artifacts, fingerprints, locks
from ..core.artifacts import (
    BEST,
    CONFIG,
    DONE,
    LAST,
    fold_dir,
    is_fold_done,
    missing_folds,
)
from ..core.errors import KagglePlanetError
from ..data.competitions import DatasetTable, load_dataset
from ..recipe.tracking import Tracking, summary_values
from .distributed import Dist, init_distributed
from .refit import train_refit
from .trainer import ExtraTrain, train_fold

log = logging.getLogger(__name__)


def _model_folder_bound(model_dir: Path, k: int, own_fold: int | None = None) -> bool:
    """Whether any fold of the folder holds weights or a training (finished, stopped or running; the lock of
    ``own_fold``, which this process holds, left out): its settings and inputs are then fixed."""
    return any((fold_dir(model_dir, f) / name).is_file() for f in range(k) for name in (DONE, BEST, LAST, locks.LOCK)
               if not (f == own_fold and name == locks.LOCK))


def model_inputs(cfg: ExperimentConfig, table: DatasetTable, fold_ids: np.ndarray) -> dict:
    """The fingerprints of what a model folder's fold models train on: labels, classes, folds."""
    from ..data.folds import fold_file_path

    return fingerprints.data_fingerprints(table.train[table.id_col].tolist(), table.targets, table.classes, fold_ids,
                                          fold_file_path(cfg.competition, cfg.folds.k, cfg.folds.seed, data_dir=cfg.data_dir))


def _labels_detail(model_dir: Path, table: DatasetTable) -> str | None:
    """The first training id whose labels differ from the folder's labels.csv (what its models trained on)."""
    return artifacts.labels_difference(model_dir, table.id_col, table.classes, table.train[table.id_col].tolist(), table.targets)


def _advice(model_dir: Path) -> str:
    return f"use another experiment name (or model name) or delete {model_dir}"


def _refuse_data_change(model_dir: Path, recorded: dict, current: dict, table: DatasetTable) -> None:
    """One line naming what changed between the inputs a folder's folds trained on and today's, if anything."""
    change = fingerprints.data_change(recorded, current, lambda: _labels_detail(model_dir, table))
    if change:
        raise KagglePlanetError(f"{model_dir}: {change}; {_advice(model_dir)}")


def check_model_dir(cfg: ExperimentConfig, model_name: str, table: DatasetTable, fold_ids: np.ndarray) -> None:
    """Refuse, before anything is written or reused, a model folder whose folds were trained with other
    settings (config.yaml) or on other labels, classes or folds (fingerprints.json; a folder trained before
    it existed: its labels.csv). Read-only: every torchrun rank runs it and stops alike."""
    model_dir = cfg.model_dir(model_name)
    if not _model_folder_bound(model_dir, cfg.folds.k):
        return
    path = model_dir / CONFIG
    if path.is_file():
        diff = settings_differences(load_config(path), cfg, model_name)
        if diff:
            key, before, after = diff[0]
            raise KagglePlanetError(
                f"{path}: this model folder was trained with {key}={before!r}, the config now says {after!r}; {_advice(model_dir)}"
            )
    current = model_inputs(cfg, table, fold_ids)
    recorded = fingerprints.read_record(model_dir)
    if recorded is None:  # trained before fingerprints were kept: its labels.csv says what it was trained on last
        recorded = artifacts.labels_record(model_dir, table.id_col)
        if recorded is None:
            return
    _refuse_data_change(model_dir, recorded, current, table)


def record_model_inputs(cfg: ExperimentConfig, model_name: str, table: DatasetTable, fold_ids: np.ndarray,
                        fold: int | None = None) -> None:
    """Write the model folder's fingerprints.json when fold ``fold`` starts training (under its lock), after
    checking again that no other process recorded other inputs for folds it trains meanwhile."""
    model_dir = cfg.model_dir(model_name)
    current = model_inputs(cfg, table, fold_ids)
    recorded = fingerprints.read_record(model_dir)
    if recorded == current:
        return
    if recorded is not None and _model_folder_bound(model_dir, cfg.folds.k, own_fold=fold):
        _refuse_data_change(model_dir, recorded, current, table)
    artifacts.write_json(model_dir / fingerprints.FINGERPRINTS, current)


def prepare_model_dir(cfg: ExperimentConfig, model_name: str, table: DatasetTable, fold_ids: np.ndarray) -> Path:
    """Create the model folder with its config.yaml and labels.csv; refuse a folder trained differently
    (:func:`check_model_dir`) before writing anything. A folder trained before fingerprints were kept gets
    its fingerprints.json now (its labels checked against labels.csv; its folds assumed to be today's)."""
    model_dir = cfg.model_dir(model_name)
    check_model_dir(cfg, model_name, table, fold_ids)
    holders = [h for h in (locks.held_by_another(fold_dir(model_dir, f) / locks.LOCK) for f in range(cfg.folds.k)) if h]
    if holders:  # the running trainer owns the folder's files: its config.yaml is not rewritten under it
        log.info("%s: %s is training a fold here; config.yaml and labels.csv are left as they are",
                 model_dir, locks.describe_holder(holders[0]))
        return model_dir
    save_config(single_model_config(cfg, model_name), model_dir / CONFIG)
    if not (model_dir / artifacts.LABELS).is_file() or not _model_folder_bound(model_dir, cfg.folds.k):
        # a trained folder's labels.csv holds the same labels (checked), maybe in another row order: kept, so
        # that the predictions' run.json still describes it
        artifacts.write_labels(model_dir, table.train[table.id_col].tolist(), table.targets, table.id_col, table.classes)
    if fingerprints.read_record(model_dir) is None and any(is_fold_done(model_dir, f) for f in range(cfg.folds.k)):
        log.info("%s: trained before its inputs were recorded; recording today's labels, classes and folds", model_dir)
        record_model_inputs(cfg, model_name, table, fold_ids)
    return model_dir


@contextlib.contextmanager
def fold_lock(model_dir: Path, fold: int, name: str, ctx: Dist, wait: bool = False) -> Iterator[None]:
    """Hold ``fold<k>/train.lock`` while training a fold. Under torchrun rank 0 takes it and tells the
    other ranks whether it could, so that a refusal stops every rank (not only rank 0, leaving the
    others in a barrier)."""
    path = fold_dir(model_dir, fold) / locks.LOCK
    problem = None
    if ctx.main:
        try:
            locks.acquire(path, f"model {name} fold {fold}", wait)
        except KagglePlanetError as exc:
            problem = str(exc)
    if ctx.world > 1:
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem is not None:
        raise KagglePlanetError(problem)
    try:
        yield
    finally:
        if ctx.main:
            locks.release(path)


def _select(names: Sequence[str] | None, available: list[str], what: str, source: str) -> list[str]:
    if not names:
        return available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise KagglePlanetError(f"{source}: no {what} {unknown[0]!r}; valid: {', '.join(available)}")
    return [n for n in available if n in names]


def check_weights(cfg: ExperimentConfig, names: Sequence[str]) -> None:
    """Fail before any training when a model's pretrained weights cannot be found (not hours later)."""
    from ..recipe import models

    for name in names:
        settings = cfg.resolved_model(name)
        if settings.pretrained is True:
            models.resolve_pretrained_file(models.create_model(settings.backbone, 1, pretrained=False), settings.backbone)
        elif isinstance(settings.pretrained, str) and not Path(settings.pretrained).expanduser().is_file():
            raise KagglePlanetError(
                f"config {cfg.name!r}: model {name!r}: pretrained weights file {settings.pretrained!r} not found"
            )


# called once every fold of a model is done: (config, model name, this process's place); the pipeline passes
# the prediction step here (training never imports prediction)
ModelDone = Callable[[ExperimentConfig, str, Dist], None]


def train_models(
    cfg: ExperimentConfig,
    device: torch.device,
    models: list[str] | None = None,
    folds: list[int] | None = None,
    extra: ExtraTrain | None = None,
    tracking: Tracking | None = None,
    wait: bool = False,
    on_model_done: ModelDone | None = None,
) -> list[Path]:
    """Train ``models`` (names; default all) on ``folds`` (default all); ``on_model_done`` is called for each
    model whose folds are all done (the pipeline predicts there). Returns the model run folders
    ``<runs_dir>/<name>/<model name>/``. ``extra(fold)`` adds training images to a fold (pseudo-labelled test
    images). ``tracking``: the caller's open trackers (the pipeline adds the blend's scores before closing
    them); None: the config's ``log`` trackers are opened here, get each model's OOF score and are closed at
    the end. A fold another process is training is refused naming that process, or with ``wait`` waited for
    (:mod:`kaggle_planet.core.locks`)."""
    own_tracking = tracking is None
    tracking = Tracking.for_config(cfg) if own_tracking else tracking
    try:
        return _train_models(cfg, device, models, folds, extra, tracking, wait, on_model_done)
    finally:
        if own_tracking:
            tracking.close()


def _train_models(cfg: ExperimentConfig, device: torch.device, models: list[str] | None, folds: list[int] | None,
                  extra: ExtraTrain | None, tracking: Tracking, wait: bool, on_model_done: ModelDone | None) -> list[Path]:
    ctx = init_distributed(device)
    names = _select(models, cfg.model_names, "model", f"config {cfg.name!r}")
    fold_list = [int(f) for f in _select([str(f) for f in folds] if folds else None, [str(f) for f in range(cfg.folds.k)], "fold", f"folds (k={cfg.folds.k})")]
    table = load_dataset(cfg.competition, cfg.data_dir, cfg.options)
    check_weights(cfg, names)
    fold_ids = _fold_ids(cfg, table, ctx)
    for name in names:  # every model folder checked before any trains (read-only: every rank stops alike)
        check_model_dir(cfg, name, table, fold_ids)
    dirs = []
    for name in names:
        dirs.append(_train_model_folds(cfg, name, table, fold_ids, fold_list, ctx, extra, tracking, wait))
        _model_trained(cfg, name, ctx, tracking, on_model_done, lambda name=name: train_refit(cfg, name, table, fold_ids, ctx, wait))
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
    return dirs


def _fold_ids(cfg: ExperimentConfig, table: DatasetTable, ctx: Dist) -> np.ndarray:
    """The fold of every training row: rank 0 loads or makes (and writes) the fold file, then the other ranks read it."""
    from ..data.folds import load_or_make_folds

    if ctx.main:
        fold_ids = load_or_make_folds(table, cfg.folds.k, cfg.folds.seed)
    ctx.barrier()
    if not ctx.main:
        fold_ids = load_or_make_folds(table, cfg.folds.k, cfg.folds.seed)
    return fold_ids


def _train_model_folds(cfg: ExperimentConfig, name: str, table: DatasetTable, fold_ids: np.ndarray, fold_list: list[int],
                       ctx: Dist, extra: ExtraTrain | None, tracking: Tracking, wait: bool) -> Path:
    """Prepare model ``name``'s folder and train each of ``fold_list`` not yet done, holding its lock; returns the folder."""
    settings = cfg.resolved_model(name)
    model_dir = cfg.model_dir(name)
    if ctx.main:
        prepare_model_dir(cfg, name, table, fold_ids)
    ctx.barrier()
    for fold in fold_list:
        if is_fold_done(model_dir, fold):
            log.info("%s fold %d: already done, skipping", name, fold)
            continue
        with fold_lock(model_dir, fold, name, ctx, wait):
            if is_fold_done(model_dir, fold):  # finished by the process this one waited for
                log.info("%s fold %d: done by another process meanwhile, skipping", name, fold)
                continue
            if ctx.main:  # opened with the first fold that trains: a re-run with nothing to train adds no tracker runs
                record_model_inputs(cfg, name, table, fold_ids, fold)
                tracking.start_model(name, model_dir)
            train_fold(cfg, settings, table, fold_ids, fold, model_dir, ctx, extra, tracking)
    return model_dir


def _model_trained(cfg: ExperimentConfig, name: str, ctx: Dist, tracking: Tracking, on_model_done: ModelDone | None,
                   refit: Callable[[], object] | None = None) -> None:
    """After a model's folds: once every fold is done (by any process), the full-data refit (``refit``, when the
    config asks for one), ``on_model_done`` (the predictions) and the tracker's summary of the model's scores."""
    model_dir = cfg.model_dir(name)
    ctx.barrier()
    missing = missing_folds(model_dir, cfg.folds.k)
    if missing:
        log.info("%s: folds %s not trained yet; predictions are written once every fold is done", name, missing)
    else:
        if refit is not None:
            refit()
        if on_model_done is not None:
            on_model_done(cfg, name, ctx)
    if ctx.main and (model_dir / artifacts.SCORES).is_file():
        tracking.summary(name, summary_values(artifacts.read_json(model_dir / artifacts.SCORES), None, None))
    ctx.barrier()
