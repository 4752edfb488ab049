"""Fingerprints of a stage's inputs (core.fingerprints): order-free digests that change with every edit that
matters, the one-phrase description of what changed, and run.json's record of the files it describes."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from kaggle_planet.core import artifacts
from kaggle_planet.core import fingerprints as fp
from kaggle_planet.core.errors import KagglePlanetError

IDS = [f"train_{i}" for i in range(12)]
CLASSES = ["clear", "haze", "primary"]
Y = (np.arange(36).reshape(12, 3) % 5 == 0).astype(int)
FOLDS = np.arange(12) % 3


def record(ids=IDS, y=Y, classes=CLASSES, folds=FOLDS, folds_file="folds/planet_k3_s0.csv"):
    return fp.data_fingerprints(ids, y, classes, folds, folds_file)


def test_digests_ignore_row_order_and_change_with_every_edit():
    order = np.random.default_rng(0).permutation(12)
    shuffled = [IDS[i] for i in order]
    assert fp.labels_digest(shuffled, Y[order]) == fp.labels_digest(IDS, Y)
    assert fp.folds_digest(shuffled, FOLDS[order]) == fp.folds_digest(IDS, FOLDS)
    flipped = Y.copy()
    flipped[3, 1] = 1 - flipped[3, 1]
    moved = FOLDS.copy()
    moved[4] = (moved[4] + 1) % 3
    renamed = ["train_x", *IDS[1:]]
    assert fp.labels_digest(IDS, flipped) != fp.labels_digest(IDS, Y)  # one target flipped
    assert fp.labels_digest(renamed, Y) != fp.labels_digest(IDS, Y)  # one id renamed
    assert fp.labels_digest(IDS[:-1], Y[:-1]) != fp.labels_digest(IDS, Y)  # one image fewer
    assert fp.labels_digest(IDS, np.c_[Y, np.zeros(12, int)]) != fp.labels_digest(IDS, Y)  # a class added
    assert fp.folds_digest(IDS, moved) != fp.folds_digest(IDS, FOLDS)  # one row's fold changed
    assert fp.folds_digest(renamed, FOLDS) != fp.folds_digest(IDS, FOLDS)


def test_data_change_names_the_first_thing_that_changed():
    same = record()
    assert fp.data_change(same, record()) is None
    assert fp.data_change(same, record(folds_file="elsewhere.csv")) is None  # the file's name is not an input
    added = fp.data_change(same, record(y=np.c_[Y, Y[:, :1]], classes=[*CLASSES, "new_tag"]))
    assert added == "trained on 3 classes, the data now has 4 (tag 'new_tag' added)"
    renamed = fp.data_change(same, record(classes=["clear", "mist", "primary"]))
    assert renamed == "trained on 3 classes ('haze' renamed to 'mist', or replaced by it)"
    assert "'primary' removed" in fp.data_change(same, record(y=Y[:, :2], classes=CLASSES[:2]))
    assert "another order" in fp.data_change(same, record(classes=CLASSES[::-1]))
    flipped = Y.copy()
    flipped[3, 1] = 1 - flipped[3, 1]
    labels = fp.data_change(same, record(y=flipped), lambda: "image_name 'train_3': haze 0 -> 1")
    assert labels == "trained on other labels than the data folder holds now (first difference: image_name 'train_3': haze 0 -> 1)"
    fewer = fp.data_change(same, record(ids=IDS[:-1], y=Y[:-1], folds=FOLDS[:-1]))
    assert "12 training images, now 11" in fewer
    moved = FOLDS.copy()
    moved[4] = (moved[4] + 1) % 3
    assert fp.data_change(same, record(folds=moved)) == (
        "trained on another fold assignment than folds/planet_k3_s0.csv holds now (it was edited or made again)")
    assert "trained on 3 folds" in fp.data_change(same, record(folds=np.arange(12) % 4))
    # classes before labels before folds: the root cause is named, not its consequences
    assert "classes" in fp.data_change(same, record(y=flipped, classes=["clear", "mist", "primary"], folds=moved))


def test_records_written_before_a_key_existed_are_not_compared_on_it():
    legacy = {"classes": CLASSES, "labels": fp.labels_digest(IDS, Y), "n_train": 12}  # from a labels.csv: no folds
    moved = FOLDS.copy()
    moved[0] = 2
    assert fp.data_change(legacy, record(folds=moved)) is None
    assert fp.data_change({}, record()) is None


def test_first_label_difference():
    flipped = Y.copy()
    flipped[5, 2] = 1 - flipped[5, 2]
    assert fp.first_label_difference(IDS, Y, IDS, flipped, CLASSES, "image_name") == f"image_name 'train_5': primary {Y[5, 2]} -> {flipped[5, 2]}"
    assert fp.first_label_difference(IDS[:-1], Y[:-1], IDS, Y, CLASSES, "id") == "id 'train_11' is new"
    assert fp.first_label_difference(IDS, Y, IDS[:-1], Y[:-1], CLASSES, "id") == "id 'train_11' is gone"


def test_run_inputs_digest_is_the_one_decision_json_always_recorded(tmp_path):
    (tmp_path / "oof.csv").write_text("id,a,fold\nx,0.5,0\n")
    (tmp_path / "labels.csv").write_text("id,a\nx,1\n")
    old = hashlib.sha256((tmp_path / "oof.csv").read_bytes() + (tmp_path / "labels.csv").read_bytes()).hexdigest()
    assert fp.run_inputs_digest(tmp_path) == old  # decision.json files written before stay reusable


def test_stale_files_and_records(tmp_path):
    (tmp_path / "a.csv").write_text("1\n")
    digests = fp.file_digests(tmp_path, ["a.csv", "missing.csv"])
    assert list(digests) == ["a.csv"] and fp.stale_files(tmp_path, digests) == []
    (tmp_path / "a.csv").write_text("2\n")
    assert fp.stale_files(tmp_path, digests) == ["a.csv"]
    (tmp_path / "a.csv").unlink()
    assert fp.stale_files(tmp_path, digests) == ["a.csv"]
    assert fp.read_record(tmp_path) is None
    (tmp_path / fp.FINGERPRINTS).write_text("[1]")
    with pytest.raises(KagglePlanetError, match="expected a JSON object"):
        fp.read_record(tmp_path)


def _run(tmp_path, files=True):
    ids, y = IDS, Y
    info = artifacts.RunInfo("planet", "multilabel", "image_name", CLASSES, "data")
    artifacts.write_labels(tmp_path, ids, y, "image_name", CLASSES)
    artifacts.write_predictions(tmp_path / artifacts.OOF, ids, y * 0.8 + 0.1, "image_name", CLASSES, FOLDS)
    artifacts.write_predictions(tmp_path / artifacts.TEST, ["test_0"], np.full((1, 3), 0.5), "image_name", CLASSES)
    if files:
        info.files = fp.file_digests(tmp_path, artifacts.DESCRIBED_FILES)
        info.fingerprints = record()
    artifacts.write_run_info(tmp_path, info)
    return tmp_path


def test_load_run_refuses_files_that_are_not_the_ones_run_json_describes(tmp_path):
    run = _run(tmp_path)
    assert artifacts.read_run_info(run).fingerprints == record()  # round trip
    artifacts.load_run(run)
    # a stage stopped half-way: the new oof.csv beside the old test.csv and run.json
    artifacts.write_predictions(run / artifacts.OOF, IDS, Y * 0.6 + 0.2, "image_name", CLASSES, FOLDS)
    with pytest.raises(KagglePlanetError) as err:
        artifacts.load_run(run)
    message = str(err.value)
    assert message.startswith(f"{run / 'oof.csv'}: not the file run.json describes") and "\n" not in message
    assert message.endswith(f"kaggle-planet predict {run}")


def test_run_json_written_before_files_were_recorded_still_loads(tmp_path):
    run = _run(tmp_path, files=False)
    artifacts.write_predictions(run / artifacts.OOF, IDS, Y * 0.6 + 0.2, "image_name", CLASSES, FOLDS)
    assert artifacts.load_run(run).info.files == {}
