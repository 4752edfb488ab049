"""Config keys checked against the tables that own them (optimizers, schedulers, losses), value types
shared by every key, the model-folder settings comparison and the README rows derived from the tables."""
from __future__ import annotations

import subprocess
import sys

import pytest

from kaggle_planet.config import schema as C
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.core.params import check_args
from kaggle_planet.recipe.losses import LOSSES
from kaggle_planet.recipe.optim import SCHEDULERS

BASE = {
    "name": "exp1",
    "competition": "planet",
    "data_dir": "data/planet",
    "folds": {"k": 3, "seed": 7},
    "models": [{"backbone": "resnet18"}, {"backbone": "resnet18", "name": "second"}],
}
TASKS = {"planet": "multilabel", "invasive": "binary", "imagefolder": "multiclass"}
WITH_PARAMS = [name for name, entry in SCHEDULERS.items() if entry.params]
LOSSES_WITH_PARAMS = [name for name, entry in LOSSES.items() if entry.params]


def load(*overrides: str, data: dict | None = None) -> C.ExperimentConfig:
    return C.config_from_dict(data or BASE, overrides, source="exp.yaml")


def error(*overrides: str, data: dict | None = None) -> str:
    with pytest.raises(KagglePlanetError) as info:
        load(*overrides, data=data)
    message = str(info.value)
    assert message.startswith("exp.yaml: ") and "\n" not in message, message
    # pydantic's own wording and links never reach the user
    assert "Input should" not in message and "errors.pydantic.dev" not in message and "validation error" not in message, message
    return message


def test_importing_config_imports_no_torch():
    code = "import sys, kaggle_planet.config.schema as c; c.ModelSettings(name='m', backbone='b', epochs=2); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- value types


def test_float_keys_accept_any_float_spelling_and_refuse_nan_inf_and_booleans():
    cfg = load("lr=1e-3", "weight_decay=5E-2", "models.1.lr='2.5e-4'")
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == pytest.approx(0.05)
    assert cfg.resolved_model("second").lr == pytest.approx(2.5e-4)
    for bad in ("nan", ".nan", "inf", ".inf", "true", "abc"):
        assert "lr: expected a number in (0.0, inf)" in error(f"lr={bad}")


def test_booleans_are_not_integers_and_integers_are_not_floats():
    assert "epochs: expected an integer >= 1, got True" in error("epochs=true")
    assert "grad_accum: expected an integer >= 1, got 2.0" in error("grad_accum=2.0")
    assert "ema: expected true or false, got 1" in error("ema=1")
    assert load("ema=true").train.ema is True


@pytest.mark.parametrize("key, bad, span", [("layer_decay", "1.5", "(0.0, 1.0] or none"), ("clip_grad", "0", "(0.0, inf) or none")])
def test_optional_numbers_take_none_or_a_number_in_bounds(key, bad, span):
    assert getattr(load(f"{key}=none").train, key) is None
    assert getattr(load(f"{key}=null").train, key) is None
    assert getattr(load(f"{key}=0.5").train, key) == 0.5
    assert f"{key}: expected a number in {span}" in error(f"{key}={bad}")


@pytest.mark.parametrize("key", ["mixup", "cutmix"])
def test_mixing_keys_are_alpha_and_prob_or_none(key):
    assert getattr(load(f"{key}={{alpha: 0.4}}").train, key) == {"alpha": 0.4, "prob": 1.0}
    assert getattr(load(f"models.1.{key}={{alpha: 1, prob: '5e-1'}}").resolved_model("second"), key) == {"alpha": 1.0, "prob": 0.5}
    for off in ("none", "null", "false"):
        assert getattr(load(f"{key}={off}").train, key) is None
    assert f"{key}.alpha: expected a number in (0.0, inf), got 0 (from --set {key}={{alpha: 0}})" in error(f"{key}={{alpha: 0}}")
    assert f"models.0.{key}.prob: expected a number in [0.0, 1.0], got 2" in error(f"models.0.{key}={{alpha: 1, prob: 2}}")
    assert f"{key}.alpha: missing required key" in error(f"{key}={{prob: 0.5}}")
    assert f"{key}.beta: unknown key; valid keys: alpha, prob" in error(f"{key}={{alpha: 1, beta: 2}}")
    assert f"{key}: expected {{alpha: NUMBER > 0, prob: NUMBER in [0, 1]}} or none, got 0.4" in error(f"{key}=0.4")


def test_pos_weight_is_auto_none_or_positive():
    assert load("pos_weight=auto").train.pos_weight == "auto"
    assert load("pos_weight='3'").train.pos_weight == 3.0
    assert load("pos_weight=none").train.pos_weight is None
    assert "pos_weight: expected auto, a number in (0.0, inf) or none, got -1" in error("pos_weight=-1")


def test_unknown_keys_nested_and_flat_list_the_valid_ones():
    assert error("train={epochs: 2}").startswith("exp.yaml: train: unknown key; valid keys: name, competition")
    assert error("models.0.overrides={epochs: 2}").startswith("exp.yaml: models.0.overrides: unknown key; valid keys: name, backbone")


# ---------------------------------------------------------------------------------- optimizer


def test_optimizer_is_any_timm_optimizer():
    from timm.optim import list_optimizers

    assert set(C.COMMON_OPTIMIZERS) <= set(list_optimizers())
    assert load("optimizer=lamb", "models.1.optimizer=sgd").resolved_model("second").optimizer == "sgd"
    message = error("models.1.optimizer=adamx")
    assert "models.1.optimizer: expected an optimizer name" in message and "'adamx'" in message
    assert ", ".join(C.COMMON_OPTIMIZERS) in message and "timm.optim.list_optimizers()" in message


# ---------------------------------------------------------------------------------- scheduler


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_loads_with_its_args_completed(name):
    cfg = load(f"scheduler={name}")
    assert cfg.train.scheduler_args == check_args({}, SCHEDULERS[name].params, name)


def test_unknown_scheduler_lists_the_table():
    assert f"scheduler: expected one of {', '.join(SCHEDULERS)}, got 'cosin'" in error("scheduler=cosin")


@pytest.mark.skipif(not WITH_PARAMS, reason="no scheduler has parameters")
def test_scheduler_args_are_checked_against_the_chosen_scheduler():
    name = WITH_PARAMS[0]
    param, spec = next(iter(SCHEDULERS[name].params.items()))
    value = spec.lo if spec.lo is not None else spec.default
    cfg = load(f"scheduler={name}", f"scheduler_args.{param}={value}")
    assert cfg.train.scheduler_args[param] == value and set(cfg.train.scheduler_args) == set(SCHEDULERS[name].params)
    message = error(f"scheduler={name}", "scheduler_args.no_such_param=1")
    assert f"scheduler_args.no_such_param: not a parameter of scheduler {name}; valid: {', '.join(SCHEDULERS[name].params)}" in message
    if spec.lo is not None:
        message = error(f"scheduler={name}", f"models.1.scheduler_args={{{param}: {spec.lo - 1}}}")
        assert f"models.1.scheduler_args.{param}: expected a" in message and "(from --set models.1.scheduler_args=" in message


@pytest.mark.skipif(not WITH_PARAMS, reason="no scheduler has parameters")
def test_a_model_that_picks_another_scheduler_starts_from_its_defaults():
    name = WITH_PARAMS[0]
    other = next(n for n in SCHEDULERS if n != name)
    param = next(iter(SCHEDULERS[name].params))
    top = SCHEDULERS[name].params[param].default
    cfg = load(f"scheduler={name}", f"scheduler_args.{param}={top}", f"models.1.scheduler={other}")
    assert cfg.resolved_model("resnet18").scheduler_args == cfg.train.scheduler_args  # same scheduler: inherited
    assert cfg.resolved_model("second").scheduler_args == check_args({}, SCHEDULERS[other].params, other)
    # and the config saved with the completed args loads back equal
    assert C.config_from_dict(C.config_to_dict(cfg)) == cfg


# ---------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("competition", list(TASKS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_a_loss_is_accepted_exactly_for_the_tasks_it_declares(competition, loss):
    data = {**BASE, "competition": competition}
    task = TASKS[competition]
    if task in LOSSES[loss].tasks:
        cfg = load(f"loss={loss}", data=data)
        assert cfg.loss_for(cfg.resolved_model("second")) == loss
        assert cfg.resolved_model("second").loss_args == check_args({}, LOSSES[loss].params, loss)
    else:
        message = error(f"models.1.loss={loss}", data=data)
        assert message.startswith(f"exp.yaml: models.1.loss: loss {loss} is for {', '.join(LOSSES[loss].tasks)}")
        assert f"competition {competition} is {task}" in message
        assert all(n in message for n, e in LOSSES.items() if task in e.tasks)


@pytest.mark.parametrize("competition, task", list(TASKS.items()))
def test_auto_loss_is_the_task_default(competition, task):
    cfg = load(data={**BASE, "competition": competition})
    assert cfg.task == task
    assert cfg.loss_for(cfg.train) == C.resolve_loss("auto", task) == C.AUTO_LOSS[task]
    assert C.AUTO_LOSS[task] in LOSSES and task in LOSSES[C.AUTO_LOSS[task]].tasks
    assert C.resolve_loss("focal", task) == "focal"


def test_unknown_loss_lists_auto_and_the_table():
    assert f"loss: expected one of auto, {', '.join(LOSSES)}, got 'bce2'" in error("loss=bce2")


@pytest.mark.skipif(not LOSSES_WITH_PARAMS, reason="no loss has parameters")
def test_loss_args_are_checked_against_the_resolved_loss():
    auto = C.AUTO_LOSS["multilabel"]
    name = next(n for n in LOSSES_WITH_PARAMS if "multilabel" in LOSSES[n].tasks)
    param = next(iter(LOSSES[name].params))
    message = error(f"loss_args.{param}=1")  # loss auto on planet: the args of the task's default loss
    assert f"loss_args.{param}: not a parameter of loss {auto}" in message
    cfg = load(f"loss={name}", f"models.1.loss_args.{param}='{LOSSES[name].params[param].default}'")
    assert cfg.resolved_model("second").loss_args == check_args({}, LOSSES[name].params, name)
    # a model that picks another loss starts from that loss's defaults
    cfg = load(f"loss={name}", f"loss_args.{param}={LOSSES[name].params[param].default}", f"models.1.loss={auto}")
    assert cfg.resolved_model("second").loss_args == check_args({}, LOSSES[auto].params, auto)
    assert cfg.resolved_model("resnet18").loss_args == cfg.train.loss_args


def test_pos_weight_is_refused_for_multiclass_only():
    data = {**BASE, "competition": "imagefolder"}
    assert "models.1.pos_weight: only for sigmoid losses" in error("models.1.pos_weight=2", data=data)
    assert error("pos_weight=auto", data=data).startswith("exp.yaml: pos_weight: only for sigmoid losses")
    assert load("pos_weight=auto", data={**BASE, "competition": "invasive"}).train.pos_weight == "auto"
    assert load("label_smoothing=0.1", data=data).train.label_smoothing == 0.1


# ---------------------------------------------------------------------------------- settings


def test_model_settings_keep_the_dataclass_style_api():
    settings = C.ModelSettings(name="m", backbone="b", epochs=5, lr="1e-3")
    assert (settings.epochs, settings.lr, settings.image_size) == (5, 1e-3, C.TrainSettings().image_size)
    settings.num_workers = 3  # predict.py sets it on checkpoint settings
    assert settings.num_workers == 3
    saved = {**settings.to_dict(), "a_key_of_an_older_version": 1}
    assert C.ModelSettings.from_dict(saved) == settings
    with pytest.raises(KagglePlanetError, match=r"^fold0/best.pt: epochs: expected an integer >= 1, got 0$"):
        C.ModelSettings.from_dict({**saved, "epochs": 0}, source="fold0/best.pt")


def test_settings_differences_name_what_changed_in_a_model_folder(tmp_path):
    cfg = load("models.1.lr=0.01")
    folder = C.single_model_config(cfg, "second")
    saved = C.load_config(C.save_config(folder, tmp_path / "config.yaml"))
    assert C.settings_differences(saved, cfg, "second") == []
    assert C.settings_differences(saved, load("models.1.lr=0.02"), "second") == [("lr", 0.01, 0.02)]
    assert C.settings_differences(saved, load("models.1.lr=0.01", "models.0.lr=1"), "second") == []  # another model
    free = ("num_workers=0", "tta=none", "device=cpu", "blend=rank", "runs_dir=elsewhere", "compile=true")
    assert C.settings_differences(saved, load("models.1.lr=0.01", *free), "second") == []
    changed = load("models.1.lr=0.01", "data_dir=other", "folds.k=5", "epochs=3")
    assert C.settings_differences(saved, changed, "second") == [("data_dir", "data/planet", "other"), ("epochs", 10, 3), ("folds.k", 3, 5)]
    assert C.settings_differences(saved, changed, "second", ignore=C.FREE_KEYS | {"data_dir", "epochs", "folds"}) == []


# ---------------------------------------------------------------------------------- README rows


def test_key_table_lists_every_table_entry_with_its_parameters():
    rows = {key: (values, default, help_text) for key, values, default, help_text in C.key_table()}
    for key, table in (("scheduler", SCHEDULERS), ("loss", LOSSES)):
        assert rows[key][0].split(" | ")[-len(table):] == list(table)
        for name, entry in table.items():
            help_text = rows[f"{key}: {name}"][2]
            assert entry.help in help_text and all(f"{p}=" in help_text for p in entry.params)
    assert rows["augment"][0].startswith(" | ".join(C.AUGMENT_PRESETS))
    assert rows["lr"][0] == "number in (0.0, inf)" and rows["epochs"][0] == "int >= 1" and rows["compile"][0] == "auto | true | false"
    assert all(rows[key][2].endswith("(per-model override)") for key in C.TRAIN_KEYS)


def test_augment_takes_a_saved_albumentations_pipeline(tmp_path):
    import albumentations as A

    path = tmp_path / "pipeline.yaml"
    A.save(A.Compose([A.HorizontalFlip(p=0.5)]), str(path), data_format="yaml")
    assert load(f"models.1.augment={path}").resolved_model("second").augment == str(path)
    assert "augment: " in error(f"augment={tmp_path / 'missing.yaml'}") and "not found" in error(f"augment={tmp_path / 'missing.yaml'}")
