"""The F2 decision layer: exact expected F2 against a brute-force expectation over every label vector,
its decision against the brute-force argmax over every tag set, honest per-fold scoring by hand."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from runfactory import planet_oof, write_run
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import fbeta_score

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import decision, thresholds
from kaggle_planet.kaggle import submission


def brute_force_expected_f2(p: np.ndarray, chosen: np.ndarray) -> float:
    """sum over all 2^C label vectors y of P(y) * F2(y, chosen), F2 by scikit-learn (empty/empty = 0)."""
    labels = np.array(list(itertools.product([0, 1], repeat=len(p))))
    weight = np.prod(np.where(labels == 1, p, 1.0 - p), axis=1)
    if weight.sum() == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fbeta_score(labels, np.tile(chosen.astype(int), (len(labels), 1)), beta=2, average="samples",
                                 sample_weight=weight, zero_division=0.0)) * weight.sum()


def all_sets(c: int) -> np.ndarray:
    return np.array(list(itertools.product([False, True], repeat=c)))


def random_probs(rng, c: int) -> np.ndarray:
    p = rng.random(c) ** rng.uniform(0.3, 3.0)  # skewed towards 0 or 1 as real outputs are
    p[rng.random(c) < 0.15] = rng.choice([0.0, 1.0])  # and some exact 0 / 1
    return p


@pytest.mark.parametrize("c, seed", [(2, 1), (3, 2), (5, 3), (8, 4)])
def test_expected_f2_equals_brute_force_expectation_for_every_tag_set(c, seed):
    rng = np.random.default_rng(seed)
    for _ in range(3 if c < 8 else 1):
        p = random_probs(rng, c)
        sets = all_sets(c)
        ours = decision.expected_f2(np.tile(p, (len(sets), 1)), sets)
        reference = np.array([brute_force_expected_f2(p, s) for s in sets])
        np.testing.assert_allclose(ours, reference, atol=1e-12)


@pytest.mark.parametrize("c, seed", [(2, 6), (4, 7), (6, 8), (8, 9)])
def test_decision_is_the_brute_force_argmax_over_every_tag_set(c, seed):
    rng = np.random.default_rng(seed)
    rows = np.array([random_probs(rng, c) for _ in range(6 if c < 8 else 2)])
    chosen, value = decision.expected_f2_decisions(rows)
    for p, ours, ours_value in zip(rows, chosen, value):
        sets = all_sets(c)
        reference = np.array([brute_force_expected_f2(p, s) for s in sets])
        assert ours.any()
        assert ours_value == pytest.approx(reference.max(), abs=1e-12)
        assert brute_force_expected_f2(p, ours) == pytest.approx(reference.max(), abs=1e-12)
        best = np.flatnonzero(reference >= reference.max() - 1e-12)
        if len(best) == 1:
            np.testing.assert_array_equal(ours, sets[best[0]])


def test_rows_are_independent_of_blocking(monkeypatch):
    _, probs, _ = planet_oof(50, seed=1)
    whole, whole_value = decision.expected_f2_decisions(probs)
    monkeypatch.setattr(decision, "_CHUNK", 7)
    blocked, blocked_value = decision.expected_f2_decisions(probs)
    np.testing.assert_array_equal(whole, blocked)
    np.testing.assert_allclose(whole_value, blocked_value, atol=1e-12)
    np.testing.assert_allclose(decision.expected_f2(probs, whole), whole_value, atol=1e-12)


def test_one_tag_expectation_is_its_probability():
    # one tag, predicted: F2 is 1 when present, 0 when absent
    np.testing.assert_allclose(decision.expected_f2(np.array([[0.3], [1.0]]), np.array([[True], [True]])), [0.3, 1.0])


def test_sure_tags_are_chosen_and_impossible_ones_never():
    p = np.array([[1.0, 0.0, 0.6, 0.05], [0.0, 0.0, 0.0, 0.3]])
    chosen, _ = decision.expected_f2_decisions(p)
    assert chosen[0, 0] and not chosen[0, 1] and not chosen[0, 3]
    np.testing.assert_array_equal(chosen[1], [False, False, False, True])  # at least one tag, the likeliest


def test_bad_probabilities_are_refused_in_one_line():
    with pytest.raises(KagglePlanetError, match=r"row 1 holds a value that is not a probability") as err:
        decision.expected_f2_decisions(np.array([[0.1, 0.2], [0.3, 1.5]]))
    assert "\n" not in str(err.value)
    with pytest.raises(KagglePlanetError, match="unknown decision rule 'fancy'; valid: auto, thresholds, expected_f2"):
        decision.decide("fancy", np.array([[0.5]]), {})


# ----------------------------------------------------------------------------------- honest scoring


def sk_f2(y, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fbeta_score(y, pred.astype(int), beta=2, average="samples", zero_division=0)


def with_top_tag(p, pred):
    pred = pred.copy()
    none = ~pred.any(axis=1)
    pred[none, p[none].argmax(axis=1)] = True
    return pred


def test_every_rule_is_scored_on_each_fold_with_a_fit_on_the_other_folds():
    y, p, _ = planet_oof(900, seed=11)
    p = p ** 1.5  # miscalibrated (too low), so the calibration has something to fix
    folds = np.arange(len(y)) % 3
    result = decision.evaluate_decisions(y, p, folds)
    rules = result["rules"]
    assert list(rules) == list(decision.DECISIONS)
    for k in range(3):
        held = folds == k
        thr, _ = thresholds.fit_thresholds(y[~held], p[~held])
        assert rules["thresholds"]["honest_per_fold"][str(k)] == pytest.approx(sk_f2(y[held], with_top_tag(p[held], p[held] > thr)))
        assert rules["expected_f2"]["honest_per_fold"][str(k)] == pytest.approx(sk_f2(y[held], decision.expected_f2_decisions(p[held])[0]))
        calibrated = np.empty_like(p[held])
        for j in range(p.shape[1]):  # Platt scaling by hand with scikit-learn on the other folds
            logit = lambda q: np.log(np.clip(q, 1e-6, 1 - 1e-6) / (1 - np.clip(q, 1e-6, 1 - 1e-6)))  # noqa: E731
            if y[~held, j].min() == y[~held, j].max():
                calibrated[:, j] = p[held, j]
                continue
            model = LogisticRegression(C=1.0).fit(logit(p[~held, j])[:, None], y[~held, j])
            calibrated[:, j] = model.predict_proba(logit(p[held, j])[:, None])[:, 1]
        expected = sk_f2(y[held], decision.expected_f2_decisions(calibrated)[0])
        assert rules["expected_f2_calibrated"]["honest_per_fold"][str(k)] == pytest.approx(expected, abs=1e-9)
    for rule in rules.values():
        assert rule["honest_f2"] == pytest.approx(np.mean(list(rule["honest_per_fold"].values())))
    assert result["auto"] == max(rules, key=lambda name: rules[name]["honest_f2"])
    # the expectation needs calibrated probabilities: calibrating these honestly helps
    assert rules["expected_f2_calibrated"]["honest_f2"] > rules["expected_f2"]["honest_f2"]


def planet_run(tmp_path, n=600, seed=7, transform=None, data_dir="data"):
    y, probs, classes = planet_oof(n, seed=seed)
    probs = transform(probs) if transform else probs
    ids = [f"train_{i}" for i in range(n)]
    return write_run(tmp_path / "m", "planet", classes, ids, y, probs, np.arange(n) % 3, ["test_0", "test_1"], probs[:2], data_dir=data_dir)


def test_decision_json_is_written_reused_and_refreshed(tmp_path, capsys):
    run = planet_run(tmp_path)
    result = decision.fit_run_decisions(run)
    assert artifacts.read_json(run / decision.DECISION) == result
    assert set(result["rules"]) == set(decision.DECISIONS) and result["classes"] == artifacts.read_run_info(run).classes
    marker = {**result, "auto": "marker"}
    artifacts.write_json(run / decision.DECISION, marker)
    assert decision.fit_run_decisions(run)["auto"] == "marker"  # same oof.csv/labels.csv: reused
    frame = pd.read_csv(run / "oof.csv")
    frame.loc[0, "primary"] = 0.5
    frame.to_csv(run / "oof.csv", index=False)
    assert decision.fit_run_decisions(run)["auto"] != "marker"  # changed predictions: recomputed
    assert main(["thresholds", str(run)]) == 0
    out = capsys.readouterr().out
    assert "honest F2" in out and "expected_f2" in out and "<- auto" in out


def test_decisions_refuse_runs_that_are_not_multilabel(tmp_path):
    y = np.array([[0], [1], [1], [0]])
    run = write_run(tmp_path / "inv", "invasive", ["invasive"], list("1234"), y, y * 0.8 + 0.1, np.array([0, 0, 1, 1]), ["9"], np.array([[0.5]]))
    with pytest.raises(KagglePlanetError, match="decision rules apply to multilabel") as err:
        decision.fit_run_decisions(run)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------- submission


@pytest.fixture
def planet_data_run(tmp_path, demo_datasets):
    from runfactory import make_run

    run, table, test = make_run(tmp_path, demo_datasets["planet"], "planet")
    return run, table, test


def _tags(path):
    return [set(t.split()) for t in pd.read_csv(path)["tags"]]


@pytest.mark.parametrize("rule", ["expected_f2", "expected_f2_calibrated"])
def test_submission_tags_follow_the_decision_rule(tmp_path, planet_data_run, rule):
    run, table, test = planet_data_run
    out = submission.write_run_submission(run, tmp_path / "sub.csv", rule)
    state = decision.fit_run_decisions(run)["rules"][rule]["state"]
    probs = decision.calibrate(test, state) if rule.endswith("calibrated") else test
    chosen, _ = decision.expected_f2_decisions(probs)
    assert _tags(out) == [{c for c, on in zip(table.classes, row) if on} for row in chosen]
    sidecar = artifacts.read_json(submission.sidecar_path(out))
    evaluation = artifacts.read_json(run / decision.DECISION)
    assert sidecar["decision"] == sidecar["decision_asked"] == rule
    assert sidecar["honest_score"] == evaluation["rules"][rule]["honest_f2"]
    assert "thresholds" not in sidecar
    submission.validate_submission_file(out, "planet", table.data_dir)


def test_auto_takes_the_best_honest_rule(tmp_path, planet_data_run, monkeypatch):
    run, table, test = planet_data_run
    real = decision.evaluate_decisions
    for best in ("thresholds", "expected_f2"):

        def rigged(y, p, folds, best=best):
            result = real(y, p, folds)
            for name, rule in result["rules"].items():
                rule["honest_f2"] = 0.9 if name == best else 0.1
            result["auto"] = best
            return result

        monkeypatch.setattr(decision, "evaluate_decisions", rigged)
        (run / decision.DECISION).unlink(missing_ok=True)
        out = submission.write_run_submission(run, tmp_path / f"{best}.csv", "auto")
        sidecar = artifacts.read_json(submission.sidecar_path(out))
        assert sidecar["decision"] == best and sidecar["decision_asked"] == "auto"
        same = submission.write_run_submission(run, tmp_path / f"{best}_direct.csv", best)
        assert out.read_bytes() == same.read_bytes()


def test_cli_submission_decision_flag(tmp_path, planet_data_run, capsys):
    run, _, _ = planet_data_run
    assert main(["submission", str(run), "--out", str(tmp_path / "s.csv"), "--decision", "auto"]) == 0
    assert "decision: " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["submission", str(run), "--out", str(tmp_path / "s.csv"), "--decision", "vibes"])
    assert "invalid choice: 'vibes'" in capsys.readouterr().err


def test_expected_f2_is_refused_for_other_tasks(tmp_path, demo_datasets):
    from runfactory import make_run

    run, _, _ = make_run(tmp_path, demo_datasets["invasive"], "invasive")
    with pytest.raises(KagglePlanetError, match="decision 'expected_f2' applies to multilabel") as err:
        submission.write_run_submission(run, tmp_path / "s.csv", "expected_f2")
    assert "\n" not in str(err.value)
    assert submission.write_run_submission(run, tmp_path / "s.csv", "auto").is_file()  # nothing to decide: accepted


def test_thresholds_command_with_one_fold_skips_the_comparison(tmp_path, capsys):
    y, probs, classes = planet_oof(120, seed=2)
    run = write_run(tmp_path / "one", "planet", classes, [f"train_{i}" for i in range(120)], y, probs, np.zeros(120, int),
                    ["test_0"], probs[:1])
    assert main(["thresholds", str(run)]) == 0
    assert "honest F2" not in capsys.readouterr().out and not (run / decision.DECISION).exists()
