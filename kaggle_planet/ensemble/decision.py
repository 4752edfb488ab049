"""The F2 decision layer: which tags each image gets, given its predicted probabilities.

``DECISIONS`` is the one table of rules. Each entry owns its ``fit`` (OOF labels and probabilities ->
a JSON-able state; None when there is nothing to fit), its ``apply`` (probabilities + state -> the
chosen tags, at least one per image, as the Planet submission requires) and its help text:

- ``thresholds``: per-class thresholds fitted on the OOF rows (:mod:`kaggle_planet.ensemble.thresholds`),
  ``prob > threshold``, the most probable tag when none passes;
- ``expected_f2``: per image, the tag set with the highest expected F2 when each tag is present
  independently with its predicted probability. For any set ``S`` of size ``k``,

      E[F2(S)] = 5 * sum_{i in S} p_i * E[1 / (4 (1 + |Y without i|) + k)]

  and the count of the other labels is a Poisson-binomial variable whose distribution a dynamic
  programme gives exactly (Jansche 2007; Nan Ye et al. 2012, "Optimizing F-measures: a tale of two
  approaches"). Each summand grows with ``p_i``, so the best set of each size is the top-k tags and
  the decision is the best k: O(C^3) per image, no fitting;
- ``expected_f2_calibrated``: per-class Platt scaling (logistic regression on the logit) fitted on
  the OOF rows first, then ``expected_f2``: the expectation is only as good as the calibration.

:func:`evaluate_decisions` scores every rule honestly on OOF rows (each fold decided with a state
fitted on the other folds) and :func:`fit_run_decisions` writes that to ``decision.json`` beside
``thresholds.json``, with the digest of the OOF rows and labels it was fitted on (``inputs_sha256``; what
they were in ``fitted_on.json``): a decision.json fitted on other predictions is fitted again, saying
so. ``auto`` is the rule with the best honest F2. This module uses numpy and
scikit-learn only.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import artifacts, fingerprints
from ..core.errors import KagglePlanetError
from ..core.metrics import BETA2, f2_samples, logit
from .thresholds import record_fit, search_thresholds, stale_fit

log = logging.getLogger(__name__)

DECISION = "decision.json"
AUTO = "auto"
_CHUNK = 4096  # images per block of the expected-F2 computation: (chunk, C, C) floats
_LOGIT_CLIP = 1e-6


@dataclass(frozen=True)
class Decision:
    help: str
    apply: Callable[[np.ndarray, dict[str, Any]], np.ndarray]  # probs (N, C), state -> chosen (N, C) bool
    fit: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None  # (y (N, C), probs (N, C)) -> state


# ------------------------------------------------------------------------------------ expected F2


def _others_count_distribution(p: np.ndarray) -> np.ndarray:
    """``out[n, i, s] = P(sum_{j != i} y_nj = s)`` for independent ``y_nj ~ Bernoulli(p_nj)``; (N, C, C)."""
    n, c = p.shape
    out = np.empty((n, c, c))
    for i in range(c):
        dist = np.zeros((n, c))
        dist[:, 0] = 1.0
        for j in range(c):
            if j == i:
                continue
            pj = p[:, j, None]
            shifted = dist[:, :-1] * pj
            dist *= 1.0 - pj
            dist[:, 1:] += shifted
        out[:, i] = dist
    return out


def _expected_terms(p: np.ndarray) -> np.ndarray:
    """``out[n, i, k-1] = E[1 / (BETA2 (1 + |Y without i|) + k)]`` for set sizes k = 1..C; (N, C, C)."""
    c = p.shape[1]
    s = np.arange(c)[:, None]
    k = np.arange(1, c + 1)[None, :]
    inverse = 1.0 / (BETA2 * (1.0 + s) + k)  # (others count s, set size k)
    return _others_count_distribution(p) @ inverse


def expected_f2(probs: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Exact expected F2 of predicting ``chosen (N, C) bool`` when tag ``j`` of image ``n`` is present
    independently with probability ``probs[n, j]``; (N,). An empty prediction scores 0, as in
    :func:`kaggle_planet.core.metrics.f2_per_sample`."""
    p = _check_probs(probs)
    chosen = np.asarray(chosen, dtype=bool)
    if chosen.shape != p.shape:
        raise KagglePlanetError(f"expected F2: chosen {chosen.shape} and probabilities {p.shape} must be the same (N, C)")
    out = np.zeros(len(p))
    for lo in range(0, len(p), _CHUNK):
        pc, sc = p[lo:lo + _CHUNK], chosen[lo:lo + _CHUNK]
        k = sc.sum(axis=1)
        terms = _expected_terms(pc)  # (n, C, C)
        at_k = terms[np.arange(len(pc)), :, np.maximum(k - 1, 0)]  # (n, C): each tag's term at the row's set size
        out[lo:lo + _CHUNK] = np.where(k > 0, (1.0 + BETA2) * (pc * at_k * sc).sum(axis=1), 0.0)
    return out


def expected_f2_decisions(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the tag set maximising the exact expected F2: (chosen (N, C) bool, its expected F2 (N,)).

    The best set of size k holds the k most probable tags (each tag's contribution grows with its
    probability), so only the C top-k sets are compared; ties keep the smallest k. At least one tag.
    """
    p = _check_probs(probs)
    n, c = p.shape
    chosen = np.zeros((n, c), dtype=bool)
    value = np.zeros(n)
    for lo in range(0, n, _CHUNK):
        pc = p[lo:lo + _CHUNK]
        rows = np.arange(len(pc))[:, None]
        order = np.argsort(-pc, axis=1, kind="stable")
        terms = _expected_terms(pc)[rows, order]  # (n, rank, size): tags in descending probability
        gains = pc[rows, order][:, :, None] * terms
        totals = (1.0 + BETA2) * np.cumsum(gains, axis=1)[:, np.arange(c), np.arange(c)]  # top-(k) set, k = 1..C
        best = totals.argmax(axis=1)  # first maximum: the smallest k among ties
        ranks = np.empty_like(order)
        ranks[rows, order] = np.arange(c)[None, :]
        chosen[lo:lo + _CHUNK] = ranks <= best[:, None]
        value[lo:lo + _CHUNK] = totals[np.arange(len(pc)), best]
    return chosen, value


# ----------------------------------------------------------------------------------------- rules


def _at_least_one(probs: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    # the Planet submission's rule: the most probable tag when none was chosen
    none = ~chosen.any(axis=1)
    chosen[none, probs[none].argmax(axis=1)] = True
    return chosen


def fit_thresholds_rule(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    return {"thresholds": search_thresholds(y, probs).thresholds.tolist()}


def apply_thresholds(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    return _at_least_one(probs, probs > np.asarray(state["thresholds"], dtype=np.float64))


def apply_expected_f2(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    return expected_f2_decisions(probs)[0]


def fit_platt(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Per class ``(a, b)`` of ``sigmoid(a * logit(p) + b)`` fitted by logistic regression; a class with
    one label value in these rows keeps ``(1, 0)`` (its probabilities unchanged)."""
    from sklearn.linear_model import LogisticRegression

    params = []
    for j in range(probs.shape[1]):
        if y[:, j].min() == y[:, j].max():
            params.append([1.0, 0.0])
            continue
        model = LogisticRegression(C=1.0).fit(logit(probs[:, j], _LOGIT_CLIP)[:, None], y[:, j])
        params.append([float(model.coef_[0, 0]), float(model.intercept_[0])])
    return {"platt": params}


def calibrate(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    a, b = np.asarray(state["platt"], dtype=np.float64).T
    return 1.0 / (1.0 + np.exp(-(a * logit(probs, _LOGIT_CLIP) + b)))


def apply_expected_f2_calibrated(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    return expected_f2_decisions(calibrate(probs, state))[0]


DECISIONS: dict[str, Decision] = {
    "thresholds": Decision("per-class thresholds fitted on OOF F2 (prob > threshold; the top tag when none passes)",
                           apply_thresholds, fit_thresholds_rule),
    "expected_f2": Decision("per image, the tag set with the highest exact expected F2 under the predicted probabilities",
                            apply_expected_f2),
    "expected_f2_calibrated": Decision("per-class Platt scaling fitted on OOF rows, then expected_f2",
                                       apply_expected_f2_calibrated, fit_platt),
}
CHOICES: tuple[str, ...] = (AUTO, *DECISIONS)


def get_decision(name: str) -> Decision:
    try:
        return DECISIONS[name]
    except KeyError:
        raise KagglePlanetError(f"unknown decision rule {name!r}; valid: {', '.join(CHOICES)}") from None


def decide(name: str, probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Apply rule ``name`` with its fitted ``state`` to ``probs (N, C)``; (N, C) bool, >= 1 tag per row."""
    return get_decision(name).apply(_check_probs(probs), state)


# ------------------------------------------------------------------------------------ evaluation


def evaluate_decisions(y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    """Every rule's F2 on OOF rows: ``honest_f2`` (mean over folds of the fold decided with a state
    fitted on the other folds), ``honest_per_fold``, ``oof_f2`` (fitted and scored on all rows) and the
    all-rows ``state``; plus ``auto``, the rule with the best honest F2 (ties: the first in the table)."""
    y = np.asarray(y_true).astype(np.int64)
    p = _check_probs(probs)
    folds = np.asarray(folds)
    if y.shape != p.shape or folds.shape != (len(y),):
        raise KagglePlanetError(f"decisions: labels {y.shape}, probabilities {p.shape} and folds {folds.shape} do not match")
    ks = np.unique(folds)
    if len(ks) < 2:
        raise KagglePlanetError(f"decisions: an honest comparison needs at least 2 folds; found {len(ks)}")
    rules: dict[str, Any] = {}
    for name, rule in DECISIONS.items():
        state = rule.fit(y, p) if rule.fit else {}
        chosen_all = rule.apply(p, state)
        per_fold = {}
        for k in ks:
            held = folds == k
            chosen = chosen_all[held] if rule.fit is None else rule.apply(p[held], rule.fit(y[~held], p[~held]))
            per_fold[str(int(k))] = f2_samples(y[held], chosen)
        rules[name] = {
            "help": rule.help,
            "honest_f2": float(np.mean(list(per_fold.values()))),
            "honest_per_fold": per_fold,
            "oof_f2": f2_samples(y, chosen_all),
            "state": state,
        }
    best = max(rules, key=lambda name: rules[name]["honest_f2"])  # max keeps the first among equals
    return {"rules": rules, AUTO: best}


def fit_run_decisions(run_dir: str | Path, reuse: bool = True) -> dict[str, Any]:
    """Evaluate every rule on a multilabel run's OOF predictions and write ``decision.json``.

    With ``reuse`` an existing ``decision.json`` made from the same ``oof.csv`` and ``labels.csv``
    (sha256 recorded in it) is returned as it is.
    """
    run_dir = Path(run_dir)
    path = run_dir / DECISION
    info = artifacts.read_run_info(run_dir)
    if info.task != "multilabel":
        raise KagglePlanetError(
            f"{run_dir / artifacts.RUN_INFO}: decision rules apply to multilabel (F2) runs only; this run's task is {info.task!r}"
        )
    digest = fingerprints.run_inputs_digest(run_dir)
    if reuse and path.is_file():
        saved = artifacts.read_json(path)
        if isinstance(saved, dict) and saved.get("inputs_sha256") == digest and saved.get("classes") == list(info.classes) \
                and set(saved.get("rules", {})) == set(DECISIONS):
            return saved
        stale = stale_fit(run_dir, DECISION)
        if stale:
            log.info("%s; fitting the decision rules again", stale)
    run = artifacts.load_run(run_dir)
    result = {"classes": list(info.classes), "inputs_sha256": digest, **evaluate_decisions(run.y_true, run.oof_probs, run.folds)}
    artifacts.write_json(path, result)
    record_fit(run_dir, DECISION, info)
    log.info("%s: honest F2 %s -> auto picks %s", run_dir,
             ", ".join(f"{n} {r['honest_f2']:.5f}" for n, r in result["rules"].items()), result[AUTO])
    return result


def resolve_decision(name: str, evaluation: dict[str, Any]) -> str:
    """``auto`` -> the rule with the best honest F2 in ``evaluation``; any other name as given (checked)."""
    if name == AUTO:
        return str(evaluation[AUTO])
    get_decision(name)
    return name


def format_decisions_summary(result: dict[str, Any]) -> str:
    """One line per rule: honest F2 (fit on K-1 folds), in-sample OOF F2; the rule ``auto`` picks."""
    width = max(len(n) for n in result["rules"])
    lines = [f"{'decision rule':<{width}}  honest F2   OOF F2 (fit on all rows)"]
    for name, rule in result["rules"].items():
        mark = "  <- auto" if name == result[AUTO] else ""
        lines.append(f"{name:<{width}}  {rule['honest_f2']:9.5f}   {rule['oof_f2']:9.5f}{mark}")
    return "\n".join(lines)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise KagglePlanetError(f"decisions: probabilities have shape {p.shape}; expected (N, C) with C >= 1")
    if len(p) and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        row = int(np.flatnonzero(~np.all(np.isfinite(p) & (p >= 0) & (p <= 1), axis=1))[0])
        raise KagglePlanetError(f"decisions: row {row} holds a value that is not a probability in [0, 1]")
    return p
