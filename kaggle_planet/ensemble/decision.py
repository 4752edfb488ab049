"""The decision layer: what a run submits, given its predicted probabilities and the metric it is scored by.

A run's metric entry (:mod:`kaggle_planet.core.metrics`) says what its task needs decided: ``thresholds``
(F-beta of multilabel or binary runs: the chosen 0/1 tags), ``argmax`` (multiclass: the probabilities,
whose most probable class the submission takes) or ``probabilities`` (AUC, log loss: the probabilities
themselves). ``DECISIONS`` is the one table of rules. Each entry owns the decision kind it serves (and,
where narrower, the metrics and task kinds), its ``fit`` (OOF labels and probabilities -> a JSON-able
state; None when there is nothing to fit), its ``apply`` (probabilities + state -> what is submitted) and
its help text:

- ``thresholds``: per-class thresholds fitted on the OOF rows for the run's F-beta (any beta; samples,
  micro or macro: :mod:`kaggle_planet.ensemble.thresholds`), ``prob > threshold``; averaged over samples
  the most probable tag when none passes (as the Planet submission requires; an empty row scores 0
  anyway), micro / macro / binary as the thresholds leave them (a tag there can cost a false positive);
- ``expected_f2`` (F2 over samples, multilabel): per image, the tag set with the highest expected F2 when
  each tag is present independently with its predicted probability. For any set ``S`` of size ``k``,

      E[F2(S)] = 5 * sum_{i in S} p_i * E[1 / (4 (1 + |Y without i|) + k)]

  and the count of the other labels is a Poisson-binomial variable whose distribution a dynamic
  programme gives exactly (Jansche 2007; Nan Ye et al. 2012, "Optimizing F-measures: a tale of two
  approaches"). Each summand grows with ``p_i``, so the best set of each size is the top-k tags and
  the decision is the best k: O(C^3) per image, no fitting;
- ``expected_f2_calibrated``: per-class Platt scaling (logistic regression on the logit) fitted on
  the OOF rows first, then ``expected_f2``: the expectation is only as good as the calibration;
- ``argmax`` (multiclass) and ``probabilities`` (AUC, log loss): the probabilities as predicted;
- ``clip`` (log loss): probabilities clipped to ``[eps, 1 - eps]`` (multiclass rows renormalised), ``eps``
  the one of :data:`CLIP_EPS` with the lowest log loss on the OOF rows: an over-confident wrong prediction
  then costs at most ``-log(eps)``.

:func:`evaluate_decisions` scores every rule serving the metric honestly on OOF rows (each fold decided
with a state fitted on the other folds) and :func:`fit_run_decisions` writes that to ``decision.json``
beside ``thresholds.json``, with the digest of the OOF rows and labels it was fitted on (``inputs_sha256``;
what they were in ``fitted_on.json``): a decision.json fitted on other predictions or for another metric
is fitted again, saying so. ``auto`` is the rule with the best honest score (the lowest for a loss).
:func:`decide_run` is what a submission calls: the values the formatter receives and what the sidecar
records. This module uses numpy and scikit-learn only.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import artifacts, fingerprints, metrics
from ..core.errors import KagglePlanetError
from ..core.metrics import BETA2, logit
from ..data.layout import top_tag_when_none
from . import thresholds as fits
from .thresholds import THRESHOLDS, FBeta, fbeta_for, fit_entry, record_fit, run_thresholds, search_thresholds, stale_fit

log = logging.getLogger(__name__)

DECISION = "decision.json"
AUTO = "auto"
F2_METRIC = fits.F2_METRIC  # Planet's: decision.json and the sidecar keep their *_f2 keys for it
CLIP_EPS = (1e-15, 1e-4, 1e-3, 5e-3, 1e-2, 2e-2, 5e-2)  # 1e-15: Kaggle's own clipping, i.e. none
_CHUNK = 4096  # images per block of the expected-F2 computation: (chunk, C, C) floats
_LOGIT_CLIP = 1e-6


@dataclass(frozen=True)
class Target:
    """What a run's decisions are scored by: its metric entry on its task kind."""

    metric: str
    task: str  # multilabel | binary | multiclass
    kind: str  # what the metric needs decided: thresholds | argmax | probabilities
    higher_is_better: bool
    fbeta: FBeta | None = None  # the F-beta the thresholds are fitted for (kind thresholds)


def target_for(metric: str, task: str) -> Target:
    """The :class:`Target` of a ``task`` run scored by ``metric``; one line when the metric does not apply."""
    problem = metrics.metric_for_task_problem(metric, task)
    if problem:
        raise KagglePlanetError(f"decisions: {problem}")
    entry = metrics.get_metric(metric)
    kind = entry.decisions[task]
    fbeta = fbeta_for(metric, task) if kind == "thresholds" else None
    if kind == "thresholds" and fbeta is None:
        raise KagglePlanetError(f"decisions: metric {metric!r} asks for thresholds on a {task} task but is no F-beta ({metrics.FBETA_PATTERN})")
    return Target(metric, task, kind, entry.higher_is_better, fbeta)


F2_TARGET = target_for(F2_METRIC, "multilabel")


def run_target(run_dir: Path, info: artifacts.RunInfo) -> Target:
    """The :class:`Target` of a run folder (its competition's metric, completed by the run's options)."""
    try:
        return target_for(fits.run_metric(info), info.task)
    except KagglePlanetError as exc:
        raise KagglePlanetError(f"{Path(run_dir) / artifacts.RUN_INFO}: {exc}") from None


def score_decided(target: Target, y_true: np.ndarray, decided: np.ndarray) -> float:
    """The run's metric of what a rule decided (``(N, C)``: 0/1 tags for thresholds, else probabilities)."""
    if target.kind == "thresholds":
        return metrics.fbeta_of(y_true, decided, target.fbeta.beta ** 2, target.fbeta.average)
    return metrics.score(target.metric, y_true, decided, target.task)


@dataclass(frozen=True)
class Decision:
    help: str
    kind: str  # the decision kind it serves: thresholds | argmax | probabilities
    apply: Callable[[np.ndarray, dict[str, Any]], np.ndarray]  # probs (N, C), state -> chosen (N, C) bool, or probabilities
    fit: Callable[[np.ndarray, np.ndarray, Target], dict[str, Any]] | None = None  # (y (N, C), probs (N, C), target) -> state
    only_metrics: tuple[str, ...] = ()  # only these metrics of its kind (empty: every one)
    only_tasks: tuple[str, ...] = ()  # only these task kinds (empty: every one)

    def serves(self, target: Target) -> bool:
        return (self.kind == target.kind and (not self.only_metrics or target.metric in self.only_metrics)
                and (not self.only_tasks or target.task in self.only_tasks))


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


def thresholds_state(thresholds: list[float], fbeta: FBeta) -> dict[str, Any]:
    """The ``thresholds`` rule's state: the thresholds and, away from the sample average, no top-tag fallback."""
    state: dict[str, Any] = {"thresholds": [float(t) for t in thresholds]}
    if fbeta.average != "samples":
        state["at_least_one"] = False
    return state


def fit_thresholds_rule(y: np.ndarray, probs: np.ndarray, target: Target = F2_TARGET) -> dict[str, Any]:
    fbeta = target.fbeta
    fit = search_thresholds(y, probs, fbeta.threshold, beta=fbeta.beta, average=fbeta.average)
    return thresholds_state(fit.thresholds.tolist(), fbeta)


def apply_thresholds(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    chosen = probs > np.asarray(state["thresholds"], dtype=np.float64)
    return top_tag_when_none(probs, chosen) if state.get("at_least_one", True) else chosen


def apply_expected_f2(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    return expected_f2_decisions(probs)[0]


def fit_platt(y: np.ndarray, probs: np.ndarray, target: Target | None = None) -> dict[str, Any]:
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


def keep_probabilities(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    return np.array(probs, dtype=np.float64)


def clip_probabilities(probs: np.ndarray, eps: float, renormalise: bool) -> np.ndarray:
    """``probs (N, C)`` clipped to ``[eps, 1 - eps]``; with ``renormalise`` (multiclass) each row divided by its sum."""
    q = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return q / q.sum(axis=1, keepdims=True) if renormalise else q


def fit_clip(y: np.ndarray, probs: np.ndarray, target: Target) -> dict[str, Any]:
    """The ``eps`` of :data:`CLIP_EPS` whose clipped probabilities score best on these rows (the smallest among
    equals), and each one's score (``score_by_eps``)."""
    renormalise = target.task == "multiclass"
    scores = [score_decided(target, y, clip_probabilities(probs, eps, renormalise)) for eps in CLIP_EPS]
    best = metrics.get_metric(target.metric).best_index(scores)
    return {"eps": CLIP_EPS[best], "renormalise": renormalise, "score_by_eps": {f"{e:g}": s for e, s in zip(CLIP_EPS, scores)}}


def apply_clip(probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    return clip_probabilities(probs, float(state["eps"]), bool(state["renormalise"]))


DECISIONS: dict[str, Decision] = {
    "thresholds": Decision("per-class thresholds fitted on the OOF rows for the run's F-beta (prob > threshold; "
                           "over samples the top tag when none passes)", "thresholds", apply_thresholds, fit_thresholds_rule),
    "expected_f2": Decision("per image, the tag set with the highest exact expected F2 under the predicted probabilities",
                            "thresholds", apply_expected_f2, only_metrics=(F2_METRIC,), only_tasks=("multilabel",)),
    "expected_f2_calibrated": Decision("per-class Platt scaling fitted on OOF rows, then expected_f2",
                                       "thresholds", apply_expected_f2_calibrated, fit_platt, only_metrics=(F2_METRIC,), only_tasks=("multilabel",)),
    "argmax": Decision("the probabilities as predicted; the submission takes the most probable class", "argmax", keep_probabilities),
    # log loss: clip first, its default (fitted honestly; the smallest eps when the probabilities are calibrated)
    "clip": Decision(f"probabilities clipped to [eps, 1 - eps] (multiclass rows renormalised), eps the one of "
                     f"{', '.join(f'{e:g}' for e in CLIP_EPS)} with the best OOF log loss", "probabilities", apply_clip, fit_clip,
                     only_metrics=("log_loss",)),
    "probabilities": Decision("the probabilities as predicted", "probabilities", keep_probabilities),
}
CHOICES: tuple[str, ...] = (AUTO, *DECISIONS)
# what each decision kind's rules are for, in a refusal
_KIND_SCOPE = {
    "thresholds": "runs scored by an F-beta of thresholded probabilities (multilabel, binary)",
    "argmax": "runs scored on the most probable class (multiclass)",
    "probabilities": "runs scored on the probabilities (AUC, log loss)",
}


def get_decision(name: str) -> Decision:
    try:
        return DECISIONS[name]
    except KeyError:
        raise KagglePlanetError(f"unknown decision rule {name!r}; valid: {', '.join(CHOICES)}") from None


def rules_for(target: Target) -> list[str]:
    """The rules serving ``target``, in table order; the first is its default."""
    return [name for name, rule in DECISIONS.items() if rule.serves(target)]


def decide(name: str, probs: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Apply rule ``name`` with its fitted ``state`` to ``probs (N, C)``: thresholds rules (N, C) bool (over
    samples >= 1 tag per row), the others (N, C) float probabilities."""
    return get_decision(name).apply(_check_probs(probs), state)


def _not_served(run_dir: Path, name: str, target: Target, serving: list[str]) -> KagglePlanetError:
    rule = get_decision(name)
    scope = f"runs scored by {' or '.join(rule.only_metrics)}" if rule.only_metrics else _KIND_SCOPE[rule.kind]
    scope = f"{'/'.join(rule.only_tasks)} {scope}" if rule.only_tasks else scope
    return KagglePlanetError(f"{run_dir / artifacts.RUN_INFO}: decision {name!r} applies to {scope}; this run's task is "
                             f"{target.task!r}, its metric {target.metric!r} (valid for it: {', '.join((AUTO, *serving))})")


# ------------------------------------------------------------------------------------ evaluation


def evaluate_decisions(y_true: np.ndarray, probs: np.ndarray, folds: np.ndarray, metric: str = F2_METRIC,
                       task: str = "multilabel") -> dict[str, Any]:
    """Every rule serving ``metric`` on a ``task`` run, scored on OOF rows: ``honest_score`` (mean over folds
    of the fold decided with a state fitted on the other folds), ``honest_per_fold``, ``oof_score`` (fitted
    and scored on all rows) and the all-rows ``state`` (F2: also ``honest_f2`` / ``oof_f2``, the same values);
    plus ``auto``, the rule with the best honest score (ties: the first in the table), and ``metric``."""
    target = target_for(metric, task)
    y = np.asarray(y_true).astype(np.int64)
    p = _check_probs(probs)
    folds = np.asarray(folds)
    if y.shape != p.shape or folds.shape != (len(y),):
        raise KagglePlanetError(f"decisions: labels {y.shape}, probabilities {p.shape} and folds {folds.shape} do not match")
    ks = np.unique(folds)
    if len(ks) < 2:
        raise KagglePlanetError(f"decisions: an honest comparison needs at least 2 folds; found {len(ks)}")
    rules: dict[str, Any] = {}
    for name in rules_for(target):
        rule = DECISIONS[name]
        state = rule.fit(y, p, target) if rule.fit else {}
        decided_all = rule.apply(p, state)
        per_fold = {}
        for k in ks:
            held = folds == k
            decided = decided_all[held] if rule.fit is None else rule.apply(p[held], rule.fit(y[~held], p[~held], target))
            per_fold[str(int(k))] = score_decided(target, y[held], decided)
        honest, oof = float(np.mean(list(per_fold.values()))), score_decided(target, y, decided_all)
        if metric == F2_METRIC:  # the names other code reads, first and in their order
            rules[name] = {"help": rule.help, "honest_f2": honest, "honest_per_fold": per_fold, "oof_f2": oof, "state": state,
                           "honest_score": honest, "oof_score": oof}
        else:
            rules[name] = {"help": rule.help, "honest_score": honest, "honest_per_fold": per_fold, "oof_score": oof, "state": state}
    names = list(rules)
    best = names[metrics.get_metric(metric).best_index(rules[n]["honest_score"] for n in names)]  # the first among equals
    return {"rules": rules, AUTO: best, "metric": metric}


def fit_run_decisions(run_dir: str | Path, reuse: bool = True) -> dict[str, Any]:
    """Evaluate every rule serving the run's metric on its OOF predictions and write ``decision.json``.

    With ``reuse`` an existing ``decision.json`` made from the same ``oof.csv`` and ``labels.csv``
    (sha256 recorded in it) for the same metric is returned as it is.
    """
    run_dir = Path(run_dir)
    path = run_dir / DECISION
    info = artifacts.read_run_info(run_dir)
    target = run_target(run_dir, info)
    digest = fingerprints.run_inputs_digest(run_dir)
    if reuse and path.is_file():
        saved = artifacts.read_json(path)
        if isinstance(saved, dict) and saved.get("inputs_sha256") == digest and saved.get("classes") == list(info.classes) \
                and saved.get("metric") == target.metric and set(saved.get("rules", {})) == set(rules_for(target)):
            return saved
        stale = stale_fit(run_dir, DECISION)
        if stale:
            log.info("%s; fitting the decision rules again", stale)
    run = artifacts.load_run(run_dir)
    result = {"classes": list(info.classes), "inputs_sha256": digest,
              **evaluate_decisions(run.y_true, run.oof_probs, run.folds, target.metric, info.task)}
    artifacts.write_json(path, result)
    record_fit(run_dir, DECISION, info)
    log.info("%s: honest %s %s -> auto picks %s", run_dir, "F2" if target.metric == F2_METRIC else target.metric,
             ", ".join(f"{n} {r['honest_score']:.5f}" for n, r in result["rules"].items()), result[AUTO])
    return result


def resolve_decision(name: str, evaluation: dict[str, Any]) -> str:
    """``auto`` -> the rule with the best honest score in ``evaluation``; any other name as given (checked)."""
    if name == AUTO:
        return str(evaluation[AUTO])
    get_decision(name)
    return name


def format_decisions_summary(result: dict[str, Any]) -> str:
    """One line per rule: honest score (fit on K-1 folds), in-sample OOF score; the rule ``auto`` picks."""
    metric = result.get("metric", F2_METRIC)
    label = "F2" if metric == F2_METRIC else metric
    honest_head = f"honest {label}"
    honest_width = max(9, len(honest_head))
    loss = "" if metrics.get_metric(metric).higher_is_better else "  (lower is better)"
    width = max(len(n) for n in result["rules"])
    lines = [f"{'decision rule':<{width}}  {honest_head:<{honest_width}}   OOF {label} (fit on all rows){loss}"]
    for name, rule in result["rules"].items():
        mark = "  <- auto" if name == result[AUTO] else ""
        honest, oof = rule.get("honest_score", rule.get("honest_f2")), rule.get("oof_score", rule.get("oof_f2"))
        lines.append(f"{name:<{width}}  {honest:{honest_width}.5f}   {oof:9.5f}{mark}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ the submission


def _needs_evaluation(rule: str, target: Target) -> bool:
    # auto compares the rules; a rule fitted on the OOF rows (thresholds aside: thresholds.json) needs its fit, and
    # the F2 rules always report every rule's honest score, as the submission did before
    return rule == AUTO or (rule != "thresholds" and (target.kind == "thresholds" or DECISIONS[rule].fit is not None))


def decide_run(run: artifacts.Run, probs: np.ndarray, rule: str) -> tuple[np.ndarray, dict[str, Any]]:
    """What a submission of ``run`` formats for its test rows ``probs (T, C)`` by decision ``rule`` (or ``auto``),
    and what the submission's sidecar records: ``(values (T, C) float, record)``.

    By what the run's metric needs: thresholds: the chosen tags as 0.0 / 1.0 (over samples at least one per
    row); argmax: the probabilities (the formatter takes the argmax); probabilities: the probabilities, or
    with ``clip`` clipped. ``thresholds`` (the submission's default) on a run with nothing to threshold means
    the metric's default rule, as does ``auto`` when one rule serves it. Record keys: ``decision``,
    ``decision_asked``; ``thresholds`` (class -> threshold), ``oof_score_tuned``, ``oof_score_heldout``,
    ``fitted_on`` when thresholds decide; ``decision_honest_scores`` (rule -> honest score) when the rules
    were compared; ``decision_oof_score`` and ``decision_state`` for a fitted rule; ``honest_score`` for
    all but the unfitted default. An ``f2_samples`` run records exactly what its submission always did
    (``oof_f2_tuned``, ``oof_f2_heldout``, ``decision_honest_f2``, ``oof_f2``).
    """
    if rule not in CHOICES:
        raise KagglePlanetError(f"unknown decision rule {rule!r}; valid: {', '.join(CHOICES)}")
    p = _check_probs(probs)
    info = run.info
    if p.shape[1] != len(info.classes):
        raise KagglePlanetError(f"decisions: probabilities have {p.shape[1]} columns; {run.path / artifacts.RUN_INFO} has {len(info.classes)} classes")
    target = run_target(run.path, info)
    serving = rules_for(target)
    wanted = rule
    if (rule == "thresholds" and target.kind != "thresholds") or (rule == AUTO and len(serving) == 1):
        wanted = serving[0]
    if wanted != AUTO and wanted not in serving:
        raise _not_served(run.path, wanted, target, serving)
    f2 = target.metric == F2_METRIC
    evaluation = fit_run_decisions(run.path) if _needs_evaluation(wanted, target) else None
    used = resolve_decision(wanted, evaluation) if evaluation else wanted
    record: dict[str, Any] = {"decision": used, "decision_asked": rule}
    if evaluation:
        key, value = ("decision_honest_f2", "honest_f2") if f2 else ("decision_honest_scores", "honest_score")
        record[key] = {name: r[value] for name, r in evaluation["rules"].items()}
    if used == "thresholds":
        thr = run_thresholds(run.path)
        fitted = artifacts.read_json(run.path / THRESHOLDS)
        tuned, heldout = ("f2_tuned", "f2_heldout") if f2 else ("score_tuned", "score_heldout")
        record.update({"thresholds": dict(zip(info.classes, thr.tolist())), f"oof_{tuned}": fitted.get(tuned),
                       f"oof_{heldout}": fitted.get(heldout), "honest_score": fitted.get(heldout),
                       "fitted_on": (fit_entry(run.path, THRESHOLDS) or {}).get("fitted_on")})
        return decide("thresholds", p, thresholds_state(thr.tolist(), target.fbeta)).astype(np.float64), record
    state: dict[str, Any] = {}
    if evaluation:
        chosen = evaluation["rules"][used]
        state = chosen["state"]
        if f2:
            record.update(oof_f2=chosen["oof_f2"], honest_score=chosen["honest_f2"])
        else:
            record.update(decision_oof_score=chosen["oof_score"], honest_score=chosen["honest_score"])
            if state:
                record["decision_state"] = state
    return decide(used, p, state).astype(np.float64), record


def _check_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise KagglePlanetError(f"decisions: probabilities have shape {p.shape}; expected (N, C) with C >= 1")
    if len(p) and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        row = int(np.flatnonzero(~np.all(np.isfinite(p) & (p >= 0) & (p <= 1), axis=1))[0])
        raise KagglePlanetError(f"decisions: row {row} holds a value that is not a probability in [0, 1]")
    return p
