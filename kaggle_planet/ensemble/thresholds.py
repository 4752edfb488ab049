"""Per-class thresholds maximising sample-averaged F2 on out-of-fold predictions.

Semantics: class ``j`` is predicted for a sample when ``prob > thresholds[j]`` (strictly greater, the
same rule as the Planet submission formatter). Thresholds lie in [0, 1].

Sample-averaged F2 couples the classes (a sample's score depends on all its tags), so we use
coordinate ascent: class by class, find the threshold that maximises F2 with every other class
fixed, and repeat passes until no class improves. The per-class search is exact over every
distinct candidate. With the other classes fixed, sample ``i`` scores

    off: 5 tp_i / (4 T_i + p_i)          on: 5 (tp_i + y_ij) / (4 T_i + p_i + 1)

(``T_i`` its true tags, ``tp_i``/``p_i`` its true-positive / predicted counts over the other classes),
and it switches from *off* to *on* exactly once as the threshold sweeps down past its probability.
Sorting the class's probabilities once (descending) and cumulatively summing those per-sample
changes gives the total F2 at every distinct cut in O(N) after an O(N log N) sort, instead of
re-scoring the whole matrix at each grid point. The chosen threshold is the midpoint between the
last probability included and the next distinct one, so it does not sit on a training value.

What ``thresholds.json`` (and ``decision.json``) was fitted on is recorded beside it in ``fitted_on.json``
(``inputs_sha256``: the run's ``oof.csv`` + ``labels.csv``; ``fitted_on``: a model's predictions or a blend
and its method); thresholds fitted on other predictions (the folder re-blended with another method,
re-predicted) are never used: :func:`read_run_thresholds` refuses them and the submission fits them again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import artifacts, fingerprints
from ..core.errors import KagglePlanetError
from ..core.metrics import BETA2, f2_at, f2_per_sample

log = logging.getLogger(__name__)

THRESHOLDS = "thresholds.json"
FITS = "fitted_on.json"  # what each fit on the run's OOF rows (thresholds.json, decision.json) was fitted on
# an accepted move must beat the current mean F2 by more than float noise, so passes terminate
_MIN_GAIN = 1e-12


@dataclass
class ThresholdFit:
    thresholds: np.ndarray  # (C,) float in [0, 1]
    f2: float  # mean F2 at ``thresholds``
    start_f2: float  # mean F2 at the starting thresholds
    passes: int  # passes over the classes, the last one changing nothing (or max_passes reached)


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


def _best_cut(sweep: _Sweep, y: np.ndarray, true_count: np.ndarray, tp: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(threshold, total F2) of the best cut for one class; ``tp``/``pred`` count the OTHER classes."""
    denom_off = BETA2 * true_count + pred
    off = np.zeros(len(y))
    np.divide((1.0 + BETA2) * tp, denom_off, out=off, where=denom_off > 0)
    on = (1.0 + BETA2) * (tp + y) / (denom_off + 1.0)
    gains = np.cumsum((on - off)[sweep.order])[sweep.group_end]
    totals = off.sum() + np.r_[0.0, gains]
    totals[np.isnan(sweep.cut)] = -np.inf
    k = int(np.argmax(totals))  # first maximum: the highest threshold among equals
    return float(sweep.cut[k]), float(totals[k])


def search_thresholds(y_true: np.ndarray, probs: np.ndarray, start: float | np.ndarray = 0.2, max_passes: int = 50) -> ThresholdFit:
    """Coordinate ascent on per-class thresholds; ``y_true (N, C)`` 0/1, ``probs (N, C)`` in [0, 1].

    Never returns a lower F2 than the start: a class's threshold only moves when the move raises
    the (directly recomputed) mean F2.
    """
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or p.ndim != 2 or len(p) == 0:
        raise KagglePlanetError(f"thresholds: labels {y.shape} and probabilities {p.shape} must be the same non-empty (N, C)")
    n, c = p.shape
    thr = np.broadcast_to(np.asarray(start, dtype=np.float64), (c,)).copy()
    sweeps = [_make_sweep(p[:, j]) for j in range(c)]
    true_count = y.sum(axis=1).astype(np.float64)
    chosen = p > thr
    tp = (chosen & (y == 1)).sum(axis=1).astype(np.float64)
    pred = chosen.sum(axis=1).astype(np.float64)
    current = start_f2 = float(f2_per_sample(y, chosen).mean())
    passes = 0
    for passes in range(1, max_passes + 1):
        improved = False
        for j in range(c):
            col, yj = chosen[:, j], y[:, j]
            tp_other, pred_other = tp - (col & (yj == 1)), pred - col
            t, total = _best_cut(sweeps[j], yj, true_count, tp_other, pred_other)
            if total / n <= current + _MIN_GAIN:
                continue
            new_col = p[:, j] > t
            new_tp, new_pred = tp_other + (new_col & (yj == 1)), pred_other + new_col
            denom = BETA2 * true_count + new_pred
            per_sample = np.zeros(n)
            np.divide((1.0 + BETA2) * new_tp, denom, out=per_sample, where=denom > 0)
            score = float(per_sample.mean())
            if score > current + _MIN_GAIN:
                thr[j], chosen[:, j], tp, pred, current = t, new_col, new_tp, new_pred, score
                improved = True
        if not improved:
            break
    else:
        log.warning("threshold search stopped after max_passes=%d while still improving", max_passes)
    return ThresholdFit(thr, current, start_f2, passes)


def fit_thresholds(y_true: np.ndarray, probs: np.ndarray, start: float = 0.2, max_passes: int = 50) -> tuple[np.ndarray, float]:
    """Per-class thresholds ``(C,)`` in [0, 1] maximising mean F2 of ``probs > thresholds``, and that F2."""
    fit = search_thresholds(y_true, probs, start, max_passes)
    return fit.thresholds, fit.f2


def heldout_f2(y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, start: float = 0.2) -> tuple[float, dict[str, float]]:
    """Honest F2: thresholds fitted on K-1 folds, F2 measured on the held-out fold; (mean, per fold)."""
    y, p, folds = np.asarray(y_true), np.asarray(probs, dtype=np.float64), np.asarray(folds)
    ks = np.unique(folds)
    if len(ks) < 2:
        raise KagglePlanetError(f"thresholds: a held-out estimate needs at least 2 folds; found {len(ks)}")
    per_fold = {}
    for k in ks:
        held = folds == k
        thr, _ = fit_thresholds(y[~held], p[~held], start)
        per_fold[str(int(k))] = f2_at(y[held], p[held], thr)
    return float(np.mean(list(per_fold.values()))), per_fold


def fit_run_thresholds(run_dir: str | Path) -> dict[str, Any]:
    """Fit thresholds on a multilabel run folder's OOF predictions and write ``thresholds.json``."""
    run_dir = Path(run_dir)
    run = artifacts.load_run(run_dir)
    if run.info.task != "multilabel":
        raise KagglePlanetError(
            f"{run_dir / artifacts.RUN_INFO}: thresholds apply to multilabel (F2) runs only; this run's task is {run.info.task!r}"
        )
    y, p = run.y_true, run.oof_probs
    fit = search_thresholds(y, p)
    mean, per_fold = heldout_f2(y, p, run.folds) if len(np.unique(run.folds)) > 1 else (float("nan"), {})
    result = {
        "classes": list(run.info.classes),
        "thresholds": [float(t) for t in fit.thresholds],
        "f2_at_0.5": f2_at(y, p, 0.5),
        "f2_at_0.2": f2_at(y, p, 0.2),
        "f2_tuned": fit.f2,
        "f2_heldout": mean if per_fold else None,
        "heldout_per_fold": per_fold,
        "passes": fit.passes,
    }
    artifacts.write_json(run_dir / THRESHOLDS, result)
    record_fit(run_dir, THRESHOLDS, run.info)  # after the file: a fit stopped between the two is refitted, never trusted
    log.info("%s: F2 %.5f at 0.2 -> %.5f tuned (held-out %.5f)", run_dir, result["f2_at_0.2"], fit.f2, mean)
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
    """Why the run's ``thresholds.json`` was fitted on other predictions than its oof.csv/labels.csv now, or None."""
    run_dir = Path(run_dir)
    return stale_fit(run_dir, THRESHOLDS) if (run_dir / THRESHOLDS).is_file() else None


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
    """A human-readable table of ``fit_run_thresholds``' result."""
    width = max(len(c) for c in result["classes"])
    lines = [f"{'class':<{width}}  threshold"]
    lines += [f"{c:<{width}}  {t:9.4f}" for c, t in zip(result["classes"], result["thresholds"])]
    lines.append(f"OOF F2 at 0.5 everywhere:  {result['f2_at_0.5']:.5f}")
    lines.append(f"OOF F2 at 0.2 everywhere:  {result['f2_at_0.2']:.5f}")
    lines.append(f"OOF F2 tuned thresholds:   {result['f2_tuned']:.5f}  ({result['passes']} passes)")
    if result.get("f2_heldout") is not None:
        folds = "  ".join(f"{k}:{v:.4f}" for k, v in result["heldout_per_fold"].items())
        lines.append(f"held-out F2 (fit on K-1):  {result['f2_heldout']:.5f}  per fold {folds}")
    return "\n".join(lines)
