"""Experiment configs: validation with one-line errors, --set overrides, round trips, shipped configs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kaggle_planet.config import schema as C
from kaggle_planet.core.errors import KagglePlanetError

REPO = Path(__file__).resolve().parents[2]

BASE = {
    "name": "exp1",
    "competition": "planet",
    "data_dir": "data/planet",
    "folds": {"k": 3, "seed": 7},
    "image_size": 64,
    "lr": 0.001,
    "epochs": 4,
    "models": [
        {"backbone": "resnet18", "epochs": 2},
        {"backbone": "resnet18", "name": "r18_small", "image_size": 32, "augment": "heavy", "pretrained": True},
    ],
}


def write(tmp_path: Path, data: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: dict, overrides=()) -> str:
    path = write(tmp_path, data)
    with pytest.raises(KagglePlanetError) as info:
        C.load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


def test_resolved_model_merges_top_level_and_overrides(tmp_path):
    cfg = C.load_config(write(tmp_path, BASE))
    first, second = (cfg.resolved_model(m) for m in cfg.models)
    assert (first.name, first.epochs, first.image_size, first.lr) == ("resnet18", 2, 64, 0.001)
    assert (second.name, second.epochs, second.image_size, second.augment, second.pretrained) == ("r18_small", 4, 32, "heavy", True)
    # keys nobody set come from the TrainSettings defaults
    defaults = C.TrainSettings()
    assert first.weight_decay == defaults.weight_decay and first.tta == defaults.tta
    assert cfg.folds == C.FoldsConfig(k=3, seed=7)
    assert cfg.model_dir("r18_small") == Path("runs") / "exp1" / "r18_small"
    assert cfg.resolved_model("r18_small") == second


def test_overrides_reach_nested_keys_and_list_entries(tmp_path):
    cfg = C.load_config(write(tmp_path, BASE), ["models.0.epochs=9", "folds.k=5", "lr=3e-4", "models.1.ema=true", "tta=hflip"])
    assert cfg.resolved_model("resnet18").epochs == 9
    assert cfg.folds.k == 5
    # PyYAML reads 3e-4 as a string; float keys accept it
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.resolved_model("r18_small").ema is True
    assert cfg.resolved_model("resnet18").tta == "hflip"


def test_round_trip_through_save(tmp_path):
    cfg = C.load_config(write(tmp_path, BASE), ["models.1.lr=0.01"])
    saved = C.save_config(cfg, tmp_path / "saved.yaml")
    assert C.load_config(saved) == cfg
    assert C.config_to_dict(C.load_config(saved)) == C.config_to_dict(cfg)


@pytest.mark.parametrize(
    "overrides, must_contain",
    [
        (["models.0.epochs=abc"], ["models.0.epochs", "integer >= 1", "'abc'", "--set models.0.epochs=abc"]),
        (["epochs=0"], ["epochs", "integer >= 1"]),
        (["lr=-1"], ["lr", "number in (0.0"]),
        (["augment=heavyy"], ["augment", "none, light, heavy, d4", "'heavyy'"]),
        (["tta=d8"], ["tta", "none, hflip, d4"]),
        (["blend=median"], ["blend", "auto, mean, gmean, rank, weighted, hillclimb, ridge, ridge2, lgbm"]),
        (["device=gpu"], ["device", "auto, cpu, cuda or cuda:N"]),
        (["ema=yes please"], ["ema", "true or false"]),
        (["amp=sometimes"], ["amp", "auto, true or false"]),
        (["ema_decay=1.0"], ["ema_decay", "[0.0, 1.0)"]),
        (["competition=mnist"], ["competition", "planet, invasive, imagefolder"]),
        (["folds.k=1"], ["folds.k", "integer >= 2"]),
        (["models.1.name=resnet18"], ["models.1.name", "duplicate model name 'resnet18'"]),
        (["models.0.name=bad/name"], ["models.0.name", "folder-safe"]),
        (["train_dir=seg_train"], ["train_dir", "only valid for competition imagefolder"]),
        (["models.0.backbone=resnet_does_not_exist"], ["models.0.backbone", "not a timm model"]),
        (["models.0.pretrained=''"], ["models.0.pretrained", "false, true or a weights file path"]),
        (["lr=nan"], ["lr", "number in (0.0", "'nan'"]),
        (["epochs=true"], ["epochs", "integer >= 1", "True"]),
        (["optimizer=adamx"], ["optimizer", "adamw", "timm.optim.list_optimizers()", "'adamx'"]),
        (["scheduler=cosin"], ["scheduler", "cosine", "'cosin'"]),
        (["models.1.loss=ce"], ["models.1.loss", "multiclass", "multilabel"]),
        (["mixup={alpha: 0}"], ["mixup.alpha", "number in (0.0", "--set mixup={alpha: 0}"]),
        (["loss_args.gamma=1"], ["loss_args.gamma", "not a parameter of loss bce"]),
    ],
)
def test_bad_values_fail_in_one_line_naming_key_and_choices(tmp_path, overrides, must_contain):
    message = load_error(tmp_path, BASE, overrides)
    for part in must_contain:
        assert part in message, (part, message)


def test_unknown_keys_list_the_valid_ones(tmp_path):
    message = load_error(tmp_path, {**BASE, "epoch": 3})
    assert "epoch: unknown key" in message and "epochs" in message and "freeze_epochs" in message
    bad_model = {**BASE, "models": [{"backbone": "resnet18", "imagesize": 32}]}
    message = load_error(tmp_path, bad_model)
    assert "models.0.imagesize: unknown key" in message and "image_size" in message and "pretrained" in message
    message = load_error(tmp_path, {**BASE, "folds": {"k": 3, "seeds": 1}})
    assert "folds.seeds: unknown key" in message and "k, seed" in message


def test_missing_and_malformed(tmp_path):
    assert "name: missing required key" in load_error(tmp_path, {k: v for k, v in BASE.items() if k != "name"})
    assert "models: expected a non-empty list" in load_error(tmp_path, {**BASE, "models": []})
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\nmodels: 3\n", encoding="utf-8")
    with pytest.raises(KagglePlanetError, match=r"broken.yaml: line \d+: not valid YAML"):
        C.load_config(broken)
    with pytest.raises(KagglePlanetError, match="config file not found"):
        C.load_config(tmp_path / "nope.yaml")


def test_override_errors(tmp_path):
    path = write(tmp_path, BASE)
    with pytest.raises(KagglePlanetError, match=r"models.5: no list entry '5' \(the list has 2 entries"):
        C.load_config(path, ["models.5.epochs=1"])
    with pytest.raises(KagglePlanetError, match="expected KEY=VALUE"):
        C.load_config(path, ["epochs"])


def test_imagefolder_options_and_auto_blend(tmp_path):
    data = {**BASE, "competition": "imagefolder", "train_dir": "train", "test_dir": "test"}
    cfg = C.load_config(write(tmp_path, data))
    assert cfg.options == {"train_dir": "train", "test_dir": "test"}
    assert cfg.blend_method == "auto"  # the blend stage chooses (never below the best member)
    assert C.load_config(write(tmp_path, {**BASE, "competition": "invasive"})).blend_method == "auto"
    assert C.load_config(write(tmp_path, BASE), ["blend=ridge"]).blend_method == "ridge"
    assert C.load_config(write(tmp_path, BASE)).options == {}


def test_choice_lists_match_the_modules_that_implement_them():
    from kaggle_planet.data import augment
    from kaggle_planet.predict import tta as predict

    assert set(C.AUGMENT_PRESETS) == set(augment.PRESETS)
    assert set(C.TTA_MODES) == set(predict.TTA)


def test_key_table_documents_every_key():
    documented = {row[0] for row in C.key_table()}
    for name in C.TOP_KEYS:
        assert name in documented or f"folds.{name}" in documented or name == "folds", name
    for name in C.FOLDS_KEYS:
        assert f"folds.{name}" in documented
    for name in ("name", "backbone", "pretrained"):
        assert f"models.*.{name}" in documented
    table = C.key_table_markdown()
    # four cells per row once escaped pipes are set aside: a bare "|" inside a cell would break the table
    assert all(len(line.replace("\\|", "").split("|")) == 6 for line in table.splitlines())


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_with_two_backbones(path):
    cfg = C.load_config(path)
    # the demo blends two runs of the one backbone whose ImageNet weights are installed offline (lite0),
    # differing in augmentation and seed; the competition configs blend different backbones
    if path.name == "demo.yaml":
        runs = [cfg.resolved_model(m.name) for m in cfg.models]
        assert len(runs) >= 2 and len({(r.augment, r.seed) for r in runs}) == len(runs)
    else:
        assert len({m.backbone for m in cfg.models}) >= 2


def test_shipped_configs_exist():
    names = {p.name for p in (REPO / "configs").glob("*.yaml")}
    assert {"planet.yaml", "invasive.yaml", "intel_scenes.yaml", "demo.yaml"} <= names
