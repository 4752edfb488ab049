"""A self-contained HTML report of an experiment, a model run or a blend, to look at rather than read.

``write_report(run_dir)`` accepts three kinds of folder, told apart by ``run.json``:

- an experiment folder ``runs/<exp>/`` (no run.json; its subfolders with a run.json are the model runs
  and the blends, ``kind`` says which);
- a model run folder (``kind == "model"``);
- a blend folder (``kind == "blend"``); its members are found from ``run.json`` ``members``.

Across runs the page shows :mod:`kaggle_planet.study.compare`'s leaderboard (OOF score, honest estimate,
what produced each run), each blend's drop-one ablation, and, when a submissions log holds scored
uploads of this competition, their honest CV against the public leaderboard.

Every number is recomputed from the prediction files (``oof.csv`` + ``labels.csv``) with
:mod:`kaggle_planet.core.metrics` and scikit-learn; ``scores.json`` / ``thresholds.json`` are shown next to
them and a disagreement is flagged in the page. Images are PNGs drawn with matplotlib's Agg canvas
(``matplotlib.figure.Figure``, no pyplot global state) and embedded as base64 data URIs; the CSS is
inline and there is no script, so the file opens offline and can be mailed around.
"""
from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, fbeta_score, precision_score, recall_score, roc_auc_score

from ..core import artifacts, metrics
from ..core.artifacts import HISTORY, HISTORY_COLUMNS
from ..core.errors import KagglePlanetError
from ..data.competitions import get_spec
from ..ensemble.members import find_member
from .compare import Comparison, build_comparison, oof_correlation
from .render import render_html
from .views import GRID, ReportData, RunView

log = logging.getLogger(__name__)

REPORT = "report.html"
THRESHOLDS = "thresholds.json"  # same name as thresholds.THRESHOLDS; not imported to keep this module standalone
DEFAULT_THRESHOLD = {"multilabel": metrics.DEFAULT_THRESHOLD, "binary": 0.5}
# recomputed and stored scores may differ by the float formatting of the CSVs (8 significant digits)
SCORE_TOLERANCE = 1e-6
CURVE_ROWS = 4096  # rows per chunk of the F2 curves (memory flat in the dataset size)


# --------------------------------------------------------------------------------------- loading


def _read_optional_json(path: Path) -> dict[str, Any] | None:
    return artifacts.read_json(path) if path.is_file() else None


def read_history(path: Path) -> pd.DataFrame:
    """One fold's ``history.csv`` (columns ``HISTORY_COLUMNS``, one row per epoch)."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KagglePlanetError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in HISTORY_COLUMNS if c not in frame.columns]
    if missing:
        raise KagglePlanetError(f"{path}: missing column(s) {missing}; expected columns {','.join(HISTORY_COLUMNS)}")
    for col in HISTORY_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 2
            raise KagglePlanetError(f"{path}: line {row}, column {col!r}: {frame[col].iloc[row - 2]!r} is not a number")
        frame[col] = values
    return frame


def read_histories(run_dir: Path) -> dict[int, pd.DataFrame]:
    """``{fold: history}`` of every ``fold<k>/history.csv`` in a model run folder, folds ascending."""
    found = {}
    for k, path in artifacts.fold_files(run_dir, HISTORY).items():
        history = read_history(path)
        if len(history):  # a fold killed before its first epoch ended has only the header
            found[k] = history
    return found


def load_view(run_dir: Path, name: str | None = None) -> RunView:
    run = artifacts.load_run(run_dir)
    metric = get_spec(run.info.competition, run.info.options).metric
    return RunView(
        name=name or run_dir.name,
        run=run,
        stored_scores=_read_optional_json(run_dir / artifacts.SCORES),
        stored_thresholds=_read_optional_json(run_dir / THRESHOLDS),
        scores=metrics.summarize_scores(metric, run.y_true, run.oof_probs, run.folds, run.info.task),
        histories=read_histories(run_dir) if run.info.kind == "model" else {},
    )


def _member_views(blend_dir: Path, info: artifacts.RunInfo, problems: list[str]) -> list[RunView]:
    views = []
    for member in info.members:
        path = find_member(blend_dir, member)
        if path is None:
            problems.append(f"blend member {member} not found (looked beside {blend_dir}); it is left out of the model sections")
        else:
            views.append(load_view(path))
    return views


def discover_runs(run_dir: Path) -> tuple[str, list[RunView], list[RunView], list[str]]:
    """(layout, model views, blend views, problems) for an experiment, model or blend folder."""
    problems: list[str] = []
    if (run_dir / artifacts.RUN_INFO).is_file():
        info = artifacts.read_run_info(run_dir)
        if info.kind == "blend":
            return "blend", _member_views(run_dir, info, problems), [load_view(run_dir)], problems
        return "model", [load_view(run_dir)], [], problems
    if not run_dir.is_dir():
        raise KagglePlanetError(f"{run_dir}: folder not found")
    children = artifacts.experiment_runs(run_dir)
    if not children:
        raise KagglePlanetError(
            f"{run_dir}: no run.json here nor in its subfolders; expected an experiment folder (runs/<exp>/), "
            "a model run folder or a blend folder"
        )
    unfinished = sorted(d for d in run_dir.iterdir() if d.is_dir() and d not in children and any(d.glob("fold*")))
    problems += [f"{d}: fold folders but no run.json (training or prediction not finished); left out" for d in unfinished]
    views = [load_view(d) for d in children]
    return "experiment", [v for v in views if v.kind != "blend"], [v for v in views if v.kind == "blend"], problems


def _check_compatible(views: Sequence[RunView]) -> None:
    first = views[0].run.info
    for view in views[1:]:
        info = view.run.info
        if (info.competition, info.classes) != (first.competition, first.classes):
            raise KagglePlanetError(
                f"{view.path / artifacts.RUN_INFO}: competition/classes {info.competition} {info.classes} differ from "
                f"{views[0].path}'s {first.competition} {first.classes}; a report covers one competition"
            )
        ids = set(view.run.oof[info.id_col])
        if ids != set(views[0].run.oof[first.id_col]):
            diff = sorted(ids ^ set(views[0].run.oof[first.id_col]))[0]
            raise KagglePlanetError(f"{view.path / artifacts.OOF} and {views[0].path / artifacts.OOF}: ids differ (first: {diff!r})")


def _stored_score_problems(view: RunView) -> list[str]:
    stored = view.stored_scores
    if stored is None:
        return [f"{view.path / artifacts.SCORES}: not found; scores are recomputed from oof.csv only"]
    value = stored.get("oof")
    if not isinstance(value, (int, float)) or abs(value - view.scores["oof"]) > SCORE_TOLERANCE:
        return [f"{view.path / artifacts.SCORES}: oof {value!r} differs from {view.scores['oof']:.6f} recomputed from oof.csv"]
    return []


# -------------------------------------------------------------------------------------- numbers


def oof_matrix(view: RunView, ids: Sequence[str]) -> np.ndarray:
    """The run's OOF probabilities ``(N, C)`` in the order of ``ids`` (rows matched by id)."""
    frame = view.run.oof.set_index(view.run.info.id_col)
    return frame.loc[list(ids), view.run.info.classes].to_numpy(dtype=np.float64)


def correlation_matrix(views: Sequence[RunView]) -> pd.DataFrame:
    """Pearson correlation of the runs' flattened OOF probabilities, rows aligned by id; (M, M)."""
    return oof_correlation([v.name for v in views], [v.run for v in views])


def blend_gains(blends: Sequence[RunView], by_path: dict[Path, RunView], metric: str) -> pd.DataFrame:
    """Per blend: its OOF score, its best member's (in the metric's direction) and the gain, recomputed and as
    stored; the gain is positive when the blend is better than that member (a loss metric too)."""
    entry = metrics.get_metric(metric)
    rows = []
    for blend in blends:
        members = [by_path.get(_key(p)) for p in (find_member(blend.path, m) for m in blend.run.info.members) if p]
        members = [m for m in members if m is not None]
        stored_members = (blend.stored_scores or {}).get("members") or {}
        if members:
            best = members[entry.best_index(m.scores["oof"] for m in members)]
            best_name, best_score = best.name, best.scores["oof"]
        elif stored_members:  # members not on disk: fall back to the scores the blend recorded
            best_name, best_score = list(stored_members.items())[entry.best_index(stored_members.values())]
            best_name = Path(best_name).name
        else:
            best_name, best_score = "", math.nan
        rows.append({
            "blend": blend.name,
            "method": blend.method,
            "members": ", ".join(Path(m).name for m in blend.run.info.members),
            "metric": metric,
            "blend_oof": blend.scores["oof"],
            "best_member": best_name,
            "best_member_oof": best_score,
            "gain": entry.gain(blend.scores["oof"], best_score),
            "stored_gain": (blend.stored_scores or {}).get("gain_over_best", math.nan),
        })
    return pd.DataFrame(rows, columns=["blend", "method", "members", "metric", "blend_oof", "best_member",
                                       "best_member_oof", "gain", "stored_gain"])


def _key(path: Path) -> Path:
    return path.resolve()


def _safe_auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else math.nan


def _binary_class_row(name: str, y: np.ndarray, pred: np.ndarray, p: np.ndarray, threshold: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when a class is never predicted; we report 0
        return {
            "class": name,
            "support": int(y.sum()),
            "threshold": threshold,
            "f2": float(fbeta_score(y, pred, beta=2, zero_division=0)),
            "precision": float(precision_score(y, pred, zero_division=0)),
            "recall": float(recall_score(y, pred, zero_division=0)),
            "auc": _safe_auc(y, p),
            "accuracy": float(np.mean(y == pred)),
        }


def per_class_thresholded(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray) -> pd.DataFrame:
    """Multilabel / binary: each column scored on its own at ``probs > thresholds`` (C,)."""
    pred = probs > thresholds
    return pd.DataFrame([
        _binary_class_row(c, y_true[:, j], pred[:, j].astype(int), probs[:, j], float(thresholds[j]))
        for j, c in enumerate(classes)
    ])


def per_class_argmax(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Multiclass: one-vs-rest numbers of the argmax prediction (recall = that class's accuracy)."""
    true, pred = y_true.argmax(axis=1), probs.argmax(axis=1)
    return pd.DataFrame([
        _binary_class_row(c, (true == j).astype(int), (pred == j).astype(int), probs[:, j], "argmax")
        for j, c in enumerate(classes)
    ])


def f2_threshold_curves(y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Sample-averaged F2 as class ``j``'s threshold sweeps ``grid``, the others at ``thresholds``; (C, G).

    ``curves[j, g] == metrics.f2_at(y_true, probs, t)`` with ``t = thresholds`` but ``t[j] = grid[g]``.
    Computed from per-sample counts over the other classes, so a class costs one (N, G) pass.
    """
    y = np.asarray(y_true) != 0
    p = np.asarray(probs, dtype=np.float64)
    chosen = p > thresholds
    true_count = y.sum(axis=1)[:, None].astype(np.float64)
    tp_all = (chosen & y).sum(axis=1)
    pred_all = chosen.sum(axis=1)
    curves = np.zeros((p.shape[1], len(grid)))
    for start in range(0, len(p), CURVE_ROWS):  # (rows, G) temporaries stay bounded whatever N
        rows = slice(start, start + CURVE_ROWS)
        for j in range(p.shape[1]):
            tp_other = (tp_all[rows] - (chosen[rows, j] & y[rows, j]))[:, None]
            pred_other = (pred_all[rows] - chosen[rows, j])[:, None]
            col = p[rows, j, None] > grid[None, :]
            tp = tp_other + (col & y[rows, j, None])
            denom = metrics.BETA2 * true_count[rows] + pred_other + col
            f2 = np.zeros(denom.shape)
            np.divide((1.0 + metrics.BETA2) * tp, denom, out=f2, where=denom > 0)
            curves[j] += f2.sum(axis=0)
    return curves / max(1, len(p))


def binary_f2_curve(y_true: np.ndarray, probs: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Binary: F2 of the single column against its threshold; (1, G)."""
    y = np.asarray(y_true)[:, 0] != 0
    col = np.asarray(probs)[:, 0, None] > grid[None, :]
    tp = (col & y[:, None]).sum(axis=0).astype(np.float64)
    denom = metrics.BETA2 * y.sum() + col.sum(axis=0)
    out = np.zeros(len(grid))
    np.divide((1.0 + metrics.BETA2) * tp, denom, out=out, where=denom > 0)
    return out[None, :]


def focus_thresholds(view: RunView, task: str) -> tuple[np.ndarray | None, str]:
    """The thresholds per-class numbers use, and where they come from."""
    classes = view.run.info.classes
    stored = view.stored_thresholds
    if task == "multiclass":
        return None, "argmax (multiclass)"
    if stored is not None:
        if stored.get("classes") != list(classes) or len(stored.get("thresholds", [])) != len(classes):
            raise KagglePlanetError(f"{view.path / THRESHOLDS}: classes/thresholds do not match run.json's classes {list(classes)}")
        return np.asarray(stored["thresholds"], dtype=np.float64), f"{view.path / THRESHOLDS}"
    value = DEFAULT_THRESHOLD[task]
    return np.full(len(classes), value), f"default {value} for every class (no {THRESHOLDS} in {view.path})"


def pick_focus(models: Sequence[RunView], blends: Sequence[RunView]) -> RunView:
    """The blend named ``blend`` (the pipeline's), else the first blend, else the best model (in its metric's direction)."""
    if blends:
        return next((b for b in blends if b.name == "blend"), blends[0])
    return models[metrics.best_index(models[0].scores["metric"], (m.scores["oof"] for m in models))]


def per_class_by_run(views: Sequence[RunView], task: str) -> pd.DataFrame | None:
    """class x run: per-class F2 (multilabel, each run at its own thresholds) or recall (multiclass)."""
    if task == "binary" or len(views) < 2:
        return None
    columns = {}
    for view in views:
        run = view.run
        if task == "multilabel":
            thr, _ = focus_thresholds(view, task)
            columns[view.name] = per_class_thresholded(run.y_true, run.oof_probs, run.info.classes, thr)["f2"].to_numpy()
        else:
            columns[view.name] = per_class_argmax(run.y_true, run.oof_probs, run.info.classes)["recall"].to_numpy()
    return pd.DataFrame(columns, index=views[0].run.info.classes)


def _comparison(views: Sequence[RunView], problems: list[str], ablation: bool = True) -> Comparison | None:
    try:
        return build_comparison([(v.name, v.run) for v in views], ablation=ablation)
    except KagglePlanetError as exc:  # e.g. runs made with other folds: the rest of the page still holds
        problems.append(f"no leaderboard: {exc}")
        return None


def scored_submissions(log_path: Path | None, competition: str, problems: list[str]) -> pd.DataFrame | None:
    """Rows of the submissions log for ``competition`` that have a public score; None when there are none."""
    from ..kaggle.submission import competition_name, read_submission_log

    if log_path is None or not Path(log_path).is_file():
        return None
    try:
        frame = read_submission_log(log_path)
    except KagglePlanetError as exc:
        problems.append(f"submissions log not shown: {exc}")
        return None
    frame = frame[(frame["competition"] == competition_name(competition)) & frame["public_score"].notna()]
    return frame.reset_index(drop=True) if len(frame) else None


def build_report(run_dir: str | Path, submissions_log: str | Path | None = None, ablation: bool = True) -> ReportData:
    """Load an experiment, model or blend folder and compute every number of the report;
    ``submissions_log`` (submissions/log.csv) adds the CV-against-public-LB plot when it has scores;
    ``ablation`` False skips the blends' drop-one ablation (M re-fits of each blend)."""
    run_dir = Path(run_dir)
    layout, models, blends, problems = discover_runs(run_dir)
    views = [*models, *blends]
    if not views:
        raise KagglePlanetError(f"{run_dir}: no model or blend run could be loaded")
    _check_compatible(views)
    for view in views:
        problems += _stored_score_problems(view)
    info = views[0].run.info
    spec = get_spec(info.competition, info.options)
    focus = pick_focus(models, blends)
    run = focus.run
    thresholds, source = focus_thresholds(focus, info.task)
    if info.task == "multiclass":
        table = per_class_argmax(run.y_true, run.oof_probs, info.classes)
        curves, focus_f2 = None, None
        confusion = confusion_matrix(run.y_true.argmax(axis=1), run.oof_probs.argmax(axis=1), labels=range(len(info.classes)))
    else:
        table = per_class_thresholded(run.y_true, run.oof_probs, info.classes, thresholds)
        confusion = None
        if info.task == "multilabel":
            curves = f2_threshold_curves(run.y_true, run.oof_probs, thresholds)
            focus_f2 = metrics.f2_at(run.y_true, run.oof_probs, thresholds)
            stored = (focus.stored_thresholds or {}).get("f2_tuned")
            if stored is not None and abs(stored - focus_f2) > SCORE_TOLERANCE:
                problems.append(f"{focus.path / THRESHOLDS}: f2_tuned {stored} differs from {focus_f2:.6f} recomputed at its thresholds")
        else:
            curves, focus_f2 = binary_f2_curve(run.y_true, run.oof_probs), None
    by_path = {_key(v.path): v for v in views}
    return ReportData(
        source=run_dir,
        layout=layout,
        competition=info.competition,
        task=info.task,
        metric=spec.metric,
        classes=list(info.classes),
        models=models,
        blends=blends,
        focus=focus,
        thresholds=thresholds,
        thresholds_source=source,
        per_class=table,
        f2_curves=curves,
        focus_f2=focus_f2,
        correlation=correlation_matrix(models) if len(models) >= 2 else None,
        blend_gains=blend_gains(blends, by_path, spec.metric),
        confusion=confusion,
        per_class_by_run=per_class_by_run(views, info.task),
        warnings=problems,
        experiment_scores=_read_optional_json(run_dir / artifacts.SCORES) if layout == "experiment" else None,
        comparison=_comparison(views, problems, ablation),
        submissions=scored_submissions(Path(submissions_log) if submissions_log else None, info.competition, problems),
    )


def resolve_report_out(out: str | Path | None, run_dir: Path) -> Path:
    """``--out``: a folder (existing, or written with a trailing ``/``) gets ``report.html`` inside; an
    existing file that is not an HTML page (a run's CSV or JSON) is never overwritten."""
    if out is None:
        return run_dir / REPORT
    if artifacts.wants_folder(out):
        out = Path(out) / REPORT
        if out.is_dir():
            raise KagglePlanetError(f"{out}: is a folder; give the report's .html file with --out")
    out = Path(out)
    if out.exists() and out.suffix.lower() not in (".html", ".htm"):
        raise KagglePlanetError(f"{out}: exists and is not an HTML report; give a new .html path with --out")
    return out


def write_report(run_dir: str | Path, out: str | Path | None = None, submissions_log: str | Path | None = None,
                 ablation: bool = True) -> Path:
    """Write the HTML report of an experiment, model run or blend folder; default ``<run_dir>/report.html``."""
    run_dir = Path(run_dir)
    data = build_report(run_dir, submissions_log, ablation)
    out = resolve_report_out(out, run_dir)
    artifacts.write_text(out, render_html(data))
    log.info("wrote report of %s to %s", run_dir, out)
    return out
