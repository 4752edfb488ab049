"""Blend several run folders' predictions into a new run folder of the same schema.

Member files are matched by id and class name, never by row order: every member must describe the
same competition, classes, training ids (with the same folds and labels) and test ids, otherwise the
blend stops with one line naming both files and the first difference. Rows are put in one canonical
order (natural sort of the ids) first, so shuffled inputs give byte-identical outputs.

``BLENDERS`` is the one table of methods. Each entry owns its ``fit`` (members' OOF probabilities and
labels of some rows -> a JSON-able state) and its ``apply`` (members' probabilities of any rows + a
state -> blended probabilities), so the blend stage, the drop-one ablation of ``compare`` and
``predict-image`` all use the same two functions. :func:`blend_predictions` makes every method's OOF
honest the same way: for each fold, the state is fitted on the OTHER folds' rows and applied to the
fold's rows; the test prediction applies the state fitted on every OOF row (saved in ``blend.json``).

- ``mean``: plain average of the members' probabilities;
- ``gmean``: geometric mean (a member sure that a tag is absent vetoes it more strongly);
- ``rank``: per model and class, average ranks scaled to [0, 1] (within OOF and within test), then
  averaged; the usual choice for AUC, where only the order matters;
- ``weighted``: non-negative weights summing to one, fitted with scipy (SLSQP) to minimise log loss.
  F2 at a fixed threshold, AUC and accuracy are piecewise constant in the weights, so a gradient
  method cannot climb them; log loss is the smooth proper score that rewards the same thing;
- ``hillclimb``: Caruana et al. (2004) ensemble selection: start from the best single member, add the
  next best ones while the competition metric improves (sorted initialisation), then greedily add
  (with replacement) whichever member improves the metric most, until none does. Selection counts
  are the weights; it optimises the metric itself, so it can drop members that only add noise;
- ``ridge``: the Planet winner's second stage: for each class a ridge regression over ALL models'
  outputs for ALL classes (learns tag co-occurrence and weather exclusivity, recalibrates each model);
- ``ridge2``: the Planet winner's two levels: per model, a ridge per class over that model's own
  class outputs (level 1, recalibration and tag correlations inside one model); then per class, a
  ridge over the models' level-1 outputs for that class (level 2, model weights per class). Level 2
  is fitted on level 1's in-sample outputs of the same rows (C + 1 parameters per target: negligible
  optimism);
- ``lgbm``: per class, a LightGBM model (small trees) over all members' outputs for all classes,
  early-stopped on one of its training folds and refitted on all its training rows with that number
  of rounds (the 3rd place's gradient-boosted second level). Needs the ``lgbm`` extra;
- ``best``: the member with the best OOF metric on the fitted rows, as it is (its weight is one).

``auto`` (not a table entry: a choice among entries) computes the honest OOF of the metric's usual
method (its entry's ``blend``: ``mean``, or ``rank`` for AUC), ``hillclimb`` and ``best``, and keeps the
one whose honest OOF is best (ties: that order), so the default blend cannot fall far below its best
member; the blend folder then records the chosen method (``method``) with every candidate's OOF under
``auto`` in scores.json and run.json, and later stages apply the chosen method. Picking the best of three
honest OOF scores is itself a small fit on the OOF rows (three candidates: a slight optimism). When even
the chosen blend's OOF is worse than the best member's, a warning says so with both numbers.

Every comparison of scores reads the metric's direction (:mod:`kaggle_planet.core.metrics`): a loss
metric is minimised by ``hillclimb`` and ``best``, and ``gain_over_best`` is positive when the blend is
better than its best member, whatever the direction.

Multiclass outputs of ``gmean``, ``rank``, ``ridge``, ``ridge2`` are renormalised so each row sums to
one. The blend's ``run.json`` records its members' file digests and the method (``fingerprints``);
re-blending into a folder removes the ``thresholds.json`` / ``decision.json`` fitted on the previous
blend, and a saved state is applied to new rows only while the members are the ones it was fitted on. This module uses numpy, pandas, scipy and scikit-learn only (LightGBM when ``lgbm`` is asked for).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import artifacts, fingerprints, metrics
from ..core.errors import KagglePlanetError
from .decision import DECISION
from .members import (
    BlendInput,
    check_members_current,
    load_members,
    member_digests,
)
from .thresholds import FITS, THRESHOLDS, fit_entry

log = logging.getLogger(__name__)

STATE = "blend.json"  # a blend folder's fitted state (all OOF rows), read back by predict-image
RIDGE_ALPHA = 1.0
HILLCLIMB_INIT_MAX = 5  # sorted initialisation adds at most this many of the best members
HILLCLIMB_MAX_SIZE = 100  # selections in total (with replacement)
HILLCLIMB_MIN_GAIN = 1e-10  # a candidate must beat the current score by more than this (ties: first member)
LGBM_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 8,
    "max_depth": 3,
    "min_data_in_leaf": 20,
    "max_bin": 63,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "verbose": -1,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
}
LGBM_MAX_ROUNDS = 300
LGBM_EARLY_STOP = 20
LGBM_THREADED_ROWS = 20000  # below this many rows one thread is faster than OpenMP's start-up and spinning
LGBM_EXTRA = 'pip install "kaggle-planet[lgbm]"'
_EPS = 1e-7


@dataclass
class BlendOutput:
    oof: np.ndarray  # (N, C) in [0, 1], honest: each fold from a state fitted on the other folds
    test: np.ndarray  # (T, C) in [0, 1], from the state fitted on every OOF row
    state: dict[str, Any] = field(default_factory=dict)  # the all-rows state (JSON-able), for new rows
    details: dict[str, Any] = field(default_factory=dict)  # what is worth reporting (weights, counts; auto: its choice)
    fold_details: dict[str, dict[str, Any]] = field(default_factory=dict)  # the same per held-out fold
    method: str = ""  # the table method that made it (auto: the one it chose)


@dataclass
class Rows:
    """What applying a state to rows may need besides the members' probabilities of those rows."""

    task: str
    # rank: the members' (M, T, C) probabilities the rows are ranked within (predict-image: the test
    # predictions); None ranks the rows among themselves (the OOF rows, the test rows)
    reference: Callable[[], np.ndarray] | None = None


@dataclass(frozen=True)
class Blender:
    """One blend method: how to apply it, how to fit it (None: nothing to fit) and what to report."""

    help: str
    apply: Callable[[np.ndarray, dict[str, Any], Rows], np.ndarray]  # (M, N, C), state, rows -> (N, C) in [0, 1]
    fit: Callable[[BlendInput], dict[str, Any]] | None = None  # training rows -> JSON-able state
    report: Callable[[dict[str, Any]], dict[str, Any]] = lambda state: {}
    requires: str | None = None  # optional package (the extra that installs it is named when missing)


def finish_probabilities(probs: np.ndarray, task: str) -> np.ndarray:
    """Clip to [0, 1]; multiclass rows renormalised to sum to one (uniform when all clip to zero)."""
    p = np.clip(probs, 0.0, 1.0)
    if task == "multiclass":
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])
    return p


def _features(stack: np.ndarray) -> np.ndarray:
    """(M, N, C) -> (N, M*C): every model's output for every class."""
    m, n, c = stack.shape
    return stack.transpose(1, 0, 2).reshape(n, m * c)


# ------------------------------------------------------------------------------ mean, gmean, rank


def apply_mean(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    return stack.mean(axis=0)


def apply_gmean(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    """``exp(mean(log p))`` over members, as ``scipy.stats.gmean``: any member at exactly 0 gives 0."""
    with np.errstate(divide="ignore"):
        return finish_probabilities(np.exp(np.log(stack).mean(axis=0)), rows.task)


def _scaled_ranks(stack: np.ndarray) -> np.ndarray:
    """(M, N, C) -> average ranks along N scaled to [0, 1] (ties share a rank; one row gives 0.5)."""
    n = stack.shape[1]
    if n == 1:
        return np.full(stack.shape, 0.5)
    from scipy.stats import rankdata  # scipy and scikit-learn on use: `kaggle-planet --help` reads this table

    return (rankdata(stack, axis=1) - 1.0) / (n - 1.0)


def scaled_ranks_against(reference: np.ndarray, values: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Scaled rank of each of ``values (N, C)`` within ``reference (T, C)``, per column, in [0, 1].

    A value found in the reference gets exactly that row's :func:`_scaled_ranks` value (average rank
    among ties), so the reference rows themselves reproduce the blend. Any other value within ``tol``
    of reference values (a model's output for one image can differ in the last bits between batch
    sizes) takes their average rank; the rest sit half a rank step above the largest smaller
    reference value (clipped to [0, 1]). This is how a rank blend places images it did not rank.
    """
    n = reference.shape[0]
    if n == 1:
        return np.full(values.shape, 0.5)
    out = np.empty(values.shape, dtype=np.float64)
    for j in range(reference.shape[1]):
        ref = np.sort(reference[:, j])
        v = values[:, j]
        less, upto = np.searchsorted(ref, v, side="left"), np.searchsorted(ref, v, side="right")
        near_less = np.searchsorted(ref, v - tol, side="left")
        near_upto = np.searchsorted(ref, v + tol, side="right")
        exact = upto > less
        less = np.where(exact, less, near_less)
        equal = np.where(exact, upto, near_upto) - less
        out[:, j] = (less + (equal - 1) / 2.0) / (n - 1.0)
    return out.clip(0.0, 1.0)


def apply_rank(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    if rows.reference is None:
        ranks = _scaled_ranks(stack)
    else:
        reference = rows.reference()
        ranks = np.stack([scaled_ranks_against(ref, probs) for ref, probs in zip(reference, stack)])
    return finish_probabilities(ranks.mean(axis=0), rows.task)


# ---------------------------------------------------------------------------------------- weighted


def _log_loss_and_grad(weights: np.ndarray, stack: np.ndarray, y: np.ndarray, task: str) -> tuple[float, np.ndarray]:
    p = np.clip(np.tensordot(weights, stack, axes=1), _EPS, 1.0 - _EPS)
    if task == "multiclass":
        rows = np.arange(len(y))
        cls = y.argmax(axis=1)
        picked = p[rows, cls]
        return float(-np.log(picked).mean()), -(stack[:, rows, cls] / picked).mean(axis=1)
    dldp = (p - y) / (p * (1.0 - p))  # d/dp of binary cross-entropy, per entry
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    return float(loss), (stack * dldp).mean(axis=(1, 2))


def fit_weights(stack: np.ndarray, y: np.ndarray, task: str) -> np.ndarray:
    """Non-negative weights ``(M,)`` summing to one that minimise the OOF log loss of ``sum w_m p_m``."""
    from scipy.optimize import minimize

    m = stack.shape[0]
    start = np.full(m, 1.0 / m)
    if m == 1:
        return start
    result = minimize(
        _log_loss_and_grad,
        start,
        args=(stack, y.astype(np.float64), task),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 200, "ftol": 1e-10},
    )
    if not result.success:
        log.warning("weight fit did not converge (%s); using its last weights", result.message)
    w = np.clip(result.x, 0.0, None)
    return w / w.sum() if w.sum() > 0 else start


def fit_weighted(data: BlendInput) -> dict[str, Any]:
    return {"weights": fit_weights(data.oof, data.y_true, data.task).tolist(), "objective": "log_loss"}


def apply_weighted(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    weights = np.asarray(state["weights"], dtype=np.float64)
    return np.tensordot(weights, stack, axes=1).clip(0.0, 1.0)


def _weights_report(state: dict[str, Any]) -> dict[str, Any]:
    return {key: state[key] for key in ("weights", "selection_counts") if key in state}


# --------------------------------------------------------------------------------------- hillclimb


def select_members(stack: np.ndarray, y: np.ndarray, metric: str, task: str | None = None) -> np.ndarray:
    """Caruana et al. (2004) ensemble selection; returns selection counts ``(M,)`` (int, sum >= 1).

    ``stack (M, N, C)`` members' probabilities, ``y (N, C)`` labels; the ensemble is the count-weighted
    mean and ``metric`` (a metrics name, scored for ``task``) is what it climbs, in the metric's direction
    (a loss is climbed down). Sorted initialisation: the best single member, then the next best ones (at
    most ``HILLCLIMB_INIT_MAX`` in all) while each improves the score. Then forward selection with
    replacement: add the member that improves the score most (ties within ``HILLCLIMB_MIN_GAIN``: the
    first member), stop when none improves by more than ``HILLCLIMB_MIN_GAIN`` or after
    ``HILLCLIMB_MAX_SIZE`` selections.
    """
    entry = metrics.get_metric(metric)
    sign = 1.0 if entry.higher_is_better else -1.0  # climb "goodness": the score, or minus a loss

    def score(yy: np.ndarray, p: np.ndarray) -> float:
        return sign * entry(yy, p, task)

    m = stack.shape[0]
    singles = np.array([score(y, stack[i]) for i in range(m)])
    order = np.argsort(-singles, kind="stable")
    counts = np.zeros(m, dtype=np.int64)
    total = np.zeros(stack.shape[1:], dtype=np.float64)

    def add(i: int) -> None:
        counts[i] += 1
        total[...] += stack[i]

    add(int(order[0]))
    best = float(singles[order[0]])
    for i in order[1:HILLCLIMB_INIT_MAX]:
        candidate = score(y, (total + stack[i]) / (counts.sum() + 1))
        if candidate <= best + HILLCLIMB_MIN_GAIN:
            break
        add(int(i))
        best = candidate
    while counts.sum() < HILLCLIMB_MAX_SIZE:
        size = counts.sum() + 1
        candidates = np.array([score(y, (total + stack[i]) / size) for i in range(m)])
        top = float(candidates.max())
        if top <= best + HILLCLIMB_MIN_GAIN:
            break
        add(int(np.flatnonzero(candidates >= top - HILLCLIMB_MIN_GAIN)[0]))
        best = top
    return counts


def fit_hillclimb(data: BlendInput) -> dict[str, Any]:
    counts = select_members(data.oof, data.y_true, data.metric, data.task)
    return {"selection_counts": counts.tolist(), "weights": (counts / counts.sum()).tolist(), "metric": data.metric}


# -------------------------------------------------------------------------------------------- best


def fit_best(data: BlendInput) -> dict[str, Any]:
    """The member with the best OOF metric on these rows (the first among equals), direction-aware."""
    entry = metrics.get_metric(data.metric)
    singles = [entry(data.y_true, p, data.task) for p in data.oof]
    best = entry.best_index(singles)
    return {"member": best, "weights": np.eye(len(singles))[best].tolist(), "scores": singles, "metric": data.metric}


def apply_best(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    member = int(state["member"])
    if not 0 <= member < len(stack):
        raise ValueError(f"member {member} of {len(stack)}")
    return stack[member]


# ------------------------------------------------------------------------------------ ridge, ridge2


def fit_ridge(data: BlendInput) -> dict[str, Any]:
    from sklearn.linear_model import Ridge

    # one multi-target Ridge solves each class's ridge independently with the same features
    full = Ridge(alpha=RIDGE_ALPHA).fit(_features(data.oof), data.y_true.astype(np.float64))
    return {"alpha": RIDGE_ALPHA, "ridge_coef": full.coef_.tolist(), "ridge_intercept": full.intercept_.tolist()}


def apply_ridge(stack: np.ndarray, coef: np.ndarray, intercept: np.ndarray, task: str) -> np.ndarray:
    """Apply a ridge blend to members' outputs ``stack (M, N, C)`` -> ``(N, C)`` in [0, 1]."""
    return finish_probabilities(_features(stack) @ np.asarray(coef).T + np.asarray(intercept), task)


def _apply_ridge_state(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    return apply_ridge(stack, state["ridge_coef"], state["ridge_intercept"], rows.task)


def _ridge2_level1(stack: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """(M, N, C) members' outputs -> (M, N, C) level-1 outputs: ``p_m @ coef_m.T + intercept_m``."""
    return np.einsum("mnc,mkc->mnk", stack, coef) + intercept[:, None, :]


def fit_ridge2(data: BlendInput) -> dict[str, Any]:
    from sklearn.linear_model import Ridge

    y = data.y_true.astype(np.float64)
    level1 = [Ridge(alpha=RIDGE_ALPHA).fit(p, y) for p in data.oof]
    coef1 = np.stack([r.coef_.reshape(y.shape[1], -1) for r in level1])  # (M, C, C)
    intercept1 = np.stack([np.broadcast_to(r.intercept_, (y.shape[1],)) for r in level1])  # (M, C)
    z = _ridge2_level1(data.oof, coef1, intercept1)
    level2 = [Ridge(alpha=RIDGE_ALPHA).fit(z[:, :, c].T, y[:, c]) for c in range(y.shape[1])]
    return {
        "alpha": RIDGE_ALPHA,
        "level1_coef": coef1.tolist(),
        "level1_intercept": intercept1.tolist(),
        "level2_coef": [r.coef_.tolist() for r in level2],  # (C, M)
        "level2_intercept": [float(r.intercept_) for r in level2],
    }


def apply_ridge2(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    z = _ridge2_level1(stack, np.asarray(state["level1_coef"]), np.asarray(state["level1_intercept"]))
    coef2 = np.asarray(state["level2_coef"])  # (C, M)
    out = np.einsum("mnc,cm->nc", z, coef2) + np.asarray(state["level2_intercept"])
    return finish_probabilities(out, rows.task)


def _ridge2_report(state: dict[str, Any]) -> dict[str, Any]:
    # a member's level-2 coefficient averaged over classes: how much the second level trusts it
    return {"alpha": state["alpha"], "level2_mean_coef": np.asarray(state["level2_coef"]).mean(axis=0).tolist()}


# ------------------------------------------------------------------------------------------- lgbm


def _lightgbm():
    try:
        import lightgbm
    except ImportError:
        raise KagglePlanetError(f"blend method 'lgbm' needs LightGBM, which is not installed; {LGBM_EXTRA}") from None
    return lightgbm


def _inner_split(folds: np.ndarray) -> np.ndarray:
    """Early-stopping rows inside the training rows: its last fold, or every 5th row with one fold."""
    ks = np.unique(folds)
    if len(ks) >= 2:
        return folds == ks[-1]
    return np.arange(len(folds)) % 5 == 4


def _fit_booster(lgb, x: np.ndarray, y: np.ndarray, folds: np.ndarray, params: dict[str, Any]) -> tuple[str, int]:
    """Rounds chosen by early stopping on the inner split, then refitted on every row; (model, rounds)."""
    valid = _inner_split(folds)
    params = {**params, "num_threads": 0 if len(y) >= LGBM_THREADED_ROWS else 1}
    train_set = lgb.Dataset(x[~valid], y[~valid], params={"verbose": -1})
    valid_set = lgb.Dataset(x[valid], y[valid], reference=train_set)
    probe = lgb.train(params, train_set, LGBM_MAX_ROUNDS, valid_sets=[valid_set],
                      callbacks=[lgb.early_stopping(LGBM_EARLY_STOP, verbose=False)])
    rounds = max(1, int(probe.best_iteration or LGBM_MAX_ROUNDS))
    model = lgb.train(params, lgb.Dataset(x, y, params={"verbose": -1}), rounds)
    return model.model_to_string(), rounds


def fit_lgbm(data: BlendInput) -> dict[str, Any]:
    lgb = _lightgbm()
    x = _features(data.oof)
    y = data.y_true
    if data.task == "multiclass":
        params = {**LGBM_PARAMS, "objective": "multiclass", "num_class": y.shape[1]}
        model, rounds = _fit_booster(lgb, x, y.argmax(axis=1), data.folds, params)
        return {"multiclass": True, "models": [model], "rounds": [rounds]}
    models, rounds, constant = [], [], []
    for c in range(y.shape[1]):
        if y[:, c].min() == y[:, c].max():  # one label value in these rows: nothing to learn
            models.append(None)
            rounds.append(0)
            constant.append(float(y[0, c]))
            continue
        model, n = _fit_booster(lgb, x, y[:, c], data.folds, LGBM_PARAMS)
        models.append(model)
        rounds.append(n)
        constant.append(None)
    return {"multiclass": False, "models": models, "rounds": rounds, "constant": constant}


def apply_lgbm(stack: np.ndarray, state: dict[str, Any], rows: Rows) -> np.ndarray:
    lgb = _lightgbm()
    x = _features(stack)
    if state["multiclass"]:
        return finish_probabilities(lgb.Booster(model_str=state["models"][0]).predict(x), rows.task)
    out = np.empty((x.shape[0], len(state["models"])))
    for c, (model, constant) in enumerate(zip(state["models"], state["constant"])):
        out[:, c] = constant if model is None else lgb.Booster(model_str=model).predict(x)
    return finish_probabilities(out, rows.task)


# ------------------------------------------------------------------------------------------ table


BLENDERS: dict[str, Blender] = {
    "mean": Blender("average of the members' probabilities; the safe default for F2 and accuracy", apply_mean),
    "gmean": Blender("geometric mean of the probabilities; one confident 'no' weighs more than in mean", apply_gmean),
    "rank": Blender("average of per-model ranks scaled to [0, 1]; for AUC, where only the order counts", apply_rank),
    "weighted": Blender("non-negative weights summing to 1 fitted on OOF log loss (SLSQP)",
                        apply_weighted, fit_weighted, _weights_report),
    "hillclimb": Blender("Caruana ensemble selection with replacement on the competition metric; counts are the weights",
                         apply_weighted, fit_hillclimb, _weights_report),
    "ridge": Blender("per class, a ridge over every model's output for every class (Planet 1st place, one level)",
                     _apply_ridge_state, fit_ridge, lambda state: {"alpha": state["alpha"]}),
    "ridge2": Blender("Planet 1st place's two levels: per model a ridge over its own classes, then per class a ridge over models",
                      apply_ridge2, fit_ridge2, _ridge2_report),
    "lgbm": Blender("per class, LightGBM (small trees, early stopping inside the training folds) over all members' outputs",
                    apply_lgbm, fit_lgbm, lambda state: {"rounds": state["rounds"]}, requires="lightgbm"),
    "best": Blender("the single member with the best OOF metric on the fitted rows (direction-aware), as it is",
                    apply_best, fit_best, _weights_report),
}
METHODS: tuple[str, ...] = tuple(BLENDERS)
AUTO = "auto"  # not a table entry: the best honest OOF among auto_candidates(metric)
AUTO_HELP = "the best honest OOF of the metric's usual method (mean, or rank for AUC), hillclimb and best"
CHOICES: tuple[str, ...] = (AUTO, *METHODS)  # what blend_runs / blend_predictions accept


def auto_candidates(metric: str) -> tuple[str, ...]:
    """What ``auto`` chooses among, in order of preference on ties: the metric's usual method, hillclimb, best."""
    return tuple(dict.fromkeys((metrics.get_metric(metric).blend, "hillclimb", "best")))


def get_blender(method: str) -> Blender:
    if method == AUTO:
        raise KagglePlanetError("blend method 'auto' is a choice made when blending, not a method to apply; a blend folder "
                                "records the method it chose (run.json extra.method)")
    try:
        return BLENDERS[method]
    except KeyError:
        raise KagglePlanetError(f"unknown blend method {method!r}; valid: {', '.join(CHOICES)}") from None


def check_method(method: str) -> None:
    """``method`` is ``auto`` or a table method, else a one-line error listing them."""
    if method != AUTO:
        get_blender(method)


def blend_predictions(data: BlendInput, method: str) -> BlendOutput:
    """Blend ``data`` with ``method``: honest OOF (each fold from a state fitted on the other folds),
    test from the state fitted on every OOF row. Methods with nothing to fit apply directly. ``auto``:
    the candidate with the best honest OOF (:func:`blend_auto`)."""
    if method == AUTO:
        return blend_auto(data)
    blender = get_blender(method)
    rows = Rows(data.task)
    if blender.fit is None:
        return BlendOutput(blender.apply(data.oof, {}, rows), blender.apply(data.test, {}, rows), method=method)
    state = blender.fit(data)
    ks = np.unique(data.folds)
    fold_details = {}
    if len(ks) < 2:  # a single fold has nothing to hold out: the OOF is in-sample
        log.warning("%s blend: only one fold, its OOF score is in-sample", method)
        oof = blender.apply(data.oof, state, rows)
    else:
        oof = np.empty(data.y_true.shape, dtype=np.float64)
        for k in ks:
            held = data.folds == k
            fold_state = blender.fit(data.rows(~held))
            oof[held] = blender.apply(data.oof[:, held], fold_state, rows)
            fold_details[str(int(k))] = blender.report(fold_state)
    test = blender.apply(data.test, state, rows)
    return BlendOutput(oof, test, state, blender.report(state), fold_details, method)


def _best_member(data: BlendInput) -> BlendOutput:
    """``best`` as auto's candidate: the member with the best OOF on every row, its OOF and test rows as they are.
    (Fitted fold by fold, as the ``best`` method's own honest OOF is, folds can pick different members and score
    below the best member: a candidate that cannot lose to the best member is the best member itself.)"""
    state = fit_best(data)
    member = int(state["member"])
    return BlendOutput(data.oof[member], data.test[member], state, _weights_report(state), method="best")


def blend_auto(data: BlendInput) -> BlendOutput:
    """Each of :func:`auto_candidates` blended with its honest OOF (``best``: the best member itself, so the choice
    never scores below it out of fold); the one whose OOF is best (direction-aware, ties: the earlier candidate),
    its details holding ``auto: {chosen, candidates: {method: OOF}}``. Warns when even that OOF is worse than
    the best member's OOF (no longer possible with ``best`` a candidate; kept as a guard)."""
    entry = metrics.get_metric(data.metric)
    task = data.task
    results = {m: blend_predictions(data, m) if m != "best" else _best_member(data) for m in auto_candidates(data.metric)}
    oof = {m: entry(data.y_true, r.oof, task) for m, r in results.items()}
    chosen = list(oof)[entry.best_index(oof.values())]
    result = results[chosen]
    result.details = {**result.details, AUTO: {"chosen": chosen, "candidates": oof}}
    singles = [entry(data.y_true, p, task) for p in data.oof]
    best = singles[entry.best_index(singles)]
    if entry.is_better(best, oof[chosen]):
        log.warning("auto blend: %s, the best of %s by honest OOF, scores %s %.5f, worse than its best member's OOF %.5f "
                    "(the members add nothing together here)", chosen, ", ".join(oof), data.metric, oof[chosen], best)
    log.info("auto blend chose %s: honest OOF %s", chosen, ", ".join(f"{m} {v:.5f}" for m, v in oof.items()))
    return result


# ------------------------------------------------------------------------------------ run folders


def check_blend_out(out_dir: Path) -> None:
    """A blend goes to a new or empty folder, or replaces an earlier blend; never into a model's run
    folder, an experiment folder or a folder holding other files."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise KagglePlanetError(f"{out_dir}: exists and is not a folder; --out names the blend's folder, e.g. runs/<experiment>/blend")
    if not out_dir.is_dir():
        return
    kind = artifacts.run_kind(out_dir)
    if kind == "blend":
        return  # an earlier blend (run re-blends into <experiment>/blend each time)
    if kind is not None:
        what = {"model": "a model's run folder", "experiment": "an experiment folder (it holds run folders)"}[kind]
        raise KagglePlanetError(f"{out_dir}: is {what}; a blend would overwrite its files: give a new folder, e.g. {out_dir / 'blend'}")
    others = sorted(p.name for p in out_dir.iterdir())
    if others:
        raise KagglePlanetError(f"{out_dir}: holds other files ({others[0]}{', ...' if len(others) > 1 else ''}) and no earlier blend; give a new or empty folder")


def blend_runs(run_dirs: list[Path], method: str, out_dir: Path) -> dict[str, Any]:
    """Blend run folders with ``method`` (a table method or ``auto``) and write ``out_dir`` as a full run folder;
    returns its scores.json.

    Besides the run-folder files, ``blend.json`` holds the state fitted on every OOF row (weights,
    coefficients, trees), which ``predict-image`` applies to new images. scores.json's ``method`` is the
    method that made the files (``auto``: the one it chose, with ``auto: {chosen, candidates}`` beside it);
    ``gain_over_best`` is positive when the blend's OOF is better than its best member's (``best_member``).
    """
    check_method(method)
    out_dir = Path(out_dir)
    run_dirs = [Path(d) for d in run_dirs]
    if any(out_dir.resolve() == d.resolve() for d in run_dirs):
        raise KagglePlanetError(f"{out_dir}: the blend's output folder must not be one of its members")
    check_blend_out(out_dir)
    infos, data, oof_ids, test_ids = load_members(run_dirs)
    ref = infos[0]
    classes = list(ref.classes)
    metric = data.metric
    start = time.perf_counter()
    result = blend_predictions(data, method)
    seconds = time.perf_counter() - start
    chosen = result.method
    _check_output(result, data, chosen)

    entry = metrics.get_metric(metric)
    member_scores = {str(d): entry(data.y_true, data.oof[i], data.task) for i, d in enumerate(run_dirs)}
    best_member = list(member_scores)[entry.best_index(member_scores.values())]
    scores = metrics.summarize_scores(metric, data.y_true, result.oof, data.folds, data.task)
    scores.update(method=chosen, members=member_scores, best_member=best_member,
                  gain_over_best=entry.gain(scores["oof"], member_scores[best_member]))
    if AUTO in result.details:
        scores[AUTO] = result.details[AUTO]
    for key in ("weights", "selection_counts"):
        if key in result.details:
            scores[key] = dict(zip(member_scores, result.details[key]))
    if result.fold_details:
        scores["per_fold_fit"] = result.fold_details
    scores["seconds"] = seconds
    info = artifacts.RunInfo(
        competition=ref.competition,
        task=ref.task,
        id_col=ref.id_col,
        classes=classes,
        data_dir=ref.data_dir,
        options=dict(ref.options),
        kind="blend",
        members=[str(d) for d in run_dirs],
        extra={
            "method": chosen,
            **result.details,
            "state": STATE,
            "config": {"blend": method, "members": {str(d): info.extra.get("config") for d, info in zip(run_dirs, infos)}},
            "commands": [artifacts.command_line()],
        },
    )
    info.fingerprints = _blend_fingerprints(run_dirs, infos, data, oof_ids, chosen)
    # an earlier blend's run.json stays until the end, so a blend stopped half-way leaves files that are not
    # the ones it describes: whoever loads the folder then refuses it (artifacts.check_run_files)
    artifacts.write_labels(out_dir, oof_ids, data.y_true, ref.id_col, classes)
    artifacts.write_predictions(out_dir / artifacts.OOF, oof_ids, result.oof, ref.id_col, classes, data.folds)
    _remove_stale_fits(out_dir)
    artifacts.write_predictions(out_dir / artifacts.TEST, test_ids, result.test, ref.id_col, classes)
    artifacts.write_json(out_dir / STATE, {"method": chosen, "state": result.state})
    artifacts.write_json(out_dir / artifacts.SCORES, scores)
    info.files = fingerprints.file_digests(out_dir, artifacts.DESCRIBED_FILES)
    info.fingerprints["state"] = fingerprints.file_sha256(out_dir / STATE)
    artifacts.write_run_info(out_dir, info)  # last: a folder with run.json is complete
    log.info("blend %s of %d runs -> %s: OOF %s %.5f (gain over the best member %+.5f, positive: better)",
             chosen if chosen == method else f"{method} ({chosen})", len(infos), out_dir, metric, scores["oof"], scores["gain_over_best"])
    return scores


def _blend_fingerprints(run_dirs: list[Path], infos: list[artifacts.RunInfo], data: BlendInput, oof_ids: list[str],
                        method: str) -> dict[str, Any]:
    """What a blend is made from: its members' labels, classes and folds (the same for all), each member's
    prediction files and the method."""
    made = fingerprints.data_fingerprints(oof_ids, data.y_true, infos[0].classes, data.folds,
                                          infos[0].fingerprints.get("folds_file"))
    made.update(members={str(d): member_digests(d, info) for d, info in zip(run_dirs, infos)}, method=method)
    return made


def _remove_stale_fits(out_dir: Path) -> None:
    """Remove the thresholds / decisions fitted on a previous blend in this folder (they would describe
    another blend); kept when they were fitted on the very same OOF rows and labels."""
    digest = fingerprints.run_inputs_digest(out_dir)
    for name in (THRESHOLDS, DECISION):
        path = out_dir / name
        if not path.is_file():
            continue
        try:
            entry = fit_entry(out_dir, name)
        except KagglePlanetError:
            entry = None
        if entry is None or entry.get("inputs_sha256") != digest:
            path.unlink()
            log.info("%s: removed %s, fitted on %s; kaggle-planet thresholds %s fits it again", out_dir, name,
                     (entry or {}).get("fitted_on") or "the previous predictions of this folder", out_dir)
    if not any((out_dir / name).is_file() for name in (THRESHOLDS, DECISION)):
        (out_dir / FITS).unlink(missing_ok=True)


def read_state(blend_dir: Path, info: artifacts.RunInfo, method: str) -> dict[str, Any]:
    """The all-rows state of a blend folder: ``blend.json``, else (blends written before it existed)
    run.json's ``extra``, which then held the weights / ridge coefficients."""
    path = Path(blend_dir) / STATE
    if not path.is_file():
        return dict(info.extra)
    saved = artifacts.read_json(path)
    if not isinstance(saved, dict) or saved.get("method") != method or not isinstance(saved.get("state"), dict):
        raise KagglePlanetError(
            f"{path}: expected {{'method': {method!r}, 'state': {{...}}}} as the blend stage writes it; "
            f"re-run kaggle-planet blend for {blend_dir}"
        )
    return saved["state"]


def apply_saved_blend(blend_dir: Path, info: artifacts.RunInfo, method: str, stack: np.ndarray,
                      reference: Callable[[], np.ndarray] | None = None) -> np.ndarray:
    """Blend members' probabilities of new rows ``stack (M, N, C)`` exactly as the blend folder's test
    rows were blended; ``reference`` gives the members' test predictions (rank places rows among them)."""
    blender = get_blender(method)
    check_members_current(blend_dir, info)
    state = read_state(blend_dir, info, method) if blender.fit is not None else {}
    try:
        blended = blender.apply(stack, state, Rows(info.task, reference))
    except (KeyError, ValueError, TypeError) as exc:
        raise KagglePlanetError(
            f"{Path(blend_dir) / STATE}: the saved {method} state does not fit {len(stack)} member(s) x {stack.shape[-1]} "
            f"classes ({type(exc).__name__}: {exc}); re-run kaggle-planet blend for {blend_dir}"
        ) from None
    path = Path(blend_dir) / STATE
    if blender.fit is not None and path.is_file() and info.fingerprints.get("state") not in (None, fingerprints.file_sha256(path)):
        raise KagglePlanetError(
            f"{path}: not the state {artifacts.RUN_INFO} describes (changed since, or a blend stopped half-way); "
            f"blend again with {artifacts.rebuild_command(blend_dir, info)}"
        )
    return blended


def _check_output(result: BlendOutput, data: BlendInput, method: str) -> None:
    for name, probs, shape in (("OOF", result.oof, data.y_true.shape), ("test", result.test, data.test.shape[1:])):
        # np.all over no rows is True: a dataset without test images has an empty, valid test block
        if probs.shape != shape or not np.all(np.isfinite(probs)) or not np.all((probs >= 0) & (probs <= 1)):
            raise KagglePlanetError(f"blend method {method!r} produced invalid {name} probabilities (shape {probs.shape}, expected {shape} in [0, 1])")


def format_auto_choice(scores: dict[str, Any]) -> str | None:
    """``blend: auto chose hillclimb (OOF 0.91) over mean 0.90, best 0.89`` for an auto blend's scores.json; None otherwise."""
    auto = scores.get(AUTO)
    if not isinstance(auto, dict) or "chosen" not in auto:
        return None
    candidates = auto.get("candidates", {})
    chosen = auto["chosen"]
    others = ", ".join(f"{m} {v:.5f}" for m, v in candidates.items() if m != chosen)
    value = candidates.get(chosen, scores.get("oof"))
    return f"blend: auto chose {chosen} (OOF {value:.5f})" + (f" over {others}" if others else "")


def format_gain(scores: dict[str, Any]) -> str:
    """The blend's gain over its best member, signed so that positive means better (a loss metric too)."""
    gain = scores["gain_over_best"]
    verdict = "better than" if gain > 0 else "worse than" if gain < 0 else "equal to"
    direction = "" if metrics.get_metric(scores["metric"]).higher_is_better else f"; {scores['metric']} is lower-is-better"
    return f"{gain:+.5f} ({verdict} the best member{direction})"


def format_blend_table(scores: dict[str, Any]) -> str:
    """Each member's OOF score, the blend's, and the gain over the best member (weights if fitted;
    auto: what it chose over what)."""
    members = scores["members"]
    weights = scores.get("weights", {})
    width = max([len(m) for m in members] + [len("blend") + len(scores["method"]) + 3])
    header = f"{'run':<{width}}  OOF {scores['metric']}" + ("  weight" if weights else "")
    lines = [header]
    for member, value in members.items():
        lines.append(f"{member:<{width}}  {value:>{len(scores['metric']) + 4}.5f}" + (f"  {weights[member]:6.3f}" if weights else ""))
    lines.append(f"{'blend (' + scores['method'] + ')':<{width}}  {scores['oof']:>{len(scores['metric']) + 4}.5f}")
    lines.append(f"gain over the best member: {format_gain(scores)}")
    choice = format_auto_choice(scores)
    if choice:
        lines.append(choice)
    return "\n".join(lines)
