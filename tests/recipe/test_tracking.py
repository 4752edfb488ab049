"""Experiment trackers: TensorBoard event files and an offline W&B run, read back with their own readers."""
from __future__ import annotations

import importlib.util
import json
import struct
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from kaggle_planet.config.schema import config_from_dict
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.pipeline import train_experiment
from kaggle_planet.recipe import tracking

CPU = torch.device("cpu")


def tiny(data_dir: Path, log: list[str], **extra) -> dict:
    return {
        "name": "tracked", "competition": "planet", "data_dir": str(data_dir), "folds": {"k": 2, "seed": 3},
        "image_size": 32, "augment": "none", "tta": "none", "epochs": 2, "batch_size": 16, "lr": 0.003,
        "num_workers": 0, "patience": 0, "log": log, "models": [{"backbone": "test_resnet", "name": "tiny"}], **extra,
    }


def test_tensorboard_events_hold_every_epoch_and_update_of_every_fold(demo_datasets, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict(tiny(demo_datasets["planet"], ["csv", "tensorboard"], batch_size=8))
    [model_dir] = train_experiment(cfg, CPU)
    for fold in (0, 1):
        events = EventAccumulator(str(model_dir / "tb" / f"fold{fold}")).Reload()
        history = pd.read_csv(model_dir / f"fold{fold}" / "history.csv")
        for column in ("train_loss", "valid_loss", "train_metric", "valid_metric", "lr"):
            scalars = events.Scalars(f"epoch/{column}")
            assert [s.step for s in scalars] == history["epoch"].tolist() == [1, 2]
            assert [s.value for s in scalars] == pytest.approx(history[column].tolist(), rel=1e-4, abs=1e-6)
        # one loss and lr per optimizer update: 30 training images in full batches of 8 = 3 updates per epoch
        losses = events.Scalars("step/loss")
        assert [s.step for s in losses] == list(range(6))
        assert all(s.value > 0 for s in losses)
        lrs = [s.value for s in events.Scalars("step/lr")]
        assert lrs[0] == pytest.approx(history["lr"][0], rel=1e-5) and lrs[3] == pytest.approx(history["lr"][1], rel=1e-5)
    # a re-run with nothing left to train opens no tracker: no new event files
    before = sorted(model_dir.glob("tb/*/events.out.tfevents.*"))
    train_experiment(cfg, CPU)
    assert sorted(model_dir.glob("tb/*/events.out.tfevents.*")) == before and len(before) == 2


def test_a_tracker_that_is_not_installed_names_its_extra(demo_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = config_from_dict(tiny(demo_datasets["planet"], ["wandb"]))
    with pytest.raises(KagglePlanetError, match=r'pip install "kaggle-planet\[wandb\]"') as err:
        train_experiment(cfg, CPU)
    assert "\n" not in str(err.value)
    assert not Path("runs").exists()  # refused before anything was written


def test_only_rank_zero_tracks(demo_datasets, monkeypatch):
    cfg = config_from_dict(tiny(demo_datasets["planet"], ["tensorboard"]))
    monkeypatch.setenv("RANK", "1")
    assert tracking.Tracking.for_config(cfg).names == []
    monkeypatch.setenv("RANK", "0")
    assert tracking.Tracking.for_config(cfg).names == ["tensorboard"]


def test_log_key_takes_table_names_only():
    base = {"name": "x", "competition": "planet", "data_dir": "d", "models": [{"backbone": "test_resnet"}]}
    assert config_from_dict(base).log == ["csv"]
    assert config_from_dict(base, ["log=tensorboard"]).log == ["tensorboard"]
    with pytest.raises(KagglePlanetError, match=r"log: expected one of csv, tensorboard, wandb, got 'mlflow'"):
        config_from_dict(base, ["log=[csv, mlflow]"])


# ------------------------------------------------------------------------------------------- wandb


def _records(path: Path):
    """The protobuf records of a W&B ``.wandb`` transaction log: a ':W&B' header, then LevelDB-log blocks of
    32 KiB holding chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            yield parts


def read_offline_run(run_dir: Path, wait_s: float = 30.0) -> tuple[dict, dict]:
    """(run fields: name, group; summary) of an offline W&B run folder, from its transaction log. wandb's
    service may still be writing the log when ``finish`` returns: read again until its exit record is there."""
    deadline = time.monotonic() + wait_s
    while True:
        run, summary, finished = _read_run_log(next(run_dir.glob("*.wandb")))
        if finished or time.monotonic() > deadline:
            return run, summary
        time.sleep(0.2)


def _read_run_log(log_file: Path) -> tuple[dict, dict, bool]:
    from wandb.proto import wandb_internal_pb2 as pb

    run, summary, finished = {}, {}, False
    for raw in _records(log_file):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"name": record.run.display_name, "group": record.run.run_group}
        elif kind == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            finished = True
    return run, summary, finished


def test_wandb_offline_run_per_model_holds_the_oof_blend_and_submission(demo_datasets, tmp_path, monkeypatch):
    if importlib.util.find_spec("wandb") is None:
        pytest.skip("wandb is not installed (pip install \"kaggle-planet[wandb]\")")
    from kaggle_planet.pipeline import run_experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the default: no network
    cfg = config_from_dict(tiny(demo_datasets["planet"], ["wandb"], epochs=1))
    result = run_experiment(cfg, CPU)
    scores = json.loads((result.experiment_dir / "scores.json").read_text())
    [run_dir] = (result.experiment_dir / "tiny" / "wandb").glob("offline-run-*")
    run, summary = read_offline_run(run_dir)
    assert run == {"name": "tiny", "group": "tracked"}
    assert summary["oof"] == pytest.approx(scores["models"]["tiny"]["oof"])
    assert "blend_oof" in summary, summary
    assert summary["blend_oof"] == pytest.approx(scores["blend"]["oof"])
    assert summary["submission"] == scores["submission"]
    assert {"fold0/loss", "fold1/valid_metric"} <= set(summary)


def test_readme_tracker_table_is_current():
    text = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()  # the tracking page
    table = text.split("<!-- trackers -->")[1].split("<!-- /trackers -->")[0].strip()
    assert table == tracking.tracker_table_markdown().strip(), "regenerate the table in docs/training.md with tracking.tracker_table_markdown()"
