"""Prediction-file contract: validation on read, atomic writes, labels aligned by id."""
from __future__ import annotations

import os
import stat

import numpy as np
import pandas as pd
import pytest

from kaggle_planet.core import artifacts
from kaggle_planet.core.errors import KagglePlanetError

CLASSES = ["a", "b"]


def _write(path, frame):
    frame.to_csv(path, index=False)
    return path


def test_round_trip_is_exact(tmp_path):
    probs = np.random.default_rng(0).random((50, 2)) / 3.0  # values with long decimal expansions
    ids = [f"x{i}" for i in range(50)]
    artifacts.write_predictions(tmp_path / "p.csv", ids, probs, "id", CLASSES, folds=np.arange(50) % 3)
    back = artifacts.read_predictions(tmp_path / "p.csv", "id", CLASSES, with_fold=True)
    assert back["id"].tolist() == ids and back["fold"].tolist() == list(np.arange(50) % 3)
    np.testing.assert_array_equal(back[CLASSES].to_numpy(), probs)


@pytest.mark.parametrize(
    "frame, pattern",
    [
        (pd.DataFrame({"id": ["1", "2"], "a": [0.1, 0.2]}), r"missing column\(s\) \['b'\]"),
        (pd.DataFrame({"id": ["1", "1"], "a": [0.1, 0.2], "b": [0.1, 0.2]}), r"row 3: duplicate id '1'"),
        (pd.DataFrame({"id": ["1", "2"], "a": [0.1, 1.5], "b": [0.1, 0.2]}), r"row 3, column 'a': '1.5' is not a probability"),
        (pd.DataFrame({"id": ["1", "2"], "a": [0.1, None], "b": [0.1, 0.2]}), r"row 3, column 'a': .* is not a probability"),
        (pd.DataFrame({"id": ["1", "2"], "a": [0.1, 0.3], "b": ["x", 0.2]}), r"row 2, column 'b': 'x' is not a probability"),
    ],
)
def test_bad_prediction_files_fail_in_one_line(tmp_path, frame, pattern):
    with pytest.raises(KagglePlanetError, match=pattern) as info:
        artifacts.read_predictions(_write(tmp_path / "p.csv", frame), "id", CLASSES)
    assert "\n" not in str(info.value) and "p.csv" in str(info.value)


def test_refuses_to_write_out_of_range(tmp_path):
    with pytest.raises(ValueError):
        artifacts.write_predictions(tmp_path / "p.csv", ["1"], np.array([[0.5, np.nan]]), "id", CLASSES)
    assert not any(tmp_path.iterdir())


def test_failed_write_keeps_the_old_file(tmp_path):
    path = artifacts.write_text(tmp_path / "x.txt", "old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        artifacts.atomic_write(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_written_files_get_normal_permissions(tmp_path):
    path = artifacts.write_text(tmp_path / "x.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_load_run_aligns_labels_by_id(tmp_path):
    info = artifacts.RunInfo("planet", "multilabel", "id", CLASSES, str(tmp_path))
    artifacts.write_run_info(tmp_path, info)
    ids = ["p", "q", "r"]
    y = np.array([[1, 0], [0, 1], [1, 1]])
    artifacts.write_labels(tmp_path, ids[::-1], y[::-1], "id", CLASSES)  # reversed order on disk
    artifacts.write_predictions(tmp_path / "oof.csv", ids, np.full((3, 2), 0.5), "id", CLASSES, folds=[0, 1, 0])
    artifacts.write_predictions(tmp_path / "test.csv", ["t"], np.full((1, 2), 0.5), "id", CLASSES)
    run = artifacts.load_run(tmp_path)
    np.testing.assert_array_equal(run.y_true, y)
    artifacts.write_labels(tmp_path, ["p", "q", "zzz"], y, "id", CLASSES)
    with pytest.raises(KagglePlanetError, match=r"ids differ \(first difference: 'r'\)"):
        artifacts.load_run(tmp_path)


def test_a_folder_without_run_json_is_named_as_not_a_run(tmp_path):
    with pytest.raises(KagglePlanetError, match=r"not a run folder \(no run.json\); expected a model folder"):
        artifacts.load_run(tmp_path)


@pytest.mark.parametrize("argv0", ["/venv/bin/kaggle-planet", "/src/kaggle_planet/cli.py", "kaggle-planet"])
def test_recorded_command_names_the_cli_however_it_was_started(monkeypatch, argv0):
    monkeypatch.setattr("sys.argv", [argv0, "train", "configs/my exp.yaml", "--folds", "0,1"])
    assert artifacts.command_line() == "kaggle-planet train 'configs/my exp.yaml' --folds 0,1"
