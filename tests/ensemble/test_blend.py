"""Blending run folders: matching by id/class, every method's output against an independent reference
(scipy's gmean, explicit sklearn Ridge stages, a brute-force ensemble selection), honest OOF, mismatches."""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from runfactory import WEATHER, noisy_probs, planet_labels, write_run
from scipy.stats import gmean, rankdata
from sklearn.linear_model import Ridge
from sklearn.metrics import accuracy_score, fbeta_score, roc_auc_score

from kaggle_planet.core import artifacts, metrics
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import blend, thresholds

N_TRAIN, N_TEST, K = 240, 50, 3
HAVE_LGBM = importlib.util.find_spec("lightgbm") is not None
NEEDS_LGBM = pytest.mark.skipif(not HAVE_LGBM, reason='LightGBM not installed (pip install "kaggle-planet[lgbm]")')
ALL_METHODS = [pytest.param(m, marks=NEEDS_LGBM) if blend.BLENDERS[m].requires else m for m in blend.BLENDERS]
FITTED = [pytest.param(m, marks=NEEDS_LGBM) if blend.BLENDERS[m].requires else m for m in blend.BLENDERS if blend.BLENDERS[m].fit]


def planet_members(tmp_path, n_models=3, seed=0, transforms=None):
    """Member runs sharing labels/folds/ids; model m's probabilities may pass through transforms[m]."""
    rng = np.random.default_rng(seed)
    y, classes = planet_labels(N_TRAIN + N_TEST, rng)
    weather = [classes.index(w) for w in WEATHER]
    ids = [f"train_{i}" for i in range(N_TRAIN)]
    test_ids = [f"test_{i}" for i in range(N_TEST)]
    folds = np.arange(N_TRAIN) % K
    shared = rng.standard_normal(y.shape) * 0.7
    dirs = []
    for m in range(n_models):
        p = noisy_probs(y, rng, skill=0.7, shared=shared, exclusive=weather)
        if transforms and transforms[m]:
            p = transforms[m](p)
        dirs.append(write_run(tmp_path / f"model{m}", "planet", classes, ids, y[:N_TRAIN], p[:N_TRAIN], folds, test_ids, p[N_TRAIN:]))
    return dirs, y[:N_TRAIN], classes


def shuffled_copy(run_dir, out_dir, seed):
    """The same run with rows and columns of every CSV shuffled."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir()
    (out_dir / "run.json").write_text((run_dir / "run.json").read_text())
    for name in ("oof.csv", "test.csv", "labels.csv"):
        frame = pd.read_csv(run_dir / name, dtype=str)
        frame = frame.iloc[rng.permutation(len(frame)), rng.permutation(frame.shape[1])]
        frame.to_csv(out_dir / name, index=False)
    return out_dir


@pytest.mark.parametrize("method", ALL_METHODS)
def test_shuffled_files_blend_to_identical_output(tmp_path, method):
    dirs, _, _ = planet_members(tmp_path)
    shuffled = [shuffled_copy(d, tmp_path / f"shuf{i}", i) for i, d in enumerate(dirs)]
    a = blend.blend_runs(dirs, method, tmp_path / "a")
    b = blend.blend_runs(shuffled, method, tmp_path / "b")
    for name in ("oof.csv", "test.csv", "labels.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["oof"] == b["oof"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_method_writes_a_valid_run_folder(tmp_path, monkeypatch, method):
    dirs, y, classes = planet_members(tmp_path)
    monkeypatch.setattr("sys.argv", ["kaggle-planet", "blend", "a", "b", "--method", method])
    scores = blend.blend_runs(dirs, method, tmp_path / "blend")
    run = artifacts.load_run(tmp_path / "blend")  # validates ids, [0, 1], folds, labels
    assert run.info.kind == "blend" and run.info.members == [str(d) for d in dirs]
    assert run.info.extra["commands"] == [f"kaggle-planet blend a b --method {method}"]
    assert run.info.classes == classes
    assert len(run.oof) == N_TRAIN and len(run.test) == N_TEST
    for probs in (run.oof_probs, run.test_probs):
        assert probs.min() >= 0 and probs.max() <= 1
    assert artifacts.read_json(tmp_path / "blend" / "scores.json") == scores
    assert scores["oof"] == pytest.approx(metrics.score("f2_samples", run.y_true, run.oof_probs), abs=1e-6)
    assert scores["gain_over_best"] == pytest.approx(scores["oof"] - max(scores["members"].values()))
    assert set(scores["per_fold"]) == {"0", "1", "2"}
    thresholds.fit_run_thresholds(tmp_path / "blend")  # a blend is a run: later stages work unchanged
    table = blend.format_blend_table(scores)
    assert f"blend ({method})" in table and str(dirs[0]) in table


def test_mean_and_rank_match_explicit_computation(tmp_path):
    dirs, _, classes = planet_members(tmp_path, n_models=2)
    runs = [artifacts.load_run(d) for d in dirs]
    blend.blend_runs(dirs, "mean", tmp_path / "mean")
    blend.blend_runs(dirs, "rank", tmp_path / "rank")
    mean = artifacts.load_run(tmp_path / "mean").test.set_index("image_name")
    rank = artifacts.load_run(tmp_path / "rank").test.set_index("image_name")
    tests = [r.test.set_index("image_name").loc[mean.index, classes].to_numpy() for r in runs]
    np.testing.assert_allclose(mean[classes].to_numpy(), (tests[0] + tests[1]) / 2, atol=1e-7)
    scaled = [(rankdata(t, axis=0) - 1) / (len(t) - 1) for t in tests]
    np.testing.assert_allclose(rank[classes].to_numpy(), (scaled[0] + scaled[1]) / 2, atol=1e-7)


def test_weighted_prefers_the_informative_model(tmp_path):
    noise = np.random.default_rng(9)
    dirs, _, _ = planet_members(tmp_path, n_models=2, transforms=[None, lambda p: noise.random(p.shape)])
    scores = blend.blend_runs(dirs, "weighted", tmp_path / "w")
    w = scores["weights"]
    assert sum(w.values()) == pytest.approx(1.0)
    assert min(w.values()) >= 0
    assert w[str(dirs[0])] > 0.8  # the pure-noise model adds nothing but log loss


@pytest.mark.parametrize("method", ["ridge", "ridge2", pytest.param("lgbm", marks=NEEDS_LGBM)])
def test_stackers_recalibrate_a_systematically_miscalibrated_model(tmp_path, method):
    # model 1 sees the same signal but squeezes every probability into [0.5, 1]: averaging it in puts
    # every tag above 0.2 for every image, so mean's F2@0.2 is exactly "predict all 17 tags"; a stacker
    # learns the labels from both models' outputs and so learns to undo the squeeze.
    dirs, y, _ = planet_members(tmp_path, n_models=2, transforms=[None, lambda p: 0.5 + 0.5 * p])
    mean = blend.blend_runs(dirs, "mean", tmp_path / "mean")
    ridge = blend.blend_runs(dirs, method, tmp_path / method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predict_all = fbeta_score(y, np.ones_like(y), beta=2, average="samples")
    assert mean["oof"] == pytest.approx(predict_all)
    assert ridge["oof"] > predict_all + 0.1
    assert ridge["oof"] >= max(ridge["members"].values()) - 0.02  # honest OOF, so not wildly above either


@pytest.mark.parametrize("method", ["ridge", "ridge2", pytest.param("lgbm", marks=NEEDS_LGBM)])
def test_stacker_oof_is_out_of_fold(tmp_path, method):
    """A model memorising labels only on fold 0 rows must not leak into other folds' stacker OOF."""
    dirs, y, classes = planet_members(tmp_path, n_models=2)
    run = artifacts.load_run(dirs[1])
    leaky = np.where((run.folds == 0)[:, None], run.y_true * 0.98 + 0.01, run.oof_probs)
    write_run(dirs[1], "planet", classes, run.oof["image_name"].tolist(), run.y_true, leaky, run.folds,
              run.test["image_name"].tolist(), run.test_probs)
    scores = blend.blend_runs(dirs, method, tmp_path / method)
    # rows of fold 0 are predicted by a stacker fitted on folds 1-2, where model 1 is an ordinary model
    assert scores["per_fold"]["0"] < 0.99


def test_binary_rank_blend_keeps_auc_inputs_in_order(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random((120, 1)) < 0.4).astype(int)
    ids, tids = [str(i) for i in range(1, 121)], [str(i) for i in range(1, 31)]
    folds = np.arange(120) % 3
    dirs = []
    for m in range(2):
        p = np.clip(0.4 * y + rng.random((120, 1)) * 0.6, 0, 1)
        dirs.append(write_run(tmp_path / f"m{m}", "invasive", ["invasive"], ids, y, p, folds, tids, rng.random((30, 1))))
    scores = blend.blend_runs(dirs, "rank", tmp_path / "rank")
    run = artifacts.load_run(tmp_path / "rank")
    assert scores["metric"] == "roc_auc"
    assert scores["oof"] == pytest.approx(roc_auc_score(run.y_true[:, 0], run.oof_probs[:, 0]))


@pytest.mark.parametrize("method", ALL_METHODS)
def test_multiclass_rows_sum_to_one(tmp_path, method):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 90)
    y = np.eye(3, dtype=int)[labels]
    classes = ["a", "b", "c"]
    ids = [f"seg_train/{classes[k]}/{i}.jpg" for i, k in enumerate(labels)]
    tids = [f"seg_test/{i}.jpg" for i in range(20)]
    dirs = []
    for m in range(2):
        scores = y * 2 + rng.random((90, 3))
        oof = scores / scores.sum(axis=1, keepdims=True)
        dirs.append(write_run(tmp_path / f"m{m}", "imagefolder", classes, ids, y, oof, np.arange(90) % 3, tids, rng.dirichlet(np.ones(3), 20)))
    blend.blend_runs(dirs, method, tmp_path / method)
    run = artifacts.load_run(tmp_path / method)
    np.testing.assert_allclose(run.oof_probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(run.test_probs.sum(axis=1), 1.0, atol=1e-6)


def _rewrite(run_dir, name, edit):
    frame = pd.read_csv(run_dir / name, dtype=str)
    edit(frame)
    frame.to_csv(run_dir / name, index=False)


@pytest.mark.parametrize(
    "name, edit, expected",
    [
        ("oof.csv", lambda f: f.drop(index=5, inplace=True), r"oof\.csv and .*oof\.csv: ids differ \(first difference: 'train_5'"),
        ("test.csv", lambda f: f.loc.__setitem__((0, "image_name"), "test_x"), r"test\.csv and .*test\.csv: ids differ"),
        ("oof.csv", lambda f: f.loc.__setitem__((3, "fold"), "9"), r"folds differ .*'train_3' is in fold 0 vs 9"),
        ("labels.csv", lambda f: f.loc.__setitem__((7, "primary"), str(1 - int(f.loc[7, "primary"]))), r"labels differ .*'train_7'"),
    ],
)
def test_mismatched_members_fail_in_one_line_naming_both_files(tmp_path, name, edit, expected):
    dirs, _, _ = planet_members(tmp_path, n_models=2)
    _rewrite(dirs[1], name, edit)
    if name == "oof.csv" and "ids differ" in expected:
        _rewrite(dirs[1], "labels.csv", edit)  # keep the member itself consistent
    with pytest.raises(KagglePlanetError, match=expected) as err:
        blend.blend_runs(dirs, "mean", tmp_path / "blend")
    message = str(err.value)
    assert "\n" not in message and str(dirs[0]) in message and str(dirs[1]) in message


def test_mismatched_classes_or_competition_fail(tmp_path):
    dirs, _, _ = planet_members(tmp_path, n_models=2)
    info = artifacts.read_run_info(dirs[1])
    info.classes = [c if c != "water" else "waterr" for c in info.classes]
    for name in ("oof.csv", "test.csv", "labels.csv"):
        _rewrite(dirs[1], name, lambda f: f.rename(columns={"water": "waterr"}, inplace=True))
    artifacts.write_run_info(dirs[1], info)
    with pytest.raises(KagglePlanetError, match=r"run\.json and .*run\.json: classes differ \(first difference: class 'water'"):
        blend.blend_runs(dirs, "mean", tmp_path / "blend")


def test_unknown_method_lists_valid_ones(tmp_path):
    with pytest.raises(KagglePlanetError, match="mean, gmean, rank, weighted, hillclimb, ridge, ridge2, lgbm"):
        blend.blend_runs([tmp_path], "median", tmp_path / "b")


# ------------------------------------------------------------------ honest OOF, saved state, new methods


def planet_input(n_models=3, seed=0, n=N_TRAIN, t=N_TEST, transforms=None) -> blend.BlendInput:
    """Members' probabilities as arrays (no files): correlated, differently calibrated if asked."""
    rng = np.random.default_rng(seed)
    y, classes = planet_labels(n + t, rng)
    weather = [classes.index(w) for w in WEATHER]
    shared = rng.standard_normal(y.shape) * 0.7
    stack = []
    for m in range(n_models):
        p = noisy_probs(y, rng, skill=0.5 + 0.1 * m, shared=shared, exclusive=weather)
        stack.append(transforms[m](p) if transforms and transforms[m] else p)
    stack = np.stack(stack)
    return blend.BlendInput(stack[:, :n], stack[:, n:], y[:n], np.arange(n) % K, "multilabel", "f2_samples")


@pytest.mark.parametrize("method", FITTED)
def test_every_fit_sees_only_the_other_folds_then_all_rows(monkeypatch, method):
    data = planet_input()
    entry = blend.BLENDERS[method]
    seen = []

    def spy(rows):
        seen.append(frozenset(np.unique(rows.folds).tolist()))
        assert len(rows.y_true) == len(rows.folds) == rows.oof.shape[1]
        return entry.fit(rows)

    monkeypatch.setitem(blend.BLENDERS, method, dataclasses.replace(entry, fit=spy))
    blend.blend_predictions(data, method)
    everything = frozenset(range(K))
    assert sorted(seen, key=sorted) == sorted([everything - {k} for k in range(K)] + [everything], key=sorted)


def sk_f2_at_02(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fbeta_score(y, (p > 0.2).astype(int), beta=2, average="samples", zero_division=0)


def brute_force_selection(stack, y, score):
    """Caruana's selection re-scored from scratch for every candidate ensemble (count-weighted mean)."""
    m = len(stack)

    def value(counts):
        return score(y, np.average(stack, axis=0, weights=counts))

    singles = [value(np.eye(m)[i]) for i in range(m)]
    order = sorted(range(m), key=lambda i: -singles[i])  # stable: ties keep member order
    counts, best = np.eye(m)[order[0]], singles[order[0]]
    for i in order[1:blend.HILLCLIMB_INIT_MAX]:
        trial = counts + np.eye(m)[i]
        if value(trial) <= best + blend.HILLCLIMB_MIN_GAIN:
            break
        counts, best = trial, value(trial)
    while counts.sum() < blend.HILLCLIMB_MAX_SIZE:
        trials = [value(counts + np.eye(m)[i]) for i in range(m)]
        if max(trials) <= best + blend.HILLCLIMB_MIN_GAIN:
            break
        i = next(i for i, v in enumerate(trials) if v >= max(trials) - blend.HILLCLIMB_MIN_GAIN)
        counts, best = counts + np.eye(m)[i], max(trials)
    return counts.astype(int), best


@pytest.mark.parametrize("n_models, seed", [(3, 0), (4, 1), (4, 2)])
def test_hillclimb_equals_brute_force_selection_and_is_a_local_optimum(n_models, seed):
    noise = np.random.default_rng(seed + 50)
    # the last member is pure noise with its own calibration: selection should leave it out
    transforms = [None] * (n_models - 1) + [lambda p: noise.random(p.shape) ** 2]
    data = planet_input(n_models, seed, transforms=transforms)
    counts = blend.select_members(data.oof, data.y_true, "f2_samples")
    expected, best = brute_force_selection(data.oof, data.y_true, sk_f2_at_02)
    np.testing.assert_array_equal(counts, expected)
    assert counts[-1] == 0
    ensemble = np.average(data.oof, axis=0, weights=counts)
    assert sk_f2_at_02(data.y_true, ensemble) == pytest.approx(best)
    for i in range(n_models):  # no single addition improves it (by scikit-learn's F2)
        assert sk_f2_at_02(data.y_true, np.average(data.oof, axis=0, weights=counts + np.eye(n_models)[i])) <= best + 1e-12
    assert best >= max(sk_f2_at_02(data.y_true, p) for p in data.oof)


def test_hillclimb_climbs_auc_and_accuracy_too():
    rng = np.random.default_rng(4)
    y = (rng.random((150, 1)) < 0.4).astype(int)
    stack = np.stack([np.clip(0.3 * y + rng.random((150, 1)) * s, 0, 1) for s in (0.7, 0.9, 1.2)])
    auc = lambda yy, p: roc_auc_score(yy[:, 0], p[:, 0])
    np.testing.assert_array_equal(blend.select_members(stack, y, "roc_auc"), brute_force_selection(stack, y, auc)[0])
    labels = rng.integers(0, 3, 150)
    y3 = np.eye(3, dtype=int)[labels]
    stack3 = np.stack([rng.dirichlet(np.ones(3), 150) * 0.5 + y3 * s for s in (0.2, 0.3, 0.4)])
    stack3 /= stack3.sum(axis=2, keepdims=True)
    acc = lambda yy, p: accuracy_score(yy.argmax(1), p.argmax(1))
    np.testing.assert_array_equal(blend.select_members(stack3, y3, "accuracy"), brute_force_selection(stack3, y3, acc)[0])


def test_hillclimb_oof_rows_use_a_selection_made_without_their_fold(tmp_path):
    data = planet_input(4, seed=3)
    out = blend.blend_predictions(data, "hillclimb")
    for k in range(K):
        held = data.folds == k
        counts, _ = brute_force_selection(data.oof[:, ~held], data.y_true[~held], sk_f2_at_02)
        np.testing.assert_allclose(out.oof[held], np.average(data.oof[:, held], axis=0, weights=counts), atol=1e-12)
        assert out.fold_details[str(k)]["selection_counts"] == counts.tolist()
    counts, _ = brute_force_selection(data.oof, data.y_true, sk_f2_at_02)
    np.testing.assert_allclose(out.test, np.average(data.test, axis=0, weights=counts), atol=1e-12)


def test_hillclimb_cannot_pick_the_member_that_knows_the_held_out_fold(tmp_path):
    # member m knows the labels of fold m only (noise elsewhere): fitted on all rows, selection picks a
    # member that knows some rows; out of fold, a fold's rows only get members that are noise there
    rng = np.random.default_rng(5)
    data = planet_input(3, seed=5)
    know = np.stack([np.where((data.folds == m)[:, None], data.y_true * 0.98 + 0.01, rng.random(data.y_true.shape)) for m in range(3)])
    data = dataclasses.replace(data, oof=know)
    honest = blend.blend_predictions(data, "hillclimb").oof
    weights = blend.fit_hillclimb(data)["weights"]
    in_sample = np.tensordot(weights, know, axes=1)
    leaked = []
    for k in range(K):
        held = data.folds == k
        noise_level = max(sk_f2_at_02(data.y_true[held], know[m, held]) for m in range(3) if m != k)
        assert sk_f2_at_02(data.y_true[held], honest[held]) <= noise_level + 0.05
        leaked.append(sk_f2_at_02(data.y_true[held], in_sample[held]) > noise_level + 0.1)
    assert any(leaked)  # the same selection fitted on every row would have scored its own rows far higher


def test_hillclimb_reports_selection_counts_as_weights(tmp_path):
    noise = np.random.default_rng(9)
    dirs, _, _ = planet_members(tmp_path, n_models=3, transforms=[None, None, lambda p: noise.random(p.shape)])
    scores = blend.blend_runs(dirs, "hillclimb", tmp_path / "hc")
    counts, weights = scores["selection_counts"], scores["weights"]
    assert set(counts) == set(weights) == {str(d) for d in dirs}
    total = sum(counts.values())
    assert all(weights[d] == pytest.approx(counts[d] / total) for d in counts)
    assert counts[str(dirs[2])] == 0
    assert "weight" in blend.format_blend_table(scores)


def test_gmean_equals_scipy(tmp_path):
    dirs, _, classes = planet_members(tmp_path, n_models=3)
    run = artifacts.load_run(dirs[1])  # one exact zero: the geometric mean is 0 there
    oof = run.oof_probs.copy()
    oof[0, 0] = 0.0
    write_run(dirs[1], "planet", classes, run.oof["image_name"].tolist(), run.y_true, oof, run.folds,
              run.test["image_name"].tolist(), run.test_probs)
    blend.blend_runs(dirs, "gmean", tmp_path / "g")
    out = artifacts.load_run(tmp_path / "g")
    for frame, name in ((out.oof, "oof"), (out.test, "test")):
        members = [getattr(artifacts.load_run(d), name).set_index("image_name").loc[frame["image_name"], classes].to_numpy() for d in dirs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about log(0)
            np.testing.assert_allclose(frame[classes].to_numpy(), gmean(np.stack(members), axis=0), rtol=1e-12, atol=1e-15)
    assert out.oof.set_index("image_name").loc["train_0", classes[0]] == 0.0


def explicit_ridge2(train, y, new):
    """Two sklearn Ridge stages: per model over its own classes, then per class over the models."""
    level1 = [Ridge(alpha=1.0).fit(p, y) for p in train]
    z_train = [r.predict(p) for r, p in zip(level1, train)]
    z_new = [r.predict(p) for r, p in zip(level1, new)]
    out = np.empty((new.shape[1], y.shape[1]))
    for c in range(y.shape[1]):
        second = Ridge(alpha=1.0).fit(np.column_stack([z[:, c] for z in z_train]), y[:, c])
        out[:, c] = second.predict(np.column_stack([z[:, c] for z in z_new]))
    return np.clip(out, 0.0, 1.0)


def test_ridge2_equals_two_explicit_sklearn_ridge_stages():
    data = planet_input(3, seed=6, transforms=[None, lambda p: 0.5 + 0.5 * p, lambda p: p ** 2])
    out = blend.blend_predictions(data, "ridge2")
    for k in range(K):
        held = data.folds == k
        expected = explicit_ridge2(data.oof[:, ~held], data.y_true[~held], data.oof[:, held])
        np.testing.assert_allclose(out.oof[held], expected, atol=1e-10)
    np.testing.assert_allclose(out.test, explicit_ridge2(data.oof, data.y_true, data.test), atol=1e-10)


def test_weighted_oof_uses_weights_fitted_on_the_other_folds():
    data = planet_input(3, seed=7)
    out = blend.blend_predictions(data, "weighted")
    for k in range(K):
        held = data.folds == k
        w = blend.fit_weights(data.oof[:, ~held], data.y_true[~held], "multilabel")
        np.testing.assert_allclose(out.oof[held], np.tensordot(w, data.oof[:, held], axes=1), atol=1e-12)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_saved_state_reproduces_the_test_rows(tmp_path, method):
    """What predict-image does: the members' test rows through blend.json give the blend's test.csv."""
    dirs, _, classes = planet_members(tmp_path)
    blend.blend_runs(dirs, method, tmp_path / "b")
    info = artifacts.read_run_info(tmp_path / "b")
    runs = [artifacts.load_run(d) for d in dirs]
    ids = runs[0].test["image_name"].tolist()[::-1]  # any subset, any order
    stack = np.stack([r.test.set_index("image_name").loc[ids, classes].to_numpy() for r in runs])
    reference = lambda: np.stack([r.test_probs for r in runs])
    got = blend.apply_saved_blend(tmp_path / "b", info, method, stack, reference)
    expected = artifacts.load_run(tmp_path / "b").test.set_index("image_name").loc[ids, classes].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_blends_written_before_blend_json_still_apply(tmp_path):
    dirs, _, classes = planet_members(tmp_path, n_models=2)
    blend.blend_runs(dirs, "ridge", tmp_path / "r")
    state = artifacts.read_json(tmp_path / "r" / blend.STATE)["state"]
    info = artifacts.read_run_info(tmp_path / "r")
    info.extra.update(state)  # the old layout: the coefficients in run.json, no blend.json
    (tmp_path / "r" / blend.STATE).unlink()
    stack = np.stack([artifacts.load_run(d).test_probs for d in dirs])
    np.testing.assert_allclose(blend.apply_saved_blend(tmp_path / "r", info, "ridge", stack),
                               artifacts.load_run(tmp_path / "r").test_probs, atol=1e-12)


def test_bad_saved_state_is_a_one_line_error(tmp_path):
    dirs, _, _ = planet_members(tmp_path, n_models=2)
    blend.blend_runs(dirs, "weighted", tmp_path / "w")
    info = artifacts.read_run_info(tmp_path / "w")
    stack = np.stack([artifacts.load_run(d).test_probs for d in dirs])
    artifacts.write_json(tmp_path / "w" / blend.STATE, {"method": "ridge", "state": {}})
    with pytest.raises(KagglePlanetError, match=r"blend\.json: expected \{'method': 'weighted'") as err:
        blend.apply_saved_blend(tmp_path / "w", info, "weighted", stack)
    assert "\n" not in str(err.value)
    artifacts.write_json(tmp_path / "w" / blend.STATE, {"method": "weighted", "state": {"weights": [1.0, 0.0, 0.0]}})
    with pytest.raises(KagglePlanetError, match=r"the saved weighted state does not fit 2 member\(s\)"):
        blend.apply_saved_blend(tmp_path / "w", info, "weighted", stack)


def test_lgbm_without_lightgbm_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm now raises ImportError
    dirs, _, _ = planet_members(tmp_path, n_models=2)
    with pytest.raises(KagglePlanetError, match=r'needs LightGBM.*pip install "kaggle-planet\[lgbm\]"') as err:
        blend.blend_runs(dirs, "lgbm", tmp_path / "l")
    assert "\n" not in str(err.value) and not (tmp_path / "l").exists()


# ------------------------------------------------------------------- best, auto, a metric to minimise


def sk_log_loss(y, p):
    """Kaggle's multiclass log loss written out (clip, renormalise, mean -log p(true class))."""
    q = np.clip(p, 1e-15, 1 - 1e-15)
    q = q / q.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(q[np.arange(len(y)), y.argmax(axis=1)])))


def strong_and_noise(tmp_path, seed=0):
    """A good Planet member and a pure-noise one: averaging them pulls the mean below the good member."""
    noise = np.random.default_rng(seed + 100)
    return planet_members(tmp_path, n_models=2, seed=seed, transforms=[None, lambda p: noise.random(p.shape)])


def test_a_noise_member_pulls_mean_below_the_best_member_and_auto_does_not(tmp_path, caplog):
    dirs, _, _ = strong_and_noise(tmp_path)
    runs = [artifacts.load_run(d) for d in dirs]
    strong = sk_f2_at_02(runs[0].y_true, runs[0].oof_probs)
    assert strong > sk_f2_at_02(runs[1].y_true, runs[1].oof_probs)
    mean = blend.blend_runs(dirs, "mean", tmp_path / "mean")
    assert mean["oof"] < strong - 0.01 and mean["gain_over_best"] < 0  # negative: worse than the best member
    assert mean["best_member"] == str(dirs[0])

    auto = blend.blend_runs(dirs, "auto", tmp_path / "auto")
    assert list(auto["auto"]["candidates"]) == ["mean", "hillclimb", "best"]
    assert auto["auto"]["candidates"]["mean"] == pytest.approx(mean["oof"])
    assert auto["auto"]["candidates"]["best"] == pytest.approx(strong)  # every fold's best is the strong member
    chosen = auto["auto"]["chosen"]
    assert chosen != "mean" and auto["method"] == chosen
    assert auto["auto"]["candidates"][chosen] == max(auto["auto"]["candidates"].values())
    out = artifacts.load_run(tmp_path / "auto")
    assert auto["oof"] == pytest.approx(sk_f2_at_02(out.y_true, out.oof_probs), abs=1e-6) == pytest.approx(auto["auto"]["candidates"][chosen])
    assert auto["oof"] >= strong - 1e-9 and auto["gain_over_best"] >= -1e-9
    assert "worse than its best member" not in caplog.text
    info = artifacts.read_run_info(tmp_path / "auto")
    assert info.extra["method"] == chosen and info.extra["config"]["blend"] == "auto" and info.extra["auto"] == auto["auto"]
    assert artifacts.read_json(tmp_path / "auto" / blend.STATE)["method"] == chosen
    assert artifacts.read_json(tmp_path / "auto" / "scores.json") == auto
    table = blend.format_blend_table(auto)
    assert f"blend ({chosen})" in table and f"blend: auto chose {chosen} (OOF {auto['oof']:.5f}) over mean {mean['oof']:.5f}" in table
    assert "worse than the best member" in blend.format_blend_table(mean)


def test_auto_state_applies_to_new_rows_as_the_chosen_method_does(tmp_path):
    dirs, _, classes = strong_and_noise(tmp_path, seed=1)
    auto = blend.blend_runs(dirs, "auto", tmp_path / "auto")
    chosen = auto["method"]
    plain = blend.blend_runs(dirs, chosen, tmp_path / "plain")
    assert plain["oof"] == auto["oof"]
    for name in ("oof.csv", "test.csv"):
        assert (tmp_path / "auto" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    info = artifacts.read_run_info(tmp_path / "auto")
    runs = [artifacts.load_run(d) for d in dirs]
    ids = runs[0].test["image_name"].tolist()[::-2]
    stack = np.stack([r.test.set_index("image_name").loc[ids, classes].to_numpy() for r in runs])
    got = blend.apply_saved_blend(tmp_path / "auto", info, info.extra["method"], stack)
    expected = artifacts.load_run(tmp_path / "plain").test.set_index("image_name").loc[ids, classes].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-7)
    with pytest.raises(KagglePlanetError, match="'auto' is a choice made when blending"):
        blend.apply_saved_blend(tmp_path / "auto", info, "auto", stack)


def test_best_takes_the_best_member_of_the_other_folds():
    data = planet_input(3, seed=8)
    out = blend.blend_predictions(data, "best")
    for k in range(K):
        held = data.folds == k
        singles = [sk_f2_at_02(data.y_true[~held], p[~held]) for p in data.oof]
        np.testing.assert_array_equal(out.oof[held], data.oof[int(np.argmax(singles)), held])
    overall = int(np.argmax([sk_f2_at_02(data.y_true, p) for p in data.oof]))
    assert out.state["member"] == overall and out.details["weights"] == np.eye(3)[overall].tolist()
    np.testing.assert_array_equal(out.test, data.test[overall])


def multiclass_input(seed=0, n=180, t=30):
    """Three multiclass members: a sharp good one, an overconfident wrong-ish one, a flat one."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n + t)
    y = np.eye(3, dtype=int)[labels]
    members = []
    for sharp, skill in ((4.0, 1.5), (8.0, 0.4), (0.3, 1.0)):
        logits = sharp * (skill * y + rng.standard_normal(y.shape) * 0.8)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        members.append(p / p.sum(axis=1, keepdims=True))
    stack = np.stack(members)
    return blend.BlendInput(stack[:, :n], stack[:, n:], y[:n], np.arange(n) % K, "multiclass", "log_loss")


def test_a_loss_is_minimised_by_hillclimb_best_and_auto():
    data = multiclass_input()
    losses = [sk_log_loss(data.y_true, p) for p in data.oof]
    # the direction matters: the member of least log loss is not the member of most
    assert int(np.argmin(losses)) != int(np.argmax(losses))
    assert blend.fit_best(data)["member"] == int(np.argmin(losses))
    assert blend.fit_best(dataclasses.replace(data, metric="accuracy"))["member"] == int(
        np.argmax([accuracy_score(data.y_true.argmax(1), p.argmax(1)) for p in data.oof]))

    counts = blend.select_members(data.oof, data.y_true, "log_loss", "multiclass")
    minimised, _ = brute_force_selection(data.oof, data.y_true, lambda y, p: -sk_log_loss(y, p))
    maximised, _ = brute_force_selection(data.oof, data.y_true, sk_log_loss)
    np.testing.assert_array_equal(counts, minimised)
    assert not np.array_equal(minimised, maximised)  # climbing the wrong way picks other members

    auto = blend.blend_predictions(data, "auto")
    candidates = auto.details["auto"]["candidates"]
    assert list(candidates) == ["mean", "hillclimb", "best"]
    for method, value in candidates.items():  # each candidate's honest OOF, recomputed
        assert value == pytest.approx(sk_log_loss(data.y_true, blend.blend_predictions(data, method).oof))
    assert auto.method == auto.details["auto"]["chosen"] == min(candidates, key=candidates.get)


def test_gain_over_best_of_a_loss_is_positive_when_the_blend_is_better(tmp_path, monkeypatch):
    import kaggle_planet.ensemble.members as members_mod
    from kaggle_planet.data.competitions import get_spec

    spec = dataclasses.replace(get_spec("imagefolder"), metric="log_loss")
    monkeypatch.setattr(members_mod, "get_spec", lambda name, options=None: spec)
    data = multiclass_input(seed=2)
    classes = ["a", "b", "c"]
    labels = data.y_true.argmax(1)
    ids = [f"seg_train/{classes[k]}/{i}.jpg" for i, k in enumerate(labels)]
    tids = [f"seg_test/{i}.jpg" for i in range(data.test.shape[1])]
    dirs = [write_run(tmp_path / f"m{m}", "imagefolder", classes, ids, data.y_true, data.oof[m], data.folds, tids, data.test[m])
            for m in range(3)]
    scores = blend.blend_runs(dirs, "mean", tmp_path / "mean")
    runs = [artifacts.load_run(d) for d in dirs]
    member_losses = [sk_log_loss(r.y_true, r.oof_probs) for r in runs]
    assert scores["metric"] == "log_loss" and scores["best_member"] == str(dirs[int(np.argmin(member_losses))])
    out = artifacts.load_run(tmp_path / "mean")
    assert scores["oof"] == pytest.approx(sk_log_loss(out.y_true, out.oof_probs), abs=1e-6)
    assert scores["gain_over_best"] == pytest.approx(min(member_losses) - scores["oof"], abs=1e-6)
    assert ("better" if scores["gain_over_best"] > 0 else "worse") + " than the best member" in blend.format_blend_table(scores)
    assert "log_loss is lower-is-better" in blend.format_blend_table(scores)


def test_auto_never_scores_below_its_best_member_even_when_fold_wise_fits_do(caplog):
    # two members each good on one fold only: every fold-wise fit (mean, hillclimb, and "best" chosen fold by fold)
    # scores below the better member out of fold; auto's "best" candidate is that member itself, so auto cannot
    rng = np.random.default_rng(3)
    data = planet_input(2, seed=3)
    good = data.y_true * 0.9 + 0.05
    noise = rng.random(data.y_true.shape)
    first = np.where((data.folds == 0)[:, None], good, noise)
    second = np.where((data.folds != 0)[:, None], good * 0.98 + 0.01, noise)
    data = dataclasses.replace(data, oof=np.stack([first, second]))
    singles = [sk_f2_at_02(data.y_true, p) for p in data.oof]
    best_member = max(singles)
    for method in ("mean", "hillclimb", "best"):
        assert sk_f2_at_02(data.y_true, blend.blend_predictions(data, method).oof) < best_member, method
    out = blend.blend_predictions(data, "auto")
    assert out.details["auto"]["chosen"] == "best" and out.details["auto"]["candidates"]["best"] == pytest.approx(best_member, abs=1e-12)
    np.testing.assert_array_equal(out.oof, data.oof[int(np.argmax(singles))])
    np.testing.assert_array_equal(out.test, data.test[int(np.argmax(singles))])
    assert "worse than its best member" not in caplog.text


def test_cli_blend_auto_prints_its_choice(tmp_path, capsys):
    from kaggle_planet.cli import main

    dirs, _, _ = strong_and_noise(tmp_path, seed=2)
    assert main(["blend", *map(str, dirs), "--method", "auto", "--out", str(tmp_path / "auto")]) == 0
    out = capsys.readouterr().out
    chosen = artifacts.read_json(tmp_path / "auto" / "scores.json")["auto"]["chosen"]
    assert f"blend: auto chose {chosen}" in out and f"blend ({chosen})" in out
    assert artifacts.read_run_info(tmp_path / "auto").extra["config"]["blend"] == "auto"
