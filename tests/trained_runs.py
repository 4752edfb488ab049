"""A tiny really-trained Planet experiment, trained once per test session and shared by test modules.

Two models (timm's ``test_resnet`` and ``test_efficientnet``), k=2, one epoch at 32 px on the
conftest's 60-image demo data, through the real CLI (``kaggle-planet run``), so the report and
predict-image are checked against files the pipeline itself wrote. Treat the result as read-only.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from kaggle_planet.cli import main

_CACHE: dict[str, Path] = {}

CONFIG = {
    "name": "tiny",
    "competition": "planet",
    "folds": {"k": 2, "seed": 0},
    "image_size": 32,
    "augment": "light",
    "tta": "hflip",
    "device": "cpu",
    "epochs": 1,
    "batch_size": 16,
    "num_workers": 0,
    "warmup_epochs": 0,
    "models": [
        {"backbone": "test_resnet", "lr": 0.003},
        {"backbone": "test_efficientnet", "name": "effnet", "lr": 0.003, "augment": "d4"},
    ],
}


def tiny_planet_experiment(tmp_path_factory, data_dir: Path) -> Path:
    """``runs/tiny/`` (test_resnet/, effnet/, blend/ with thresholds.json, scores.json) of a trained run."""
    if "planet" not in _CACHE:
        work = tmp_path_factory.mktemp("trained")
        config = work / "tiny.yaml"
        config.write_text(yaml.safe_dump({**CONFIG, "data_dir": str(data_dir)}))
        cwd = os.getcwd()
        os.chdir(work)  # the pipeline writes runs/, folds/ and submissions/ in the working directory
        try:
            assert main(["run", str(config)]) == 0
        finally:
            os.chdir(cwd)
        _CACHE["planet"] = work / "runs" / "tiny"
    return _CACHE["planet"]
