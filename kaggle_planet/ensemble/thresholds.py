"""Per-class thresholds maximising an F-beta score (F2 over samples for Planet) on out-of-fold predictions.

Semantics: class ``j`` is predicted for a sample when ``prob > thresholds[j]`` (strictly greater, the
same rule as the Planet submission formatter). Thresholds lie in [0, 1]. The score is F-beta for any
``beta > 0`` averaged one of three ways (scikit-learn's ``fbeta_score(..., average=...)``, the tests'
reference): ``samples`` (per row, then the mean: Planet's F2), ``micro`` (from the counts summed over
every row and class) and ``macro`` (per class, then the mean). A run's metric name says which
(``f2_samples``, ``f1_macro``, ``f0.5_micro``: ``f<beta>_<average>``, :mod:`kaggle_planet.core.metrics`' entries;
a binary task scores its one column, micro); the search starts from the entry's threshold, ``1 / (1 + beta^2)``.

Every average couples nothing or couples through a sum, so the search is one coordinate ascent: class
by class, the best cut of that class with every other class fixed, passes repeated until no class
improves. A class's candidate cuts are the midpoints between its distinct probabilities (sorted once,
descending), so the chosen threshold never sits on a training value, and the first maximum is kept
(the highest threshold among equals). An accepted move must raise the directly recomputed score.

- ``samples`` couples the classes through each row: with the other classes fixed, sample ``i`` scores

      off: (1 + b2) tp_i / (b2 T_i + p_i)          on: (1 + b2) (tp_i + y_ij) / (b2 T_i + p_i + 1)

  (``b2 = beta^2``, ``T_i`` its true tags, ``tp_i``/``p_i`` its true-positive / predicted counts over the
  other classes), and it switches from *off* to *on* exactly once as the threshold sweeps down past its
  probability; cumulative sums of those per-sample changes give the total at every distinct cut in O(N)
  after the sort, instead of re-scoring the whole matrix at each cut.
- ``micro`` and ``macro`` depend only on each class's counts: the true positives and predictions of the
  class at every cut are cumulative sums over its sorted rows, and the averaged score is evaluated at
  every cut at once. ``macro`` classes are independent, so one pass already gives the exact optimum;
  ``micro`` couples them through the totals.

What ``thresholds.json`` (and ``decision.json``) was fitted on is recorded beside it in ``fitted_on.json``
(``inputs_sha256``: the run's ``oof.csv`` + ``labels.csv``; ``fitted_on``: a model's predictions or a blend
and its method); thresholds fitted on other predictions (the folder re-blended with another method,
re-predicted) are never used: :func:`read_run_thresholds` refuses them and :func:`run_thresholds` fits
them again.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import artifacts, fingerprints, metrics
from ..core.errors import KagglePlanetError
from ..data.competitions import get_spec

log = logging.getLogger(__name__)

THRESHOLDS = "thresholds.json"
FITS = "fitted_on.json"  # what each fit on the run's OOF rows (thresholds.json, decision.json) was fitted on
# an accepted move must beat the current score by more than float noise, so passes terminate
_MIN_GAIN = 1e-12
AVERAGES = metrics.FBETA_AVERAGES  # samples | micro | macro
F2_METRIC = "f2_samples"  # Planet's metric: thresholds.json keeps its f2_* keys for it


# ------------------------------------------------------------------------------------- the metric


@dataclass(frozen=True)
class FBeta:
    """What a threshold fit maximises: the F-beta of a metric entry on a task kind."""

    metric: str = F2_METRIC
    beta: float = 2.0
    average: str = "samples"  # micro for a binary task: its one column's F-beta, whatever the name says
    threshold: float = metrics.DEFAULT_THRESHOLD  # the entry's own (1 / (1 + beta^2)): the search's start, the default score


def fbeta_for(metric: str, task: str) -> FBeta | None:
    """The F-beta a run scored by ``metric`` on a ``task`` run is decided by thresholds for; None when its
    metric entry decides otherwise there (argmax, probabilities) or does not apply to the task."""
    entry = metrics.get_metric(metric)
    fbeta = metrics.parse_fbeta(metric)
    if entry.decision_for(task) != "thresholds" or fbeta is None or entry.threshold is None:
        return None
    beta, average = fbeta
    return FBeta(metric, beta, "micro" if task == "binary" else average, entry.threshold)


def run_metric(info: artifacts.RunInfo) -> str:
    """The metric a run is scored by: its competition's, completed by the run's competition options."""
    return get_spec(info.competition, info.options).metric


def _beta2(beta: float, average: str) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise KagglePlanetError(f"thresholds: beta must be a positive number; got {beta!r}")
    if average not in AVERAGES:
        raise KagglePlanetError(f"thresholds: unknown average {average!r}; valid: {', '.join(AVERAGES)}")
    return float(beta) * float(beta)


def _per_sample(tp: np.ndarray, true_count: np.ndarray, pred: np.ndarray, b2: float) -> np.ndarray:
    """F-beta of each row from its counts, ``(1 + b2) tp / (b2 |true| + |pred|)``; 0 for an empty row (sklearn)."""
    denom = b2 * true_count + pred
    out = np.zeros(len(tp))
    np.divide((1.0 + b2) * tp, denom, out=out, where=denom > 0)
    return out


def _from_class_counts(tp: np.ndarray, pred: np.ndarray, pos: np.ndarray, b2: float, average: str) -> np.ndarray:
    """Micro or macro F-beta from per-class counts ``(..., C)`` (true positives, predictions, positives ``(C,)``);
    a class (macro) or total (micro) with neither labels nor predictions scores 0, as scikit-learn does."""
    if average == "micro":
        tp, pred, pos = tp.sum(axis=-1), pred.sum(axis=-1), pos.sum()
    denom = b2 * pos + pred
    score = np.divide((1.0 + b2) * tp, denom, out=np.zeros(np.shape(denom)), where=denom > 0)
    return score.mean(axis=-1) if average == "macro" else score


def fbeta_at(y_true: np.ndarray, probs: np.ndarray, thresholds: float | np.ndarray, beta: float = 2.0,
             average: str = "samples") -> float:
    """F-beta of ``probs > thresholds`` (a scalar or one threshold per class, (C,)) against ``y_true (N, C)``:
    :func:`kaggle_planet.core.metrics.fbeta_of` (equal to scikit-learn's ``fbeta_score``)."""
    b2 = _beta2(beta, average)
    y, p = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or p.ndim != 2 or len(p) == 0:
        raise KagglePlanetError(f"F-beta: labels {y.shape} and probabilities {p.shape} must be the same non-empty (N, C)")
    return metrics.fbeta_of(y, p > np.asarray(thresholds, dtype=np.float64), b2, average)


# ------------------------------------------------------------------------------------- the search


@dataclass
class ThresholdFit:
    thresholds: np.ndarray  # (C,) float in [0, 1]
    score: float  # the F-beta at ``thresholds``
    start_score: float  # the F-beta at the starting thresholds
    passes: int  # passes over the classes, the last one changing nothing (or max_passes reached)
    beta: float = 2.0
    average: str = "samples"

    @property
    def f2(self) -> float:
        """``score``, under the name the F2 callers use (it is F2 only for ``beta=2, average="samples"``)."""
        return self.score

    @property
    def start_f2(self) -> float:
        return self.start_score


@dataclass
class _Sweep:
    """Candidate cuts of one class, precomputed once: probabilities sorted descending."""

    order: np.ndarray  # (N,) sample indices by descending probability
    group_end: np.ndarray  # (G,) index into ``order`` of the last sample of each distinct value
    cut: np.ndarray  # (G + 1,) threshold selecting the first k groups (k = 0..G); NaN if unreachable


def _make_sweep(p: np.ndarray) -> _Sweep:
    order = np.argsort(-p, kind="stable")
    values = p[order]
    last = np.flatnonzero(np.r_[values[1:] != values[:-1], True])  # end of each run of equal values
    distinct = values[last]  # descending
    cut = np.empty(len(distinct) + 1)
    cut[0] = (distinct[0] + 1.0) / 2.0  # nothing predicted (1.0 when the top value is 1.0)
    upper, lower = distinct[:-1], distinct[1:]
    mid = (upper + lower) / 2.0
    # adjacent floats can round the midpoint onto ``upper``; ``lower`` itself then separates exactly
    cut[1:-1] = np.where(mid < upper, mid, lower)
    # everything predicted needs t < min prob: impossible within [0, 1] when the minimum is 0
    cut[-1] = distinct[-1] / 2.0 if distinct[-1] > 0 else np.nan
    return _Sweep(order, last, cut)


def _best_cut(sweep: _Sweep, y: np.ndarray, true_count: np.ndarray, tp: np.ndarray, pred: np.ndarray,
              b2: float) -> tuple[float, float]:
    """(threshold, total F-beta over samples) of the best cut for one class; ``tp``/``pred`` count the OTHER classes."""
    denom_off = b2 * true_count + pred
    off = np.zeros(len(y))
    np.divide((1.0 + b2) * tp, denom_off, out=off, where=denom_off > 0)
    on = (1.0 + b2) * (tp + y) / (denom_off + 1.0)
    gains = np.cumsum((on - off)[sweep.order])[sweep.group_end]
    totals = off.sum() + np.r_[0.0, gains]
    totals[np.isnan(sweep.cut)] = -np.inf
    k = int(np.argmax(totals))  # first maximum: the highest threshold among equals
    return float(sweep.cut[k]), float(totals[k])


def _search_samples(y: np.ndarray, p: np.ndarray, thr: np.ndarray, sweeps: list[_Sweep], b2: float,
                    max_passes: int) -> tuple[float, float, int]:
    """Coordinate ascent of sample-averaged F-beta, ``thr`` updated in place; (score, start score, passes)."""
    n, c = p.shape
    true_count = y.sum(axis=1).astype(np.float64)
    chosen = p > thr
    tp = (chosen & (y == 1)).sum(axis=1).astype(np.float64)
    pred = chosen.sum(axis=1).astype(np.float64)
    current = start = float(_per_sample(tp, true_count, pred, b2).mean())
    passes = 0
    for passes in range(1, max_passes + 1):
        improved = False
        for j in range(c):
            col, yj = chosen[:, j], y[:, j]
            tp_other, pred_other = tp - (col & (yj == 1)), pred - col
            t, total = _best_cut(sweeps[j], yj, true_count, tp_other, pred_other, b2)
            if total / n <= current + _MIN_GAIN:
                continue
            new_col = p[:, j] > t
            new_tp, new_pred = tp_other + (new_col & (yj == 1)), pred_other + new_col
            score = float(_per_sample(new_tp, true_count, new_pred, b2).mean())
            if score > current + _MIN_GAIN:
                thr[j], chosen[:, j], tp, pred, current = t, new_col, new_tp, new_pred, score
                improved = True
        if not improved:
            return current, start, passes
    log.warning("threshold search stopped after max_passes=%d while still improving", max_passes)
    return current, start, passes


def _search_class_counts(y: np.ndarray, p: np.ndarray, thr: np.ndarray, sweeps: list[_Sweep], b2: float, average: str,
                         max_passes: int) -> tuple[float, float, int]:
    """Coordinate ascent of micro / macro F-beta, ``thr`` updated in place; (score, start score, passes)."""
    c = p.shape[1]
    pos = y.sum(axis=0).astype(np.float64)
    chosen = p > thr
    tp = (chosen & (y == 1)).sum(axis=0).astype(np.float64)
    pred = chosen.sum(axis=0).astype(np.float64)
    # a class's own counts at each of its cuts (k = 0..G groups included) do not depend on the others
    own = [(np.r_[0.0, np.cumsum(y[s.order, j])[s.group_end]], np.r_[0.0, s.group_end + 1.0]) for j, s in enumerate(sweeps)]
    current = start = float(_from_class_counts(tp, pred, pos, b2, average))
    passes = 0
    for passes in range(1, max_passes + 1):
        improved = False
        for j in range(c):
            tp_cuts, pred_cuts = np.tile(tp, (len(own[j][0]), 1)), np.tile(pred, (len(own[j][0]), 1))
            tp_cuts[:, j], pred_cuts[:, j] = own[j]
            totals = _from_class_counts(tp_cuts, pred_cuts, pos, b2, average)
            totals[np.isnan(sweeps[j].cut)] = -np.inf
            k = int(np.argmax(totals))  # first maximum: the highest threshold among equals
            if totals[k] <= current + _MIN_GAIN:
                continue
            t = float(sweeps[j].cut[k])
            new_col = p[:, j] > t
            new_tp, new_pred = tp.copy(), pred.copy()
            new_tp[j], new_pred[j] = np.count_nonzero(new_col & (y[:, j] == 1)), np.count_nonzero(new_col)
            score = float(_from_class_counts(new_tp, new_pred, pos, b2, average))
            if score > current + _MIN_GAIN:
                thr[j], tp, pred, current = t, new_tp, new_pred, score
                improved = True
        if not improved:
            return current, start, passes
    log.warning("threshold search stopped after max_passes=%d while still improving", max_passes)
    return current, start, passes


def search_thresholds(y_true: np.ndarray, probs: np.ndarray, start: float | np.ndarray = 0.2, max_passes: int = 50, *,
                      beta: float = 2.0, average: str = "samples") -> ThresholdFit:
    """Coordinate ascent on per-class thresholds maximising F-beta (``beta > 0``) averaged over ``samples``,
    ``micro`` or ``macro``; ``y_true (N, C)`` 0/1, ``probs (N, C)`` in [0, 1], ``start`` a scalar or (C,).

    Never returns a lower score than the start: a class's threshold only moves when the move raises
    the (directly recomputed) score.
    """
    b2 = _beta2(beta, average)
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or p.ndim != 2 or len(p) == 0:
        raise KagglePlanetError(f"thresholds: labels {y.shape} and probabilities {p.shape} must be the same non-empty (N, C)")
    thr = np.broadcast_to(np.asarray(start, dtype=np.float64), (p.shape[1],)).copy()
    sweeps = [_make_sweep(p[:, j]) for j in range(p.shape[1])]
    if average == "samples":
        score, start_score, passes = _search_samples(y, p, thr, sweeps, b2, max_passes)
    else:
        score, start_score, passes = _search_class_counts(y, p, thr, sweeps, b2, average, max_passes)
    return ThresholdFit(thr, score, start_score, passes, float(beta), average)


def fit_thresholds(y_true: np.ndarray, probs: np.ndarray, start: float = 0.2, max_passes: int = 50, *,
                   beta: float = 2.0, average: str = "samples") -> tuple[np.ndarray, float]:
    """Per-class thresholds ``(C,)`` in [0, 1] maximising the F-beta of ``probs > thresholds``, and that score."""
    fit = search_thresholds(y_true, probs, start, max_passes, beta=beta, average=average)
    return fit.thresholds, fit.score


def heldout_score(y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, start: float = 0.2, *, beta: float = 2.0,
                  average: str = "samples") -> tuple[float, dict[str, float]]:
    """Honest F-beta: thresholds fitted on K-1 folds, the score measured on the held-out fold; (mean, per fold)."""
    y, p, folds = np.asarray(y_true), np.asarray(probs, dtype=np.float64), np.asarray(folds)
    ks = np.unique(folds)
    if len(ks) < 2:
        raise KagglePlanetError(f"thresholds: a held-out estimate needs at least 2 folds; found {len(ks)}")
    per_fold = {}
    for k in ks:
        held = folds == k
        thr, _ = fit_thresholds(y[~held], p[~held], start, beta=beta, average=average)
        per_fold[str(int(k))] = fbeta_at(y[held], p[held], thr, beta, average)
    return float(np.mean(list(per_fold.values()))), per_fold


def heldout_f2(y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, start: float = 0.2) -> tuple[float, dict[str, float]]:
    """Honest sample-averaged F2 (:func:`heldout_score` with ``beta=2, average="samples"``); (mean, per fold)."""
    return heldout_score(y_true, probs, folds, start)


# -------------------------------------------------------------------------------------- run folders


def _run_fbeta(run_dir: Path, info: artifacts.RunInfo) -> FBeta:
    """The F-beta a run's thresholds are fitted for; refused in one line when its metric is decided otherwise."""
    metric = run_metric(info)
    fbeta = fbeta_for(metric, info.task)
    if fbeta is None:
        raise KagglePlanetError(
            f"{run_dir / artifacts.RUN_INFO}: thresholds apply to multilabel (or binary) runs scored by F-beta "
            f"({metrics.FBETA_PATTERN}: f2_samples, f1_macro, ...); this run's task is {info.task!r}, its metric {metric!r}"
        )
    return fbeta


def fit_run_thresholds(run_dir: str | Path) -> dict[str, Any]:
    """Fit thresholds for the run's metric (an F-beta: :func:`fbeta_for`) on its OOF predictions and write
    ``thresholds.json``.

    Keys: ``classes``, ``thresholds``, ``heldout_per_fold``, ``passes``, ``metric``, ``beta``, ``average``,
    ``default_threshold`` (the metric's own, where the search starts), ``score_at_0.5``, ``score_default``
    (every class at the default threshold: the metric's score of the raw probabilities), ``score_tuned``,
    ``score_heldout`` (each fold decided by thresholds fitted on the other folds; None with one fold); an
    ``f2_samples`` run also keeps ``f2_at_0.5``, ``f2_at_0.2``, ``f2_tuned`` and ``f2_heldout`` (the same values),
    the names other code reads.
    """
    run_dir = Path(run_dir)
    info = artifacts.read_run_info(run_dir)
    target = _run_fbeta(run_dir, info)
    beta, average, start = target.beta, target.average, target.threshold
    run = artifacts.load_run(run_dir)
    y, p = run.y_true, run.oof_probs
    fit = search_thresholds(y, p, start, beta=beta, average=average)
    several = len(np.unique(run.folds)) > 1
    mean, per_fold = heldout_score(y, p, run.folds, start, beta=beta, average=average) if several else (float("nan"), {})
    at_half, at_default = fbeta_at(y, p, 0.5, beta, average), fbeta_at(y, p, start, beta, average)
    result: dict[str, Any] = {"classes": list(run.info.classes), "thresholds": [float(t) for t in fit.thresholds]}
    if target.metric == F2_METRIC:
        result.update({"f2_at_0.5": at_half, "f2_at_0.2": at_default, "f2_tuned": fit.score, "f2_heldout": mean if per_fold else None})
    result.update({
        "heldout_per_fold": per_fold,
        "passes": fit.passes,
        "metric": target.metric,
        "beta": beta,
        "average": average,
        "default_threshold": start,
        "score_at_0.5": at_half,
        "score_default": at_default,
        "score_tuned": fit.score,
        "score_heldout": mean if per_fold else None,
    })
    artifacts.write_json(run_dir / THRESHOLDS, result)
    record_fit(run_dir, THRESHOLDS, run.info)  # after the file: a fit stopped between the two is refitted, never trusted
    log.info("%s: %s %.5f at %g -> %.5f tuned (held-out %.5f)", run_dir, target.metric, at_default, start, fit.score, mean)
    return result


def fitted_on(info: artifacts.RunInfo) -> str:
    """What a fit on a run's OOF rows was fitted on, in words: ``blend (ridge)``, ``model tiny predictions (tta d4)``."""
    if info.kind == "blend":
        return f"blend ({info.extra.get('method', '?')})"
    name = info.extra.get("model")
    return f"model {name} predictions" + (f" (tta {info.extra['tta']})" if info.extra.get("tta") else "") if name else "model predictions"


def fit_entry(run_dir: Path, name: str) -> dict[str, Any] | None:
    """What the fit saved as ``run_dir/name`` was fitted on: its entry in ``fitted_on.json``, else (decision.json
    written before that file) its own ``inputs_sha256``; None when unknown."""
    path = Path(run_dir) / FITS
    record = artifacts.read_json(path) if path.is_file() else {}
    entry = record.get(name) if isinstance(record, dict) else None
    if entry is None and (Path(run_dir) / name).is_file():
        saved = artifacts.read_json(Path(run_dir) / name)
        if isinstance(saved, dict) and "inputs_sha256" in saved:
            entry = {"inputs_sha256": saved["inputs_sha256"]}
    return entry if isinstance(entry, dict) else None


def record_fit(run_dir: Path, name: str, info: artifacts.RunInfo) -> None:
    """Record in ``fitted_on.json`` that ``name`` was just fitted on the run's current OOF rows and labels."""
    path = Path(run_dir) / FITS
    record = artifacts.read_json(path) if path.is_file() else {}
    record = record if isinstance(record, dict) else {}
    record[name] = {"inputs_sha256": fingerprints.run_inputs_digest(run_dir), "fitted_on": fitted_on(info)}
    artifacts.write_json(path, record)


def stale_fit(run_dir: Path, name: str) -> str | None:
    """Why the fit saved as ``run_dir/name`` (thresholds.json, decision.json) does not belong to the run's
    current OOF rows and labels, or None when it does (or when what it was fitted on is unknown: saved
    before fits were recorded)."""
    run_dir = Path(run_dir)
    entry = fit_entry(run_dir, name)
    if entry is None or entry.get("inputs_sha256") == fingerprints.run_inputs_digest(run_dir):
        return None
    now = fitted_on(artifacts.read_run_info(run_dir))
    was = entry.get("fitted_on") or "other predictions"
    return (f"{run_dir / name}: fitted on {was}, but {run_dir}'s oof.csv/labels.csv changed since"
            + (f" (now {now})" if now != was else " (made again)"))


def thresholds_stale(run_dir: str | Path) -> str | None:
    """Why the run's ``thresholds.json`` was fitted on other predictions than its oof.csv/labels.csv now, or for
    another metric than the run's (a file without ``metric`` was fitted for F2, the only one before), or None."""
    run_dir = Path(run_dir)
    path = run_dir / THRESHOLDS
    if not path.is_file():
        return None
    stale = stale_fit(run_dir, THRESHOLDS)
    if stale:
        return stale
    saved = artifacts.read_json(path)
    fitted_for = saved.get("metric", F2_METRIC) if isinstance(saved, dict) else F2_METRIC
    metric = run_metric(artifacts.read_run_info(run_dir))
    return None if fitted_for == metric else f"{path}: fitted for the metric {fitted_for}, but the run is scored by {metric}"


def run_thresholds(run_dir: str | Path) -> np.ndarray:
    """The thresholds the run's submission uses, ``(C,)`` in [0, 1]: its ``thresholds.json``, fitted first when
    absent or fitted on other predictions or for another metric (:func:`thresholds_stale`), saying so."""
    run_dir = Path(run_dir)
    stale = thresholds_stale(run_dir)
    if stale:
        log.info("%s; fitting thresholds on the current OOF predictions first", stale)
        fit_run_thresholds(run_dir)
    thr = read_run_thresholds(run_dir)
    if thr is None:
        log.info("%s has no %s: fitting thresholds on its OOF predictions first", run_dir, THRESHOLDS)
        fit_run_thresholds(run_dir)
        thr = read_run_thresholds(run_dir)
    return thr


def read_run_thresholds(run_dir: str | Path) -> np.ndarray | None:
    """The run's thresholds in its class order, or None when ``thresholds.json`` is absent; refused when
    they were fitted on other predictions than the run's oof.csv/labels.csv (:func:`thresholds_stale`)."""
    run_dir = Path(run_dir)
    path = run_dir / THRESHOLDS
    if not path.is_file():
        return None
    data = artifacts.read_json(path)
    stale = stale_fit(run_dir, THRESHOLDS)
    if stale:
        raise KagglePlanetError(f"{stale}; fit them again: kaggle-planet thresholds {run_dir}")
    classes = artifacts.read_run_info(run_dir).classes
    if not isinstance(data, dict) or data.get("classes") != list(classes) or len(data.get("thresholds", [])) != len(classes):
        raise KagglePlanetError(f"{path}: classes/thresholds do not match run.json's classes {list(classes)}; re-run `kaggle-planet thresholds {run_dir}`")
    thr = np.asarray(data["thresholds"], dtype=np.float64)
    if not np.all((thr >= 0) & (thr <= 1)):
        raise KagglePlanetError(f"{path}: thresholds must lie in [0, 1]")
    return thr


def format_thresholds_summary(result: dict[str, Any]) -> str:
    """A human-readable table of ``fit_run_thresholds``' result (F2 runs: the F2 wording of before)."""
    metric = result.get("metric", F2_METRIC)
    name = "F2" if metric == F2_METRIC else metric
    at_half, default = result.get("score_at_0.5", result.get("f2_at_0.5")), result.get("default_threshold", metrics.DEFAULT_THRESHOLD)
    tuned, heldout = result.get("score_tuned", result.get("f2_tuned")), result.get("score_heldout", result.get("f2_heldout"))
    width = max(len(c) for c in result["classes"])
    lines = [f"{'class':<{width}}  threshold"]
    lines += [f"{c:<{width}}  {t:9.4f}" for c, t in zip(result["classes"], result["thresholds"])]
    rows = [(f"OOF {name} at 0.5 everywhere:", at_half)]
    if default != 0.5:
        rows.append((f"OOF {name} at {default:g} everywhere:", result.get("score_default", result.get("f2_at_0.2"))))
    rows.append((f"OOF {name} tuned thresholds:", tuned))
    label_width = max(27, *(len(label) + 2 for label, _ in rows))
    lines += [f"{label:<{label_width}}{value:.5f}" for label, value in rows]
    lines[-1] += f"  ({result['passes']} passes)"
    if heldout is not None:
        folds = "  ".join(f"{k}:{v:.4f}" for k, v in result["heldout_per_fold"].items())
        lines.append(f"{f'held-out {name} (fit on K-1):':<{label_width}}{heldout:.5f}  per fold {folds}")
    return "\n".join(lines)
