"""Out-of-fold and test predictions of a trained model run, with test-time augmentation (ttach).

For a model folder ``runs/<exp>/<model>/`` whose folds are all done: each fold's best model predicts
its own validation images (``oof.csv``: every training id once, with its fold) and the test images
(``test.csv``: mean over the fold models). TTA averages PROBABILITIES: the model is wrapped so it
outputs sigmoid/softmax before ttach's mean (``TTA`` lists the transform sets). Also writes
``labels.csv``, ``run.json`` and ``scores.json`` (OOF score, per fold), all atomically.

Before predicting, the fold models' record (``fingerprints.json``, written by training) is compared with the
data folder's labels, classes and folds file now, and each ``best.pt``'s class list with the data's: fold
models trained on other ones are refused in one line (never an OOF scored "out of fold" by models that
trained on those images, nor class columns shifted). ``run.json`` records what the predictions came from
(:mod:`kaggle_planet.core.fingerprints`).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import ttach
from torch import nn

from ..config.schema import ModelSettings, config_to_dict, load_config
from ..core import artifacts, fingerprints
from ..core.artifacts import BEST, CONFIG, DONE, fold_dir, load_checkpoint, missing_folds
from ..core.errors import KagglePlanetError
from ..core.metrics import summarize_scores
from ..data.competitions import load_dataset
from ..data.loader import image_dataset, make_loader, resolve_workers
from ..recipe.engine import ProbabilityModel, evaluate, resolve_precision

log = logging.getLogger(__name__)

# name -> ttach transform set; the mean over the set is taken on probabilities
TTA: dict[str, Callable[[], ttach.Compose | None]] = {
    "none": lambda: None,
    "hflip": lambda: ttach.Compose([ttach.HorizontalFlip()]),
    "d4": ttach.aliases.d4_transform,  # identity, flips, 90/180/270 rotations, transposes: 8 views
}


def tta_transforms(tta: str) -> ttach.Compose | None:
    try:
        return TTA[tta]()
    except KeyError:
        raise KagglePlanetError(f"unknown tta {tta!r}; valid: {', '.join(TTA)}") from None


def with_tta(model: nn.Module, tta: str) -> nn.Module:
    """``model`` (images -> probabilities) averaged over the TTA views; ``none`` returns it unchanged."""
    transforms = tta_transforms(tta)
    return model if transforms is None else ttach.ClassificationTTAWrapper(model, transforms, merge_mode="mean")


def load_fold_model(model_dir: Path, fold: int | str, device: torch.device,
                    classes: Sequence[str] | None = None) -> tuple[nn.Module, ModelSettings]:
    """Fold ``fold``'s best model in eval mode on ``device``, returning PROBABILITIES ((B,3,S,S) -> (B,C)).

    The weights come from ``fold<k>/best.pt`` (loaded with ``weights_only=True``); no pretrained
    weights are fetched. Returns the model and the settings it was trained with. ``classes``: the class
    list its outputs must be (the data's); a model trained on another one is refused.
    """
    from ..recipe import models

    path = (Path(model_dir) / artifacts.REFIT_DIR if fold == artifacts.REFIT_DIR else fold_dir(model_dir, fold)) / BEST
    if not path.is_file():
        raise KagglePlanetError(f"{path}: no trained model for fold {fold} (train it first: kaggle-planet train CONFIG --folds {fold})")
    payload = load_checkpoint(path)
    if classes is not None and list(payload.get("classes", [])) != list(classes):
        raise KagglePlanetError(
            f"{path}: trained on {fingerprints.class_change(payload.get('classes', []), classes)}; {retrain_advice(model_dir)}"
        )
    settings = ModelSettings.from_dict(payload["settings"])
    net = models.create_model(settings.backbone, len(payload["classes"]), pretrained=False, drop_rate=settings.drop_rate)
    net.load_state_dict(payload["model"])
    model = ProbabilityModel(net, payload["task"]).to(device).eval()
    if resolve_precision(device, settings.amp, settings.channels_last).channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, settings


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the torchrun job this process belongs to; (0, 1) when alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def predict_files(
    model: nn.Module, files: list[str], settings: ModelSettings, device: torch.device, tta: str, *, shard: bool = False,
    universe: Sequence[str] | None = None,
) -> np.ndarray:
    """(N, C) probabilities in [0, 1] of ``model`` (images -> probabilities, see :func:`load_fold_model`)
    on image ``files``, averaged over the ``tta`` views (none | hflip | d4).

    shard: under torchrun, every rank calls this with the same files, predicts its share, and all get
    the whole result (every rank must take part). universe: every file this process will predict at this
    size (so one image cache, ``settings.cache``, serves every fold and TTA pass)."""
    from ..recipe import models

    base = model.model if isinstance(model, ProbabilityModel) else model
    if len(files) == 0:
        return np.zeros((0, _num_outputs(base)), dtype=np.float64)
    data_cfg = models.model_data_config(base)
    dataset = image_dataset(files, None, settings.augment, settings.image_size, train=False, cache=settings.cache,
                            universe=universe)
    rank, world = _process_group() if shard else (0, 1)
    # images already in the cache (e.g. every image of a run just trained) are a copy away: workers would
    # only add their start-up and a trip through shared memory
    workers = 0 if dataset.cached() else min(resolve_workers(settings.num_workers), max(0, len(files) // settings.batch_size))
    loader = make_loader(dataset, settings.batch_size, train=False, device=device, num_workers=workers, rank=rank, world=world)
    precision = resolve_precision(device, settings.amp, settings.channels_last, data_cfg["mean"], data_cfg["std"])
    out = evaluate(with_tta(model, tta), loader, None, None, precision, desc=f"predict ({tta})", distributed=shard,
                   show_progress=rank == 0)
    return np.clip(out.probs.astype(np.float64), 0.0, 1.0)


def _num_outputs(model: nn.Module) -> int:
    return int(getattr(model, "num_classes", 0) or 0)


def predict_run(model_dir: Path, device: torch.device, tta: str | None = None) -> Path:
    """Write oof.csv, test.csv, labels.csv, run.json and scores.json for a model folder whose folds are all
    done; ``tta`` None uses the model's configured TTA. Returns ``model_dir``.

    Under torchrun every rank must call it: each predicts a share of the images, rank 0 writes the files."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG).is_file():
        raise KagglePlanetError(
            f"{model_dir}: not a model run folder (no {CONFIG}); expected <runs_dir>/<experiment>/<model>/ as made by kaggle-planet train"
        )
    cfg = load_config(model_dir / CONFIG)
    settings = cfg.resolved_model(cfg.models[0])
    tta = tta or settings.tta
    tta_transforms(tta)
    missing = missing_folds(model_dir, cfg.folds.k)
    if missing:
        raise KagglePlanetError(
            f"{model_dir}: folds {missing} of {cfg.folds.k} are not trained yet (no {DONE}); "
            f"train them first, e.g. kaggle-planet train CONFIG --models {settings.name} --folds {','.join(map(str, missing))}"
        )
    from ..data.folds import fold_file_path, load_or_make_folds

    recorded = fingerprints.read_record(model_dir)
    folds_file = str(fold_file_path(cfg.competition, cfg.folds.k, cfg.folds.seed, data_dir=cfg.data_dir))
    if recorded is not None and recorded.get("folds_file") not in (None, folds_file):
        raise KagglePlanetError(  # before a folds file is made for a config edited by hand
            f"{model_dir}: its fold models were trained on the folds of {recorded['folds_file']}, its config now names "
            f"{folds_file} (folds.k or folds.seed changed); {retrain_advice(model_dir)}"
        )
    table = load_dataset(cfg.competition, cfg.data_dir, cfg.options)
    folds = load_or_make_folds(table, cfg.folds.k, cfg.folds.seed)
    inputs = check_fold_models(model_dir, cfg, table, folds)
    if cfg.refit != "off":
        _check_refit(model_dir, cfg)  # before the fold models predict, not after
    n_classes = len(table.classes)
    oof = np.full((len(table.train), n_classes), np.nan)
    test = np.zeros((len(table.test), n_classes))
    fold_tests: list[np.ndarray] = []  # each fold model's own test predictions (pseudo-labels need them)
    commands: list[str] = []
    universe = table.all_files()  # one image cache over every image, whichever fold predicts it
    for fold in range(cfg.folds.k):
        model, fold_settings = load_fold_model(model_dir, fold, device, table.classes)
        fold_settings.num_workers, fold_settings.cache = settings.num_workers, settings.cache
        rows = np.flatnonzero(folds == fold)
        log.info("%s fold %d: predicting %d OOF + %d test images (tta %s)", settings.name, fold, len(rows), len(table.test), tta)
        # the fold's OOF rows and the test set in one pass (one loader, one set of workers)
        files = table.train["file"].to_numpy()[rows].tolist() + table.test["file"].tolist()
        probs = predict_files(model, files, fold_settings, device, tta, shard=True, universe=universe)
        oof[rows] = probs[: len(rows)]
        fold_tests.append(probs[len(rows):])
        test += fold_tests[-1] / cfg.folds.k
        done = artifacts.read_json(fold_dir(model_dir, fold) / DONE)
        if done.get("command") and done["command"] not in commands:
            commands.append(done["command"])
    if np.isnan(oof).any():
        raise KagglePlanetError(f"{model_dir}: {int(np.isnan(oof).any(axis=1).sum())} training images fell in no fold")
    refit_test = _predict_refit(model_dir, cfg, table, settings, device, tta, universe) if cfg.refit != "off" else None
    if artifacts.command_line() not in commands:
        commands.append(artifacts.command_line())
    if _process_group()[0] != 0:  # under torchrun only rank 0 writes
        return model_dir
    return write_run(model_dir, cfg, table, folds, oof, test, tta, commands, fold_tests, inputs, refit_test)


def _check_refit(model_dir: Path, cfg) -> None:
    """Refuse a refit the config asks for that is missing or was derived from other fold models."""
    if not artifacts.refit_current(model_dir, cfg.folds.k):
        raise KagglePlanetError(
            f"{model_dir / artifacts.REFIT_DIR}: refit {cfg.refit!r} asked for, but the full-data refit is missing or was made from other "
            f"fold models; train it: kaggle-planet train {model_dir / CONFIG} (or set refit: off)"
        )


def _predict_refit(model_dir: Path, cfg, table, settings, device: torch.device, tta: str, universe) -> np.ndarray:
    """The full-data refit's TTA test predictions (checked current by :func:`_check_refit` first)."""
    model, refit_settings = load_fold_model(model_dir, artifacts.REFIT_DIR, device, table.classes)
    refit_settings.num_workers, refit_settings.cache = settings.num_workers, settings.cache
    log.info("%s refit: predicting %d test images (tta %s)", settings.name, len(table.test), tta)
    return predict_files(model, table.test["file"].tolist(), refit_settings, device, tta, shard=True, universe=universe)


def test_choice(refit: str, folds_mean: np.ndarray, refit_test: np.ndarray | None, k: int) -> np.ndarray:
    """The model's test predictions for config ``refit``: the fold models' mean, the refit alone, or the mean of
    the k fold models and the refit with each model one vote, ``(k * folds_mean + refit) / (k + 1)``."""
    if refit == "off" or refit_test is None:
        return folds_mean
    return refit_test if refit == "alone" else (k * folds_mean + refit_test) / (k + 1)


def retrain_advice(model_dir: Path) -> str:
    return (f"restore what changed, or delete {model_dir} and train it again "
            f"(kaggle-planet train {model_dir / CONFIG}, or your experiment config)")


def check_fold_models(model_dir: Path, cfg, table, folds: np.ndarray) -> dict:
    """The fingerprints of what the predictions are made from (labels, classes, folds now); refused in one
    line when the fold models' record (``fingerprints.json``; for a folder trained before it existed, its
    labels.csv) says they were trained on other ones."""
    from ..data.folds import fold_file_path

    current = fingerprints.data_fingerprints(table.train[table.id_col].tolist(), table.targets, table.classes, folds,
                                             fold_file_path(cfg.competition, cfg.folds.k, cfg.folds.seed, data_dir=cfg.data_dir))
    recorded = fingerprints.read_record(model_dir)
    if recorded is None:
        recorded = artifacts.labels_record(model_dir, table.id_col) or {}
    change = fingerprints.data_change(recorded, current, lambda: artifacts.labels_difference(
        model_dir, table.id_col, table.classes, table.train[table.id_col].tolist(), table.targets))
    if change:
        raise KagglePlanetError(f"{model_dir}: its fold models were {change}; {retrain_advice(model_dir)}")
    return current


def model_digests(model_dir: Path, k: int, refit: bool = False) -> dict[str, str]:
    """sha256 of every fold's best.pt (and the refit's, key ``refit``): which models predictions came from."""
    digests = artifacts.fold_model_digests(model_dir, k)
    if refit:
        digests["refit"] = fingerprints.file_sha256(Path(model_dir) / artifacts.REFIT_DIR / BEST)
    return digests


def predictions_current(model_dir: Path, k: int, tta: str, refit: str = "off") -> bool:
    """True when the model's prediction files exist, were made with ``tta`` from these fold models and the
    inputs they were trained on, are the files run.json describes, and are newer than every fold's best.pt
    (so re-running a finished training does not predict again). Stale ones are predicted again, with a log
    line saying why."""
    files = [model_dir / name for name in (artifacts.OOF, artifacts.TEST, artifacts.RUN_INFO, artifacts.SCORES)]
    if not all(f.is_file() for f in files):
        return False
    try:
        scores = artifacts.read_json(model_dir / artifacts.SCORES)
        made_with, made_refit = scores.get("tta"), scores.get("refit", "off")
        info = artifacts.read_run_info(model_dir)
        record = fingerprints.read_record(model_dir)
    except KagglePlanetError:
        return False
    newest_model = max((fold_dir(model_dir, f) / BEST).stat().st_mtime for f in range(k))
    made_from, changed = info.fingerprints, fingerprints.stale_files(model_dir, info.files)
    why = None
    if made_with != tta:
        why = f"made with tta {made_with}, the config says {tta}"
    elif made_refit != refit:
        why = f"made with refit {made_refit}, the config says {refit}"
    elif min(f.stat().st_mtime for f in files) < newest_model:
        why = "older than a fold's best.pt"
    elif changed:
        why = f"not all the files {artifacts.RUN_INFO} describes ({', '.join(changed)} changed)"
    elif refit != "off" and not artifacts.refit_current(model_dir, k):
        why = "made before the full-data refit there now"
    elif made_from.get("models") is not None and made_from["models"] != model_digests(model_dir, k, refit != "off"):
        why = "made by other fold models"
    elif made_from and record is not None and (change := fingerprints.data_change(made_from, record)):
        why = f"made from other inputs than the fold models were trained on ({change})"
    if why:
        log.info("%s: the predictions there were %s; predicting again", model_dir, why)
        return False
    return True


def predict_model(cfg, model_name: str, ctx) -> None:
    """What training calls once every fold of a model is done (``on_model_done``): the model's TTA predictions,
    unless the files already there were made with the same TTA from the same fold models. Under torchrun
    every rank predicts a share and rank 0 writes."""
    model_dir, settings = cfg.model_dir(model_name), cfg.resolved_model(model_name)
    if predictions_current(model_dir, cfg.folds.k, settings.tta, cfg.refit):
        log.info("%s: predictions are up to date (every fold done, tta %s); kept", settings.name, settings.tta)
        return
    predict_run(model_dir, ctx.device, tta=settings.tta)


def model_run_dirs(path: str | Path) -> list[Path]:
    """``[path]`` for a model run folder (it holds config.yaml), else the model runs of an experiment
    folder ``runs/<exp>/`` (found as ``report`` finds an experiment's runs; blends hold no config.yaml)."""
    path = Path(path)
    if (path / CONFIG).is_file():
        return [path]
    if not path.is_dir():
        raise KagglePlanetError(f"{path}: folder not found")
    found = artifacts.experiment_runs(path, CONFIG)
    if not found:
        raise KagglePlanetError(
            f"{path}: no {CONFIG} here nor in its subfolders; expected a model run folder (runs/<exp>/<model>/) or an experiment folder (runs/<exp>/)"
        )
    return found


def predict_runs(path: str | Path, device: torch.device, tta: str | None = None) -> tuple[list[Path], list[str]]:
    """:func:`predict_run` for a model run folder, or for every model run of an experiment folder.

    Returns (predicted model folders, one line per model run skipped because folds are not trained yet).
    A single model run folder with missing folds is an error, as in :func:`predict_run`; in an
    experiment the unfinished runs are skipped and named, and an error is raised when none is finished."""
    dirs = model_run_dirs(path)
    if len(dirs) == 1 and dirs[0] == Path(path):
        return [predict_run(dirs[0], device, tta)], []
    done, skipped = [], []
    for model_dir in dirs:
        cfg = load_config(model_dir / CONFIG)
        missing = missing_folds(model_dir, cfg.folds.k)
        if missing:
            skipped.append(f"{model_dir}: skipped, folds {missing} of {cfg.folds.k} not trained yet")
            continue
        done.append(predict_run(model_dir, device, tta))
    if not done:
        raise KagglePlanetError(f"{path}: no model run with every fold trained ({'; '.join(skipped)})")
    return done, skipped


def write_run(model_dir: Path, cfg, table, folds: np.ndarray, oof: np.ndarray, test: np.ndarray, tta: str, commands: list[str],
              fold_tests: list[np.ndarray] = (), inputs: dict | None = None, refit_test: np.ndarray | None = None) -> Path:
    """The model's prediction files: oof.csv (fold models), test.csv (the fold models' mean ``test``, or with a
    refit the config's choice, :func:`test_choice`; then test_folds.csv and test_refit.csv beside it)."""
    ids = table.train[table.id_col].tolist()
    test_ids = table.test[table.id_col].tolist()
    for name in (artifacts.TEST_FOLDS, artifacts.TEST_REFIT):
        (model_dir / name).unlink(missing_ok=True)
    if refit_test is not None:
        artifacts.write_predictions(model_dir / artifacts.TEST_FOLDS, test_ids, test, table.id_col, table.classes)
        artifacts.write_predictions(model_dir / artifacts.TEST_REFIT, test_ids, refit_test, table.id_col, table.classes)
        test = test_choice(cfg.refit, test, refit_test, cfg.folds.k)
    settings = cfg.resolved_model(cfg.models[0])
    for fold, probs in enumerate(fold_tests):
        artifacts.write_predictions(fold_dir(model_dir, fold) / artifacts.TEST, table.test[table.id_col].tolist(), probs,
                                    table.id_col, table.classes)
    artifacts.write_labels(model_dir, ids, table.targets, table.id_col, table.classes)
    artifacts.write_predictions(model_dir / artifacts.OOF, ids, oof, table.id_col, table.classes, folds=folds)
    artifacts.write_predictions(model_dir / artifacts.TEST, table.test[table.id_col].tolist(), test, table.id_col, table.classes)
    scores = summarize_scores(cfg.metric, table.targets, oof, folds)
    scores.update({"model": settings.name, "backbone": settings.backbone, "tta": tta,
                   "refit": cfg.refit if refit_test is not None else "off"})
    if refit_test is not None:
        scores["refit_note"] = f"test.csv from refit {cfg.refit}: the refit has no OOF score of its own (OOF = the fold models)"
    artifacts.write_json(model_dir / artifacts.SCORES, scores)
    info = artifacts.RunInfo(
        competition=table.competition,
        task=table.task,
        id_col=table.id_col,
        classes=list(table.classes),
        data_dir=str(cfg.data_dir),
        options=dict(table.options),
        kind="model",
        extra={
            "config": config_to_dict(cfg),
            "commands": commands,
            "tta": tta,
            "backbone": settings.backbone,
            "image_size": settings.image_size,
            "pretrained": settings.pretrained,
            "model": settings.name,
        },
        fingerprints={**(inputs or {}), "models": model_digests(model_dir, cfg.folds.k, refit_test is not None), "tta": tta},
        files=fingerprints.file_digests(model_dir, artifacts.DESCRIBED_FILES),
    )
    artifacts.write_run_info(model_dir, info)  # last: its files digests describe what was just written
    per_fold = ", ".join(f"{k}: {v:.4f}" for k, v in scores["per_fold"].items())
    log.info("%s: OOF %s %.4f (folds %s; tta %s) -> %s", settings.name, cfg.metric, scores["oof"], per_fold, tta, model_dir)
    return model_dir


def scores_line(model_dir: Path) -> str:
    """One line for the CLI: the OOF score of a model folder, per fold, and its TTA."""
    path = Path(model_dir) / artifacts.SCORES
    if not path.is_file():
        return "no predictions yet: they are written once every fold is trained"
    s = artifacts.read_json(path)
    folds = ", ".join(f"{k}: {v:.4f}" for k, v in s.get("per_fold", {}).items())
    return f"OOF {s['metric']} {s['oof']:.4f} (per fold {folds}; tta {s.get('tta', '?')})"
