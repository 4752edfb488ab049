"""Threshold search: exactness against brute force with scikit-learn's F2 as the reference."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from runfactory import planet_oof, write_run
from sklearn.metrics import fbeta_score

from kaggle_planet.core import artifacts, metrics
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import thresholds


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
    assert set(saved) == {"classes", "thresholds", "f2_at_0.5", "f2_at_0.2", "f2_tuned", "f2_heldout", "heldout_per_fold", "passes"}
    assert saved["classes"] == classes
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
