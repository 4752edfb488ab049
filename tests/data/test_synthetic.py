"""Demo data: real structure, determinism and a signal that a simple model can learn."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import load_dataset
from kaggle_planet.data.synthetic import PLANET_TAGS, make_demo_data, planet_labels


def test_planet_label_structure():
    labels = planet_labels(20000, np.random.default_rng(0))
    weather = {"clear", "cloudy", "haze", "partly_cloudy"}
    assert all(len(tags & weather) == 1 for tags in labels)
    assert all(tags == {"cloudy"} for tags in labels if "cloudy" in tags)
    share = pd.Series([t for tags in labels for t in tags]).value_counts() / len(labels)
    assert set(share.index) == set(PLANET_TAGS)
    for rare in ("blow_down", "conventional_mine", "slash_burn", "artisinal_mine"):
        assert share[rare] < 0.015
    assert share["primary"] > 0.8 and share["clear"] > 0.6
    # land tags co-occur: cultivation mostly within agriculture, habitation mostly with roads
    agri = np.array(["agriculture" in t for t in labels])
    cult = np.array(["cultivation" in t for t in labels])
    assert cult[agri].mean() > 3 * cult[~agri].mean()


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
def test_deterministic_for_a_seed(tmp_path, competition):
    a = make_demo_data(competition, tmp_path / "a", n_train=30, n_test=5, size=24, seed=5)
    b = make_demo_data(competition, tmp_path / "b", n_train=30, n_test=5, size=24, seed=5)
    c = make_demo_data(competition, tmp_path / "c", n_train=30, n_test=5, size=24, seed=6)
    assert _digest(a) == _digest(b) != _digest(c)


def _thumbs(files, side=12):
    return np.stack([cv2.resize(cv2.imread(f), (side, side), interpolation=cv2.INTER_AREA).ravel() / 255.0 for f in files])


def _colour_histograms(files, bins=6):
    """Position-free features: a joint RGB histogram per image (motifs sit anywhere)."""
    feats = []
    for f in files:
        img = cv2.imread(f)
        hist = cv2.calcHist([img], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
        feats.append(np.sqrt(hist / hist.sum()))
    return np.stack(feats)


@pytest.fixture(scope="module")
def planet_400(tmp_path_factory):
    return load_dataset("planet", make_demo_data("planet", tmp_path_factory.mktemp("p") / "d", n_train=400, n_test=4, size=32, seed=2))


@pytest.mark.parametrize("tag", ["cloudy", "haze", "partly_cloudy", "agriculture", "water"])
def test_planet_signal_is_learnable(planet_400, tag):
    x = _colour_histograms(planet_400.train["file"])
    y = planet_400.train[tag].to_numpy()
    model = LogisticRegression(max_iter=2000, C=0.5).fit(x[:300], y[:300])
    assert roc_auc_score(y[300:], model.predict_proba(x[300:])[:, 1]) > 0.75


def test_imagefolder_and_invasive_signal_is_learnable(demo_datasets, tmp_path):
    folder = load_dataset("imagefolder", demo_datasets["imagefolder"])
    x, y = _thumbs(folder.train["file"]), folder.targets.argmax(axis=1)
    model = LogisticRegression(max_iter=2000).fit(x, y)
    assert (model.predict(_thumbs(folder.test["file"])) == folder.test_targets.argmax(axis=1)).mean() > 0.8
    inv = load_dataset("invasive", make_demo_data("invasive", tmp_path / "inv", n_train=200, n_test=2, size=48, seed=4))
    x, y = _thumbs(inv.train["file"], 16), inv.targets[:, 0]
    model = LogisticRegression(max_iter=2000, C=0.5).fit(x[:150], y[:150])
    assert roc_auc_score(y[150:], model.predict_proba(x[150:])[:, 1]) > 0.75


def test_refuses_to_overwrite(tmp_path):
    make_demo_data("invasive", tmp_path / "d", n_train=20, n_test=2, size=16)
    with pytest.raises(KagglePlanetError, match="folder exists and is not empty"):
        make_demo_data("invasive", tmp_path / "d", n_train=20, n_test=2, size=16)
    make_demo_data("invasive", tmp_path / "d", n_train=24, n_test=2, size=16, overwrite=True)
    assert len(pd.read_csv(tmp_path / "d" / "train_labels.csv")) == 24
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary folder left behind
