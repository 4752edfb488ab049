"""Blend several run folders' predictions into a new run folder of the same schema.

Member files are matched by id and class name, never by row order: every member must describe the
same competition, classes, training ids (with the same folds and labels) and test ids, otherwise the
blend stops with one line naming both files and the first difference. Rows are put in one canonical
order (natural sort of the ids) first, so shuffled inputs give byte-identical outputs.

``BLENDERS`` maps a method name to ``callable(BlendInput) -> BlendOutput``:

- ``mean``: plain average of the members' probabilities;
- ``rank``: per model and class, average ranks scaled to [0, 1] (within OOF and within test), then
  averaged; the usual choice for AUC, where only the order matters;
- ``weighted``: non-negative weights summing to one, fitted on the OOF rows with scipy (SLSQP) to
  minimise log loss. F2 at a fixed threshold, AUC and accuracy are piecewise constant in the weights,
  so a gradient method cannot climb them; log loss is the smooth proper score that rewards the
  same thing (probabilities on the right side of the decision). The weights are reported;
- ``ridge``: the Planet winner's second stage: for each class a ridge regression over ALL models'
  outputs for ALL classes (so it learns tag co-occurrence and weather exclusivity and recalibrates
  each model), fitted out-of-fold over the existing folds so the blend's own OOF score stays
  honest; test predictions come from a model fitted on every OOF row. Clipped to [0, 1].

Multiclass outputs of ``rank`` and ``ridge`` are renormalised so each row sums to one.
This module uses numpy, pandas, scipy and scikit-learn only.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import rankdata
from sklearn.linear_model import Ridge

from . import artifacts, metrics
from .competitions import get_spec
from .errors import KagglePlanetError

log = logging.getLogger(__name__)

RIDGE_ALPHA = 1.0
_EPS = 1e-7


@dataclass
class BlendInput:
    oof: np.ndarray  # (M, N, C) members' OOF probabilities, rows in canonical id order
    test: np.ndarray  # (M, T, C) members' test probabilities
    y_true: np.ndarray  # (N, C) int 0/1
    folds: np.ndarray  # (N,) int
    task: str  # multilabel | binary | multiclass


@dataclass
class BlendOutput:
    oof: np.ndarray  # (N, C) in [0, 1]
    test: np.ndarray  # (T, C) in [0, 1]
    details: dict[str, Any] = field(default_factory=dict)  # e.g. fitted weights


# ------------------------------------------------------------------------------------------ methods


def blend_mean(data: BlendInput) -> BlendOutput:
    return BlendOutput(data.oof.mean(axis=0), data.test.mean(axis=0))


def _scaled_ranks(stack: np.ndarray) -> np.ndarray:
    """(M, N, C) -> average ranks along N scaled to [0, 1] (ties share a rank; one row gives 0.5)."""
    n = stack.shape[1]
    if n == 1:
        return np.full(stack.shape, 0.5)
    return (rankdata(stack, axis=1) - 1.0) / (n - 1.0)


def scaled_ranks_against(reference: np.ndarray, values: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Scaled rank of each of ``values (N, C)`` within ``reference (T, C)``, per column, in [0, 1].

    A value equal to a reference row (within ``tol``: a model's output for one image can differ in the
    last bits between batch sizes) gets exactly that row's :func:`_scaled_ranks` value (average rank
    among ties); any other value sits half a rank step above the largest smaller reference value
    (clipped to [0, 1]). This is how a rank blend places images that were not part of the ranked set.
    """
    n = reference.shape[0]
    if n == 1:
        return np.full(values.shape, 0.5)
    out = np.empty(values.shape, dtype=np.float64)
    for j in range(reference.shape[1]):
        ref = np.sort(reference[:, j])
        less = np.searchsorted(ref, values[:, j] - tol, side="left")
        equal = np.searchsorted(ref, values[:, j] + tol, side="right") - less
        out[:, j] = (less + (equal - 1) / 2.0) / (n - 1.0)
    return out.clip(0.0, 1.0)


def blend_rank(data: BlendInput) -> BlendOutput:
    oof = _scaled_ranks(data.oof).mean(axis=0)
    test = _scaled_ranks(data.test).mean(axis=0)
    return BlendOutput(finish_probabilities(oof, data.task), finish_probabilities(test, data.task))


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


def blend_weighted(data: BlendInput) -> BlendOutput:
    w = fit_weights(data.oof, data.y_true, data.task)
    oof = np.tensordot(w, data.oof, axes=1)
    test = np.tensordot(w, data.test, axes=1)
    return BlendOutput(oof.clip(0, 1), test.clip(0, 1), {"weights": w.tolist(), "objective": "log_loss"})


def _features(stack: np.ndarray) -> np.ndarray:
    """(M, N, C) -> (N, M*C): every model's output for every class."""
    m, n, c = stack.shape
    return stack.transpose(1, 0, 2).reshape(n, m * c)


def blend_ridge(data: BlendInput) -> BlendOutput:
    x = _features(data.oof)
    y = data.y_true.astype(np.float64)
    oof = np.empty_like(y)
    # one multi-target Ridge solves each class's ridge independently with the same features
    for k in np.unique(data.folds):
        held = data.folds == k
        if held.all():  # a single fold has nothing to learn from: fall back to the in-sample fit
            oof[:] = Ridge(alpha=RIDGE_ALPHA).fit(x, y).predict(x)
            log.warning("ridge blend: only one fold, its OOF score is in-sample")
            break
        oof[held] = Ridge(alpha=RIDGE_ALPHA).fit(x[~held], y[~held]).predict(x[held])
    full = Ridge(alpha=RIDGE_ALPHA).fit(x, y)
    test = apply_ridge(data.test, full.coef_, full.intercept_, data.task)
    # the all-rows fit is saved so new images can be blended exactly as the test rows were
    details = {"alpha": RIDGE_ALPHA, "ridge_coef": full.coef_.tolist(), "ridge_intercept": full.intercept_.tolist()}
    return BlendOutput(finish_probabilities(oof, data.task), test, details)


def apply_ridge(stack: np.ndarray, coef: np.ndarray, intercept: np.ndarray, task: str) -> np.ndarray:
    """Apply a saved ridge blend to members' outputs ``stack (M, N, C)`` -> ``(N, C)`` in [0, 1]."""
    return finish_probabilities(_features(stack) @ np.asarray(coef).T + np.asarray(intercept), task)


def finish_probabilities(probs: np.ndarray, task: str) -> np.ndarray:
    """Clip to [0, 1]; multiclass rows renormalised to sum to one (uniform when all clip to zero)."""
    p = np.clip(probs, 0.0, 1.0)
    if task == "multiclass":
        total = p.sum(axis=1, keepdims=True)
        p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[1])
    return p


BLENDERS: dict[str, Callable[[BlendInput], BlendOutput]] = {
    "mean": blend_mean,
    "rank": blend_rank,
    "weighted": blend_weighted,
    "ridge": blend_ridge,
}


def get_blender(method: str) -> Callable[[BlendInput], BlendOutput]:
    try:
        return BLENDERS[method]
    except KeyError:
        raise KagglePlanetError(f"unknown blend method {method!r}; valid: {', '.join(BLENDERS)}") from None


# ------------------------------------------------------------------------------------ run folders


def natural_key(value: str) -> tuple:
    """Sort key putting ``train_2`` before ``train_10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", value) if part)


def _canonical(ids: pd.Series) -> list[str]:
    return sorted(ids.tolist(), key=natural_key)


def _first_difference(a: set[str], b: set[str], name_a: str, name_b: str) -> str:
    only = sorted(a ^ b, key=natural_key)[0]
    return f"{only!r} is in {name_a if only in a else name_b} only"


def check_compatible(ref: artifacts.Run, other: artifacts.Run) -> None:
    """Same competition, task, id column and class names, or a one-line error naming both run.json files."""
    ra, rb = ref.path / artifacts.RUN_INFO, other.path / artifacts.RUN_INFO
    for key in ("competition", "task", "id_col"):
        va, vb = getattr(ref.info, key), getattr(other.info, key)
        if va != vb:
            raise KagglePlanetError(f"{ra} and {rb}: {key} differs ({va!r} vs {vb!r})")
    if set(ref.info.classes) != set(other.info.classes):
        diff = _first_difference(set(ref.info.classes), set(other.info.classes), str(ra), str(rb))
        raise KagglePlanetError(f"{ra} and {rb}: classes differ (first difference: class {diff})")


def _positions(ref: artifacts.Run, other: artifacts.Run, name: str, ids: pd.Index, other_ids: pd.Series) -> np.ndarray:
    """Row of each canonical id in ``other``'s file; a one-line error when the id sets differ."""
    pos = pd.Index(other_ids).get_indexer(ids)  # ids are unique (checked when read)
    if (pos < 0).any() or len(other_ids) != len(ids):
        a, b = ref.path / name, other.path / name
        diff = _first_difference(set(ids), set(other_ids), str(a), str(b))
        raise KagglePlanetError(f"{a} and {b}: ids differ (first difference: {diff})")
    return pos


def _first_bad(ids: pd.Index, bad: np.ndarray) -> str:
    return sorted(ids[bad], key=natural_key)[0]


def _align(ref: artifacts.Run, run: artifacts.Run, oof_ids: pd.Index, test_ids: pd.Index, ref_folds: np.ndarray, ref_y: np.ndarray):
    """``run``'s (oof (N, C), test (T, C)) in canonical row order and ``ref``'s class order.

    Checks against the reference run: the same OOF and test ids, the same fold and labels per id.
    """
    id_col, classes = ref.info.id_col, list(ref.info.classes)
    cols = [list(run.info.classes).index(c) for c in classes]
    pos = _positions(ref, run, artifacts.OOF, oof_ids, run.oof[id_col])
    test_pos = _positions(ref, run, artifacts.TEST, test_ids, run.test[id_col])
    folds = run.folds[pos]
    if ref_folds is not None and (bad := folds != ref_folds).any():
        first = _first_bad(oof_ids, bad)
        k = oof_ids.get_loc(first)
        raise KagglePlanetError(
            f"{ref.path / artifacts.OOF} and {run.path / artifacts.OOF}: folds differ (first difference: {id_col} {first!r} "
            f"is in fold {ref_folds[k]} vs {folds[k]}); blend runs made with the same folds"
        )
    y = run.y_true[pos][:, cols]
    if ref_y is not None and (bad := (y != ref_y).any(axis=1)).any():
        raise KagglePlanetError(
            f"{ref.path / artifacts.LABELS} and {run.path / artifacts.LABELS}: labels differ "
            f"(first difference: {id_col} {_first_bad(oof_ids, bad)!r})"
        )
    return run.oof_probs[pos][:, cols], run.test_probs[test_pos][:, cols], folds, y


def load_members(run_dirs: list[Path]) -> tuple[list[artifacts.Run], BlendInput, list[str], list[str]]:
    """Load, check and align member runs; returns (runs, blend input, OOF ids, test ids) in canonical order.

    Every member must match the first one: same competition, classes, ids, folds and labels.
    """
    if not run_dirs:
        raise KagglePlanetError("blend: no run folders given")
    runs = [artifacts.load_run(d) for d in run_dirs]
    ref = runs[0]
    for other in runs[1:]:
        check_compatible(ref, other)
    id_col = ref.info.id_col
    oof_ids = pd.Index(_canonical(ref.oof[id_col]))
    test_ids = pd.Index(_canonical(ref.test[id_col]))
    oof0, test0, folds, y = _align(ref, ref, oof_ids, test_ids, None, None)
    stacks = [(oof0, test0)] + [_align(ref, run, oof_ids, test_ids, folds, y)[:2] for run in runs[1:]]
    data = BlendInput(
        oof=np.stack([s[0] for s in stacks]),
        test=np.stack([s[1] for s in stacks]),
        y_true=y.astype(np.int64),
        folds=folds.astype(int),
        task=ref.info.task,
    )
    return runs, data, oof_ids.tolist(), test_ids.tolist()


def blend_runs(run_dirs: list[Path], method: str, out_dir: Path) -> dict[str, Any]:
    """Blend run folders with ``method`` and write ``out_dir`` as a full run folder; returns its scores.json."""
    blender = get_blender(method)
    out_dir = Path(out_dir)
    run_dirs = [Path(d) for d in run_dirs]
    if any(out_dir.resolve() == d.resolve() for d in run_dirs):
        raise KagglePlanetError(f"{out_dir}: the blend's output folder must not be one of its members")
    runs, data, oof_ids, test_ids = load_members(run_dirs)
    ref = runs[0].info
    classes = list(ref.classes)
    metric = get_spec(ref.competition).metric
    result = blender(data)
    _check_output(result, data, method)

    member_scores = {str(d): metrics.score(metric, data.y_true, data.oof[i]) for i, d in enumerate(run_dirs)}
    scores = metrics.summarize_scores(metric, data.y_true, result.oof, data.folds)
    scores.update(method=method, members=member_scores, gain_over_best=scores["oof"] - max(member_scores.values()))
    if "weights" in result.details:
        scores["weights"] = dict(zip(member_scores, result.details["weights"]))
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
            "method": method,
            **result.details,
            "config": {"blend": method, "members": {str(d): run.info.extra.get("config") for d, run in zip(run_dirs, runs)}},
            "commands": [artifacts.command_line()],
        },
    )
    artifacts.write_labels(out_dir, oof_ids, data.y_true, ref.id_col, classes)
    artifacts.write_predictions(out_dir / artifacts.OOF, oof_ids, result.oof, ref.id_col, classes, data.folds)
    artifacts.write_predictions(out_dir / artifacts.TEST, test_ids, result.test, ref.id_col, classes)
    artifacts.write_json(out_dir / artifacts.SCORES, scores)
    artifacts.write_run_info(out_dir, info)  # last: a folder with run.json is complete
    log.info("blend %s of %d runs -> %s: OOF %s %.5f (gain %+.5f)", method, len(runs), out_dir, metric, scores["oof"], scores["gain_over_best"])
    return scores


def _check_output(result: BlendOutput, data: BlendInput, method: str) -> None:
    for name, probs, shape in (("OOF", result.oof, data.y_true.shape), ("test", result.test, data.test.shape[1:])):
        if probs.shape != shape or not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
            raise KagglePlanetError(f"blend method {method!r} produced invalid {name} probabilities (shape {probs.shape}, expected {shape} in [0, 1])")


def format_blend_table(scores: dict[str, Any]) -> str:
    """Each member's OOF score, the blend's, and the gain over the best member (weights if fitted)."""
    members = scores["members"]
    weights = scores.get("weights", {})
    width = max([len(m) for m in members] + [len("blend") + len(scores["method"]) + 3])
    header = f"{'run':<{width}}  OOF {scores['metric']}" + ("  weight" if weights else "")
    lines = [header]
    for member, value in members.items():
        lines.append(f"{member:<{width}}  {value:>{len(scores['metric']) + 4}.5f}" + (f"  {weights[member]:6.3f}" if weights else ""))
    lines.append(f"{'blend (' + scores['method'] + ')':<{width}}  {scores['oof']:>{len(scores['metric']) + 4}.5f}")
    lines.append(f"gain over the best member: {scores['gain_over_best']:+.5f}")
    return "\n".join(lines)
