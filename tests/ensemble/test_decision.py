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

F2_RULES = ["thresholds", "expected_f2", "expected_f2_calibrated"]  # the rules serving Planet's F2


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
    assert list(rules) == F2_RULES
    for k in range(3):
        held = folds == k
        thr, _ = thresholds.fit_thresholds(y[~held], p[~held])
        assert rules["thresholds"]["honest_per_fold"][str(k)] == pytest.approx(sk_f2(y[held], with_top_tag(p[held], p[held] > thr)))
        assert rules["expected_f2"]["honest_per_fold"][str(k)] == pytest.approx(sk_f2(y[held], decision.expected_f2_decisions(p[held])[0]))
        calibrated = np.empty_like(p[held])
        for j in range(p.shape[1]):  # Platt scaling by hand with scikit-learn on the other folds
            logit = lambda q: np.log(np.clip(q, 1e-6, 1 - 1e-6) / (1 - np.clip(q, 1e-6, 1 - 1e-6)))
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
    assert list(result["rules"]) == F2_RULES and result["classes"] == artifacts.read_run_info(run).classes
    assert result["metric"] == "f2_samples"
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


def test_a_run_scored_on_its_probabilities_has_one_rule_and_a_metric_off_its_task_is_refused(tmp_path):
    y = np.array([[0], [1], [1], [0]])
    run = write_run(tmp_path / "inv", "invasive", ["invasive"], list("1234"), y, y * 0.8 + 0.1, np.array([0, 0, 1, 1]), ["9"], np.array([[0.5]]))
    result = decision.fit_run_decisions(run)  # ROC AUC: nothing to decide, the probabilities as they are
    assert list(result["rules"]) == ["probabilities"] and result["auto"] == "probabilities" and result["metric"] == "roc_auc"
    assert result["rules"]["probabilities"]["oof_score"] == 1.0
    with pytest.raises(KagglePlanetError, match="decisions: metric 'accuracy' does not apply to a multilabel task") as err:
        decision.evaluate_decisions(np.eye(4, dtype=int), np.eye(4), np.arange(4) % 2, "accuracy", "multilabel")
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
    run, _, _ = planet_data_run
    real = decision.evaluate_decisions
    for best in ("thresholds", "expected_f2"):

        def rigged(*args, best=best):
            result = real(*args)
            for name, rule in result["rules"].items():
                rule["honest_f2"] = rule["honest_score"] = 0.9 if name == best else 0.1
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


# ------------------------------------------------------------------------------ any metric: decide_run


def csv_fbeta_run(tmp_path, metric, n=600, seed=7):
    """A multilabel run of the generic csv competition scored by ``metric`` (an F-beta), Planet-like labels."""
    y, probs, classes = planet_oof(n + 40, seed=seed)
    ids = [f"img{i}" for i in range(n)]
    return write_run(tmp_path / metric, "csv", classes, ids, y[:n], probs[:n], np.arange(n) % 3, [f"t{i}" for i in range(40)],
                     probs[n:], options={"target": "tags", "metric": metric}), probs[n:]


def sk_fbeta(y, pred, beta, average):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fbeta_score(y, pred.astype(int), beta=beta, average=average, zero_division=0)


@pytest.mark.parametrize("metric, beta, average", [("f1_samples", 1.0, "samples"), ("f1_macro", 1.0, "macro"),
                                                   ("f1_micro", 1.0, "micro"), ("f0.5_samples", 0.5, "samples")])
def test_fbeta_runs_are_decided_by_thresholds_fitted_honestly_for_their_metric(tmp_path, metric, beta, average):
    run, test = csv_fbeta_run(tmp_path, metric)
    result = decision.fit_run_decisions(run)
    assert result["metric"] == metric and list(result["rules"]) == ["thresholds"]  # expected_f2 is F2's only
    rule = result["rules"]["thresholds"]
    assert "honest_f2" not in rule and "oof_f2" not in rule
    loaded = artifacts.load_run(run)
    y, p, folds = loaded.y_true, loaded.oof_probs, loaded.folds
    start = 1.0 / (1.0 + beta * beta)  # the metric's own threshold
    fix = with_top_tag if average == "samples" else (lambda probs, pred: pred)  # micro / macro: no fallback tag
    for k in range(3):  # each fold decided by thresholds fitted on the other folds, scored by scikit-learn
        held = folds == k
        thr, _ = thresholds.fit_thresholds(y[~held], p[~held], start, beta=beta, average=average)
        assert rule["honest_per_fold"][str(k)] == pytest.approx(sk_fbeta(y[held], fix(p[held], p[held] > thr), beta, average), abs=1e-12)
    assert rule["honest_score"] == pytest.approx(np.mean(list(rule["honest_per_fold"].values())))
    assert rule["honest_score"] <= rule["oof_score"]  # fitted on the scored rows: optimistic
    assert rule["oof_score"] > sk_fbeta(y, fix(p, p > 0.5), beta, average)  # tuning beats 0.5 and the metric's default
    assert rule["oof_score"] > sk_fbeta(y, fix(p, p > start), beta, average)

    values, record = decision.decide_run(loaded, test, "auto")
    thr = np.asarray(artifacts.read_json(run / "thresholds.json")["thresholds"])
    np.testing.assert_array_equal(values, fix(test, test > thr).astype(np.float64))
    assert values.dtype == np.float64
    # auto with one rule serving the metric: that rule, nothing to compare
    assert list(record) == ["decision", "decision_asked", "thresholds", "oof_score_tuned", "oof_score_heldout", "honest_score", "fitted_on"]
    assert (record["decision"], record["decision_asked"]) == ("thresholds", "auto")
    saved = artifacts.read_json(run / "thresholds.json")
    assert record["honest_score"] == saved["score_heldout"] and record["oof_score_tuned"] == saved["score_tuned"]
    assert record["thresholds"] == dict(zip(loaded.info.classes, saved["thresholds"]))
    with pytest.raises(KagglePlanetError, match="decision 'expected_f2' applies to multilabel runs scored by f2_samples; "
                                                f"this run's task is 'multilabel', its metric '{metric}'"):
        decision.decide_run(loaded, test, "expected_f2")


def test_a_planet_run_is_decided_as_its_submission_always_was(tmp_path):
    run = planet_run(tmp_path)
    loaded = artifacts.load_run(run)
    test = loaded.oof_probs[:50]
    values, record = decision.decide_run(loaded, test, "thresholds")
    thr = thresholds.read_run_thresholds(run)  # fitted first: there was none
    np.testing.assert_array_equal(values, with_top_tag(test, test > thr).astype(np.float64))
    assert list(record) == ["decision", "decision_asked", "thresholds", "oof_f2_tuned", "oof_f2_heldout", "honest_score", "fitted_on"]
    saved = artifacts.read_json(run / "thresholds.json")
    assert record["oof_f2_tuned"] == saved["f2_tuned"] and record["honest_score"] == record["oof_f2_heldout"] == saved["f2_heldout"]
    assert not (run / decision.DECISION).exists()  # thresholds asked: nothing else fitted
    for rule in ("expected_f2", "expected_f2_calibrated", "auto"):
        values, record = decision.decide_run(loaded, test, rule)
        evaluation = artifacts.read_json(run / decision.DECISION)
        used = evaluation["auto"] if rule == "auto" else rule
        if used != "thresholds":
            assert list(record) == ["decision", "decision_asked", "decision_honest_f2", "oof_f2", "honest_score"]
            np.testing.assert_array_equal(values, decision.decide(used, test, evaluation["rules"][used]["state"]).astype(np.float64))
        assert record["decision_honest_f2"] == {n: r["honest_f2"] for n, r in evaluation["rules"].items()}
    with pytest.raises(KagglePlanetError, match="decision 'clip' applies to runs scored by log_loss; this run's task is "
                                                r"'multilabel', its metric 'f2_samples' \(valid for it: auto, thresholds, expected_f2, expected_f2_calibrated\)") as err:
        decision.decide_run(loaded, test, "clip")
    assert "\n" not in str(err.value)
    with pytest.raises(KagglePlanetError, match="probabilities have 3 columns; .* has 17 classes"):
        decision.decide_run(loaded, test[:, :3], "thresholds")
    with pytest.raises(KagglePlanetError, match="unknown decision rule 'vibes'; valid: auto, thresholds"):
        decision.decide_run(loaded, test, "vibes")


def test_runs_with_nothing_to_decide_submit_their_probabilities(tmp_path, demo_datasets):
    from runfactory import make_run

    for competition, default in [("invasive", "probabilities"), ("imagefolder", "argmax")]:
        run, _, test = make_run(tmp_path / competition, demo_datasets[competition], competition)
        loaded = artifacts.load_run(run)
        for rule in ("thresholds", "auto", default):  # thresholds: the submission's default, nothing to threshold here
            values, record = decision.decide_run(loaded, test, rule)
            np.testing.assert_array_equal(values, test)
            assert record == {"decision": default, "decision_asked": rule}
        assert not (run / decision.DECISION).exists()  # one rule serves the metric: nothing compared or written
        for rule in ("expected_f2", "clip", "argmax" if default == "probabilities" else "probabilities"):
            with pytest.raises(KagglePlanetError, match=f"decision '{rule}' applies to .*; this run's task is") as err:
                decision.decide_run(loaded, test, rule)
            assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ log loss: clip


def log_loss_by_hand(y, q):
    """Kaggle's log loss written out: -mean over rows of log q(true class) (binary: of q or 1 - q)."""
    q = np.clip(q, 1e-15, 1 - 1e-15)
    if q.shape[1] == 1:
        return float(-np.mean(y[:, 0] * np.log(q[:, 0]) + (1 - y[:, 0]) * np.log(1 - q[:, 0])))
    q = q / q.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(q[y.astype(bool)])))


def clip_by_hand(q, eps, multiclass):
    q = np.minimum(np.maximum(q, eps), 1 - eps)
    return q / q.sum(axis=1, keepdims=True) if multiclass else q


def overconfident_run(tmp_path, task, wrong_rate, n=900, seed=5):
    """A log-loss run whose predictions are sharp, and as sharply wrong on ``wrong_rate`` of the rows."""
    rng = np.random.default_rng(seed)
    if task == "multiclass":
        classes = ["beagle", "collie", "husky", "pug"]
        label = rng.integers(0, 4, n + 30)
        y = np.eye(4, dtype=int)[label]
        wrong = rng.random(n + 30) < wrong_rate
        said = np.where(wrong, (label + rng.integers(1, 4, n + 30)) % 4, label)
        logits = 6.0 * np.eye(4)[said] + rng.standard_normal((n + 30, 4))
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        competition = "dog-breed-identification"
    else:
        classes = ["dog"]
        y = (rng.random((n + 30, 1)) < 0.5).astype(int)
        wrong = rng.random((n + 30, 1)) < wrong_rate
        said = np.where(wrong, 1 - y, y)
        p = 1.0 / (1.0 + np.exp(-(7.0 * (2 * said - 1) + rng.standard_normal(y.shape))))
        competition = "dogs-vs-cats-redux-kernels-edition"
    ids = [f"{i}" for i in range(n)]
    run = write_run(tmp_path / task, competition, classes, ids, y[:n], p[:n], np.arange(n) % 3, [f"t{i}" for i in range(30)], p[n:])
    return run, p[n:]


@pytest.mark.parametrize("task, wrong_rate", [("multiclass", 0.02), ("binary", 0.01)])
def test_clip_eps_is_chosen_honestly_and_beats_the_unclipped_log_loss(tmp_path, task, wrong_rate):
    run, test = overconfident_run(tmp_path, task, wrong_rate)
    result = decision.fit_run_decisions(run)
    assert result["metric"] == "log_loss" and list(result["rules"]) == ["clip", "probabilities"]
    loaded = artifacts.load_run(run)
    y, p, folds = loaded.y_true, loaded.oof_probs, loaded.folds
    multiclass = task == "multiclass"
    grid = decision.CLIP_EPS

    def best_eps(rows):
        losses = [log_loss_by_hand(y[rows], clip_by_hand(p[rows], eps, multiclass)) for eps in grid]
        return grid[int(np.argmin(losses))]

    clip = result["rules"]["clip"]
    assert clip["state"]["eps"] == best_eps(np.ones(len(y), bool)) > 1e-15
    assert clip["oof_score"] == pytest.approx(log_loss_by_hand(y, clip_by_hand(p, clip["state"]["eps"], multiclass)), abs=1e-12)
    for k in range(3):  # each fold's eps chosen on the other folds, its log loss measured on the fold
        held = folds == k
        expected = log_loss_by_hand(y[held], clip_by_hand(p[held], best_eps(~held), multiclass))
        assert clip["honest_per_fold"][str(k)] == pytest.approx(expected, abs=1e-12)
    unclipped = result["rules"]["probabilities"]
    assert unclipped["oof_score"] == pytest.approx(log_loss_by_hand(y, p), abs=1e-12)
    assert clip["honest_score"] < unclipped["honest_score"] and clip["oof_score"] < unclipped["oof_score"]  # lower is better
    assert len({best_eps(folds != k) for k in range(3)}) > 1  # the folds' own choices differ here: the estimate is honest
    assert clip["honest_score"] > clip["oof_score"]  # eps chosen on the scored rows is optimistic
    assert result["auto"] == "clip"
    assert "lower is better" in decision.format_decisions_summary(result)

    values, record = decision.decide_run(loaded, test, "auto")
    np.testing.assert_allclose(values, clip_by_hand(test, clip["state"]["eps"], multiclass), rtol=0, atol=1e-15)
    if multiclass:
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-12)
    assert record["decision"] == "clip" and record["decision_asked"] == "auto"
    assert record["decision_state"]["eps"] == clip["state"]["eps"] and record["honest_score"] == clip["honest_score"]
    assert record["decision_oof_score"] == clip["oof_score"]
    assert record["decision_honest_scores"] == {"probabilities": unclipped["honest_score"], "clip": clip["honest_score"]}
    values, record = decision.decide_run(loaded, test, "thresholds")  # the submission's default: log loss's first rule, clip
    np.testing.assert_allclose(values, clip_by_hand(test, clip["state"]["eps"], multiclass), rtol=0, atol=1e-15)
    assert record["decision"] == "clip" and record["decision_asked"] == "thresholds"
    values, record = decision.decide_run(loaded, test, "probabilities")  # asked for: the probabilities as predicted
    np.testing.assert_array_equal(values, test)


def test_clip_on_calibrated_predictions_keeps_the_smallest_eps():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 0.8, (400, 1))
    y = (rng.random((400, 1)) < p).astype(int)  # calibrated, nowhere near 0 or 1: clipping changes nothing
    state = decision.fit_clip(y, p, decision.target_for("log_loss", "binary"))
    assert state["eps"] == 1e-15 and state["renormalise"] is False
    assert len(set(state["score_by_eps"].values())) == 1


def test_every_metric_and_task_has_rules_and_the_default_submits_as_before():
    from kaggle_planet.core import metrics

    names = [*metrics.METRICS, "f1_macro", "f0.5_micro", "f3_samples"]
    for name in names:
        for task in metrics.get_metric(name).decisions:
            target = decision.target_for(name, task)
            served = decision.rules_for(target)
            assert served, (name, task)
            assert all(decision.DECISIONS[r].kind == target.kind for r in served)
            # the default rule: thresholds; for log loss clip (fitted out of fold); otherwise the probabilities as predicted
            expected = "thresholds" if target.kind == "thresholds" else "clip" if name == "log_loss" else None
            assert served[0] == expected if expected else decision.DECISIONS[served[0]].fit is None
    assert decision.rules_for(decision.target_for("log_loss", "multiclass")) == ["clip", "probabilities"]
    assert decision.rules_for(decision.target_for("f2_samples", "binary")) == ["thresholds"]  # expected F2: multilabel only
