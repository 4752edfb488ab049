"""predict-image against the files the pipeline wrote: a training image with its fold and TTA gets its
OOF row, a test image with every fold gets its test.csv row, blends of every method combine members as
the blend did."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from trained_runs import tiny_planet_experiment

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble.blend import BLENDERS, blend_runs
from kaggle_planet.predict.images import DECIDERS, format_image_predictions, predict_images

CPU = torch.device("cpu")
# oof.csv / test.csv store 8 significant digits
ATOL = 1e-6


@pytest.fixture(scope="session")
def experiment(tmp_path_factory, demo_datasets) -> Path:
    return tiny_planet_experiment(tmp_path_factory, demo_datasets["planet"])


def _train_file(run: artifacts.Run, row: int) -> Path:
    return Path(run.info.data_dir) / "train-jpg" / f"{run.oof[run.info.id_col].iloc[row]}.jpg"


@pytest.mark.parametrize("model", ["test_resnet", "effnet"])
def test_training_image_with_its_fold_and_tta_gets_its_oof_row(experiment, model):
    run = artifacts.load_run(experiment / model)
    tta = run.info.extra["tta"]
    for k in np.unique(run.folds):
        rows = np.flatnonzero(run.folds == k)[:2]
        result = predict_images(run.path, [_train_file(run, r) for r in rows], CPU, tta=tta, fold=int(k))
        np.testing.assert_allclose(result.probs, run.oof_probs[rows], atol=ATOL)
        assert result.models == [f"{run.path}/fold{k}"]


def test_default_tta_is_the_runs_and_every_fold_gives_the_test_row(experiment):
    run = artifacts.load_run(experiment / "test_resnet")
    test_files = _test_files(run, 3)
    result = predict_images(run.path, test_files, CPU)  # tta None: the run's own; fold None: mean over folds
    assert result.tta == run.info.extra["tta"]
    assert len(result.models) == len(np.unique(run.folds))
    np.testing.assert_allclose(result.probs, run.test_probs[:3], atol=ATOL)
    # another TTA gives other numbers (the check above is not vacuous)
    other = predict_images(run.path, test_files[:1], CPU, tta="d4")
    assert np.abs(other.probs - result.probs[:1]).max() > 1e-6


def _test_files(run: artifacts.Run, n: int) -> list[Path]:
    data_dir = Path(run.info.data_dir)
    found = []
    for image_id in run.test[run.info.id_col].iloc[:n]:
        found.append(next(p for p in (data_dir / "test-jpg" / f"{image_id}.jpg", data_dir / "test-jpg-additional" / f"{image_id}.jpg") if p.is_file()))
    return found


def test_mean_blend_gives_its_oof_row_and_tags_follow_its_thresholds(experiment):
    blend = artifacts.load_run(experiment / "blend")
    rows = np.flatnonzero(blend.folds == 1)[:3]
    result = predict_images(blend.path, [_train_file(blend, r) for r in rows], CPU, fold=1)
    np.testing.assert_allclose(result.probs, blend.oof_probs[rows], atol=ATOL)
    assert result.method == "mean" and len(result.models) == 2
    thr = np.asarray(artifacts.read_json(blend.path / "thresholds.json")["thresholds"])
    np.testing.assert_array_equal(result.thresholds, thr)
    for probs, tags in zip(result.probs, result.labels):
        above = [c for c, p, t in zip(blend.info.classes, probs, thr) if p > t]
        assert tags == (above or [blend.info.classes[int(np.argmax(probs))]])


def test_weighted_blend_uses_its_saved_weights(experiment, tmp_path):
    members = [experiment / "test_resnet", experiment / "effnet"]
    blend_runs(members, "weighted", tmp_path / "weighted")
    blend = artifacts.load_run(tmp_path / "weighted")
    result = predict_images(blend.path, _test_files(blend, 2), CPU)
    np.testing.assert_allclose(result.probs, blend.test_probs[:2], atol=ATOL)
    assert result.thresholds_source.startswith("default 0.2")  # no thresholds.json fitted for this blend


@pytest.mark.parametrize("method", [m if not BLENDERS[m].requires or importlib.util.find_spec(BLENDERS[m].requires)
                                    else pytest.param(m, marks=pytest.mark.skip(reason=f"{BLENDERS[m].requires} not installed"))
                                    for m in BLENDERS if m not in ("mean", "weighted")])
def test_every_blend_method_gives_a_test_image_its_blend_row(experiment, tmp_path, method):
    blend_runs([experiment / "test_resnet", experiment / "effnet"], method, tmp_path / method)
    blend = artifacts.load_run(tmp_path / method)
    result = predict_images(blend.path, _test_files(blend, 3), CPU)
    np.testing.assert_allclose(result.probs, blend.test_probs[:3], atol=ATOL)
    assert result.method == method


def test_rank_blend_places_a_new_image_among_the_ranked_test_images():
    from kaggle_planet.ensemble.blend import _scaled_ranks, scaled_ranks_against

    reference = np.array([[0.1], [0.4], [0.4], [0.9]])
    np.testing.assert_allclose(scaled_ranks_against(reference, reference), _scaled_ranks(reference[None])[0])
    # 0.5: half a rank above the 3rd value (rank 3.5 of 1..4 -> 2.5/3); beyond either end: clipped
    np.testing.assert_allclose(scaled_ranks_against(reference, np.array([[0.5], [0.0], [1.0]])), [[2.5 / 3], [0.0], [1.0]])


def test_unreadable_and_missing_images_name_the_file(experiment, tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(KagglePlanetError, match=r"photo\.jpg: not a readable image") as err:
        predict_images(experiment / "blend", [bad], CPU)
    assert "\n" not in str(err.value)
    with pytest.raises(KagglePlanetError, match=r"nothere\.png: image file not found"):
        predict_images(experiment / "blend", [tmp_path / "nothere.png"], CPU)


def test_missing_fold_lists_the_available_ones(experiment):
    run = artifacts.load_run(experiment / "test_resnet")
    with pytest.raises(KagglePlanetError, match=r"no fold7/best\.pt; folds available: 0, 1"):
        predict_images(run.path, _test_files(run, 1), CPU, fold=7)


def test_format_shows_each_image_its_tags_and_probabilities(experiment):
    run = artifacts.load_run(experiment / "blend")
    files = _test_files(run, 2)
    result = predict_images(run.path, files, CPU)
    text = format_image_predictions(result)
    lines = text.splitlines()
    assert lines[0].startswith(f"run: {run.path} (mean blend") and "TTA hflip" in lines[0]
    for path, probs, tags in zip(files, result.probs, result.labels):
        assert f"{path}: {' '.join(tags)}" in lines
        for tag in tags:
            j = run.info.classes.index(tag)
            assert any(line.split()[:3] == ["*", tag, f"{probs[j]:.4f}"] for line in lines)


def test_cli_predict_image(experiment, capsys, tmp_path):
    run = artifacts.load_run(experiment / "test_resnet")
    image = _test_files(run, 1)[0]
    assert main(["predict-image", str(run.path), str(image), "--device", "cpu", "--fold", "0", "--tta", "none"]) == 0
    out = capsys.readouterr().out
    assert "fold 0" in out and "TTA none" in out and str(image) in out
    (tmp_path / "x.jpg").write_text("")
    assert main(["predict-image", str(run.path), str(tmp_path / "x.jpg"), "--device", "cpu"]) == 2
    assert "x.jpg: not a readable image" in capsys.readouterr().err


def test_multiclass_and_binary_decisions():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    info = artifacts.RunInfo("imagefolder", "multiclass", "path", ["a", "b", "c"], "data")
    assert DECIDERS["multiclass"](info, probs, None) == [["b"], ["a"]]
    info = artifacts.RunInfo("invasive", "binary", "name", ["invasive"], "data")
    assert DECIDERS["binary"](info, np.array([[0.7], [0.5], [0.2]]), np.array([0.5])) == [["invasive"], [], []]


def test_a_folder_in_batches_gives_the_probabilities_of_one_by_one_calls(experiment, tmp_path):
    """Each fold model is loaded once and predicts the folder in batches (here of 2, with a ragged last
    batch): the same numbers as one call per image."""
    import shutil

    run = artifacts.load_run(experiment / "blend")
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = _test_files(run, 5)
    for i, src in enumerate(sources):  # names sorted naturally: img_2 before img_10
        shutil.copy(src, folder / f"img_{[10, 2, 33, 4, 1][i]}.jpg")
    (folder / "notes.txt").write_text("not an image")  # skipped (not an image suffix)
    batched = predict_images(run.path, [folder], CPU, batch_size=2, num_workers=0)
    assert [f.name for f in batched.files] == ["img_1.jpg", "img_2.jpg", "img_4.jpg", "img_10.jpg", "img_33.jpg"]
    assert len(batched.models) == 4  # 2 members x 2 folds, each used once for the whole folder
    singles = np.concatenate([predict_images(run.path, [f], CPU).probs for f in batched.files])
    np.testing.assert_allclose(batched.probs, singles, atol=1e-5)
    assert [predict_images(run.path, [f], CPU).labels[0] for f in batched.files[:2]] == batched.labels[:2]


def test_cli_predict_image_folder_to_csv(experiment, tmp_path, capsys):
    import shutil

    import pandas as pd

    run = artifacts.load_run(experiment / "test_resnet")
    folder = tmp_path / "photos"
    folder.mkdir()
    for src in _test_files(run, 3):
        shutil.copy(src, folder / src.name)
    out = tmp_path / "pred.csv"
    assert main(["predict-image", str(run.path), str(folder), "--device", "cpu", "--batch-size", "2", "--workers", "0", "--out", str(out)]) == 0
    assert "3 image(s)" in capsys.readouterr().out
    frame = pd.read_csv(out)
    expected = predict_images(run.path, sorted(folder.iterdir()), CPU)
    assert frame["file"].tolist() == [str(f) for f in expected.files]
    np.testing.assert_allclose(frame[run.info.classes].to_numpy(), expected.probs, atol=1e-6)
    assert frame["labels"].tolist() == [" ".join(t) for t in expected.labels]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict-image", str(run.path), str(empty), "--device", "cpu"]) == 2
    assert "empty: folder holds no image files" in capsys.readouterr().err


def test_an_image_with_a_jpeg_signature_that_does_not_decode_is_named_by_the_loader(experiment, tmp_path):
    run = artifacts.load_run(experiment / "test_resnet")
    bad = tmp_path / "truncated.jpg"
    # a JPEG's first bytes and its end marker: passes the signature and end checks, fails to decode
    bad.write_bytes(_test_files(run, 1)[0].read_bytes()[:40] + b"\xff\xd9")
    with pytest.raises(KagglePlanetError, match=r"truncated\.jpg: cannot read image") as err:
        predict_images(run.path, [bad], CPU, num_workers=0)
    assert "\n" not in str(err.value)
