"""kaggle-planet: Kaggle image competitions from raw data to a leaderboard submission.

The public face, what a notebook calls (every stage reads and writes run folders, so any stage runs alone; see docs/python.md)::

    import torch
    import kaggle_planet as kp
    cfg = kp.load_config("configs/planet.yaml", ["data_dir=/kaggle/input/planet"])
    result = kp.run_experiment(cfg, torch.device("cuda"))   # folds -> train -> predict -> blend -> submission
    kp.blend_runs([Path("runs/a/m1"), Path("runs/b/m2")], "hillclimb", Path("runs/ab/blend"))  # a stage alone

Names load on first use (a module ``__getattr__``): ``import kaggle_planet`` or ``import kaggle_planet.ensemble``
loads no torch. Everything not listed here is internal and may move.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that owns it (relative to this package)
PUBLIC = {
    # configs and the whole job
    "load_config": "config.schema",
    "config_from_dict": "config.schema",
    "run_experiment": "pipeline",
    "run_demo": "pipeline",
    "train_experiment": "pipeline",
    # data
    "load_dataset": "data.competitions",
    "check_dataset": "data.competitions",
    "make_folds": "data.folds",
    "make_demo_data": "data.synthetic",
    # predictions, ensembles, decisions
    "predict_runs": "predict.tta",
    "predict_images": "predict.images",
    "blend_runs": "ensemble.blend",
    "fit_run_thresholds": "ensemble.thresholds",
    "fit_run_decisions": "ensemble.decision",
    "write_run_submission": "kaggle.submission",
    "validate_submission_file": "kaggle.submission",
    # run folders and scores
    "load_run": "core.artifacts",
    "read_predictions": "core.artifacts",
    "score": "core.metrics",
    "get_metric": "core.metrics",
    "compare_runs": "study.compare",
    "write_report": "study.report",
    "KagglePlanetError": "core.errors",
}
__all__ = ["__version__", *PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in PUBLIC:
        raise AttributeError(f"module 'kaggle_planet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{PUBLIC[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *PUBLIC})
