"""Tiny really-trained experiments, trained once per test session and shared by test modules.

Two models (timm's ``test_resnet`` from scratch and ``tf_efficientnet_lite0`` with its real ImageNet
weights), k=2, three epochs at 32 px on the
conftest's 60-image demo data, through the real CLI (``kaggle-planet run``), so the pipeline test,
the report and predict-image are all checked against files the pipeline itself wrote. Treat the
results as read-only.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from kaggle_planet.cli import main

_CACHE: dict[str, Path] = {}

CONFIG = {
    "folds": {"k": 2, "seed": 0},
    "image_size": 32,
    "augment": "light",
    "tta": "hflip",
    "device": "cpu",
    "epochs": 3,
    "batch_size": 8,
    "num_workers": 0,
    "refit": "off",  # tests/train/test_refit.py covers the refit (the default); these runs stay as fast as they were
    "blend": "mean",  # predict-image's and the report's tests read a mean blend (auto may choose the best member alone)
    "warmup_epochs": 0,
    "head_lr_scale": 10.0,
    "models": [
        {"backbone": "test_resnet", "lr": 0.01},
        {"backbone": "tf_efficientnet_lite0", "name": "effnet", "pretrained": True, "lr": 0.003, "augment": "d4"},
    ],
}


def experiment_name(competition: str) -> str:
    return f"tiny-{competition}"


def tiny_experiment(tmp_path_factory, competition: str, data_dir: Path) -> Path:
    """The working directory of a finished ``kaggle-planet run`` (holding ``runs/``, ``folds/``,
    ``submissions/`` and ``<name>.yaml``) for a tiny config of ``competition``."""
    if competition not in _CACHE:
        work = tmp_path_factory.mktemp(f"trained-{competition}")
        config = work / f"{experiment_name(competition)}.yaml"
        config.write_text(yaml.safe_dump({"name": experiment_name(competition), "competition": competition,
                                          "data_dir": str(data_dir), **CONFIG}))
        cwd = os.getcwd()
        os.chdir(work)  # the pipeline writes runs/, folds/ and submissions/ in the working directory
        try:
            assert main(["run", str(config)]) == 0
        finally:
            os.chdir(cwd)
        _CACHE[competition] = work
    return _CACHE[competition]


def tiny_planet_experiment(tmp_path_factory, data_dir: Path) -> Path:
    """``runs/tiny-planet/`` (test_resnet/, effnet/, blend/ with thresholds.json, scores.json) of a trained run."""
    return tiny_experiment(tmp_path_factory, "planet", data_dir) / "runs" / experiment_name("planet")
