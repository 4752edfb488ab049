"""Metrics against scikit-learn as the independent reference."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, fbeta_score, log_loss, roc_auc_score

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
