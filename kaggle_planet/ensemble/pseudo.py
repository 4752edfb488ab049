"""Pseudo-labels (Invasive Species 1st place): confident test images join the next round's training.

Honest out-of-fold scores need care: a test image's pseudo-label made by a model that trained on fold
k's validation images would carry those images' labels into fold k's next-round model. So the
pseudo-labels of fold k come only from the fold-k models of the previous round's members (each trained
on the other folds): the mean of their ``fold<k>/test.csv``, never the fold-averaged ``test.csv``.

An image joins when the members are confident about every class (each probability >= ``confidence`` or
<= 1 - ``confidence``; multiclass: the top class >= ``confidence``); its target is the hard label
(p >= 0.5; multiclass: the top class). numpy/pandas only.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import artifacts
from ..core.artifacts import fold_dir
from ..core.errors import KagglePlanetError

PSEUDO = "pseudo.json"


@dataclass
class PseudoLabels:
    """One fold's pseudo-labelled test rows: ``rows`` index the test table, ``targets`` (n, C) 0/1."""

    fold: int
    rows: np.ndarray
    targets: np.ndarray
    sources: list[str]  # the fold-k prediction files they came from


def fold_test_probs(model_dirs: Sequence[Path], fold: int, test_ids: Sequence[str], id_col: str, classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(T, C) mean over members of their fold-``fold`` model's test predictions, in ``test_ids`` order."""
    parts, sources = [], []
    for model_dir in model_dirs:
        path = fold_dir(model_dir, fold) / artifacts.TEST
        if not path.is_file():
            raise KagglePlanetError(f"{path}: no per-fold test predictions (needed for honest pseudo-labels); "
                                    f"run kaggle-planet predict {model_dir} to write them")
        frame = artifacts.read_predictions(path, id_col, classes).set_index(id_col)
        missing = [i for i in test_ids if i not in frame.index]
        if missing:
            raise KagglePlanetError(f"{path}: test id {missing[0]!r} missing; expected every test image of the dataset")
        parts.append(frame.loc[list(test_ids), list(classes)].to_numpy(dtype=np.float64))
        sources.append(str(path))
    return np.mean(parts, axis=0), sources


def select_confident(probs: np.ndarray, task: str, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(rows, hard targets) of the images the probabilities ``probs`` (T, C) are confident about."""
    if task == "multiclass":
        rows = np.flatnonzero(probs.max(axis=1) >= confidence)
        targets = np.eye(probs.shape[1])[probs[rows].argmax(axis=1)]
    else:
        sure = (probs >= confidence) | (probs <= 1.0 - confidence)
        rows = np.flatnonzero(sure.all(axis=1))
        targets = (probs[rows] >= 0.5).astype(np.float64)
    return rows, targets


def pseudo_labels(model_dirs: Sequence[Path], fold: int, table, confidence: float) -> PseudoLabels:
    """Fold ``fold``'s pseudo-labels from the previous round's members ``model_dirs`` (see the module doc)."""
    ids = table.test[table.id_col].tolist()
    probs, sources = fold_test_probs(model_dirs, fold, ids, table.id_col, table.classes)
    rows, targets = select_confident(probs, table.task, confidence)
    return PseudoLabels(fold, rows, targets, sources)
