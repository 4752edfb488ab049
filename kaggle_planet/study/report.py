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

import base64
import html
import io
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import confusion_matrix, fbeta_score, precision_score, recall_score, roc_auc_score

from ..core import artifacts, metrics
from ..core.artifacts import HISTORY, HISTORY_COLUMNS
from ..core.errors import KagglePlanetError
from ..data.competitions import get_spec
from .compare import Comparison, build_comparison, oof_correlation, resolve_member

log = logging.getLogger(__name__)

REPORT = "report.html"
THRESHOLDS = "thresholds.json"  # same name as thresholds.THRESHOLDS; not imported to keep this module standalone
DEFAULT_THRESHOLD = {"multilabel": metrics.DEFAULT_THRESHOLD, "binary": 0.5}
# recomputed and stored scores may differ by the float formatting of the CSVs (8 significant digits)
SCORE_TOLERANCE = 1e-6
GRID = np.linspace(0.0, 1.0, 201)  # thresholds at which the F2 curves are evaluated
CURVE_ROWS = 4096  # rows per chunk of the F2 curves (memory flat in the dataset size)


# --------------------------------------------------------------------------------------- loading


@dataclass
class RunView:
    """One run folder as the report sees it: predictions, its files' scores and recomputed ones."""

    name: str
    run: artifacts.Run
    stored_scores: dict[str, Any] | None  # scores.json, None when absent
    stored_thresholds: dict[str, Any] | None  # thresholds.json, None when absent
    scores: dict[str, Any]  # metrics.summarize_scores of the OOF predictions
    histories: dict[int, pd.DataFrame] = field(default_factory=dict)  # fold -> history.csv

    @property
    def kind(self) -> str:
        return self.run.info.kind

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def method(self) -> str:
        """A blend's method (scores.json ``method``, else run.json extra ``method``); '' for models."""
        if self.kind != "blend":
            return ""
        return str((self.stored_scores or {}).get("method") or self.run.info.extra.get("method") or "?")


@dataclass
class ReportData:
    """Everything the page shows, computed; ``render_html`` only formats it."""

    source: Path
    layout: str  # "experiment" | "model" | "blend"
    competition: str
    task: str
    metric: str
    classes: list[str]
    models: list[RunView]
    blends: list[RunView]
    focus: RunView  # the run whose per-class numbers are shown (the blend, else the best model)
    thresholds: np.ndarray | None  # (C,) focus's thresholds (multilabel/binary), None for multiclass
    thresholds_source: str
    per_class: pd.DataFrame  # one row per class of ``focus``
    f2_curves: np.ndarray | None  # (C, len(GRID)) F2 against each class's threshold, others fixed
    focus_f2: float | None  # multilabel: sample F2 of ``focus`` at ``thresholds``
    correlation: pd.DataFrame | None  # model x model Pearson correlation of OOF probabilities
    blend_gains: pd.DataFrame  # one row per blend
    confusion: np.ndarray | None  # multiclass: (C, C) rows true, columns predicted
    per_class_by_run: pd.DataFrame | None  # class x run: F2 (multilabel) / recall (multiclass)
    warnings: list[str]
    experiment_scores: dict[str, Any] | None  # runs/<exp>/scores.json (pipeline summary)
    comparison: Comparison | None = None  # leaderboard and drop-one ablations (compare.py)
    submissions: pd.DataFrame | None = None  # submissions log rows of this competition with a public score

    @property
    def runs(self) -> list[RunView]:
        return [*self.models, *self.blends]


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
    metric = get_spec(run.info.competition).metric
    return RunView(
        name=name or run_dir.name,
        run=run,
        stored_scores=_read_optional_json(run_dir / artifacts.SCORES),
        stored_thresholds=_read_optional_json(run_dir / THRESHOLDS),
        scores=metrics.summarize_scores(metric, run.y_true, run.oof_probs, run.folds),
        histories=read_histories(run_dir) if run.info.kind == "model" else {},
    )


def _member_views(blend_dir: Path, info: artifacts.RunInfo, problems: list[str]) -> list[RunView]:
    views = []
    for member in info.members:
        path = resolve_member(blend_dir, member)
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
    """Per blend: its OOF score, its best member's and the gain, recomputed and as stored."""
    rows = []
    for blend in blends:
        members = [by_path.get(_key(p)) for p in (resolve_member(blend.path, m) for m in blend.run.info.members) if p]
        members = [m for m in members if m is not None]
        stored_members = (blend.stored_scores or {}).get("members") or {}
        if members:
            best = max(members, key=lambda m: m.scores["oof"])
            best_name, best_score = best.name, best.scores["oof"]
        elif stored_members:  # members not on disk: fall back to the scores the blend recorded
            best_name, best_score = max(stored_members.items(), key=lambda kv: kv[1])
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
            "gain": blend.scores["oof"] - best_score,
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
    """The blend named ``blend`` (the pipeline's), else the first blend, else the best model."""
    if blends:
        return next((b for b in blends if b.name == "blend"), blends[0])
    return max(models, key=lambda m: m.scores["oof"])


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
    spec = get_spec(info.competition)
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


# ------------------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # Agg canvas by default; no pyplot global state

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def figure_to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def plot_learning_curves(view: RunView, metric: str) -> str:
    """Loss and metric per epoch, train (solid) vs valid (dashed), one colour per fold."""
    fig = _new_figure(10, 3.4)
    axes = fig.subplots(1, 2)
    for (k, hist), colour in zip(view.histories.items(), _colours(len(view.histories))):
        for ax, what in zip(axes, ("loss", "metric")):
            ax.plot(hist["epoch"], hist[f"train_{what}"], "-o", color=colour, ms=3, label=f"fold {k} train")
            ax.plot(hist["epoch"], hist[f"valid_{what}"], "--s", color=colour, ms=3, label=f"fold {k} valid")
    for ax, title in zip(axes, ("loss", metric)):
        ax.set_title(f"{view.name}: {title}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncols=2)
    return figure_to_data_uri(fig)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_scores(views: Sequence[RunView], metric: str) -> str:
    """OOF score per run (bars) with its per-fold scores (dots); blends in a second colour."""
    fig = _new_figure(max(5.5, 1.1 * len(views) + 2), 3.2)
    ax = fig.subplots()
    x = np.arange(len(views))
    colours = ["#4c72b0" if v.kind != "blend" else "#dd8452" for v in views]
    oof = [v.scores["oof"] for v in views]
    ax.bar(x, oof, color=colours, width=0.6)
    for i, view in enumerate(views):
        folds = list(view.scores["per_fold"].values())
        ax.plot(np.full(len(folds), i), folds, "k.", ms=6)
        ax.annotate(f"{oof[i]:.4f}", (i, oof[i]), xytext=(0, -4), textcoords="offset points", ha="center", va="top",
                    fontsize=8, color="white", fontweight="bold")
    values = [s for v in views for s in v.scores["per_fold"].values()] + oof
    ax.set_ylim(max(0.0, min(values) - 0.05), max(values) + 0.03)
    ax.set_xticks(x, [v.name for v in views], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"OOF {metric}")
    ax.set_title("OOF score (bars), per-fold scores (dots); blends orange", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return figure_to_data_uri(fig)


def plot_threshold_curves(data: ReportData) -> str:
    """Small multiples: F2 against each class's threshold, the chosen threshold marked."""
    curves, classes = data.f2_curves, data.classes
    ncols = min(6, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    fig = _new_figure(2.1 * ncols + 0.5, 1.8 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    label = "sample F2" if data.task == "multilabel" else "F2"
    for j, (ax, name) in enumerate(zip(axes, classes)):
        t = data.thresholds[j]
        ax.plot(GRID, curves[j], color="#4c72b0", lw=1.2)
        ax.axvline(t, color="#dd8452", lw=1, ls="--")
        ax.plot([t], [np.interp(t, GRID, curves[j])], "o", color="#dd8452", ms=3)
        ax.set_title(f"{name} (t={t:.3f})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(classes):]:
        ax.set_visible(False)
    fig.suptitle(f"OOF {label} of {data.focus.name} against one class's threshold (others at their chosen thresholds)", fontsize=9)
    return figure_to_data_uri(fig)


def plot_heatmap(matrix: np.ndarray, labels_x: Sequence[str], labels_y: Sequence[str], title: str, fmt: str,
                 xlabel: str = "", ylabel: str = "", cmap: str = "viridis") -> str:
    n = max(len(labels_x), len(labels_y))
    fig = _new_figure(min(12, 2.5 + 0.6 * n), min(11, 2.0 + 0.5 * n))
    ax = fig.subplots()
    finite = matrix[np.isfinite(matrix)] if np.isfinite(matrix).any() else np.array([0.0])
    image = ax.imshow(matrix, cmap=cmap, vmin=float(finite.min()), vmax=float(finite.max()))
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(labels_x)), labels_x, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels_y)), labels_y, fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        # text in black or white, whichever contrasts with the cell's colour (by its luminance)
        r, g, b, _ = image.cmap(image.norm(value)) if np.isfinite(value) else (1, 1, 1, 1)
        ax.text(j, i, format(value, fmt) if np.isfinite(value) else "n/a", ha="center", va="center", fontsize=7,
                color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return figure_to_data_uri(fig)


# ----------------------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1150px;
       color: #222; line-height: 1.4; padding: 0 12px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #4c72b0; padding-bottom: 3px; margin-top: 1.8em; }
h3 { margin-bottom: 0.3em; } .meta { color: #555; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eef2f8; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: 4px 0; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
.warn { background: #fff4e5; border-left: 4px solid #dd8452; padding: 6px 10px; margin: 4px 0; }
.good { color: #1a7f37; } .bad { color: #c62828; } nav a { margin-right: 12px; }
"""

def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers as fixed decimals, NaN as 'n/a', anything else as text (not escaped)."""
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def table_html(table_id: str, header: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 4) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(fmt(c, digits))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{esc(table_id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def frame_html(table_id: str, frame: pd.DataFrame, index_name: str | None = None, digits: int = 4) -> str:
    header = ([index_name] if index_name is not None else []) + [str(c) for c in frame.columns]
    rows = [([idx] if index_name is not None else []) + list(row) for idx, row in zip(frame.index, frame.itertuples(index=False))]
    return table_html(table_id, header, rows, digits)


def img_html(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{esc(alt)}">'


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>\n{body}\n</section>\n'


def _summary_section(data: ReportData) -> str:
    metric = data.metric
    header = ["run", "kind", "method", f"OOF {metric}", "fold mean", "fold std", "per fold", "scores.json OOF"]
    if data.task == "multilabel":
        header += ["F2 tuned (thresholds.json)", "F2 held-out"]
    rows = []
    for view in data.runs:
        s = view.scores
        per_fold = "  ".join(f"{k}: {v:.4f}" for k, v in s["per_fold"].items())
        stored = (view.stored_scores or {}).get("oof", math.nan)
        row = [view.name, view.kind, view.method, s["oof"], s["fold_mean"], s["fold_std"], per_fold, stored]
        if data.task == "multilabel":
            thr = view.stored_thresholds or {}
            row += [thr.get("f2_tuned", math.nan), thr.get("f2_heldout") if thr.get("f2_heldout") is not None else math.nan]
        rows.append(row)
    extras = sorted({k for v in data.runs for k in v.scores["extra"]})
    extra_rows = [[v.name, *[v.scores["extra"].get(k, math.nan) for k in extras]] for v in data.runs]
    n = len(data.focus.run.oof)
    body = [
        f'<p class="meta">{n} training images, {len(data.classes)} classes, {len(data.models)} model run(s), '
        f"{len(data.blends)} blend(s). OOF scores are recomputed from oof.csv and labels.csv; "
        f"fold std is the population standard deviation over folds.</p>",
        table_html("scores", header, rows),
        "<h3>Other OOF numbers</h3>",
        table_html("extra-scores", ["run", *extras], extra_rows),
        img_html(plot_scores(data.runs, metric), "OOF scores per run"),
    ]
    if data.experiment_scores is not None:
        body.append("<details><summary>pipeline summary (scores.json)</summary><pre>"
                    + esc(json.dumps(data.experiment_scores, indent=2)) + "</pre></details>")
    return section("summary", "Scores", "\n".join(body))


def _curves_section(data: ReportData) -> str:
    parts = []
    for view in data.models:
        if not view.histories:
            parts.append(f"<h3>{esc(view.name)}</h3><p>No fold&lt;k&gt;/history.csv in {esc(view.path)}.</p>")
            continue
        last = [[k, int(h['epoch'].iloc[-1]), h["train_loss"].iloc[-1], h["valid_loss"].iloc[-1],
                 h["train_metric"].iloc[-1], h["valid_metric"].iloc[-1], h["valid_metric"].max(), f"{h['seconds'].sum():.1f}"]
                for k, h in view.histories.items()]
        parts.append(f"<h3>{esc(view.name)}</h3>")
        parts.append(img_html(plot_learning_curves(view, data.metric), f"learning curves of {view.name}"))
        parts.append(table_html(f"history-{view.name}", ["fold", "epochs", "train loss", "valid loss", f"train {data.metric}",
                                                           f"valid {data.metric}", f"best valid {data.metric}", "seconds"], last))
    if not parts:
        parts.append("<p>No model runs here (a blend whose members were not found).</p>")
    return section("learning-curves", "Learning curves per fold", "\n".join(parts))


def _per_class_section(data: ReportData) -> str:
    table = data.per_class.rename(columns={"f2": "F2", "auc": "AUC"})
    intro = (f"<p>Numbers of <b>{esc(data.focus.name)}</b> ({esc(data.focus.path)}) on its OOF predictions; "
             f"thresholds: {esc(data.thresholds_source)}. F2, precision, recall, AUC and accuracy are per class "
             "(that class's column against its labels).</p>")
    parts = [intro]
    if data.focus_f2 is not None:
        stored = (data.focus.stored_thresholds or {}).get("f2_tuned")
        parts.append(f'<p>Sample-averaged F2 at these thresholds: <b id="focus-f2">{data.focus_f2:.4f}</b>'
                     + (f" (thresholds.json f2_tuned: {stored:.4f})" if stored is not None else "") + "</p>")
    parts.append(frame_html("per-class", table.set_index("class"), index_name="class"))
    if data.f2_curves is not None:
        parts.append(img_html(plot_threshold_curves(data), "F2 against each class's threshold"))
    if data.per_class_by_run is not None:
        what = "F2 (each run at its own thresholds)" if data.task == "multilabel" else "recall"
        parts.append(f"<h3>Per-class {esc(what)} by run</h3>")
        parts.append(frame_html("per-class-by-run", data.per_class_by_run, index_name="class"))
    return section("per-class", "Per class", "\n".join(parts))


def _models_section(data: ReportData) -> str:
    parts = []
    if data.correlation is not None:
        corr = data.correlation
        parts.append("<p>Pearson correlation of the models' OOF probabilities (all classes flattened, rows matched by id). "
                     "Less correlated models gain more from blending.</p>")
        parts.append(img_html(plot_heatmap(corr.to_numpy(), corr.columns, corr.index, "OOF correlation", ".3f"),
                              "correlation of OOF predictions"))
        parts.append(frame_html("correlation", corr, index_name="model"))
    else:
        parts.append("<p>Only one model run: no correlation matrix.</p>")
    if len(data.blend_gains):
        gains = data.blend_gains.rename(columns={"blend_oof": "blend OOF", "best_member_oof": "best member OOF",
                                                 "best_member": "best member", "stored_gain": "scores.json gain_over_best"})
        parts.append(f"<h3>Blend gain over the best single model ({esc(data.metric)})</h3>")
        parts.append(frame_html("blend-gain", gains.drop(columns=["metric"]).set_index("blend"), index_name="blend"))
    else:
        parts.append("<p>No blend folder: no blend gain.</p>")
    return section("models", "Between models", "\n".join(parts))


def _confusion_section(data: ReportData) -> str:
    cm = data.confusion
    frame = pd.DataFrame(cm, index=data.classes, columns=data.classes)
    body = [
        f"<p>Confusion matrix of {esc(data.focus.name)}'s OOF argmax predictions: rows true class, columns predicted.</p>",
        img_html(plot_heatmap(cm.astype(float), data.classes, data.classes, "confusion matrix (OOF)", ".0f",
                              "predicted", "true", cmap="Blues"), "confusion matrix"),
        frame_html("confusion", frame, index_name="true \\ predicted"),
    ]
    return section("confusion", "Confusion matrix", "\n".join(body))


def _leaderboard_section(data: ReportData) -> str:
    c = data.comparison
    board = c.leaderboard.rename(columns={"oof": f"OOF {c.metric}", "image_size": "image size"}).set_index("run")
    parts = [f"<p>Every run of this page, best honest estimate first. Honest: {esc(c.honest_meaning)}. "
             "Seconds: training time summed over folds (models), fitting time (blends). "
             "<code>kaggle-planet compare</code> prints the same across experiments.</p>",
             frame_html("leaderboard", board, index_name="run", digits=5)]
    for name, table in c.ablations.items():
        parts.append(f"<h3>Drop-one ablation of {esc(name)}</h3><p>The blend's own method re-fitted without each member; "
                     "a negative change means the member helps.</p>")
        parts.append(frame_html(f"ablation-{name}", table.set_index("without"), index_name="without", digits=5))
    parts += [f'<div class="warn">{esc(n)}</div>' for n in c.notes]
    return section("leaderboard", "Leaderboard", "\n".join(parts))


def plot_cv_against_lb(frame: pd.DataFrame, metric: str) -> str:
    """Honest CV (OOF when no honest score was logged) against the public LB score, one dot per upload."""
    fig = _new_figure(6.5, 4.2)
    ax = fig.subplots()
    cv = frame["honest_score"].fillna(frame["oof_score"])
    ax.plot(cv, frame["public_score"], "o", color="#4c72b0")
    for x, y, name in zip(cv, frame["public_score"], frame["file"]):
        ax.annotate(Path(name).name, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=7)
    finite = np.isfinite(cv.to_numpy(dtype=float))
    if finite.sum() >= 2:
        lo = float(min(cv[finite].min(), frame["public_score"].min()))
        hi = float(max(cv[finite].max(), frame["public_score"].max()))
        ax.plot([lo, hi], [lo, hi], "--", color="#999", lw=1, label="CV = LB")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"honest CV ({metric})")
    ax.set_ylabel("public LB")
    ax.set_title("Logged submissions: CV against public leaderboard", fontsize=10)
    ax.grid(alpha=0.3)
    return figure_to_data_uri(fig)


def _submissions_section(data: ReportData) -> str:
    frame = data.submissions
    table = pd.DataFrame({"file": frame["file"].map(lambda f: Path(f).name), "run": frame["run_dir"], "decision": frame["decision"],
                          "OOF": frame["oof_score"], "honest CV": frame["honest_score"], "public LB": frame["public_score"],
                          "private LB": frame["private_score"], "message": frame["message"]}).set_index(frame["ref"].to_numpy())
    body = ["<p>Uploads logged by <code>kaggle-planet submit</code> whose public score <code>kaggle-planet scores</code> "
            "fetched, from every experiment of this competition.</p>",
            img_html(plot_cv_against_lb(frame, data.metric), "CV against public LB"),
            frame_html("submissions", table, index_name="ref", digits=5)]
    return section("submissions", "CV against public LB", "\n".join(body))


def _provenance_section(data: ReportData) -> str:
    parts = []
    for view in data.runs:
        extra = view.run.info.extra
        commands = extra.get("commands") or []
        config = extra.get("config")
        described = {k: v for k, v in extra.items() if k not in ("config", "commands")}
        parts.append(f"<h3>{esc(view.name)} <small class=\"meta\">({esc(view.kind)}, {esc(view.path)})</small></h3>")
        if view.kind == "blend":
            parts.append("<p>members: " + esc(", ".join(view.run.info.members)) + "</p>")
        parts.append("<p>commands:</p><pre class=\"commands\">" + (esc("\n".join(map(str, commands))) or "(none recorded)") + "</pre>")
        if described:
            parts.append("<pre>" + esc(yaml.safe_dump(described, sort_keys=False)) + "</pre>")
        parts.append("<details><summary>config</summary><pre class=\"config\">"
                     + (esc(yaml.safe_dump(config, sort_keys=False)) if config is not None else "(none recorded)")
                     + "</pre></details>")
    return section("provenance", "Config and commands", "\n".join(parts))


SECTIONS: list[tuple[str, str, Callable[[ReportData], bool], Callable[[ReportData], str]]] = [
    # (id, title, shown when, renderer)
    ("summary", "Scores", lambda d: True, _summary_section),
    ("learning-curves", "Learning curves", lambda d: True, _curves_section),
    ("per-class", "Per class", lambda d: True, _per_class_section),
    ("confusion", "Confusion matrix", lambda d: d.task == "multiclass", _confusion_section),
    ("models", "Between models", lambda d: True, _models_section),
    ("leaderboard", "Leaderboard", lambda d: d.comparison is not None, _leaderboard_section),
    ("submissions", "CV against public LB", lambda d: d.submissions is not None, _submissions_section),
    ("provenance", "Config and commands", lambda d: True, _provenance_section),
]


def render_html(data: ReportData) -> str:
    """The whole page: inline CSS, PNGs as data URIs, no external resources, every text escaped."""
    shown = [(sid, title, render) for sid, title, when, render in SECTIONS if when(data)]
    nav = "<nav>" + "".join(f'<a href="#{esc(sid)}">{esc(title)}</a>' for sid, title, _ in shown) + "</nav>"
    warn = "".join(f'<div class="warn">{esc(w)}</div>' for w in data.warnings)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"kaggle-planet report: {data.source}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>{esc(title)}</h1>\n"
        f'<p class="meta">{esc(data.competition)} ({esc(data.task)}, metric {esc(data.metric)}), '
        f"{esc(data.layout)} folder, generated {esc(stamp)}</p>\n{nav}\n{warn}\n"
        + "".join(render(data) for _, _, render in shown)
        + "</body></html>\n"
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
