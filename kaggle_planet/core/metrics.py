"""Competition metrics on probability matrices; all are higher-is-better.

``METRICS`` maps a competition's metric name to ``callable(y_true, probs) -> float`` with
``y_true: (N, C) int 0/1`` and ``probs: (N, C) float in [0, 1]``:

- ``f2_samples``: sample-averaged F2 with every class thresholded at 0.2 (``pred = probs > 0.2``,
  the same strict ``>`` as the Planet submission formatter); tuned thresholds live in thresholds.py;
- ``roc_auc``: ROC AUC of column 0 (binary tasks have a single probability column);
- ``accuracy``: argmax accuracy (multiclass, one-hot targets).

The fast F2 is checked against scikit-learn's ``fbeta_score(beta=2, average="samples")`` in the tests.
This module uses numpy and scikit-learn only (never torch) so it is cheap to import.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import KagglePlanetError

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.2
BETA2 = 4.0  # beta = 2


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """log(p / (1 - p)) with ``p`` clipped to [eps, 1 - eps], so 0 and 1 stay finite."""
    q = np.clip(p, eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def f2_per_sample(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F2 of each row: ``5 TP / (4 |true| + |pred|)``; (N,) float in [0, 1].

    A row with neither true nor predicted labels scores 0.0, as scikit-learn 1.9's default
    ``zero_division="warn"`` does (it warns and sets 0.0); we skip the warning.
    """
    y_true = np.asarray(y_true) != 0
    y_pred = np.asarray(y_pred) != 0
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise KagglePlanetError(f"F2: y_true {y_true.shape} and y_pred {y_pred.shape} must be the same (N, C) shape")
    tp = np.count_nonzero(y_true & y_pred, axis=1).astype(np.float64)
    denom = BETA2 * np.count_nonzero(y_true, axis=1) + np.count_nonzero(y_pred, axis=1)
    out = np.zeros(len(tp), dtype=np.float64)
    np.divide((1.0 + BETA2) * tp, denom, out=out, where=denom > 0)
    return out


def f2_samples(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sample-averaged F2 of 0/1 matrices ``(N, C)``; equals sklearn ``fbeta_score(beta=2, average="samples")``."""
    scores = f2_per_sample(y_true, y_pred)
    if scores.size == 0:
        raise KagglePlanetError("F2: no samples to score")
    return float(scores.mean())


def f2_at(y_true: np.ndarray, probs: np.ndarray, thresholds: float | np.ndarray = DEFAULT_THRESHOLD) -> float:
    """Sample-averaged F2 of ``probs > thresholds`` (a scalar or one threshold per class, shape (C,))."""
    probs = _as_probs(probs)
    return f2_samples(y_true, probs > np.asarray(thresholds, dtype=np.float64))


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC of column 0. With a single class present AUC is undefined: 0.5 (no ranking information)."""
    y, p = _check(y_true, probs)
    y0 = y[:, 0]
    if y0.min() == y0.max():
        log.warning("ROC AUC undefined with only one class present in %d labels; reporting 0.5", len(y0))
        return 0.5
    from sklearn.metrics import roc_auc_score  # on use: importing the metrics table stays light

    return float(roc_auc_score(y0, p[:, 0]))


def accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Fraction of rows whose argmax probability is the argmax (one-hot) target."""
    y, p = _check(y_true, probs)
    return float(np.mean(y.argmax(axis=1) == p.argmax(axis=1)))


def f2_default(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The primary Planet metric: F2 with every class at 0.2."""
    _check(y_true, probs)
    return f2_at(y_true, probs, DEFAULT_THRESHOLD)


def binary_log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    y, p = _check(y_true, probs)
    from sklearn.metrics import log_loss

    return float(log_loss(y[:, 0], np.clip(p[:, 0], 1e-15, 1 - 1e-15), labels=[0, 1]))


def multiclass_log_loss(y_true: np.ndarray, probs: np.ndarray) -> float:
    y, p = _check(y_true, probs)
    p = np.clip(p, 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y.argmax(axis=1)])))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "f2_samples": f2_default,
    "roc_auc": roc_auc,
    "accuracy": accuracy,
}

# extra numbers reported next to each primary metric (scores.json "extra")
EXTRAS: dict[str, dict[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "f2_samples": {
        "f2@0.5": lambda y, p: f2_at(y, p, 0.5),
        "f2@0.2": lambda y, p: f2_at(y, p, 0.2),
    },
    "roc_auc": {"log_loss": binary_log_loss},
    "accuracy": {"log_loss": multiclass_log_loss},
}


def get_metric(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    try:
        return METRICS[metric]
    except KeyError:
        raise KagglePlanetError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}") from None


def score(metric: str, y_true: np.ndarray, probs: np.ndarray) -> float:
    """The primary metric ``metric`` of ``probs: (N, C)`` against ``y_true: (N, C)``; higher is better."""
    return get_metric(metric)(y_true, probs)


def metric_report(metric: str, y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Extra numbers reported alongside ``metric`` (f2: ``f2@0.5``, ``f2@0.2``; others: ``log_loss``)."""
    get_metric(metric)
    return {name: fn(y_true, probs) for name, fn in EXTRAS[metric].items()}


def score_by_fold(metric: str, y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray) -> dict[str, float]:
    """``{str(fold): score}`` of each fold's rows, folds in ascending order."""
    y, p = _check(y_true, probs)
    folds = np.asarray(folds)
    if folds.shape != (len(y),):
        raise KagglePlanetError(f"folds has shape {folds.shape}; expected ({len(y)},), one fold per row")
    fn = get_metric(metric)
    return {str(int(k)): fn(y[folds == k], p[folds == k]) for k in np.unique(folds)}


def summarize_scores(metric: str, y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    """The scores.json core for OOF predictions: metric, oof, per_fold, fold_mean, fold_std, extra."""
    per_fold = score_by_fold(metric, y_true, probs, folds)
    values = np.array(list(per_fold.values()), dtype=np.float64)
    return {
        "metric": metric,
        "oof": score(metric, y_true, probs),
        "per_fold": per_fold,
        "fold_mean": float(values.mean()),
        "fold_std": float(values.std()),
        "extra": metric_report(metric, y_true, probs),
    }


def _as_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise KagglePlanetError(f"probabilities have shape {p.shape}; expected (N, C)")
    return p


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = _as_probs(probs)
    if y.shape != p.shape:
        raise KagglePlanetError(f"labels {y.shape} and probabilities {p.shape} must have the same (N, C) shape")
    if len(y) == 0:
        raise KagglePlanetError("no rows to score")
    return y.astype(np.int64), p
