"""Fold files: stratification, determinism, refusals, validation of an existing file."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import load_dataset
from kaggle_planet.data.folds import fold_file_path, load_or_make_folds, make_folds, write_folds
from kaggle_planet.data.synthetic import make_demo_data


@pytest.fixture(scope="module")
def planet_300(tmp_path_factory):
    return load_dataset("planet", make_demo_data("planet", tmp_path_factory.mktemp("p") / "d", n_train=300, n_test=5, size=16, seed=3))


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
@pytest.mark.parametrize("k", [2, 3])
def test_each_fold_is_within_one_of_the_ideal_share(demo_datasets, competition, k):
    table = load_dataset(competition, demo_datasets[competition])
    folds = make_folds(table, k, seed=42)["fold"].to_numpy()
    assert sorted(set(folds)) == list(range(k))
    targets = table.targets
    if competition == "invasive":  # both classes of a binary target count
        targets = np.concatenate([targets, 1 - targets], axis=1)
    ideal = targets.sum(axis=0) / k
    for f in range(k):
        counts = targets[folds == f].sum(axis=0)
        assert np.all(np.abs(counts - ideal) <= 1.0), (f, counts, ideal)
    assert np.all(np.abs(np.bincount(folds) - len(folds) / k) <= 1.0)


def test_planet_stratification_at_k5(planet_300):
    folds = make_folds(planet_300, 5, seed=7)["fold"].to_numpy()
    ideal = planet_300.targets.sum(axis=0) / 5
    for f in range(5):
        assert np.all(np.abs(planet_300.targets[folds == f].sum(axis=0) - ideal) <= 1.0)


def test_same_inputs_give_a_byte_identical_file(planet_300, tmp_path):
    digests = []
    for run in range(2):
        path = write_folds(make_folds(planet_300, 5, 42), tmp_path / f"run{run}" / "f.csv")
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    other = make_folds(planet_300, 5, 43)["fold"].to_numpy()
    assert not np.array_equal(other, make_folds(planet_300, 5, 42)["fold"].to_numpy())


def test_refuses_k_below_two(planet_300):
    with pytest.raises(KagglePlanetError, match="k=1 is too small; expected k >= 2"):
        make_folds(planet_300, 1, 0)


def test_refuses_k_larger_than_the_rarest_class(planet_300):
    rarest = int(planet_300.targets.sum(axis=0).min())
    with pytest.raises(KagglePlanetError, match=rf"k={rarest + 1} is larger than the rarest class allows: .* has {rarest} "):
        make_folds(planet_300, rarest + 1, 0)


def test_load_or_make_writes_once_then_validates(demo_datasets, tmp_path):
    table = load_dataset("invasive", demo_datasets["invasive"])
    first = load_or_make_folds(table, 3, 1, tmp_path)
    path = fold_file_path("invasive", 3, 1, tmp_path)
    assert path.exists()
    frame = pd.read_csv(path, dtype=str)
    assert frame["name"].tolist() == table.train["name"].tolist()
    np.testing.assert_array_equal(load_or_make_folds(table, 3, 1, tmp_path), first)
    frame.loc[0, "name"] = "99999"
    frame.to_csv(path, index=False)
    with pytest.raises(KagglePlanetError, match=r"does not match the training labels \(training id '1' has no fold\)"):
        load_or_make_folds(table, 3, 1, tmp_path)
    frame.loc[0, "name"], frame.loc[1, "fold"] = "1", "7"
    frame.to_csv(path, index=False)
    with pytest.raises(KagglePlanetError, match=r"line 3: fold '7'; expected an integer 0..2"):
        load_or_make_folds(table, 3, 1, tmp_path)

