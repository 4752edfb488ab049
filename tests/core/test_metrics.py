"""Metrics against scikit-learn as the independent reference."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, fbeta_score, log_loss, roc_auc_score

from kaggle_planet.core import metrics
from kaggle_planet.core.errors import KagglePlanetError


def sk_f2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on rows with no true nor predicted labels
        return float(fbeta_score(y_true, y_pred, beta=2, average="samples"))


@pytest.mark.parametrize("seed", range(5))
def test_f2_matches_sklearn_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    n, c = rng.integers(1, 300), rng.integers(1, 20)
    y_true = (rng.random((n, c)) < rng.random()).astype(int)
    y_pred = (rng.random((n, c)) < rng.random()).astype(int)
    assert metrics.f2_samples(y_true, y_pred) == pytest.approx(sk_f2(y_true, y_pred), abs=1e-9)


@pytest.mark.parametrize(
    "case",
    ["empty_predictions", "all_positive", "empty_truth_rows", "both_empty", "perfect", "one_tag_each"],
)
def test_f2_matches_sklearn_on_edge_cases(case):
    rng = np.random.default_rng(1)
    y_true = (rng.random((50, 6)) < 0.3).astype(int)
    y_pred = (rng.random((50, 6)) < 0.3).astype(int)
    if case == "empty_predictions":
        y_pred[:] = 0
    elif case == "all_positive":
        y_pred[:] = 1
    elif case == "empty_truth_rows":
        y_true[::3] = 0
    elif case == "both_empty":
        y_true[::2] = 0
        y_pred[::2] = 0
    elif case == "perfect":
        y_pred = y_true.copy()
    elif case == "one_tag_each":
        y_true = np.eye(6, dtype=int)[rng.integers(0, 6, 50)]
        y_pred = np.eye(6, dtype=int)[rng.integers(0, 6, 50)]
    assert metrics.f2_samples(y_true, y_pred) == pytest.approx(sk_f2(y_true, y_pred), abs=1e-9)


def test_row_with_nothing_true_nor_predicted_scores_zero_like_sklearn():
    y = np.zeros((1, 4), dtype=int)
    assert sk_f2(y, y) == 0.0
    assert metrics.f2_samples(y, y) == 0.0


def test_f2_samples_metric_thresholds_strictly_above_point_two():
    y_true = np.array([[1, 0], [0, 1]])
    probs = np.array([[0.2, 0.9], [0.21, 0.9]])
    expected = sk_f2(y_true, (probs > 0.2).astype(int))
    assert metrics.score("f2_samples", y_true, probs) == pytest.approx(expected, abs=1e-12)
    report = metrics.metric_report("f2_samples", y_true, probs)
    assert report["f2@0.2"] == pytest.approx(expected, abs=1e-12)
    assert report["f2@0.5"] == pytest.approx(sk_f2(y_true, (probs > 0.5).astype(int)), abs=1e-12)


def test_roc_auc_and_accuracy_match_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random((200, 1)) < 0.4).astype(int)
    p = np.clip(y * 0.3 + rng.random((200, 1)) * 0.7, 0, 1)
    assert metrics.score("roc_auc", y, p) == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert metrics.metric_report("roc_auc", y, p)["log_loss"] == pytest.approx(log_loss(y[:, 0], p[:, 0]))

    labels = rng.integers(0, 4, 150)
    onehot = np.eye(4, dtype=int)[labels]
    probs = rng.dirichlet(np.ones(4), 150)
    assert metrics.score("accuracy", onehot, probs) == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert metrics.metric_report("accuracy", onehot, probs)["log_loss"] == pytest.approx(
        log_loss(labels, probs, labels=range(4))
    )


def test_score_by_fold_scores_each_fold_separately():
    rng = np.random.default_rng(4)
    y = (rng.random((90, 5)) < 0.3).astype(int)
    p = rng.random((90, 5))
    folds = np.repeat([2, 0, 1], 30)
    per_fold = metrics.score_by_fold("f2_samples", y, p, folds)
    assert list(per_fold) == ["0", "1", "2"]
    for k, value in per_fold.items():
        m = folds == int(k)
        assert value == pytest.approx(sk_f2(y[m], (p[m] > 0.2).astype(int)))
    summary = metrics.summarize_scores("f2_samples", y, p, folds)
    assert summary["fold_mean"] == pytest.approx(np.mean(list(per_fold.values())))


def test_unknown_metric_lists_valid_names():
    with pytest.raises(KagglePlanetError, match="f2_samples.*roc_auc.*accuracy"):
        metrics.score("auc", np.zeros((1, 1)), np.zeros((1, 1)))


def test_shape_mismatch_is_one_line_error():
    with pytest.raises(KagglePlanetError, match="same"):
        metrics.score("accuracy", np.zeros((3, 2)), np.zeros((3, 3)))


# ------------------------------------------------------------------------------- the metric table

BETAS = [0.5, 1.0, 2.0, 3.0]
AVERAGES = ["samples", "micro", "macro"]


def sk_fbeta(y, pred, beta, average):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero divisions: sklearn warns and scores 0.0
        return float(fbeta_score(y, pred, beta=beta, average=average))


def multilabel_case(seed, n=120, c=7):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.1, 0.5)).astype(int)
    y[:, -1] = 0  # a class never true: macro counts it as 0, as sklearn does
    return y, np.clip(0.35 * y + rng.random((n, c)) * 0.7, 0, 1)


def multiclass_case(seed, n=150, c=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c - 1, n)  # the last class never true ...
    probs = rng.dirichlet(np.ones(c), n)
    probs[:, -1] *= 0.01  # ... and never predicted: sklearn's macro of label vectors leaves it out
    probs /= probs.sum(axis=1, keepdims=True)
    return labels, np.eye(c, dtype=int)[labels], probs


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("beta", BETAS)
def test_fbeta_multilabel_matches_sklearn_at_one_over_one_plus_beta_squared(seed, average, beta):
    y, p = multilabel_case(seed)
    name = f"f{beta:g}_{average}"
    expected = sk_fbeta(y, (p > 1.0 / (1.0 + beta**2)).astype(int), beta, average)
    assert metrics.score(name, y, p, "multilabel") == pytest.approx(expected, abs=1e-12)
    assert metrics.score(name, y, p) == pytest.approx(expected, abs=1e-12)  # task inferred: multilabel
    assert metrics.get_metric(name).threshold == pytest.approx(1.0 / (1.0 + beta**2))


def test_f2_samples_is_todays_planet_metric_bit_for_bit():
    y, p = multilabel_case(7)
    p[::5, 0] = 0.2  # exactly at the threshold: not predicted (strict >)
    assert metrics.get_metric("f2_samples").threshold == 0.2
    assert metrics.score("f2_samples", y, p) == metrics.f2_at(y, p, 0.2)
    assert metrics.score("f2_samples", y, p, "multilabel") == metrics.f2_samples(y, p > 0.2)
    assert metrics.metric_report("f2_samples", y, p) == {"f2@0.5": metrics.f2_at(y, p, 0.5), "f2@0.2": metrics.f2_at(y, p, 0.2)}


@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("beta", BETAS)
def test_fbeta_multiclass_scores_the_argmax_like_sklearn(average, beta):
    labels, onehot, probs = multiclass_case(int(beta * 10))
    pred = probs.argmax(axis=1)
    name = f"f{beta:g}_{average}"
    if average == "samples":  # not defined by sklearn for label vectors: the one-hot matrices, row by row
        expected = sk_fbeta(onehot, np.eye(onehot.shape[1], dtype=int)[pred], beta, "samples")
    else:
        expected = sk_fbeta(labels, pred, beta, average)
    assert metrics.score(name, onehot, probs, "multiclass") == pytest.approx(expected, abs=1e-12)
    assert metrics.score(name, onehot, probs) == pytest.approx(expected, abs=1e-12)  # inferred: one-hot, rows sum to 1


def test_f1_macro_of_a_multiclass_run_is_sklearns_f1_score():
    labels, onehot, probs = multiclass_case(11)
    assert metrics.score("f1_macro", onehot, probs, "multiclass") == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))


@pytest.mark.parametrize("name", ["f1_samples", "f1_micro", "f1_macro", "f2_samples", "f0.5_macro"])
def test_fbeta_binary_is_the_positive_class_at_the_threshold(name):
    rng = np.random.default_rng(5)
    y = (rng.random((200, 1)) < 0.3).astype(int)
    p = np.clip(0.3 * y + rng.random((200, 1)) * 0.7, 0, 1)
    beta, _ = metrics.parse_fbeta(name)
    expected = fbeta_score(y[:, 0], p[:, 0] > 1.0 / (1.0 + beta**2), beta=beta)
    assert metrics.score(name, y, p) == pytest.approx(expected, abs=1e-12)
    assert metrics.score(name, y, p, "binary") == pytest.approx(expected, abs=1e-12)


def test_accuracy_of_a_binary_column_is_prob_above_one_half():
    rng = np.random.default_rng(6)
    y = (rng.random((100, 1)) < 0.4).astype(int)
    p = rng.random((100, 1))
    p[:10, 0] = 0.5  # not above one half: predicted negative
    assert metrics.score("accuracy", y, p) == pytest.approx(accuracy_score(y[:, 0], p[:, 0] > 0.5))


def kaggle_log_loss(y, p):
    """Kaggle's log loss written out: clip to [1e-15, 1 - 1e-15], renormalise rows, mean -log p(true class)."""
    q = np.clip(np.asarray(p, dtype=float), 1e-15, 1 - 1e-15)
    if q.shape[1] == 1:  # binary: the positive column and its complement
        q = np.hstack([1 - q, q])
        y = np.hstack([1 - y, y])
    q = q / q.sum(axis=1, keepdims=True)
    return -np.mean([np.log(q[i, int(np.argmax(y[i]))]) for i in range(len(y))])


def test_log_loss_binary_and_multiclass_match_kaggles_formula():
    rng = np.random.default_rng(8)
    y = (rng.random((80, 1)) < 0.5).astype(int)
    p = rng.random((80, 1))
    p[:3, 0] = [0.0, 1.0, 1.0]  # certain and wrong (or right): clipped, finite
    assert metrics.score("log_loss", y, p) == pytest.approx(kaggle_log_loss(y, p), rel=1e-12)
    assert metrics.score("log_loss", y[3:], p[3:]) == pytest.approx(log_loss(y[3:, 0], p[3:, 0]), rel=1e-9)

    labels, onehot, probs = multiclass_case(9)
    raw = probs * rng.uniform(0.5, 2.0, (len(probs), 1))  # rows not summing to one: renormalised
    raw[0] = 0.0
    raw[0, labels[0]] = 1.0
    raw[1, labels[1]] = 0.0  # the true class at 0: clipped to 1e-15
    assert metrics.score("log_loss", onehot, raw, "multiclass") == pytest.approx(kaggle_log_loss(onehot, raw), rel=1e-12)
    assert metrics.score("log_loss", onehot, probs) == pytest.approx(log_loss(labels, probs, labels=range(5)), rel=1e-9)
    with pytest.raises(KagglePlanetError, match="one-hot labels"):
        metrics.score("log_loss", np.array([[1, 1], [0, 1]]), np.full((2, 2), 0.5))


def test_mean_column_auc_is_the_mean_of_sklearns_column_aucs():
    y, p = multilabel_case(12)
    y[:3, -1] = 1  # every column now has both label values
    expected = np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1])])
    assert metrics.score("mean_column_auc", y, p) == pytest.approx(expected, abs=1e-12)
    labels, onehot, probs = multiclass_case(13, c=4)
    labels[:2] = 3
    onehot = np.eye(4, dtype=int)[labels]
    assert metrics.score("mean_column_auc", onehot, probs) == pytest.approx(
        roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-12)


def test_mean_column_auc_leaves_out_columns_with_one_label_value(caplog):
    y, p = multilabel_case(14)  # the last column is never true
    expected = np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1] - 1)])
    assert metrics.score("mean_column_auc", y, p) == pytest.approx(expected, abs=1e-12)
    assert "1 of 7 column(s) have a single label value" in caplog.text


def test_directions_of_a_loss_and_a_score():
    assert metrics.get_metric("log_loss").higher_is_better is False
    assert all(metrics.get_metric(m).higher_is_better for m in ("f2_samples", "roc_auc", "accuracy", "mean_column_auc", "f1_macro"))
    assert metrics.worst_value("log_loss") == math.inf and metrics.worst_value("accuracy") == -math.inf
    assert metrics.is_better("log_loss", 0.3, 0.4) and not metrics.is_better("accuracy", 0.3, 0.4)
    assert not metrics.is_better("log_loss", 0.4, 0.4) and not metrics.is_better("log_loss", math.nan, 1.0)
    assert metrics.is_better("log_loss", 5.0, metrics.worst_value("log_loss"))
    values = [0.5, 0.2, 0.9, 0.2]
    assert metrics.best_index("log_loss", values) == 1 and metrics.best_index("accuracy", values) == 2
    assert metrics.get_metric("log_loss").order(values).tolist() == [1, 3, 0, 2]
    assert metrics.get_metric("accuracy").order(values).tolist() == [2, 0, 1, 3]
    assert metrics.gain("log_loss", 0.2, 0.5) == pytest.approx(0.3) and metrics.gain("accuracy", 0.2, 0.5) == pytest.approx(-0.3)
    # a perfect prediction has the best value under both directions
    y = np.eye(3, dtype=int)[[0, 1, 2, 1]]
    good, bad = np.where(y == 1, 0.9, 0.05), np.full((4, 3), 1 / 3)
    for name in ("log_loss", "accuracy", "f1_macro"):
        assert metrics.is_better(name, metrics.score(name, y, good), metrics.score(name, y, bad)), name


@pytest.mark.parametrize("name, pattern", [
    ("f2_weighted", "average 'weighted' is not one of samples | micro | macro"),
    ("f0_macro", "beta must be a positive number"),
    ("auc", r"unknown metric 'auc'; valid: .*log_loss, or f<beta>_<average>"),
    ("fx_macro", "unknown metric"),
])
def test_bad_metric_names_are_one_line_errors(name, pattern):
    with pytest.raises(KagglePlanetError, match=pattern) as info:
        metrics.get_metric(name)
    assert "\n" not in str(info.value)


def test_default_metrics_and_which_tasks_a_metric_fits():
    assert [metrics.default_metric(t) for t in ("multilabel", "binary", "multiclass")] == ["f2_samples", "roc_auc", "accuracy"]
    for task in metrics.TASKS:
        assert metrics.metric_for_task_problem(metrics.default_metric(task), task) is None
    assert metrics.metric_for_task_problem("f0.5_micro", "multiclass") is None
    problem = metrics.metric_for_task_problem("roc_auc", "multilabel")
    assert "does not apply to a multilabel task" in problem and "mean_column_auc" in problem and "\n" not in problem
    assert "does not apply" in metrics.metric_for_task_problem("log_loss", "multilabel")
    assert "unknown metric" in metrics.metric_for_task_problem("nope", "binary")
    assert metrics.decision_for("f1_macro", "multiclass") == "argmax"
    assert metrics.decision_for("f1_macro", "multilabel") == "thresholds"
    assert metrics.decision_for("roc_auc", "binary") == "probabilities"
    with pytest.raises(KagglePlanetError, match="unknown task"):
        metrics.default_metric("regression")


def test_every_table_entry_owns_a_complete_description():
    from kaggle_planet.ensemble.blend import BLENDERS

    for name, entry in metrics.METRICS.items():
        assert entry.name == name and entry.tasks and set(entry.tasks) <= set(metrics.TASKS)
        assert set(entry.decisions.values()) <= set(metrics.DECISIONS)
        assert entry.help and "\n" not in entry.help and entry.blend in BLENDERS
    assert metrics.get_metric("roc_auc").blend == "rank" and metrics.get_metric("f2_samples").blend == "mean"
    rows = metrics.metric_rows()
    assert [r["name"] for r in rows] == [*metrics.METRICS, "f<beta>_<average>"]


def test_task_inference_and_explicit_task_checks():
    _, onehot, probs = multiclass_case(15)
    assert metrics.infer_task(onehot, probs) == "multiclass"
    assert metrics.infer_task(onehot, probs * 0.9) == "multilabel"  # sigmoid-like rows do not sum to one
    assert metrics.infer_task(onehot[:, :1], probs[:, :1]) == "binary"
    # the same arrays read as multilabel threshold at 0.5 instead of taking the argmax
    assert metrics.score("f1_micro", onehot, probs, "multilabel") == pytest.approx(sk_fbeta(onehot, (probs > 0.5).astype(int), 1, "micro"))
    with pytest.raises(KagglePlanetError, match="binary task has one probability column; got 5"):
        metrics.score("f1_macro", onehot, probs, "binary")
    with pytest.raises(KagglePlanetError, match="unknown task"):
        metrics.score("accuracy", onehot, probs, "regression")


@pytest.mark.parametrize("seed", range(4))
def test_qwk_is_sklearns_quadratic_cohen_kappa_of_the_argmax(seed):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 7))
    truth = rng.integers(0, c, 300)
    probs = rng.random((300, c)) + 2.0 * np.eye(c)[np.clip(truth + rng.integers(-1, 2, 300), 0, c - 1)]  # near misses
    probs /= probs.sum(axis=1, keepdims=True)
    reference = cohen_kappa_score(truth, probs.argmax(axis=1), weights="quadratic", labels=list(range(c)))
    assert metrics.score("qwk", np.eye(c, dtype=int)[truth], probs, "multiclass") == pytest.approx(reference, abs=1e-12)
    assert metrics.get_metric("qwk").higher_is_better and metrics.get_metric("qwk").decision_for("multiclass") == "argmax"


def test_qwk_weighs_a_near_miss_less_than_a_far_one_and_is_finite_without_spread():
    y = np.eye(5, dtype=int)[[0, 1, 2, 3, 4] * 4]
    near, far = np.roll(np.eye(5)[[0, 1, 2, 3, 4] * 4], 1, axis=1), np.eye(5)[[4, 3, 2, 1, 0] * 4]
    assert metrics.score("qwk", y, near, "multiclass") > metrics.score("qwk", y, far, "multiclass")
    same = np.eye(3, dtype=int)[[1] * 10]
    assert metrics.score("qwk", same, same.astype(float), "multiclass") == 0.0  # sklearn: nan (0 / 0)
    with pytest.raises(KagglePlanetError, match="qwk: expected multiclass"):
        metrics.score("qwk", np.array([[1], [0]]), np.array([[0.7], [0.2]]), "binary")
