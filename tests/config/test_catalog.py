"""Shipped configs: listed, picked by name, and installed as package data by a real (non-editable) wheel."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from kaggle_planet.cli import main
from kaggle_planet.config.catalog import resolve_config, shipped_configs
from kaggle_planet.config.schema import load_config
from kaggle_planet.core.errors import KagglePlanetError

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_in_configs_is_shipped_and_loads():
    shipped = shipped_configs()
    assert sorted(shipped) == sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    for name, path in shipped.items():
        assert load_config(path).name == yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["name"]


def test_configs_command_lists_name_competition_models_and_description(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for path in (ROOT / "configs").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        [row] = [line for line in out.splitlines() if line.startswith(path.stem + " ")]
        first_comment = next(line for line in path.read_text().splitlines() if line.startswith("#")).lstrip("# ").strip()
        assert data["competition"] in row and first_comment in row
        assert all((m.get("name") or m["backbone"]) in row for m in data["models"])


def test_a_config_argument_is_a_path_or_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    assert resolve_config("planet") == resolve_config("planet.yaml") == resolve_config("configs/planet.yaml")
    assert resolve_config("planet").read_text() == (ROOT / "configs" / "planet.yaml").read_text()
    own = tmp_path / "planet"  # a file of that name wins over the shipped one
    own.write_text("name: mine\n")
    assert resolve_config("planet") == Path("planet")
    with pytest.raises(KagglePlanetError, match=r"^nope: config file not found, and not a shipped config name; shipped: demo, "):
        resolve_config("nope")
    with pytest.raises(KagglePlanetError, match="not a shipped config"):
        resolve_config("elsewhere/demo.yaml")  # a real path that is missing is not silently swapped


def test_run_takes_a_shipped_name_and_errors_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: nope: config file not found") and err.count("\n") == 1
    # the shipped invasive config is found by name; it then fails on its (absent) data folder, not on the config
    assert main(["train", "invasive", "--set", "data_dir=missing-data"]) == 2
    assert "missing-data" in capsys.readouterr().err
    assert main(["run", "--config", "invasive", "--set", "data_dir=missing-data"]) == 2  # --config NAME, as demo takes it
    assert "error: missing-data: data folder not found" in capsys.readouterr().err
    assert main(["run", "a.yaml", "--config", "b.yaml"]) == 2
    assert "give one config" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_from_any_folder_after_a_non_editable_wheel_install(tmp_path):
    """Build a wheel from the tracked sources, install it (not editable) into a fresh venv that borrows
    this interpreter's dependencies, and run the demo from an empty folder with the shipped config."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("kaggle_planet", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    run = lambda *cmd, **kw: subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # noqa: E731
    run(sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "whl"))
    [wheel] = (tmp_path / "whl").glob("kaggle_planet-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    site = Path(run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # the dependencies (torch, timm, ...) come from this interpreter's site-packages, listed after the venv's own;
    # a path line in a .pth does not run that folder's .pth files, so no editable kaggle_planet comes along
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel))

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cli = str(venv / "bin" / "kaggle-planet")
    where = run(str(python), "-c", "import kaggle_planet; print(kaggle_planet.__file__)", cwd=work, env=env).stdout
    assert where.startswith(str(site))
    listing = run(cli, "configs", cwd=work, env=env).stdout
    assert str(site / "kaggle_planet" / "configs") in listing and "demo" in listing
    run(cli, "make-demo-data", "--competition", "planet", "--out", "data/tiny", "--n-train", "60", "--n-test", "12", "--size", "32",
        cwd=work, env=env)
    sets = ["folds.k=2", "epochs=1", "image_size=32", "batch_size=16", "num_workers=0", "tta=none", "models.1.backbone=test_resnet", "models.1.pretrained=false"]
    out = run(cli, "demo", "--data-dir", "data/tiny", "--device", "cpu", *[a for s in sets for a in ("--set", s)], cwd=work, env=env).stdout
    assert "submission: submissions/demo.csv" in out
    assert (work / "submissions" / "demo.csv").is_file() and (work / "runs" / "demo" / "blend" / "oof.csv").is_file()
