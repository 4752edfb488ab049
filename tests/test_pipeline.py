"""The main job end to end through the CLI: generated data -> validated submission, for every kind."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from kaggle_planet.cli import main
from kaggle_planet.competitions import load_dataset
from kaggle_planet.metrics import score


def _config(path, competition, data_dir, blend="auto"):
    cfg = {
        "name": f"tiny-{competition}",
        "competition": competition,
        "data_dir": str(data_dir),
        "folds": {"k": 2, "seed": 0},
        "image_size": 32,
        "augment": "light",
        "tta": "hflip",
        "device": "cpu",
        "blend": blend,
        "epochs": 1,
        "batch_size": 16,
        "num_workers": 0,
        "warmup_epochs": 0,
        "models": [
            {"backbone": "test_resnet", "lr": 0.003},
            {"backbone": "test_efficientnet", "name": "effnet", "lr": 0.003, "augment": "d4"},
        ],
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
def test_run_goes_from_data_to_a_validated_submission(tmp_path, monkeypatch, capsys, demo_datasets, competition):
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path / "exp.yaml", competition, demo_datasets[competition])
    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    name = f"tiny-{competition}"
    exp = tmp_path / "runs" / name
    table = load_dataset(competition, demo_datasets[competition])

    assert (tmp_path / "folds" / f"{competition}_k2_s0.csv").is_file()
    submission = pd.read_csv(tmp_path / "submissions" / f"{name}.csv", dtype={table.id_col: str})
    assert submission[table.id_col].tolist() == table.test[table.id_col].tolist()
    assert (exp / "submission.csv").read_bytes() == (tmp_path / "submissions" / f"{name}.csv").read_bytes()
    sidecar = json.loads((tmp_path / "submissions" / f"{name}.csv.json").read_text())
    assert sidecar

    scores = json.loads((exp / "scores.json").read_text())
    assert set(scores["models"]) == {"test_resnet", "effnet"}
    # the blend's OOF score is what its own files say (recomputed here independently)
    oof = pd.read_csv(exp / "blend" / "oof.csv", dtype={table.id_col: str}).set_index(table.id_col)
    truth = table.train.set_index(table.id_col).loc[oof.index, table.classes].to_numpy()
    assert scores["blend"]["oof"] == pytest.approx(score(scores["metric"], truth, oof[table.classes].to_numpy()), abs=1e-9)
    assert f"{scores['blend']['oof']:.5f}" in out and f"submission: submissions/{name}.csv" in out

    if competition == "planet":
        assert scores["thresholds"]["f2_tuned"] >= scores["thresholds"]["f2_at_0.2"] - 1e-12
        assert submission["tags"].str.len().min() > 0  # at least one tag per image
    if competition == "invasive":
        assert submission["invasive"].between(0, 1).all()
    if competition == "imagefolder":
        assert set(submission["label"]) <= set(table.classes)
        np.testing.assert_allclose(submission[table.classes].sum(axis=1), 1.0, atol=1e-6)

    if competition != "planet":
        return
    # re-running skips finished training and reproduces the same submission
    stamp = (exp / "test_resnet" / "fold0" / "best.pt").stat().st_mtime_ns
    assert main(["run", str(config)]) == 0
    assert (exp / "test_resnet" / "fold0" / "best.pt").stat().st_mtime_ns == stamp
    assert (exp / "submission.csv").read_bytes() == (tmp_path / "submissions" / f"{name}.csv").read_bytes()
