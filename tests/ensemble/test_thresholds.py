"""Threshold search: exactness against brute force with scikit-learn's F-beta (F2 over samples for Planet; any
beta over samples, micro or macro) as the reference."""
from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np
import pytest
from runfactory import planet_oof, write_run
from sklearn.metrics import fbeta_score

from kaggle_planet.core import artifacts, metrics
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import thresholds

GENERIC_KEYS = ["metric", "beta", "average", "default_threshold", "score_at_0.5", "score_default", "score_tuned", "score_heldout"]


def sk_f2_at(y: np.ndarray, probs: np.ndarray, thr) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fbeta_score(y, (probs > np.asarray(thr)).astype(int), beta=2, average="samples"))


def brute_force_best(y: np.ndarray, probs: np.ndarray) -> float:
    """Best F2 over every combination of per-class thresholds that gives a distinct prediction.

    With probabilities in (0, 1), ``prob > t`` for t in {0} U {distinct probabilities} reaches every
    prediction set a threshold in [0, 1] can make for that class.
    """
    candidates = [np.r_[0.0, np.unique(probs[:, j])] for j in range(probs.shape[1])]
    # metrics.f2_samples (checked against scikit-learn in test_metrics) keeps the loop fast
    return max(metrics.f2_samples(y, probs > np.array(t)) for t in itertools.product(*candidates))


def small_case(seed: int, n: int = 8, c: int = 3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.4).astype(int)
    probs = np.round(rng.random((n, c)) * 0.98 + 0.01, 2)  # rounding creates ties, as real files have
    return y, probs


@pytest.mark.parametrize("seed", range(8))
def test_two_class_search_is_exact(seed):
    y, probs = small_case(seed, n=24, c=2)
    thr, f2 = thresholds.fit_thresholds(y, probs)
    best = brute_force_best(y, probs)
    assert f2 == pytest.approx(best, abs=1e-12)
    assert sk_f2_at(y, probs, thr) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_finds_brute_force_optimum_on_small_cases(seed):
    y, probs = small_case(seed)
    thr, f2 = thresholds.fit_thresholds(y, probs)
    best = brute_force_best(y, probs)
    assert f2 == pytest.approx(best, abs=1e-12)
    assert sk_f2_at(y, probs, thr) == pytest.approx(f2, abs=1e-12)


def test_result_is_a_coordinate_optimum_on_realistic_data():
    y, probs, _ = planet_oof(1500, seed=3)
    thr, f2 = thresholds.fit_thresholds(y, probs)
    assert sk_f2_at(y, probs, thr) == pytest.approx(f2, abs=1e-9)
    grid = np.linspace(0.0, 0.99, 100)
    for j in [0, 5, 12]:  # no 0.01-grid value for one class beats the fitted thresholds
        trial = thr.copy()
        for t in grid:
            trial[j] = t
            assert sk_f2_at(y, probs, trial) <= f2 + 1e-12


@pytest.mark.parametrize("start", [0.0, 0.2, 0.5, 0.9])
def test_never_scores_below_its_start(start):
    y, probs, _ = planet_oof(800, seed=int(start * 10))
    fit = thresholds.search_thresholds(y, probs, start=start)
    assert fit.start_f2 == pytest.approx(sk_f2_at(y, probs, start), abs=1e-12)
    assert fit.f2 >= fit.start_f2
    assert np.all((fit.thresholds >= 0) & (fit.thresholds <= 1))


# column 1 is always true and confidently predicted, so a false positive in column 0 costs F2
def test_thresholds_sit_between_distinct_probabilities():
    y = np.array([[1, 1], [0, 1], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.9], [0.3, 0.9], [0.7, 0.9], [0.1, 0.9]])
    thr, f2 = thresholds.fit_thresholds(y, probs)
    assert f2 == 1.0 == sk_f2_at(y, probs, thr)
    assert thr[0] == pytest.approx(0.5)  # midpoint of 0.3 (excluded) and 0.7 (included)


def test_probability_zero_rows_cannot_be_selected_by_a_threshold_in_range():
    y = np.array([[1, 1], [1, 1], [1, 1]])
    probs = np.array([[0.0, 0.9], [0.4, 0.9], [0.6, 0.9]])
    thr, f2 = thresholds.fit_thresholds(y, probs, start=0.5)
    assert thr[0] == pytest.approx(0.2)
    assert f2 == pytest.approx(sk_f2_at(y, probs, thr))


def test_heldout_estimate_is_honest():
    y, probs, _ = planet_oof(3000, seed=5)
    folds = np.arange(len(y)) % 4
    mean, per_fold = thresholds.heldout_f2(y, probs, folds)
    assert list(per_fold) == ["0", "1", "2", "3"]
    for k, value in per_fold.items():  # reproduce one fold by hand with the public pieces
        held = folds == int(k)
        thr, _ = thresholds.fit_thresholds(y[~held], probs[~held])
        assert value == pytest.approx(sk_f2_at(y[held], probs[held], thr))
    _, tuned = thresholds.fit_thresholds(y, probs)
    assert mean < tuned  # fitting on the scored rows is optimistic
    assert mean > sk_f2_at(y, probs, 0.2)  # but tuning still helps on unseen rows

    noise = np.random.default_rng(0).random(probs.shape)  # no signal: tuning only fits noise
    noise_mean, _ = thresholds.heldout_f2(y, noise, folds)
    assert noise_mean < thresholds.fit_thresholds(y, noise)[1] - 0.002


def test_fit_run_thresholds_writes_schema(tmp_path):
    y, probs, classes = planet_oof(600, seed=7)
    ids = [f"train_{i}" for i in range(len(y))]
    run = write_run(tmp_path / "m", "planet", classes, ids, y, probs, np.arange(len(y)) % 3, ["test_0"], probs[:1])
    result = thresholds.fit_run_thresholds(run)
    saved = artifacts.read_json(run / "thresholds.json")
    assert saved == result
    f2_keys = ["classes", "thresholds", "f2_at_0.5", "f2_at_0.2", "f2_tuned", "f2_heldout", "heldout_per_fold", "passes"]
    assert list(saved) == f2_keys + GENERIC_KEYS  # today's F2 keys first, in their order, then the generic ones
    assert saved["classes"] == classes
    assert (saved["metric"], saved["beta"], saved["average"], saved["default_threshold"]) == ("f2_samples", 2.0, "samples", 0.2)
    for generic, f2 in [("score_at_0.5", "f2_at_0.5"), ("score_default", "f2_at_0.2"), ("score_tuned", "f2_tuned"), ("score_heldout", "f2_heldout")]:
        assert saved[generic] == saved[f2]
    loaded = artifacts.load_run(run)  # the probabilities as written (8 significant digits)
    assert sk_f2_at(loaded.y_true, loaded.oof_probs, saved["thresholds"]) == pytest.approx(saved["f2_tuned"], abs=1e-12)
    assert saved["f2_tuned"] >= saved["f2_at_0.2"]
    assert list(thresholds.read_run_thresholds(run)) == saved["thresholds"]
    text = thresholds.format_thresholds_summary(result)
    assert "held-out" in text and classes[0] in text


def test_fit_run_thresholds_refuses_non_multilabel_runs(tmp_path):
    y = np.array([[0], [1], [1], [0]])
    run = write_run(tmp_path / "inv", "invasive", ["invasive"], list("1234"), y, y * 0.8 + 0.1, np.array([0, 0, 1, 1]), ["9"], np.array([[0.5]]))
    with pytest.raises(KagglePlanetError, match="multilabel") as err:
        thresholds.fit_run_thresholds(run)
    assert "\n" not in str(err.value)
    y, probs, classes = planet_oof(60, seed=1)  # multilabel, but scored on the probabilities: nothing to threshold
    run = csv_run(tmp_path, classes, y, probs, {"target": "tags", "metric": "mean_column_auc"})
    with pytest.raises(KagglePlanetError, match="thresholds apply to .* scored by F-beta .*; this run's task is 'multilabel', "
                                                "its metric 'mean_column_auc'") as err:
        thresholds.fit_run_thresholds(run)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------- any F-beta: samples, micro, macro

FBETAS = [(beta, average) for beta in (0.5, 1.0, 2.0, 3.0) for average in thresholds.AVERAGES]


def sk_fbeta_at(y, probs, thr, beta, average) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fbeta_score(y, (probs > np.asarray(thr)).astype(int), beta=beta, average=average))


def random_case(seed: int, n: int = 200, c: int = 5):
    """Noisy, informative probabilities with ties, exact 0 / 1 and a class that is never true."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < rng.uniform(0.05, 0.6, c)).astype(int)
    y[:, -1] = 0
    probs = np.clip(0.6 * y + 0.7 * rng.random((n, c)) - 0.15, 0.0, 1.0).round(2)
    return y, probs


@pytest.mark.parametrize("beta, average", FBETAS)
def test_fbeta_at_equals_scikit_learn(beta, average):
    for seed in range(4):
        y, probs = random_case(seed, n=60)
        probs[:3] = 0.0  # rows with no prediction (and the last class has no labels at all)
        thr = np.linspace(0.2, 0.6, y.shape[1])
        assert thresholds.fbeta_at(y, probs, thr, beta, average) == pytest.approx(sk_fbeta_at(y, probs, thr, beta, average), abs=1e-12)
    y, probs, _ = planet_oof(300, seed=1)  # F2 over samples: the very same numbers as core.metrics' F2
    assert thresholds.fbeta_at(y, probs, 0.2) == metrics.f2_at(y, probs, 0.2)


@pytest.mark.parametrize("beta, average", FBETAS)
def test_fitted_thresholds_score_what_scikit_learn_says_and_never_below_the_defaults(beta, average):
    for seed in range(3):
        y, probs = random_case(seed)
        start = 1.0 / (1.0 + beta * beta)  # the metric's own threshold
        fit = thresholds.search_thresholds(y, probs, start, beta=beta, average=average)
        assert fit.score == pytest.approx(sk_fbeta_at(y, probs, fit.thresholds, beta, average), abs=1e-12)
        assert fit.start_score == pytest.approx(sk_fbeta_at(y, probs, start, beta, average), abs=1e-12)
        assert np.all((fit.thresholds >= 0) & (fit.thresholds <= 1))
        for default in (start, 0.5, 0.2):
            assert fit.score >= sk_fbeta_at(y, probs, default, beta, average) - 1e-12


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_macro_search_is_the_exact_optimum_of_each_class(beta):
    # macro F-beta is a mean of per-class scores, each depending on its own threshold only
    y, probs = random_case(4, n=80, c=4)
    fit = thresholds.search_thresholds(y, probs, 0.5, beta=beta, average="macro")
    best = []
    for j in range(y.shape[1]):
        candidates = np.r_[0.0, np.unique(probs[:, j]), 1.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's per-class scores of the whole matrix (average=None)
            best.append(max(fbeta_score(y, (probs > t).astype(int), beta=beta, average=None)[j] for t in candidates))
    assert fit.score == pytest.approx(np.mean(best), abs=1e-12)
    assert fit.passes <= 2  # the first pass finds every class's optimum; the second confirms it


@pytest.mark.parametrize("beta, average", [(1.0, "micro"), (0.5, "micro"), (1.0, "samples"), (3.0, "samples")])
def test_micro_and_samples_results_are_coordinate_optima_and_the_brute_force_best(beta, average):
    for seed in range(4):
        y, probs = small_case(seed, n=12, c=3)
        fit = thresholds.search_thresholds(y, probs, 0.5, beta=beta, average=average)
        assert fit.score == pytest.approx(sk_fbeta_at(y, probs, fit.thresholds, beta, average), abs=1e-12)
        # fbeta_at (equal to scikit-learn above) keeps the brute force fast
        candidates = [np.r_[0.0, np.unique(probs[:, j])] for j in range(probs.shape[1])]
        brute = max(thresholds.fbeta_at(y, probs, np.array(t), beta, average) for t in itertools.product(*candidates))
        # coupled classes: coordinate ascent guarantees a coordinate optimum only; on these small cases (as for
        # F2 above) it is the global one
        assert fit.score == pytest.approx(brute, abs=1e-12)
        for j, values in enumerate(candidates):  # no single class's move improves it
            for t in values:
                trial = fit.thresholds.copy()
                trial[j] = t
                assert thresholds.fbeta_at(y, probs, trial, beta, average) <= fit.score + 1e-12


@pytest.mark.parametrize("average", thresholds.AVERAGES)
def test_f1_thresholds_beat_half_on_realistic_oof_and_the_heldout_estimate_is_honest(average):
    y, probs, _ = planet_oof(2000, seed=8)
    folds = np.arange(len(y)) % 4
    thr, tuned = thresholds.fit_thresholds(y, probs, 0.5, beta=1.0, average=average)
    assert tuned == pytest.approx(sk_fbeta_at(y, probs, thr, 1.0, average), abs=1e-12)
    assert tuned > sk_fbeta_at(y, probs, 0.5, 1.0, average) + 0.002
    mean, per_fold = thresholds.heldout_score(y, probs, folds, 0.5, beta=1.0, average=average)
    held = folds == 2  # one fold by hand with the public pieces
    fold_thr, _ = thresholds.fit_thresholds(y[~held], probs[~held], 0.5, beta=1.0, average=average)
    assert per_fold["2"] == pytest.approx(sk_fbeta_at(y[held], probs[held], fold_thr, 1.0, average), abs=1e-12)
    assert mean <= tuned
    noise = np.random.default_rng(1).random(probs.shape)  # no signal: tuning only fits noise
    noise_mean, _ = thresholds.heldout_score(y, noise, folds, 0.5, beta=1.0, average=average)
    assert noise_mean < thresholds.fit_thresholds(y, noise, 0.5, beta=1.0, average=average)[1]


def test_f2_samples_is_the_default_and_its_path_is_unchanged():
    y, probs, _ = planet_oof(800, seed=2)
    default = thresholds.search_thresholds(y, probs)
    explicit = thresholds.search_thresholds(y, probs, 0.2, beta=2, average="samples")
    assert default.thresholds.tobytes() == explicit.thresholds.tobytes() and default.f2 == explicit.score
    assert thresholds.heldout_f2(y, probs, np.arange(800) % 3) == thresholds.heldout_score(y, probs, np.arange(800) % 3)


def test_what_a_metric_is_decided_by():
    f2 = thresholds.fbeta_for("f2_samples", "multilabel")
    assert (f2.beta, f2.average, f2.threshold) == (2.0, "samples", metrics.DEFAULT_THRESHOLD)
    assert thresholds.fbeta_for("f0.5_micro", "multilabel") == thresholds.FBeta("f0.5_micro", 0.5, "micro", 0.8)
    assert thresholds.fbeta_for("f1_samples", "binary").average == "micro"  # a binary run's one column
    for metric, task in [("f1_macro", "multiclass"), ("roc_auc", "binary"), ("mean_column_auc", "multilabel"), ("log_loss", "multiclass")]:
        assert thresholds.fbeta_for(metric, task) is None  # argmax or probabilities: nothing to threshold


@pytest.mark.parametrize("beta, average, message", [
    (0, "samples", "beta must be a positive number; got 0"),
    (-1.0, "macro", "beta must be a positive number"),
    (float("nan"), "micro", "beta must be a positive number"),
    ("2", "samples", "beta must be a positive number"),
    (True, "samples", "beta must be a positive number"),
    (2.0, "weighted", "unknown average 'weighted'; valid: samples, micro, macro"),
])
def test_bad_beta_or_average_is_refused_in_one_line(beta, average, message):
    y, probs = small_case(0)
    with pytest.raises(KagglePlanetError, match=message) as err:
        thresholds.search_thresholds(y, probs, beta=beta, average=average)
    assert "\n" not in str(err.value)


def csv_run(tmp_path, classes, y, probs, options):
    """A run of the generic csv competition whose layout ``options`` name its task and metric."""
    ids = [f"img{i}" for i in range(len(y))]
    return write_run(tmp_path / "run", "csv", classes, ids, y, probs, np.arange(len(y)) % 3, ["t0"], probs[:1], options=options)


@pytest.mark.parametrize("metric", ["f1_samples", "f1_macro", "f1_micro", "f0.5_samples"])
def test_fit_run_thresholds_fits_the_runs_metric(tmp_path, metric):
    beta, average = metrics.parse_fbeta(metric)
    y, probs, classes = planet_oof(900, seed=4)
    run = csv_run(tmp_path, classes, y, probs, {"target": "tags", "metric": metric})
    result = thresholds.fit_run_thresholds(run)
    assert artifacts.read_json(run / "thresholds.json") == result
    assert list(result) == ["classes", "thresholds", "heldout_per_fold", "passes", *GENERIC_KEYS]  # no f2_* keys
    assert (result["metric"], result["beta"], result["average"]) == (metric, beta, average)
    loaded = artifacts.load_run(run)
    y, probs = loaded.y_true, loaded.oof_probs
    assert result["score_tuned"] == pytest.approx(sk_fbeta_at(y, probs, result["thresholds"], beta, average), abs=1e-12)
    assert result["score_default"] == pytest.approx(sk_fbeta_at(y, probs, result["default_threshold"], beta, average), abs=1e-12)
    assert result["score_at_0.5"] == pytest.approx(sk_fbeta_at(y, probs, 0.5, beta, average), abs=1e-12)
    assert result["default_threshold"] == metrics.get_metric(metric).threshold
    assert result["score_default"] == pytest.approx(metrics.score(metric, y, probs, "multilabel"), abs=1e-12)  # the metric's own
    assert result["score_tuned"] > max(result["score_at_0.5"], result["score_default"])
    assert result["score_heldout"] == pytest.approx(np.mean(list(result["heldout_per_fold"].values())))
    assert result["score_heldout"] <= result["score_tuned"]
    text = thresholds.format_thresholds_summary(result)
    assert f"held-out {metric}" in text and f"OOF {metric} tuned thresholds" in text
    assert list(thresholds.run_thresholds(run)) == result["thresholds"]  # current: read, not fitted again


def test_thresholds_fitted_for_another_metric_are_fitted_again(tmp_path, caplog):
    y, probs, classes = planet_oof(300, seed=6)
    run = csv_run(tmp_path, classes, y, probs, {"target": "tags", "metric": "f2_samples"})
    assert thresholds.thresholds_stale(run) is None  # none yet
    with caplog.at_level("INFO", logger="kaggle_planet"):
        f2 = thresholds.run_thresholds(run)
    assert "has no thresholds.json: fitting" in caplog.text
    assert thresholds.thresholds_stale(run) is None
    info = artifacts.read_run_info(run)  # the run's layout now names another metric
    artifacts.write_run_info(run, dataclasses.replace(info, options={**info.options, "metric": "f1_macro"}))
    assert "fitted for the metric f2_samples, but the run is scored by f1_macro" in thresholds.thresholds_stale(run)
    f1 = thresholds.run_thresholds(run)
    assert artifacts.read_json(run / "thresholds.json")["metric"] == "f1_macro" and list(f1) != list(f2)
    assert thresholds.thresholds_stale(run) is None


def test_a_binary_run_scored_by_fbeta_fits_its_one_column(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random((300, 1)) < 0.3).astype(int)
    probs = np.clip(0.5 * y + 0.6 * rng.random(y.shape), 0, 1)
    run = csv_run(tmp_path, ["cactus"], y, probs, {"task": "binary", "metric": "f1_samples"})
    result = thresholds.fit_run_thresholds(run)
    assert (result["beta"], result["average"], result["default_threshold"]) == (1.0, "micro", 0.5)
    loaded = artifacts.load_run(run)
    assert result["score_tuned"] == pytest.approx(sk_fbeta_at(loaded.y_true[:, 0], loaded.oof_probs[:, 0], result["thresholds"][0], 1.0, "binary"))
    assert result["score_tuned"] >= result["score_default"]
