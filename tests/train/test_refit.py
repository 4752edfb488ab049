"""The full-data refit (``refit: alone | with_folds``): trained on every training image for the folds' mean best
epoch, its test predictions used as the config says, the OOF left to the fold models, kept while current."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_cases import one_error_line, run_cli

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts
from kaggle_planet.train.refit import refit_epochs

CONFIG = {"name": "r", "competition": "invasive", "folds": {"k": 2, "seed": 0}, "image_size": 32, "augment": "none", "tta": "none",
          "device": "cpu", "epochs": 3, "batch_size": 8, "num_workers": 0, "warmup_epochs": 0, "log": ["csv"],
          "models": [{"backbone": "test_resnet", "lr": 0.01}]}


def test_refit_epochs_is_the_rounded_mean_best_epoch(tmp_path):
    for best, expected in (([2, 1], 2), ([1, 1, 2], 1), ([4, 5, 5, 6], 5), ([1], 1)):
        for f, b in enumerate(best):
            artifacts.write_json(tmp_path / f"fold{f}" / "done.json", {"best_epoch": b})
        assert refit_epochs(tmp_path, len(best)) == (expected, best)  # round half up: mean 1.5 -> 2


def _run(work, refit, monkeypatch):
    monkeypatch.chdir(work)
    (work / "r.yaml").write_text(yaml.safe_dump({**CONFIG, "data_dir": str(work / "data"), "refit": refit}))
    assert main(["run", "r.yaml"]) == 0
    return work / "runs" / "r" / "test_resnet"


def _probs(path):
    return pd.read_csv(path, dtype={"name": str}).set_index("name")["invasive"]


def test_refit_trains_on_all_images_and_test_uses_it(tmp_path, demo_datasets, monkeypatch, capsys, caplog):
    import logging
    import shutil

    caplog.set_level(logging.INFO, logger="kaggle_planet")

    shutil.copytree(demo_datasets["invasive"], tmp_path / "data")
    model = _run(tmp_path, "off", monkeypatch)
    oof_off = (model / "oof.csv").read_bytes()
    test_off = _probs(model / "test.csv")
    assert not (model / "refit").exists() and not (model / "test_refit.csv").exists()

    model = _run(tmp_path, "with_folds", monkeypatch)
    done = json.loads((model / "refit" / "done.json").read_text())
    best = [json.loads((model / f"fold{f}" / "done.json").read_text())["best_epoch"] for f in range(2)]
    assert done["epochs"] == int(np.floor(np.mean(best) + 0.5)) and done["epochs_run"] == done["epochs"]
    assert done["train_images"] == len(pd.read_csv(tmp_path / "data" / "train_labels.csv")) and done["valid_images"] == 0
    assert (model / "oof.csv").read_bytes() == oof_off  # the OOF stays the fold models'
    folds, refit = _probs(model / "test_folds.csv"), _probs(model / "test_refit.csv")
    np.testing.assert_allclose(folds, test_off, atol=1e-7)  # the same fold models' mean
    np.testing.assert_allclose(_probs(model / "test.csv"), (2 * folds + refit) / 3, atol=1e-7)  # each model one vote
    assert not np.allclose(refit, folds)
    assert "test_resnet refit: loss at step 0" in caplog.text and "fold 2" not in caplog.text  # checked at step 0 like a fold
    scores = json.loads((model / "scores.json").read_text())
    assert scores["refit"] == "with_folds" and "no OOF score of its own" in scores["refit_note"]

    stamp = (model / "refit" / "best.pt").stat().st_mtime_ns
    model = _run(tmp_path, "alone", monkeypatch)  # kept (derived from the same fold models); only the choice changes
    assert (model / "refit" / "best.pt").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(_probs(model / "test.csv"), refit, atol=1e-7)
    out = capsys.readouterr().out
    assert "refit alone" in out and "no OOF score of its own" in out


def test_refit_asked_for_but_missing_is_one_line(tmp_path, demo_datasets, monkeypatch, capsys):
    import shutil

    shutil.copytree(demo_datasets["invasive"], tmp_path / "data")
    model = _run(tmp_path, "alone", monkeypatch)
    shutil.rmtree(model / "refit")
    code, _, err = run_cli(capsys, "predict", model)
    line = one_error_line(err)
    assert code != 0 and "refit 'alone' asked for, but the full-data refit is missing" in line


@pytest.mark.parametrize("refit", ["sometimes"])
def test_refit_choice_is_validated(refit, tmp_path, capsys):
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**CONFIG, "data_dir": str(tmp_path), "refit": refit}))
    code, _, err = run_cli(capsys, "run", tmp_path / "r.yaml")
    assert code == 2 and "refit" in one_error_line(err) and "with_folds" in err


def test_the_default_is_the_refit_with_the_fold_models(tmp_path):
    """The benchmark's choice (docs/training.md): refit: with_folds unless a config says otherwise."""
    from kaggle_planet.config.schema import config_from_dict

    cfg = config_from_dict({k: v for k, v in {**CONFIG, "data_dir": str(tmp_path)}.items() if k != "refit"})
    assert cfg.refit == "with_folds"


def test_refit_off_in_yaml_is_off(tmp_path):
    """YAML reads a bare ``off`` as false; ``refit: off`` must still mean off."""
    from kaggle_planet.config.schema import load_config

    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**CONFIG, "data_dir": str(tmp_path)}) + "refit: off\n")
    assert yaml.safe_load((tmp_path / "r.yaml").read_text())["refit"] is False  # what YAML makes of it
    assert load_config(tmp_path / "r.yaml").refit == "off"
