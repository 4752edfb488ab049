"""Scale-out: a 2-process torchrun job (gloo on CPU) trains every fold and leaves the same files."""
from __future__ import annotations

import pytest

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml

from kaggle_planet import artifacts
from kaggle_planet.predict import predict_run

TENSORBOARD = importlib.util.find_spec("tensorboard") is not None  # the optional tracker rides along when installed


@pytest.mark.slow  # two torchrun processes, each importing torch: ~14 s
def test_two_process_gloo_run_completes(demo_datasets, tmp_path, monkeypatch):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "ddp", "competition": "planet", "data_dir": str(demo_datasets["planet"]),
        "folds": {"k": 2, "seed": 3}, "image_size": 32, "tta": "hflip", "epochs": 2, "batch_size": 8,
        "num_workers": 0, "models": [{"backbone": "test_resnet", "name": "tiny"}], "log": ["csv", "tensorboard"] if TENSORBOARD else ["csv"],
    }))
    cli = shutil.which("kaggle-planet", path=str(Path(sys.executable).parent)) or "kaggle-planet"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
           cli, "train", str(config), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    model_dir = tmp_path / "runs" / "ddp" / "tiny"
    for fold in (0, 1):
        done = json.loads((model_dir / f"fold{fold}" / "done.json").read_text())
        assert done["world_size"] == 2 and done["epochs_run"] == 2
        history = pd.read_csv(model_dir / f"fold{fold}" / "history.csv")
        assert history["epoch"].tolist() == [1, 2]  # one row per epoch: only rank 0 writes
        if not TENSORBOARD:
            continue
        # only rank 0 tracks: one event file per fold, one point per epoch
        [events] = (model_dir / "tb" / f"fold{fold}").glob("events.out.tfevents.*")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert [e.step for e in EventAccumulator(str(events)).Reload().Scalars("epoch/valid_metric")] == [1, 2]
    run = artifacts.load_run(model_dir)  # validates ids, probabilities, labels
    assert len(run.oof) == 60 and sorted(run.oof["fold"].unique()) == [0, 1]
    # validation predictions were gathered from both ranks: every valid image scored once
    assert json.loads((model_dir / "scores.json").read_text())["per_fold"].keys() == {"0", "1"}

    # the two ranks each predicted a share of the images: the gathered files equal one process's predictions
    sharded = {name: pd.read_csv(model_dir / name) for name in ("oof.csv", "test.csv")}
    monkeypatch.chdir(tmp_path)
    predict_run(model_dir, torch.device("cpu"))
    for name, frame in sharded.items():
        pd.testing.assert_frame_equal(frame, pd.read_csv(model_dir / name), check_exact=False, atol=1e-6, obj=name)
