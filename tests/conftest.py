"""Shared fixtures: tiny datasets in the real layouts, made once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kaggle_planet.data.synthetic import make_demo_data

TINY = {"n_train": 60, "n_test": 12, "size": 32}


@pytest.fixture(scope="session")
def demo_datasets(tmp_path_factory) -> dict[str, Path]:
    """Read-only tiny datasets for every competition kind (copy before modifying)."""
    root = tmp_path_factory.mktemp("datasets")
    return {c: make_demo_data(c, root / c, seed=1, **TINY) for c in ("planet", "invasive", "imagefolder")}


@pytest.fixture
def dataset_copy(demo_datasets, tmp_path):
    """A writable copy of one tiny dataset: ``dataset_copy("planet")``."""

    def copy(competition: str) -> Path:
        return Path(shutil.copytree(demo_datasets[competition], tmp_path / competition))

    return copy
