"""Study across experiments: one leaderboard of every model and blend of a competition and its folds.

``compare_runs(paths)`` takes run folders and experiment folders (``runs/<exp>/``: every subfolder
with a ``run.json``), checks that they describe the same competition, classes, training ids and
folds (else one line naming both files), and returns a :class:`Comparison`:

- the leaderboard: per run its OOF score (the competition metric at fixed settings), an honest
  estimate (a metric decided by thresholds, F-beta on multilabel / binary: per-class thresholds fitted on
  K-1 folds and scored on the held-out fold, as the submission would use them; AUC, accuracy, log loss:
  the OOF score itself, out of fold for models and for every blend method), and what produced it
  (backbone, image size, epochs, TTA, training seconds; for blends the method, its members and its
  fitting seconds), best honest estimate first in the metric's direction (a loss: lowest first);
- per blend, a drop-one ablation: the blend recomputed with its own method (an ``auto`` blend: the
  method it chose) without each member in turn, with its OOF score and honest estimate and the change
  against the blend of all members, signed so that positive means better without that member;
- the Pearson correlation of the models' OOF probabilities (rows matched by id).

The report shows the same tables (``report.py`` imports this module, never the other way round).
This module uses numpy, pandas and scikit-learn only.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import artifacts, metrics
from ..core.errors import KagglePlanetError
from ..data.competitions import get_spec
from ..ensemble import blend
from ..ensemble import members as member_runs
from ..ensemble.thresholds import fbeta_for, heldout_score

log = logging.getLogger(__name__)

LEADERBOARD_COLUMNS = ["run", "kind", "model", "image_size", "epochs", "tta", "seconds", "oof", "honest"]
ABLATION_COLUMNS = ["without", "oof", "oof_change", "honest", "honest_change"]


@dataclass
class Comparison:
    competition: str
    metric: str
    honest_meaning: str
    leaderboard: pd.DataFrame  # LEADERBOARD_COLUMNS, best honest first
    ablations: dict[str, pd.DataFrame] = field(default_factory=dict)  # blend name -> ABLATION_COLUMNS
    correlation: pd.DataFrame | None = None  # model x model
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- finding


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders among ``paths``: a folder with ``run.json`` itself, else its subfolders that have one."""
    if not paths:
        raise KagglePlanetError("compare: no run or experiment folders given")
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / artifacts.RUN_INFO).is_file():
            candidates = [path]
        elif path.is_dir():
            candidates = artifacts.experiment_runs(path)
            if not candidates:
                raise KagglePlanetError(
                    f"{path}: no run.json here nor in its subfolders; expected a run folder or an experiment folder (runs/<exp>/)"
                )
        else:
            raise KagglePlanetError(f"{path}: folder not found")
        found += [c for c in candidates if c.resolve() not in {f.resolve() for f in found}]
    return found


def display_names(paths: list[Path]) -> list[str]:
    """``<experiment>/<run>`` for each run folder; the full path where that would be ambiguous."""
    short = [f"{p.parent.name}/{p.name}" if p.parent.name else p.name for p in paths]
    return [s if short.count(s) == 1 else str(p) for s, p in zip(short, paths)]


def check_same_folds(named: list[tuple[str, artifacts.Run]]) -> None:
    """Same competition, classes, training ids and fold of every id as the first run, else one line."""
    ref_name, ref = named[0]
    ref_folds = pd.Series(ref.folds, index=ref.oof[ref.info.id_col])
    for _, run in named[1:]:
        member_runs.check_compatible(ref, run)
        folds = pd.Series(run.folds, index=run.oof[run.info.id_col])
        a, b = ref.path / artifacts.OOF, run.path / artifacts.OOF
        if set(folds.index) != set(ref_folds.index):
            first = sorted(set(folds.index) ^ set(ref_folds.index), key=member_runs.natural_key)[0]
            raise KagglePlanetError(f"{a} and {b}: training ids differ (first difference: {first!r}); compare runs of one data set")
        differ = folds.loc[ref_folds.index].to_numpy() != ref_folds.to_numpy()
        if differ.any():
            first = sorted(ref_folds.index[differ], key=member_runs.natural_key)[0]
            raise KagglePlanetError(
                f"{a} and {b}: folds differ (first difference: {first!r} is in fold {ref_folds[first]} vs {folds[first]}); "
                "compare runs made with the same folds"
            )


# ----------------------------------------------------------------------------------------- scores


def honest_score(metric: str, y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, task: str | None = None) -> float:
    """A metric decided by thresholds (F-beta on multilabel / binary): tuned thresholds fitted on K-1 folds,
    scored on the held-out one (mean over folds; NaN with a single fold); other metrics: the OOF score (OOF
    predictions are already out of fold). ``task`` None: inferred from the arrays."""
    task = task or metrics.infer_task(y_true, probs)
    fbeta = fbeta_for(metric, task)
    if fbeta is not None:
        if len(np.unique(folds)) < 2:
            return math.nan
        return heldout_score(y_true, probs, folds, fbeta.threshold, beta=fbeta.beta, average=fbeta.average)[0]
    return metrics.score(metric, y_true, probs, task)


NAMES = {"f2_samples": "F2", "roc_auc": "ROC AUC", "accuracy": "accuracy", "log_loss": "log loss", "mean_column_auc": "mean column AUC"}


def honest_meaning(metric: str, task: str) -> str:
    """What the leaderboard's honest column means for ``metric`` on ``task``."""
    name = NAMES.get(metric, metric)
    if fbeta_for(metric, task) is not None:
        return f"{name} with per-class thresholds fitted on K-1 folds, scored on the held-out fold"
    return f"the OOF {name} (out of fold for models and for every blend method)"


def training_seconds(run_dir: Path) -> float:
    """Sum of the ``seconds`` column of every ``fold<k>/history.csv``; NaN when there is none."""
    total, found = 0.0, False
    for path in artifacts.fold_files(run_dir, artifacts.HISTORY).values():
        try:
            seconds = pd.to_numeric(pd.read_csv(path, usecols=["seconds"])["seconds"], errors="coerce")
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            log.warning("%s: no readable seconds column; left out of the training time", path)
            continue
        total, found = total + float(seconds.sum()), True
    return total if found else math.nan


def _config_value(config: Any, key: str) -> Any:
    """A training key of a model run's saved config: its model entry's override, else the top level."""
    if not isinstance(config, dict):
        return None
    models = config.get("models") or [{}]
    entry = models[0] if isinstance(models[0], dict) else {}
    return entry.get(key, config.get(key))


def describe_run(run: artifacts.Run, stored: dict[str, Any]) -> dict[str, Any]:
    """The leaderboard's descriptive columns of one run."""
    extra = run.info.extra
    if run.info.kind == "blend":
        method = extra.get("method") or stored.get("method") or "?"
        if isinstance(stored.get(blend.AUTO), dict):
            method = f"{method} (auto)"
        return {"kind": "blend", "model": f"{method} of {len(run.info.members)}", "image_size": None, "epochs": None,
                "tta": None, "seconds": stored.get("seconds", math.nan)}
    config = extra.get("config")
    return {
        "kind": "model",
        "model": extra.get("backbone") or _config_value(config, "backbone") or "?",
        "image_size": extra.get("image_size") or _config_value(config, "image_size"),
        "epochs": _config_value(config, "epochs"),
        "tta": extra.get("tta") or stored.get("tta"),
        "seconds": training_seconds(run.path),
    }


def build_leaderboard(named: list[tuple[str, artifacts.Run]], metric: str) -> pd.DataFrame:
    """One row per run, best honest estimate first in the metric's direction (ties: best OOF; no honest
    estimate: last)."""
    rows = []
    for name, run in named:
        stored_path = run.path / artifacts.SCORES
        stored = artifacts.read_json(stored_path) if stored_path.is_file() else {}
        task = run.info.task
        rows.append({
            "run": name,
            **describe_run(run, stored if isinstance(stored, dict) else {}),
            "oof": metrics.score(metric, run.y_true, run.oof_probs, task),
            "honest": honest_score(metric, run.y_true, run.oof_probs, run.folds, task),
        })
    frame = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    sign = 1.0 if metrics.get_metric(metric).higher_is_better else -1.0  # sort by "goodness": the score, or minus a loss
    oof = sign * frame["oof"].to_numpy(dtype=np.float64)
    honest = np.nan_to_num(sign * frame["honest"].to_numpy(dtype=np.float64), nan=-np.inf)
    order = np.lexsort((-oof, -honest))
    return frame.iloc[order].reset_index(drop=True)


def drop_one_ablation(blend_dir: Path, info: artifacts.RunInfo, names: dict[Path, str]) -> pd.DataFrame:
    """The blend's method re-run on its members without each one in turn; its first row is all members.

    ``names`` maps resolved member folders to display names. Raises when a member is missing.
    """
    method = info.extra.get("method")
    stored_path = blend_dir / artifacts.SCORES
    if not method and stored_path.is_file():
        method = artifacts.read_json(stored_path).get("method")
    if not method:
        raise KagglePlanetError(f"{blend_dir / artifacts.RUN_INFO}: blend without a recorded method (extra.method)")
    members = [member_runs.find_member(blend_dir, m) for m in info.members]
    missing = [m for m, p in zip(info.members, members) if p is None]
    if missing:
        raise KagglePlanetError(f"{blend_dir / artifacts.RUN_INFO}: member {missing[0]} not found (nor beside the blend)")
    _, data, _, _ = member_runs.load_members(members)
    entry = metrics.get_metric(data.metric)

    def scores(subset: blend.BlendInput) -> tuple[float, float]:
        oof = blend.blend_predictions(subset, method).oof
        return entry(data.y_true, oof, data.task), honest_score(data.metric, data.y_true, oof, data.folds, data.task)

    full_oof, full_honest = scores(data)
    rows = [{"without": "(none: all members)", "oof": full_oof, "oof_change": 0.0, "honest": full_honest, "honest_change": 0.0}]
    if len(members) > 1:
        for i, member in enumerate(members):
            oof, honest = scores(data.members([j for j in range(len(members)) if j != i]))
            # changes signed by the metric's direction: positive means the blend is better without the member
            rows.append({"without": names.get(member.resolve(), str(member)), "oof": oof, "oof_change": entry.gain(oof, full_oof),
                         "honest": honest, "honest_change": entry.gain(honest, full_honest)})
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def oof_correlation(names: list[str], runs: list[artifacts.Run]) -> pd.DataFrame:
    """Pearson correlation of the runs' flattened OOF probabilities, rows matched by id; (M, M)."""
    ref = runs[0]
    ids = ref.oof[ref.info.id_col].tolist()
    classes = list(ref.info.classes)
    flat = np.stack([run.oof.set_index(run.info.id_col).loc[ids, classes].to_numpy(dtype=np.float64).ravel() for run in runs])
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant model has no defined correlation
        corr = np.corrcoef(flat)
    return pd.DataFrame(np.atleast_2d(corr), index=names, columns=names)


def build_comparison(named: list[tuple[str, artifacts.Run]], ablation: bool = True) -> Comparison:
    """Leaderboard, drop-one ablations and model correlation of already loaded runs (see the module doc)."""
    if not named:
        raise KagglePlanetError("compare: no runs to compare")
    check_same_folds(named)
    first = named[0][1].info
    competition = first.competition
    metric = get_spec(competition, first.options).metric
    comparison = Comparison(competition, metric, honest_meaning(metric, first.task), build_leaderboard(named, metric))
    names = {run.path.resolve(): name for name, run in named}
    if ablation:
        for name, run in named:
            if run.info.kind != "blend":
                continue
            try:
                comparison.ablations[name] = drop_one_ablation(run.path, run.info, names)
            except KagglePlanetError as exc:
                comparison.notes.append(f"{name}: no drop-one ablation ({exc})")
    models = [(name, run) for name, run in named if run.info.kind != "blend"]
    if len(models) >= 2:
        comparison.correlation = oof_correlation([n for n, _ in models], [r for _, r in models])
    return comparison


def compare_runs(paths: list[Path], ablation: bool = True) -> Comparison:
    """Find, load and compare the run folders in ``paths`` (run or experiment folders)."""
    dirs = find_run_dirs(paths)
    runs = [artifacts.load_run(d) for d in dirs]
    return build_comparison(list(zip(display_names(dirs), runs)), ablation)


# --------------------------------------------------------------------------------------- printing


def _fmt(value: Any, digits: int = 5) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(frame: pd.DataFrame, formats: dict[str, Any]) -> str:
    shown = frame.copy()
    for col, fn in formats.items():
        shown[col] = shown[col].map(fn)
    return shown.fillna("-").to_string(index=False)


def format_comparison(comparison: Comparison) -> str:
    c = comparison
    direction = "" if metrics.get_metric(c.metric).higher_is_better else f" ({c.metric}: lower is better)"
    lines = [f"leaderboard: {c.competition}, OOF {c.metric}; honest = {c.honest_meaning}; best honest first{direction}"]
    board = c.leaderboard.rename(columns={"oof": f"OOF {c.metric}", "image_size": "size"})
    whole = lambda v: "-" if v is None or pd.isna(v) else str(int(v))  # noqa: E731 - ints stored beside None
    lines.append(_table(board, {f"OOF {c.metric}": _fmt, "honest": _fmt, "size": whole, "epochs": whole, "tta": _fmt,
                                "seconds": lambda v: _fmt(v, 1)}))
    for name, table in c.ablations.items():
        lines += ["", f"drop-one ablation of {name}: the same method without each member (change: positive is better without it)"]
        lines.append(_table(table, {"oof": _fmt, "oof_change": lambda v: f"{v:+.5f}", "honest": _fmt,
                                    "honest_change": lambda v: "-" if math.isnan(v) else f"{v:+.5f}"}))
    if c.correlation is not None:
        lines += ["", "OOF correlation of the models (Pearson, all classes)"]
        lines.append(c.correlation.to_string(float_format=lambda v: f"{v:.3f}"))
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines)
