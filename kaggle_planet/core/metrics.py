"""Competition metrics on probability matrices: one table of entries, each owning everything about its metric.

A :class:`Metric` entry holds the scorer ``fn(y_true, probs, task=None) -> float`` with
``y_true: (N, C) int 0/1`` and ``probs: (N, C) float in [0, 1]``, its direction (``higher_is_better``), the
task kinds it applies to and what the decision layer needs for each (``"thresholds"``: probabilities cut at
per-class thresholds; ``"argmax"``: the top class; ``"probabilities"``: the probabilities are submitted), the
extra numbers shown beside it, its usual blend method and a one-line help text (docs tables and ``--help``
are generated from the table).

- ``f<beta>_<average>`` (``f2_samples``, ``f1_macro``, ``f0.5_micro``, ...): F-beta for any positive beta,
  averaged over samples, globally (micro) or over classes (macro); parsed from the name, so every beta
  resolves. Multilabel: ``pred = probs > 1 / (1 + beta^2)`` (0.2 for F2: the Planet metric, the same strict
  ``>`` as the Planet submission formatter; tuned thresholds live in ensemble/thresholds.py). Multiclass: the
  one-hot argmax (macro averages the classes present in the labels or predictions, as scikit-learn does for
  label vectors). Binary (C == 1): the F-beta of the positive class at the threshold, whatever the average;
- ``roc_auc``: ROC AUC of column 0 (binary tasks have a single probability column);
- ``mean_column_auc``: the mean ROC AUC of the columns (multilabel, or multiclass one-hot as Plant
  Pathology 2020 scores it); a column with a single label value in the rows has no AUC and is left out;
- ``accuracy``: argmax accuracy (multiclass, one-hot targets); binary: ``prob > 0.5``;
- ``log_loss``: Kaggle's log loss (lower is better): each probability clipped to [1e-15, 1 - 1e-15], rows
  renormalised (multiclass), the mean negative log probability of the true class; binary: one column.

``task`` (multilabel | binary | multiclass) is passed by callers that know it; None infers it from the arrays:
one column is binary, one-hot labels with rows of probabilities summing to one (softmax outputs) are
multiclass, anything else is multilabel.

Compare scores only through the direction helpers (:func:`is_better`, :func:`best_index`, :func:`gain`,
:func:`worst_value`): a loss metric is minimised everywhere. The fast F-beta is checked against scikit-learn's
``fbeta_score`` in the tests. This module uses numpy and scikit-learn only (never torch) so it is cheap to import.
"""
from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import KagglePlanetError

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.2
BETA2 = 4.0  # beta = 2
TASKS = ("multilabel", "binary", "multiclass")
DECISIONS = ("thresholds", "argmax", "probabilities")
FBETA_AVERAGES = ("samples", "micro", "macro")
FBETA_PATTERN = "f<beta>_<average>"  # beta a positive number, average samples | micro | macro
LOG_LOSS_EPS = 1e-15  # Kaggle's clipping of probabilities before the log
ROW_SUM_TOLERANCE = 1e-4  # softmax rows read back from CSV (8 significant digits) still sum to one within this

_FBETA_RE = re.compile(r"^f(?P<beta>\d+(?:\.\d+)?)_(?P<average>[a-z]+)$")

Scorer = Callable[..., float]  # (y_true (N, C), probs (N, C), task=None) -> float


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """log(p / (1 - p)) with ``p`` clipped to [eps, 1 - eps], so 0 and 1 stay finite."""
    q = np.clip(p, eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


# ------------------------------------------------------------------------------------------ F-beta


def fbeta_per_sample(y_true: np.ndarray, y_pred: np.ndarray, beta2: float) -> np.ndarray:
    """F-beta of each row of 0/1 matrices ``(N, C)``: ``(1 + b2) TP / (b2 |true| + |pred|)``; (N,) in [0, 1].

    A row with neither true nor predicted labels scores 0.0, as scikit-learn 1.9's default
    ``zero_division="warn"`` does (it warns and sets 0.0); we skip the warning.
    """
    y_true = np.asarray(y_true) != 0
    y_pred = np.asarray(y_pred) != 0
    if y_true.shape != y_pred.shape or y_true.ndim != 2:
        raise KagglePlanetError(f"F-beta: y_true {y_true.shape} and y_pred {y_pred.shape} must be the same (N, C) shape")
    tp = np.count_nonzero(y_true & y_pred, axis=1).astype(np.float64)
    denom = beta2 * np.count_nonzero(y_true, axis=1) + np.count_nonzero(y_pred, axis=1)
    out = np.zeros(len(tp), dtype=np.float64)
    np.divide((1.0 + beta2) * tp, denom, out=out, where=denom > 0)
    return out


def f2_per_sample(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """F2 of each row: ``5 TP / (4 |true| + |pred|)``; (N,) float in [0, 1] (0.0 for an empty row)."""
    return fbeta_per_sample(y_true, y_pred, BETA2)


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


def fbeta_of(y_true: np.ndarray, y_pred: np.ndarray, beta2: float, average: str, present_only: bool = False) -> float:
    """F-beta of 0/1 matrices ``(N, C)`` averaged over samples, globally (micro) or over columns (macro);
    ``present_only`` averages (macro) only the columns with a true or predicted label, as scikit-learn does
    for multiclass label vectors. Zero divisions score 0.0, as scikit-learn's default does."""
    y, p = np.asarray(y_true) != 0, np.asarray(y_pred) != 0
    if average == "samples":
        scores = fbeta_per_sample(y, p, beta2)
        if scores.size == 0:
            raise KagglePlanetError("F-beta: no samples to score")
        return float(scores.mean())
    axis = None if average == "micro" else 0
    tp = np.count_nonzero(y & p, axis=axis)
    true, pred = np.count_nonzero(y, axis=axis), np.count_nonzero(p, axis=axis)
    denom = np.atleast_1d(beta2 * true + pred).astype(np.float64)
    f = np.zeros(denom.shape)
    np.divide((1.0 + beta2) * np.atleast_1d(tp), denom, out=f, where=denom > 0)
    if present_only and average == "macro":
        f = f[np.atleast_1d(true + pred) > 0]
    return float(f.mean()) if f.size else 0.0


def fbeta_scorer(beta: float, average: str, threshold: float) -> Scorer:
    """The F-beta scorer of :data:`FBETA_PATTERN` (see the module doc for the prediction of each task kind)."""
    beta2 = float(beta) ** 2

    def fn(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
        y, p, task = _inputs(y_true, probs, task)
        if task == "multiclass":
            pred = np.eye(p.shape[1], dtype=bool)[p.argmax(axis=1)]
            return fbeta_of(y, pred, beta2, average, present_only=True)
        # binary: one column, the positive class's F-beta (micro == macro on one column)
        return fbeta_of(y, p > threshold, beta2, "micro" if task == "binary" else average)

    return fn


def parse_fbeta(name: str) -> tuple[float, str] | None:
    """``(beta, average)`` of an ``f<beta>_<average>`` name; None when the name does not have that form."""
    match = _FBETA_RE.match(name)
    if match is None:
        return None
    beta, average = float(match["beta"]), match["average"]
    if average not in FBETA_AVERAGES:
        raise KagglePlanetError(f"metric {name!r}: average {average!r} is not one of {' | '.join(FBETA_AVERAGES)} ({FBETA_PATTERN})")
    if not beta > 0:
        raise KagglePlanetError(f"metric {name!r}: beta must be a positive number ({FBETA_PATTERN}, e.g. f2_samples, f0.5_micro)")
    return beta, average


# -------------------------------------------------------------------------------- other scorers


def roc_auc(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """ROC AUC of column 0. With a single class present AUC is undefined: 0.5 (no ranking information)."""
    y, p = _check(y_true, probs)
    y0 = y[:, 0]
    if y0.min() == y0.max():
        log.warning("ROC AUC undefined with only one class present in %d labels; reporting 0.5", len(y0))
        return 0.5
    from sklearn.metrics import roc_auc_score  # on use: importing the metrics table stays light

    return float(roc_auc_score(y0, p[:, 0]))


def mean_column_auc(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """Mean ROC AUC of the columns; columns with one label value in these rows have none and are left out
    (0.5 when no column has both)."""
    y, p = _check(y_true, probs)
    defined = [j for j in range(y.shape[1]) if y[:, j].min() != y[:, j].max()]
    if len(defined) < y.shape[1]:
        log.warning("mean column AUC: %d of %d column(s) have a single label value in %d rows and are left out",
                    y.shape[1] - len(defined), y.shape[1], len(y))
    if not defined:
        return 0.5
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in defined]))


def accuracy(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """Fraction of rows whose argmax probability is the argmax (one-hot) target; binary (one column):
    ``prob > 0.5`` against the label."""
    y, p, task = _inputs(y_true, probs, task)
    if p.shape[1] == 1:
        return float(np.mean((p[:, 0] > 0.5) == (y[:, 0] != 0)))
    return float(np.mean(y.argmax(axis=1) == p.argmax(axis=1)))


def log_loss(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """Kaggle's log loss: binary (one column) or multiclass (one-hot labels); see the module doc."""
    y, p, task = _inputs(y_true, probs, task)
    p = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    if p.shape[1] == 1:
        y0, p0 = y[:, 0] != 0, p[:, 0]
        return float(-np.mean(np.where(y0, np.log(p0), np.log1p(-p0))))
    counts = y.sum(axis=1)
    if task == "multilabel" or (counts != 1).any():
        raise KagglePlanetError("log_loss: expected one probability column (binary) or one-hot labels, one class per row "
                                f"(multiclass); got {p.shape[1]} columns with rows of {int(counts.min())}-{int(counts.max())} labels")
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y.argmax(axis=1)])))


def quadratic_kappa(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """Quadratic weighted kappa of the argmax class against the one-hot target, the classes taken in their
    column order as ordinal grades (a csv layout's integer classes sort numerically: 0, 1, ..., 4), equal to
    scikit-learn's ``cohen_kappa_score(weights="quadratic")``. With no spread to agree on (every label and every
    prediction the same single class) kappa is undefined: 0.0 (no agreement beyond chance), never NaN, so early
    stopping and blends stay finite."""
    y, p, task = _inputs(y_true, probs, task)
    c = p.shape[1]
    if c < 2 or task != "multiclass":
        raise KagglePlanetError(f"qwk: expected multiclass one-hot labels with at least 2 ordered classes; got {c} column(s), task {task}")
    truth, pred = y.argmax(axis=1), p.argmax(axis=1)
    observed = np.zeros((c, c))
    np.add.at(observed, (truth, pred), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / len(truth)
    grades = np.arange(c)
    weights = (grades[:, None] - grades[None, :]) ** 2 / (c - 1) ** 2
    chance = float((weights * expected).sum())
    return 0.0 if chance == 0.0 else float(1.0 - (weights * observed).sum() / chance)


# ---------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Metric:
    """One metric: its scorer, direction, the task kinds it applies to and what their decision layer needs,
    the numbers shown beside it, its usual blend method and its help line."""

    name: str
    fn: Scorer  # (y_true (N, C) int 0/1, probs (N, C) float in [0, 1], task=None) -> float
    higher_is_better: bool
    decisions: Mapping[str, str]  # task kind it applies to -> "thresholds" | "argmax" | "probabilities"
    help: str
    extras: Mapping[str, Scorer] = field(default_factory=dict)  # name -> scorer, reported beside it (scores.json "extra")
    blend: str = "mean"  # the usual blend method ("rank" where only the order counts)
    threshold: float | None = None  # the default decision threshold (F-beta on multilabel / binary)

    def __call__(self, y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
        return self.fn(y_true, probs, task)

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.decisions)

    @property
    def worst(self) -> float:
        """A value every finite score beats: -inf, or +inf for a loss."""
        return -math.inf if self.higher_is_better else math.inf

    def is_better(self, new: float, old: float) -> bool:
        """``new`` strictly better than ``old``; a NaN is never better, and anything finite beats a NaN ``old``."""
        if math.isnan(new):
            return False
        if math.isnan(old):
            return True
        return new > old if self.higher_is_better else new < old

    def gain(self, new: float, old: float) -> float:
        """How much better ``new`` is than ``old``: positive means better, whatever the direction."""
        return new - old if self.higher_is_better else old - new

    def best_index(self, values: Iterable[float]) -> int:
        """Index of the best of ``values`` (the first among equals; NaN never best unless all are)."""
        v = np.asarray(list(values), dtype=np.float64)
        if v.size == 0:
            raise KagglePlanetError(f"{self.name}: no values to choose the best of")
        if np.isnan(v).all():
            return 0
        return int(np.nanargmax(v) if self.higher_is_better else np.nanargmin(v))

    def order(self, values: Iterable[float]) -> np.ndarray:
        """Indices sorting ``values`` best first (stable: equals keep their order; NaN last)."""
        v = np.asarray(list(values), dtype=np.float64)
        key = np.where(np.isnan(v), np.inf, -v if self.higher_is_better else v)
        return np.argsort(key, kind="stable")

    def decision_for(self, task: str) -> str | None:
        """What the decision layer needs for ``task``; None when the metric does not apply to it."""
        return self.decisions.get(task)


def fbeta_metric(name: str, beta: float, average: str) -> Metric:
    """The table entry of an F-beta name (``f2_samples``: the Planet metric, F2 at 0.2)."""
    threshold = 1.0 / (1.0 + beta * beta)
    scorer = fbeta_scorer(beta, average, threshold)
    label = f"f{beta:g}" if average == "samples" else name  # f2@0.5, f2@0.2: the keys the Planet runs always had
    thresholded = {f"{label}@{t:g}": _thresholded(fbeta_scorer(beta, average, t)) for t in (0.5, threshold)}
    return Metric(
        name=name,
        fn=scorer,
        higher_is_better=True,
        decisions={"multilabel": "thresholds", "binary": "thresholds", "multiclass": "argmax"},
        help=f"F{beta:g}, {average}-averaged: multilabel/binary probs > {threshold:g} (1 / (1 + beta^2)), multiclass argmax",
        extras=thresholded,
        threshold=threshold,
    )


def _thresholded(scorer: Scorer) -> Scorer:
    """An extra at a fixed threshold: not reported for multiclass, where the prediction is the argmax."""

    def fn(y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float | None:
        return None if _inputs(y_true, probs, task)[2] == "multiclass" else scorer(y_true, probs, task)

    return fn


METRICS: dict[str, Metric] = {
    "f2_samples": fbeta_metric("f2_samples", 2.0, "samples"),
    "roc_auc": Metric(
        name="roc_auc", fn=roc_auc, higher_is_better=True, decisions={"binary": "probabilities"},
        help="ROC AUC of the single probability column (binary); only the order of the probabilities counts",
        extras={"log_loss": log_loss}, blend="rank",
    ),
    "accuracy": Metric(
        name="accuracy", fn=accuracy, higher_is_better=True, decisions={"multiclass": "argmax", "binary": "argmax"},
        help="fraction of rows whose top class is the true class (binary: prob > 0.5)",
        extras={"log_loss": log_loss},
    ),
    "mean_column_auc": Metric(
        name="mean_column_auc", fn=mean_column_auc, higher_is_better=True,
        decisions={"multilabel": "probabilities", "multiclass": "probabilities"},
        help="mean ROC AUC of the class columns (multilabel, or multiclass one-hot as Plant Pathology 2020)",
        blend="rank",
    ),
    "qwk": Metric(
        name="qwk", fn=quadratic_kappa, higher_is_better=True, decisions={"multiclass": "argmax"},
        help="quadratic weighted kappa of the most probable class, the classes in order as grades (APTOS as a classifier)",
        extras={"accuracy": accuracy, "log_loss": log_loss},
    ),
    "log_loss": Metric(
        name="log_loss", fn=log_loss, higher_is_better=False, decisions={"binary": "probabilities", "multiclass": "probabilities"},
        help="Kaggle's log loss, lower is better: probabilities clipped to [1e-15, 1 - 1e-15], rows renormalised",
        extras={"accuracy": accuracy},
    ),
}
# extra numbers reported next to each table metric (scores.json "extra"); F-beta names parsed on use own theirs too
EXTRAS: dict[str, Mapping[str, Scorer]] = {name: entry.extras for name, entry in METRICS.items()}
DEFAULT_METRICS = {"multilabel": "f2_samples", "binary": "roc_auc", "multiclass": "accuracy"}


def metric_names() -> str:
    """The valid names, as an error message lists them."""
    return f"{', '.join(METRICS)}, or {FBETA_PATTERN} ({' | '.join(FBETA_AVERAGES)}; e.g. f1_macro, f0.5_micro)"


def get_metric(name: str) -> Metric:
    """The table entry ``name`` (an ``f<beta>_<average>`` name is built on first use); unknown: one line
    listing the valid names."""
    if not isinstance(name, str):
        raise KagglePlanetError(f"metric {name!r}: expected a metric name ({metric_names()})")
    return METRICS.get(name) or _parsed_metric(name)


@functools.lru_cache(maxsize=64)
def _parsed_metric(name: str) -> Metric:
    parsed = parse_fbeta(name)
    if parsed is None:
        raise KagglePlanetError(f"unknown metric {name!r}; valid: {metric_names()}")
    return fbeta_metric(name, *parsed)


metric_entry = get_metric  # the same lookup under the name the config validator reads best with


def is_better(name: str, new: float, old: float) -> bool:
    """``new`` strictly better than ``old`` under metric ``name``'s direction."""
    return get_metric(name).is_better(new, old)


def gain(name: str, new: float, old: float) -> float:
    """How much better ``new`` is than ``old`` under metric ``name``: positive means better."""
    return get_metric(name).gain(new, old)


def best_index(name: str, values: Iterable[float]) -> int:
    """Index of the best of ``values`` under metric ``name`` (the first among equals)."""
    return get_metric(name).best_index(values)


def best_value(name: str, values: Iterable[float]) -> float:
    """The best of ``values`` under metric ``name``."""
    values = list(values)
    return float(values[best_index(name, values)])


def worst_value(name: str) -> float:
    """-inf (higher is better) or +inf (a loss): where a search for the best starts."""
    return get_metric(name).worst


def default_metric(task: str) -> str:
    """The metric a task kind gets when none is named: multilabel f2_samples, binary roc_auc, multiclass accuracy."""
    try:
        return DEFAULT_METRICS[task]
    except KeyError:
        raise KagglePlanetError(f"unknown task {task!r}; valid: {', '.join(TASKS)}") from None


def metric_for_task_problem(name: str, task: str) -> str | None:
    """A one-line problem when metric ``name`` does not apply to ``task`` (or either is unknown); None when it does."""
    if task not in TASKS:
        return f"unknown task {task!r}; valid: {', '.join(TASKS)}"
    try:
        entry = get_metric(name)
    except KagglePlanetError as exc:
        return str(exc)
    if task not in entry.decisions:
        fitting = [m for m, e in METRICS.items() if task in e.decisions]
        return (f"metric {name!r} does not apply to a {task} task (it applies to {', '.join(entry.tasks)}); "
                f"for {task}: {', '.join(fitting)} or {FBETA_PATTERN}")
    return None


def decision_for(name: str, task: str) -> str:
    """What the decision layer needs for metric ``name`` on ``task``: thresholds | argmax | probabilities."""
    problem = metric_for_task_problem(name, task)
    if problem:
        raise KagglePlanetError(problem)
    return get_metric(name).decisions[task]


def metric_rows() -> list[dict[str, str]]:
    """One row per table entry and one for the F-beta pattern (name, direction, tasks, decision, help):
    what the docs' metric table shows."""
    rows = [{"name": e.name, "direction": "higher is better" if e.higher_is_better else "lower is better",
             "tasks": ", ".join(e.tasks), "decision": ", ".join(f"{t}: {d}" for t, d in e.decisions.items()),
             "help": e.help} for e in METRICS.values()]
    rows.append({"name": FBETA_PATTERN, "direction": "higher is better", "tasks": "multilabel, binary, multiclass",
                 "decision": "multilabel: thresholds, binary: thresholds, multiclass: argmax",
                 "help": f"F-beta for any positive beta, average {' | '.join(FBETA_AVERAGES)}; threshold 1 / (1 + beta^2)"})
    return rows


def metric_table_markdown() -> str:
    """docs/competitions.md's metric table, from :func:`metric_rows`."""
    lines = ["| metric | direction | tasks | decision | meaning |", "|---|---|---|---|---|"]
    for row in metric_rows():
        lines.append("| `{name}` | {direction} | {tasks} | {decision} | {help} |".format(**{k: str(v).replace("|", "\\|") for k, v in row.items()}))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ scoring


def score(metric: str, y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> float:
    """The primary metric ``metric`` of ``probs: (N, C)`` against ``y_true: (N, C)`` (direction: the entry's
    ``higher_is_better``); ``task`` None: inferred from the arrays."""
    return get_metric(metric)(y_true, probs, task)


def metric_report(metric: str, y_true: np.ndarray, probs: np.ndarray, task: str | None = None) -> dict[str, float]:
    """Extra numbers reported alongside ``metric`` (f2_samples: ``f2@0.5``, ``f2@0.2``; AUC, accuracy:
    ``log_loss``; log_loss: ``accuracy``)."""
    values = {name: fn(y_true, probs, task) for name, fn in get_metric(metric).extras.items()}
    return {name: value for name, value in values.items() if value is not None}


def score_by_fold(metric: str, y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, task: str | None = None) -> dict[str, float]:
    """``{str(fold): score}`` of each fold's rows, folds in ascending order."""
    y, p = _check(y_true, probs)
    folds = np.asarray(folds)
    if folds.shape != (len(y),):
        raise KagglePlanetError(f"folds has shape {folds.shape}; expected ({len(y)},), one fold per row")
    entry = get_metric(metric)
    task = _resolve_task(y, p, task)  # once for all rows: a fold must not be read as another task kind
    return {str(int(k)): entry(y[folds == k], p[folds == k], task) for k in np.unique(folds)}


def summarize_scores(metric: str, y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, task: str | None = None) -> dict[str, Any]:
    """The scores.json core for OOF predictions: metric, oof, per_fold, fold_mean, fold_std, extra."""
    y, p = _check(y_true, probs)
    task = _resolve_task(y, p, task)
    per_fold = score_by_fold(metric, y, p, folds, task)
    values = np.array(list(per_fold.values()), dtype=np.float64)
    return {
        "metric": metric,
        "oof": score(metric, y, p, task),
        "per_fold": per_fold,
        "fold_mean": float(values.mean()),
        "fold_std": float(values.std()),
        "extra": metric_report(metric, y, p, task),
    }


# ------------------------------------------------------------------------------------------ inputs


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


def infer_task(y_true: np.ndarray, probs: np.ndarray) -> str:
    """binary (one column), multiclass (one-hot labels, probability rows summing to one) or multilabel."""
    y, p = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if p.shape[1] == 1:
        return "binary"
    if (y.sum(axis=1) == 1).all() and bool(np.all(np.abs(p.sum(axis=1) - 1.0) <= ROW_SUM_TOLERANCE)):
        return "multiclass"
    return "multilabel"


def _resolve_task(y: np.ndarray, p: np.ndarray, task: str | None) -> str:
    if task is None:
        return infer_task(y, p)
    if task not in TASKS:
        raise KagglePlanetError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if task == "binary" and p.shape[1] != 1:
        raise KagglePlanetError(f"a binary task has one probability column; got {p.shape[1]}")
    if task == "multiclass" and p.shape[1] < 2:
        raise KagglePlanetError(f"a multiclass task has two or more class columns; got {p.shape[1]}")
    return task


def _inputs(y_true: np.ndarray, probs: np.ndarray, task: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    y, p = _check(y_true, probs)
    return y, p, _resolve_task(y, p, task)
