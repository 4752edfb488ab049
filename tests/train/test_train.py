"""K-fold training end to end on tiny generated data: files, OOF ids, separate fold runs, resume after kill -9."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from kaggle_planet.config.schema import config_from_dict
from kaggle_planet.core import artifacts, metrics
from kaggle_planet.core.artifacts import HISTORY_COLUMNS
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import load_dataset
from kaggle_planet.data.folds import fold_file_path
from kaggle_planet.pipeline import train_experiment
from kaggle_planet.predict.tta import predict_run

CPU = torch.device("cpu")
FOLD_FILES = ("best.pt", "history.csv", "curves.png", "done.json")
RUN_FILES = ("config.yaml", "labels.csv", "oof.csv", "test.csv", "run.json", "scores.json")


def tiny_config(data_dir: Path, competition: str, **overrides) -> dict:
    cfg = {
        "name": f"t_{competition}",
        "competition": competition,
        "data_dir": str(data_dir),
        "folds": {"k": 2, "seed": 3},
        "image_size": 32,
        "augment": "light",
        "tta": "none",
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.003,
        "num_workers": 0,
        "patience": 0,
        "models": [{"backbone": "test_resnet", "name": "tiny"}],
    }
    cfg.update(overrides)
    return cfg


# every recipe key rides along on one of the kinds, through a real training run
KINDS = {
    "planet": {"tta": "hflip", "loss": "focal", "loss_args": {"gamma": 1.5}, "mixup": {"alpha": 0.4}, "cutmix": {"alpha": 1.0, "prob": 0.5},
               "mix_off_epochs": 1, "batch_size": 8, "grad_accum": 2, "clip_grad": 1.0, "drop_path_rate": 0.1},
    # the two-stage recipe and EMA ride along on the binary task
    "invasive": {"freeze_epochs": 1, "ema": True, "ema_decay": 0.9, "loss": "asl", "pos_weight": "auto",
                 "optimizer": "sgd", "scheduler": "onecycle"},
    # and the CUDA speed-ups forced on, on CPU (bf16 autocast, channels_last)
    "imagefolder": {"augment": "heavy", "amp": True, "channels_last": True, "label_smoothing": 0.1, "layer_decay": 0.8,
                    "head_lr_scale": 5.0, "optimizer": "lamb", "scheduler": "step", "scheduler_args": {"decay_epochs": 1}},
}


@pytest.mark.parametrize("competition", list(KINDS))
def test_two_fold_run_leaves_every_file(demo_datasets, tmp_path, monkeypatch, competition):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict(tiny_config(demo_datasets[competition], competition, **KINDS[competition]))
    [model_dir] = train_experiment(cfg, CPU)
    assert model_dir == Path("runs") / cfg.name / "tiny"
    for fold in (0, 1):
        for name in FOLD_FILES:
            assert (model_dir / f"fold{fold}" / name).is_file(), (fold, name)
        assert not (model_dir / f"fold{fold}" / "last.pt").exists()  # removed once the fold is done
        history = pd.read_csv(model_dir / f"fold{fold}" / "history.csv")
        assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1, 2]
        assert (model_dir / f"fold{fold}" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        best = torch.load(model_dir / f"fold{fold}" / "best.pt", weights_only=True)
        assert best["score"] == pytest.approx(history["valid_metric"].max(), rel=1e-5)
        assert best["epoch"] == int(history["epoch"][history["valid_metric"].idxmax()])
    for name in RUN_FILES:
        assert (model_dir / name).is_file(), name

    table = load_dataset(competition, demo_datasets[competition], cfg.options)
    run = artifacts.load_run(model_dir)
    train_ids = table.train[table.id_col].tolist()
    oof_ids = run.oof[table.id_col].tolist()
    assert sorted(oof_ids) == sorted(train_ids) and len(set(oof_ids)) == len(oof_ids)
    fold_file = pd.read_csv(fold_file_path(competition, 2, 3), dtype={table.id_col: str}).set_index(table.id_col)["fold"]
    assert (run.oof.set_index(table.id_col)["fold"] == fold_file.loc[oof_ids]).all()
    assert run.test[table.id_col].tolist() == table.test[table.id_col].tolist()
    probs = np.vstack([run.oof_probs, run.test_probs])
    if table.task == "multiclass":
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)  # softmax head

    scores = json.loads((model_dir / "scores.json").read_text())
    assert scores["metric"] == cfg.metric
    assert scores["oof"] == pytest.approx(metrics.score(cfg.metric, run.y_true, run.oof_probs), abs=1e-6)
    assert set(scores["per_fold"]) == {"0", "1"}
    info = artifacts.read_run_info(model_dir)
    assert (info.competition, info.task, info.classes, info.kind) == (competition, table.task, table.classes, "model")
    assert info.extra["tta"] == cfg.train.tta and info.extra["config"]["models"][0]["name"] == "tiny"
    commands = info.extra["commands"]
    assert commands and len(set(commands)) == len(commands)  # training and prediction ran as one command


def test_folds_trained_by_separate_runs_are_gathered(demo_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict(tiny_config(demo_datasets["planet"], "planet", epochs=1))
    [model_dir] = train_experiment(cfg, CPU, folds=[1])
    assert (model_dir / "fold1" / "done.json").is_file() and not (model_dir / "fold0").exists()
    assert not (model_dir / "oof.csv").exists()  # predictions wait for every fold
    with pytest.raises(KagglePlanetError, match=r"folds \[0\] of 2 are not trained yet"):
        predict_run(model_dir, CPU)
    stamp = (model_dir / "fold1" / "best.pt").stat().st_mtime_ns
    train_experiment(cfg, CPU)  # trains fold 0 only, then predicts
    assert (model_dir / "fold1" / "best.pt").stat().st_mtime_ns == stamp
    assert len(pd.read_csv(model_dir / "oof.csv")) == 60
    oof_stamp = (model_dir / "oof.csv").stat().st_mtime_ns
    train_experiment(cfg, CPU)  # nothing left to do: neither training nor predicting again
    assert (model_dir / "oof.csv").stat().st_mtime_ns == oof_stamp
    # the folder remembers its settings: training on with other ones is refused
    changed = config_from_dict(tiny_config(demo_datasets["planet"], "planet", epochs=1, lr=0.1))
    with pytest.raises(KagglePlanetError, match=r"trained with lr=0.003, the config now says 0.1"):
        train_experiment(changed, CPU)
    with pytest.raises(KagglePlanetError, match="no model 'nope'; valid: tiny"):
        train_experiment(cfg, CPU, models=["nope"])
    with pytest.raises(KagglePlanetError, match="no fold '7'"):
        train_experiment(cfg, CPU, folds=[7])


def test_missing_weights_fail_before_any_training(demo_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models = [{"backbone": "test_resnet", "name": "ok"}, {"backbone": "test_resnet", "name": "bad", "pretrained": "nope.pth"}]
    cfg = config_from_dict(tiny_config(demo_datasets["planet"], "planet", models=models))
    with pytest.raises(KagglePlanetError, match="model 'bad': pretrained weights file 'nope.pth' not found"):
        train_experiment(cfg, CPU)
    assert not Path("runs").exists()  # the first model did not train for nothing


def test_early_stopping_after_patience_epochs_without_improvement(demo_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # lr ~ 0: the head stays at the class prior (zero weights), so the valid F2 cannot improve after epoch 1
    cfg = config_from_dict(tiny_config(demo_datasets["planet"], "planet", epochs=5, patience=1, lr=1e-12, warmup_epochs=0))
    [model_dir] = train_experiment(cfg, CPU, folds=[0])
    history = pd.read_csv(model_dir / "fold0" / "history.csv")
    assert history["valid_metric"].nunique() == 1
    assert history["epoch"].tolist() == [1, 2]
    done = json.loads((model_dir / "fold0" / "done.json").read_text())
    assert done["stopped_early"] and done["epochs_run"] == 2 and done["best_epoch"] == 1


# ------------------------------------------------------------------------------------------- resume


def _write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _train_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "kaggle_planet.cli", "train", str(config), "--device", "cpu"]


def _run_files(model_dir: Path) -> dict[str, pd.DataFrame]:
    out = {name: pd.read_csv(model_dir / name) for name in ("oof.csv", "test.csv")}
    for fold in (0, 1):
        out[f"history{fold}"] = pd.read_csv(model_dir / f"fold{fold}" / "history.csv").drop(columns="seconds")
    return out


# ~20 s (two CLI processes and a reference run): kept in the default run, it is the resume guarantee
def test_resume_after_kill_gives_the_same_files(demo_datasets, tmp_path, monkeypatch):
    data = tiny_config(demo_datasets["planet"], "planet", epochs=2, augment="heavy", tta="hflip", drop_rate=0.2,
                       mixup={"alpha": 0.4, "prob": 0.8}, cutmix={"alpha": 1.0}, batch_size=8, grad_accum=2, scheduler="onecycle")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for d in (straight, killed):
        d.mkdir()
    config = _write_config(tmp_path / "cfg.yaml", data)

    proc = subprocess.Popen(_train_cmd(config), cwd=killed, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = killed / "runs" / "t_planet" / "tiny" / "fold0" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    # epoch 1 is saved: the process is now inside epoch 2 (a tiny epoch lasts ~0.5 s, so kill at once)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists() and not (last.parent / "done.json").exists(), "the run should be killed inside fold 0"
    epochs_before = len(torch.load(last, weights_only=True)["state"]["history"])
    assert epochs_before == 1

    resumed = subprocess.run(_train_cmd(config), cwd=killed, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {epochs_before}" in resumed.stderr
    # the uninterrupted reference runs in this process: the same library call the CLI makes
    monkeypatch.chdir(straight)
    train_experiment(config_from_dict(data), CPU)

    a = _run_files(killed / "runs" / "t_planet" / "tiny")
    b = _run_files(straight / "runs" / "t_planet" / "tiny")
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, atol=1e-6, obj=name)


@pytest.mark.slow  # inductor compiles C++ kernels on CPU: a minute or more
def test_compiled_training_saves_plain_weights(demo_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict(tiny_config(demo_datasets["invasive"], "invasive", epochs=1, compile=True, folds={"k": 2, "seed": 3}))
    [model_dir] = train_experiment(cfg, CPU, folds=[0])
    best = torch.load(model_dir / "fold0" / "best.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in best["model"])
    assert math.isfinite(json.loads((model_dir / "fold0" / "done.json").read_text())["step0_loss"])
