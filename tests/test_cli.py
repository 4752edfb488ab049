"""The command line: help for every subcommand, dataset commands, one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from kaggle_planet.cli import COMMANDS, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_help_has_an_example(capsys, name):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and f"kaggle-planet {name}" in out


def test_make_demo_data_check_and_folds(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["make-demo-data", "-c", "invasive", "--out", "inv", "--n-train", "40", "--n-test", "6", "--size", "24"]) == 0
    assert main(["check", "-c", "invasive", "-d", "inv"]) == 0
    out = capsys.readouterr().out
    labels = pd.read_csv(tmp_path / "inv" / "train_labels.csv")
    assert f"invasive=1  {labels['invasive'].sum()}" in out and "test images: 6" in out and "ok: dataset is valid" in out
    assert main(["folds", "-c", "invasive", "-d", "inv", "--k", "4", "--seed", "1"]) == 0
    folds = pd.read_csv(tmp_path / "folds" / "invasive_k4_s1.csv")
    assert list(folds.columns) == ["name", "fold"] and sorted(folds["fold"].unique()) == [0, 1, 2, 3]


def test_bad_input_prints_one_line_and_exit_2(tmp_path, dataset_copy):
    root = dataset_copy("invasive")
    (root / "train" / "3.jpg").write_bytes(b"broken")
    proc = subprocess.run([sys.executable, "-m", "kaggle_planet.cli", "check", "-c", "invasive", "-d", str(root)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert "1 image(s) missing or unreadable" in proc.stderr and "3.jpg" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "kaggle_planet.cli", "folds", "-c", "invasive", "-d", str(root), "--k", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "error: folds: k=1 is too small; expected k >= 2\n"
    assert "Traceback" not in proc.stderr and not (tmp_path / "folds").exists()


@pytest.mark.slow  # a training subprocess with loader workers: ~10 s
def test_unreadable_image_met_by_a_loader_worker_is_one_line(dataset_copy, tmp_path):
    root = dataset_copy("invasive")
    # a JPEG's first and last bytes around garbage: passes the start-of-training file check, fails to decode
    (root / "train" / "7.jpg").write_bytes(b"\xff\xd8\xff" + b"garbage" + b"\xff\xd9")
    config = tmp_path / "c.yaml"
    config.write_text(f"name: bad\ncompetition: invasive\ndata_dir: {root}\nfolds: {{k: 2, seed: 0}}\nimage_size: 32\n"
                      "epochs: 1\nbatch_size: 8\nnum_workers: 2\nmodels:\n  - {backbone: test_resnet}\n")
    proc = subprocess.run([sys.executable, "-m", "kaggle_planet.cli", "train", str(config)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("INFO")]
    assert errors == [f"error: {root}/train/7.jpg: cannot read image (missing or not a decodable image file)"]
