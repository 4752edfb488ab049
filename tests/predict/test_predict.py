"""TTA predictions: ttach output equals a hand-written loop over the same views; OOF rows reproducible."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from kaggle_planet.config.schema import ModelSettings, config_from_dict
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data import augment
from kaggle_planet.pipeline import train_experiment
from kaggle_planet.predict.tta import load_fold_model, predict_files, predict_run, with_tta
from kaggle_planet.recipe import models
from kaggle_planet.recipe.engine import ProbabilityModel

CPU = torch.device("cpu")
SIZE = 8


class PositionalNet(nn.Module):
    """Not flip- or rotation-invariant: a linear layer over every pixel position."""

    def __init__(self, num_classes: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * SIZE * SIZE, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(1)
    files = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8))
        files.append(str(path))
    return files


def _inputs(files, net):
    cfg = models.model_data_config(net)
    transform = augment.build_transform("none", SIZE, cfg["mean"], cfg["std"], train=False)
    from kaggle_planet.data.loader import read_image

    return torch.stack([transform(image=read_image(f))["image"] for f in files])


def _views(tta: str, x: torch.Tensor) -> list[torch.Tensor]:
    """The TTA views built by hand: D4 as 4 rotations x {identity, transpose} (another generating set
    than ttach's flips x rotations, so the group, not the code path, is what must agree)."""
    if tta == "none":
        return [x]
    if tta == "hflip":
        return [x, torch.flip(x, dims=[-1])]
    return [torch.rot90(v, k, dims=(-2, -1)) for v in (x, x.transpose(-1, -2)) for k in range(4)]


@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
@pytest.mark.parametrize("tta", ["none", "hflip", "d4"])
def test_tta_equals_explicit_loop_over_views(image_files, task, tta):
    net = PositionalNet(3).eval()
    activation = torch.sigmoid if task == "multilabel" else (lambda z: torch.softmax(z, dim=1))
    settings = ModelSettings(name="m", backbone="none", image_size=SIZE, augment="heavy", batch_size=2, num_workers=0)
    got = predict_files(ProbabilityModel(net, task), image_files, settings, CPU, tta)
    x = _inputs(image_files, net)
    with torch.no_grad():
        # mean of probabilities (not of logits)
        expected = torch.stack([activation(net(v)) for v in _views(tta, x)]).mean(0).numpy()
        plain = activation(net(x)).numpy()
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    if tta != "none":
        assert np.abs(got - plain).max() > 1e-3  # the views matter for this model: the test can fail


def test_unknown_tta_lists_the_valid_ones():
    with pytest.raises(KagglePlanetError, match="unknown tta 'd8'; valid: none, hflip, d4"):
        with_tta(nn.Identity(), "d8")


@pytest.fixture(scope="module")
def trained_run(demo_datasets, tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_run")
    cfg = config_from_dict(
        {
            "name": "p", "competition": "planet", "data_dir": str(demo_datasets["planet"]), "runs_dir": str(root / "runs"),
            "folds": {"k": 2, "seed": 3}, "image_size": 32, "tta": "hflip", "epochs": 1, "batch_size": 16,
            "num_workers": 0, "models": [{"backbone": "test_resnet", "name": "tiny"}],
        }
    )
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        [model_dir] = train_experiment(cfg, CPU)
    finally:
        os.chdir(cwd)
    return root / model_dir if not model_dir.is_absolute() else model_dir, root


def test_fold_model_reproduces_its_oof_rows(trained_run):
    model_dir, _ = trained_run
    oof = pd.read_csv(model_dir / "oof.csv")
    classes = json.loads((model_dir / "run.json").read_text())["classes"]
    data_dir = json.loads((model_dir / "run.json").read_text())["data_dir"]
    rows = oof[oof["fold"] == 0].head(7)
    files = [f"{data_dir}/train-jpg/{name}.jpg" for name in rows["image_name"]]
    model, settings = load_fold_model(model_dir, 0, CPU)
    assert settings.image_size == 32 and settings.backbone == "test_resnet"
    probs = predict_files(model, files, settings, CPU, "hflip")
    np.testing.assert_allclose(probs, rows[classes].to_numpy(), atol=1e-6)


def test_predict_again_with_another_tta(trained_run):
    model_dir, root = trained_run
    before = pd.read_csv(model_dir / "oof.csv")
    import os

    cwd = os.getcwd()
    os.chdir(root)
    try:
        predict_run(model_dir, CPU, tta="none")
    finally:
        os.chdir(cwd)
    after = pd.read_csv(model_dir / "oof.csv")
    assert after["image_name"].tolist() == before["image_name"].tolist()
    assert (after["fold"] == before["fold"]).all()
    assert not np.allclose(after.iloc[:, 1:-1], before.iloc[:, 1:-1])
    assert json.loads((model_dir / "run.json").read_text())["extra"]["tta"] == "none"
    assert json.loads((model_dir / "scores.json").read_text())["tta"] == "none"
    with pytest.raises(KagglePlanetError, match="no trained model for fold 5"):
        load_fold_model(model_dir, 5, CPU)


def test_predict_an_experiment_folder_predicts_every_finished_model(trained_run, tmp_path, monkeypatch, capsys):
    """``predict runs/<exp>``: every model run with all folds trained is predicted (checked against its
    fold models run directly), an unfinished one is named and skipped, a blend is left alone."""
    import shutil

    from kaggle_planet.cli import main

    model_dir, root = trained_run
    work = shutil.copytree(root, tmp_path / "work")
    monkeypatch.chdir(work)
    exp = work / model_dir.relative_to(root).parent
    shutil.copytree(exp / "tiny", exp / "tiny2")
    shutil.copytree(exp / "tiny", exp / "half")
    (exp / "half" / "fold1" / "done.json").unlink()
    (exp / "blend").mkdir()
    (exp / "blend" / "run.json").write_text("{}")  # a blend folder holds no config.yaml: not a model to predict
    half_oof = (exp / "half" / "oof.csv").read_bytes()
    assert main(["predict", str(exp), "--tta", "d4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"wrote predictions in {exp / 'tiny'}" in out and f"wrote predictions in {exp / 'tiny2'}" in out
    assert f"{exp / 'half'}: skipped, folds [1] of 2 not trained yet" in out
    assert (exp / "half" / "oof.csv").read_bytes() == half_oof
    for name in ("tiny", "tiny2"):
        info = json.loads((exp / name / "run.json").read_text())
        assert info["extra"]["tta"] == "d4"
        oof = pd.read_csv(exp / name / "oof.csv")
        rows = oof[oof["fold"] == 1].head(4)
        model, settings = load_fold_model(exp / name, 1, CPU)
        files = [f"{info['data_dir']}/train-jpg/{n}.jpg" for n in rows["image_name"]]
        np.testing.assert_allclose(predict_files(model, files, settings, CPU, "d4"), rows[info["classes"]].to_numpy(), atol=1e-6)
    assert main(["predict", str(exp / "blend"), "--device", "cpu"]) == 2
    assert "no config.yaml here nor in its subfolders" in capsys.readouterr().err
