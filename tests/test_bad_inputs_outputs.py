"""Hardening 2 (issue 20), class 5: an ``--out`` never clobbers an input or what another command owns. Each
refusal comes before any work, as one ``error:`` line naming the path and what it is, and leaves every file
of the workspace as it was."""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from runfactory import make_run

from kaggle_planet.cli import main
from kaggle_planet.kaggle.submission import LOG_COLUMNS


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(capsys, root: Path, *argv) -> str:
    before = snapshot(root)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert snapshot(root) == before, "nothing written or changed"
    return lines[0]


@pytest.fixture
def workspace(tmp_path, demo_datasets, monkeypatch):
    """A data folder, a model run (with its sidecar-free files), a folds file and a submissions log."""
    monkeypatch.chdir(tmp_path)
    data = Path(shutil.copytree(demo_datasets["planet"], tmp_path / "data" / "planet"))
    run, _, _ = make_run(tmp_path / "runs", data, "planet")
    folds = tmp_path / "folds" / "planet_k3_s42.csv"
    folds.parent.mkdir()
    folds.write_text("image_name,fold\ntrain_0,0\n")
    log = tmp_path / "submissions" / "log.csv"
    log.parent.mkdir()
    log.write_text(",".join(LOG_COLUMNS) + "\n")
    return {"root": tmp_path, "data": data, "run": run, "folds": folds, "log": log}


def test_predict_image_out_never_overwrites_the_training_labels(workspace, capsys):
    w = workspace
    line = refused(capsys, w["root"], "predict-image", w["run"], w["data"] / "train-jpg", "--out", w["data"] / "train_v2.csv")
    assert "train_v2.csv" in line and "not a predictions CSV written by kaggle-planet" in line


@pytest.mark.parametrize("target", ["folds", "log"])
def test_submission_out_never_overwrites_the_folds_file_or_the_upload_log(workspace, capsys, target):
    w = workspace
    line = refused(capsys, w["root"], "submission", w["run"], "--out", w[target])
    assert str(w[target].name) in line and ("a folds file" if target == "folds" else "the submissions log") in line


def test_predict_image_out_inside_a_run_folder_is_refused(workspace, capsys):
    w = workspace
    line = refused(capsys, w["root"], "predict-image", w["run"], w["data"] / "train-jpg", "--out", w["run"] / "mine.csv")
    assert "inside the run folder" in line


@pytest.mark.parametrize("name", ["fold0/best.pt", "fold0/curves.png"])
def test_lr_find_out_never_overwrites_a_fold_file(workspace, capsys, name):
    w = workspace
    fold = w["run"] / "fold0"
    fold.mkdir(exist_ok=True)
    (fold / "best.pt").write_bytes(b"weights")
    (fold / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n...")
    cfg = w["root"] / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "competition": "planet", "data_dir": str(w["data"]), "image_size": 32,
                                   "models": [{"backbone": "test_resnet"}]}))
    line = refused(capsys, w["root"], "lr-find", cfg, "--device", "cpu", "--steps", "20", "--out", w["run"] / name)
    assert name.split("/")[-1] in line and ("inside the run folder" in line or "ending in .png" in line)


def test_an_earlier_own_output_is_replaced(workspace, capsys):
    """What the command wrote itself may be written again (a re-run), so the checks do not refuse everything."""
    w = workspace
    out = w["root"] / "submissions" / "planet.csv"
    assert main(["submission", str(w["run"]), "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["submission", str(w["run"]), "--out", str(out)]) == 0
    assert out.read_bytes() == first
    os.remove(out)


def test_a_run_refused_by_the_lock_leaves_the_running_models_config_alone(demo_datasets, tmp_path, monkeypatch, capsys):
    """The second process learns from the lock that fold 1 is being trained: it writes nothing into the model
    folder (not even config.yaml with its own num_workers) before it is refused."""
    import subprocess
    import sys

    from kaggle_planet.core import locks

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "e", "competition": "invasive", "data_dir": str(demo_datasets["invasive"]),
                                   "folds": {"k": 2, "seed": 3}, "image_size": 32, "epochs": 1, "batch_size": 16,
                                   "num_workers": 0, "models": [{"backbone": "test_resnet", "name": "tiny"}]}))
    assert main(["train", str(cfg), "--device", "cpu", "--folds", "0"]) == 0
    model = tmp_path / "runs" / "e" / "tiny"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = model / "fold1" / locks.LOCK
        lock.parent.mkdir(exist_ok=True)
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now", "command": "train"}))
        capsys.readouterr()
        line = refused(capsys, model, "train", cfg, "--device", "cpu", "--set", "num_workers=1")
        assert f"being trained by pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
