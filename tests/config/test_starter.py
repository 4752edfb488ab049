"""`kaggle-planet init`: a starter config from a data folder that loads, trains, and never overwrites."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from kaggle_planet.cli import main
from kaggle_planet.config import starter
from kaggle_planet.config.schema import key_table, load_config
from kaggle_planet.recipe.models import LITE_WEIGHT_PACKAGES


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
def test_init_output_loads_and_trains(demo_datasets, tmp_path, monkeypatch, capsys, competition):
    monkeypatch.chdir(tmp_path)
    out = Path("configs") / f"my-{competition}.yaml"
    assert main(["init", competition, "--data-dir", str(demo_datasets[competition]), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    cfg = load_config(out)
    assert (cfg.name, cfg.competition, cfg.data_dir) == (f"my-{competition}", competition, str(demo_datasets[competition]))
    assert cfg.train.image_size == 32  # the conftest's demo images are 32 x 32
    assert 2 <= len(cfg.models) <= 3
    # one comment per key line, each the help text of that key in the config's key table
    helps: dict[str, str] = {}
    for key, _, _, text in key_table():  # top-level keys come first: `name` is the experiment's, not models.*.name
        helps.setdefault(key.split(".")[-1], text.removesuffix(" (per-model override)"))
    for line in out.read_text().splitlines():
        if line.startswith("#"):
            continue
        assert " # " in line, line
        key = line.split(":")[0].strip().lstrip("- ")
        if key not in ("folds", "pretrained"):
            assert line.split(" # ", 1)[1] == helps[key], line
    first = cfg.models[0].name
    sets = [f"epochs={cfg.train.freeze_epochs + 1}", "folds.k=2", "batch_size=16", "num_workers=0", "tta=none", "device=cpu"]
    assert main(["train", str(out), "--models", first, "--folds", "0", *[a for s in sets for a in ("--set", s)]]) == 0
    assert (Path("runs") / cfg.name / first / "fold0" / "best.pt").is_file()


def test_backbones_are_those_with_offline_weights_here():
    models, notes = starter.pick_backbones()
    installed = [arch for arch, package in LITE_WEIGHT_PACKAGES.items() if importlib.util.find_spec(package) is not None]
    pretrained = [m["backbone"] for m in models if m["pretrained"]]
    # the lite weight packages are dependencies of the toolkit: init starts from two pretrained backbones, no scratch one
    assert len(installed) == 3 and len(pretrained) == len(models) == starter.MAX_BACKBONES == 2
    assert pretrained == [b for b in starter.BACKBONES if b in installed][:2]
    for m in models:  # what the starter calls pretrained, training can load offline
        assert (starter.offline_weights(m["backbone"]) is not None) == m["pretrained"]
    assert len(models) >= 2 and any(m["backbone"] in note for m in models for note in notes)


def test_image_size_is_the_median_shorter_side_rounded_and_capped(tmp_path):
    files = []
    for i, (w, h) in enumerate([(150, 100)] * 5 + [(400, 300)] * 2 + [(90, 80)] * 2):
        files.append(str(tmp_path / f"{i}.jpg"))
        cv2.imwrite(files[-1], np.zeros((h, w, 3), np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    side, facts = starter.image_side([*files, str(tmp_path / "broken.jpg")])
    assert facts["median_shorter_side"] == 100 and side == 96 and facts["most_common"] == (150, 100) and facts["unreadable"] == 1
    big = str(tmp_path / "big.jpg")
    cv2.imwrite(big, np.zeros((1200, 1600, 3), np.uint8))
    assert starter.image_side([big])[0] == starter.MAX_SIDE


def test_init_refuses_to_overwrite_and_bad_input_is_one_line(demo_datasets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("planet.yaml").write_text("mine\n")
    assert main(["init", "planet", "--data-dir", str(demo_datasets["planet"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: planet.yaml: already exists") and err.count("\n") == 1
    assert Path("planet.yaml").read_text() == "mine\n"
    assert main(["init", "invasive", "--data-dir", "nowhere", "--out", "x.yaml"]) == 2
    assert "nowhere: data folder not found" in capsys.readouterr().err and not Path("x.yaml").exists()


def test_every_competition_gets_a_recipe_that_validates(tmp_path):
    from kaggle_planet.config.schema import config_from_dict
    from kaggle_planet.data.competitions import COMPETITIONS

    for competition in COMPETITIONS:
        recipe = starter.RECIPES.get(competition, starter.DEFAULT_RECIPE)
        data = {"name": "x", "competition": competition, "data_dir": "d", **starter.COMMON_KEYS, **recipe.keys,
                "models": [{"backbone": "test_resnet"}]}
        config_from_dict(yaml.safe_load(yaml.safe_dump(data)))
