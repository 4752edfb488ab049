"""Pseudo-labels: fold k only ever gets labels from fold-k models (checked by construction), confident
selection per task kind, and a real pseudo round through the main job."""
from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from kaggle_planet.config.schema import load_config
from kaggle_planet.core import artifacts
from kaggle_planet.core.artifacts import fold_dir
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble.pseudo import pseudo_labels, select_confident
from kaggle_planet.kaggle.submission import validate_submission_file
from kaggle_planet.pipeline import run_experiment

CLASSES = ["a", "b"]
IDS = [f"t{i}" for i in range(6)]


def _member(root, name, per_fold):
    """A model folder whose fold-k model predicts ``per_fold[k]`` (T, C) for the test images, and whose
    fold-averaged test.csv is their mean (what an honest pseudo-label must not use)."""
    d = root / name
    for k, probs in enumerate(per_fold):
        artifacts.write_predictions(fold_dir(d, k) / artifacts.TEST, IDS, probs, "id", CLASSES)
    artifacts.write_predictions(d / artifacts.TEST, IDS, np.mean(per_fold, axis=0), "id", CLASSES)
    return d


def _table(task="multilabel"):
    return types.SimpleNamespace(test=pd.DataFrame({"id": IDS, "file": [f"{i}.jpg" for i in IDS]}), id_col="id",
                                 classes=CLASSES, task=task)


def test_fold_k_labels_come_only_from_fold_k_models(tmp_path):
    # each fold's models are sure, and disagree across folds: the fold average (0.5) is unsure of everything,
    # so any use of another fold's model would change the labels or drop the rows
    sure_yes, sure_no = np.full((6, 2), 0.99), np.full((6, 2), 0.01)
    members = [_member(tmp_path, "m1", [sure_yes, sure_no, sure_yes]), _member(tmp_path, "m2", [sure_yes, sure_no, sure_yes])]
    for fold, expected in [(0, 1.0), (1, 0.0), (2, 1.0)]:
        labels = pseudo_labels(members, fold, _table(), confidence=0.95)
        assert labels.rows.tolist() == list(range(6))
        assert (labels.targets == expected).all()
        assert labels.sources == [str(fold_dir(m, fold) / "test.csv") for m in members]
    # a member whose fold-1 model was unsure removes the rows for fold 1 only
    unsure = _member(tmp_path, "m3", [sure_yes, np.full((6, 2), 0.5), sure_yes])
    assert len(pseudo_labels([*members, unsure], 1, _table(), confidence=0.95).rows) == 0
    assert len(pseudo_labels([*members, unsure], 0, _table(), confidence=0.95).rows) == 6


def test_confident_selection_per_task_kind():
    probs = np.array([[0.97, 0.02], [0.97, 0.5], [0.03, 0.01], [0.6, 0.4]])
    rows, targets = select_confident(probs, "multilabel", 0.95)
    assert rows.tolist() == [0, 2] and targets.tolist() == [[1, 0], [0, 0]]
    rows, targets = select_confident(probs[:, :1], "binary", 0.95)
    assert rows.tolist() == [0, 1, 2] and targets[:, 0].tolist() == [1, 1, 0]
    soft = np.array([[0.96, 0.04], [0.5, 0.5], [0.1, 0.9]])
    rows, targets = select_confident(soft, "multiclass", 0.9)
    assert rows.tolist() == [0, 2] and targets.tolist() == [[1, 0], [0, 1]]


def test_missing_per_fold_predictions_say_what_to_run(tmp_path):
    d = tmp_path / "old"
    artifacts.write_predictions(d / artifacts.TEST, IDS, np.full((6, 2), 0.5), "id", CLASSES)
    with pytest.raises(KagglePlanetError, match="no per-fold test predictions.*kaggle-planet predict"):
        pseudo_labels([d], 0, _table(), 0.9)


def test_a_pseudo_round_trains_on_its_folds_labels_and_reports_both_rounds(demo_datasets, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "pl.yaml"
    config.write_text(yaml.safe_dump({
        "name": "pl", "competition": "invasive", "data_dir": str(demo_datasets["invasive"]), "folds": {"k": 2, "seed": 0},
        "image_size": 32, "augment": "none", "tta": "none", "epochs": 2, "batch_size": 8, "num_workers": 0,
        "pseudo": {"rounds": 1, "confidence": 0.51},
        "models": [{"backbone": "test_resnet"}],
    }))
    result = run_experiment(load_config(config), torch.device("cpu"))
    info = json.loads((tmp_path / "runs" / "pl_pl1" / "pseudo.json").read_text())
    for fold in (0, 1):
        # the round-1 fold-k model trained on exactly the images labelled by round 0's fold-k model
        assert info["folds"][str(fold)]["sources"] == [str(fold_dir(Path("runs") / "pl" / "test_resnet", fold) / "test.csv")]
        done = json.loads((tmp_path / "runs" / "pl_pl1" / "test_resnet" / f"fold{fold}" / "done.json").read_text())
        assert done["extra_train_images"] == info["folds"][str(fold)]["images"] > 0
    [round1] = result.scores["pseudo"]
    assert round1["previous_oof"] == json.loads((tmp_path / "runs" / "pl" / "blend" / "scores.json").read_text())["oof"]
    assert round1["oof"] == json.loads((tmp_path / "runs" / "pl_pl1" / "blend" / "scores.json").read_text())["oof"]
    assert json.loads((tmp_path / "runs" / "pl" / "scores.json").read_text())["pseudo"] == [round1]
    assert "pseudo round 1 (pl_pl1)" in result.table
    assert result.submission == Path("submissions") / "pl_pl1.csv"
    validate_submission_file(result.submission, "invasive", demo_datasets["invasive"])
    # OOF rows are the training images only, never the pseudo-labelled test images
    oof = pd.read_csv(tmp_path / "runs" / "pl_pl1" / "test_resnet" / "oof.csv", dtype={"name": str})
    assert len(oof) == 60
