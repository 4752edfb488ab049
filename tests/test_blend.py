"""Blending run folders: matching by id/class, every method's output, mismatches, ridge recalibration."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata
from sklearn.metrics import fbeta_score, roc_auc_score

from kaggle_planet import artifacts, blend, metrics, thresholds
from kaggle_planet.errors import KagglePlanetError

from runfactory import WEATHER, noisy_probs, planet_labels, write_run

N_TRAIN, N_TEST, K = 240, 50, 3


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


@pytest.mark.parametrize("method", list(blend.BLENDERS))
def test_shuffled_files_blend_to_identical_output(tmp_path, method):
    dirs, _, _ = planet_members(tmp_path)
    shuffled = [shuffled_copy(d, tmp_path / f"shuf{i}", i) for i, d in enumerate(dirs)]
    a = blend.blend_runs(dirs, method, tmp_path / "a")
    b = blend.blend_runs(shuffled, method, tmp_path / "b")
    for name in ("oof.csv", "test.csv", "labels.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a["oof"] == b["oof"]


@pytest.mark.parametrize("method", list(blend.BLENDERS))
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


def test_ridge_recalibrates_a_systematically_miscalibrated_model(tmp_path):
    # model 1 sees the same signal but squeezes every probability into [0.5, 1]: averaging it in puts
    # every tag above 0.2 for every image, so mean's F2@0.2 is exactly "predict all 17 tags"; ridge
    # regresses the labels on both models' outputs and so learns to undo the squeeze.
    dirs, y, _ = planet_members(tmp_path, n_models=2, transforms=[None, lambda p: 0.5 + 0.5 * p])
    mean = blend.blend_runs(dirs, "mean", tmp_path / "mean")
    ridge = blend.blend_runs(dirs, "ridge", tmp_path / "ridge")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predict_all = fbeta_score(y, np.ones_like(y), beta=2, average="samples")
    assert mean["oof"] == pytest.approx(predict_all)
    assert ridge["oof"] > predict_all + 0.1
    assert ridge["oof"] >= max(ridge["members"].values()) - 0.02  # honest OOF, so not wildly above either


def test_ridge_oof_is_out_of_fold(tmp_path):
    """A model memorising labels only on fold 0 rows must not leak into other folds' ridge OOF."""
    dirs, y, classes = planet_members(tmp_path, n_models=2)
    run = artifacts.load_run(dirs[1])
    leaky = np.where((run.folds == 0)[:, None], run.y_true * 0.98 + 0.01, run.oof_probs)
    write_run(dirs[1], "planet", classes, run.oof["image_name"].tolist(), run.y_true, leaky, run.folds,
              run.test["image_name"].tolist(), run.test_probs)
    scores = blend.blend_runs(dirs, "ridge", tmp_path / "ridge")
    # rows of fold 0 are predicted by a ridge fitted on folds 1-2, where model 1 is an ordinary model
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


def test_multiclass_ridge_rows_sum_to_one(tmp_path):
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
    blend.blend_runs(dirs, "ridge", tmp_path / "ridge")
    run = artifacts.load_run(tmp_path / "ridge")
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
    with pytest.raises(KagglePlanetError, match="mean, rank, weighted, ridge"):
        blend.blend_runs([tmp_path], "median", tmp_path / "b")
