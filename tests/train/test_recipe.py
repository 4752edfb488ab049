"""The recipe learns: heads start at the prior (every task kind x every head family), the frozen stage
keeps BatchNorm statistics, mixing is reproducible, and a tiny real run beats the constant predictor."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from trained_runs import experiment_name, tiny_experiment

from kaggle_planet.config.schema import ModelSettings
from kaggle_planet.core import artifacts
from kaggle_planet.core.metrics import score
from kaggle_planet.recipe import losses, models
from kaggle_planet.recipe.engine import HEADS, Trainer, resolve_precision, train_one_epoch
from kaggle_planet.recipe.mixing import Mixer
from kaggle_planet.recipe.optim import LRSchedule, make_optimizer

CPU = torch.device("cpu")
COMPETITION_OF = {"multilabel": "planet", "binary": "invasive", "multiclass": "imagefolder"}
# one backbone per timm head family; the last one loads real ImageNet weights (1000-class head skipped)
FAMILIES = {
    "resnet": ("test_resnet", False),
    "efficientnet": ("test_efficientnet", False),
    "convnext": ("test_convnext", False),
    "vit": ("test_vit", False),
    "efficientnet-pretrained": ("tf_efficientnet_lite0", True),
}


def _labels(task: str, n: int = 48, classes: int = 5) -> np.ndarray:
    rng = np.random.default_rng(3)
    if task == "multiclass":
        return np.eye(classes)[rng.choice(classes, size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05])]
    if task == "binary":
        return (rng.random((n, 1)) < 0.3).astype(np.float64)
    return (rng.random((n, classes)) < np.array([0.9, 0.4, 0.2, 0.05, 0.6])).astype(np.float64)


@pytest.mark.parametrize("task", list(COMPETITION_OF))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_fresh_head_starts_at_the_constant_prior_loss(task, family):
    backbone, pretrained = FAMILIES[family]
    y = _labels(task)
    prior = y.mean(0)
    head = HEADS[task]
    model = models.create_model(backbone, y.shape[1], pretrained=pretrained, head_bias=head.prior_logits(prior))
    size = models.model_data_config(model)["input_size"][1:]
    model.train()  # step 0 of training: train mode (dropout, batch statistics)
    torch.manual_seed(0)
    logits = model(torch.randn(len(y), 3, *size) * 2)
    # independent reference: the prior written out, probabilities straight from the label frequencies
    p = np.broadcast_to(prior, y.shape)
    if task == "multiclass":
        reference = -(y * np.log(p)).sum(1).mean()
        got = losses.build_loss("ce", task)(logits, torch.tensor(y, dtype=torch.float32)).item()
    else:
        reference = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
        got = losses.build_loss("bce", task)(logits, torch.tensor(y, dtype=torch.float32)).item()
    assert got == pytest.approx(reference, rel=0.01)
    probs = head.activation(logits.detach()).numpy()
    np.testing.assert_allclose(probs, p, rtol=1e-4, atol=1e-6)


def test_a_loaded_classifier_is_kept(tmp_path):
    """A checkpoint whose classifier fits (same classes) is fine-tuned as is, not reset to the prior."""
    donor = models.create_model("test_resnet", 3)
    torch.save(donor.state_dict(), tmp_path / "w.pt")
    model = models.create_model("test_resnet", 3, pretrained=tmp_path / "w.pt", head_bias=np.zeros(3))
    layer = models.final_layer(model)
    torch.testing.assert_close(layer.weight, models.final_layer(donor).weight)


def _settings(**kw) -> ModelSettings:
    return ModelSettings(**{"name": "m", "backbone": "test_resnet", "epochs": 2, "lr": 1e-2, "warmup_epochs": 0, **kw})


def test_frozen_epoch_keeps_batchnorm_statistics_and_trains_the_head():
    model = models.create_model("test_resnet", 2, head_bias=np.zeros(2))
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
    assert bn
    head_before = models.final_layer(model).weight.clone()
    s = _settings(freeze_epochs=1, freeze_lr=1e-2)
    optimizer = make_optimizer(model, s)
    models.set_backbone_trainable(model, False)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 32, 32, generator=g) * 3 + 1, (torch.rand(8, 2, generator=g) < 0.5).float(), torch.arange(8))
               for _ in range(3)]
    trainer = Trainer(optimizer, LRSchedule(optimizer, s, 3), losses.build_loss("bce", "multilabel"), torch.sigmoid,
                      resolve_precision(CPU, False, False), torch.amp.GradScaler("cpu", enabled=False), frozen_backbone=True)
    train_one_epoch(model, batches, trainer, show_progress=False)
    state = model.state_dict()
    for k, v in bn.items():
        torch.testing.assert_close(state[k], v, msg=k)
    assert not torch.equal(models.final_layer(model).weight, head_before)
    # the same epoch unfrozen does move the statistics (so the check above can fail)
    models.set_backbone_trainable(model, True)
    trainer.frozen_backbone = False
    train_one_epoch(model, batches, trainer, show_progress=False)
    assert any(not torch.equal(model.state_dict()[k], v) for k, v in bn.items())


def test_mixing_draws_are_identical_after_a_resume():
    s = _settings(epochs=4, mixup={"alpha": 0.4, "prob": 0.8}, cutmix={"alpha": 1.0, "prob": 0.7}, mix_switch_prob=0.5, mix_off_epochs=1)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 16, 16, generator=g)
    targets = (torch.rand(6, 4, generator=g) < 0.5).float()
    straight = Mixer(s, seed=7)
    seen = {(e, i): straight(images, targets, e, i) for e in range(4) for i in range(5)}
    np.random.seed(123)
    np.random.rand(17)  # whatever the process did before
    resumed = Mixer(s, seed=7)  # a fresh process resuming at epoch 2
    for e, i in [(2, 3), (1, 0), (2, 4)]:
        x, y = resumed(images, targets, e, i)
        torch.testing.assert_close(x, seen[e, i][0])
        torch.testing.assert_close(y, seen[e, i][1])
    mixed = [k for k, (x, _) in seen.items() if not torch.equal(x, images)]
    assert mixed and all(e < 3 for e, _ in mixed)  # mixing happened, never in the last (mix_off) epoch
    for x, y in seen.values():  # mixed targets stay in [0, 1] and mixed images keep the input range
        assert y.min() >= 0 and y.max() <= 1 and x.min() >= images.min() - 1e-6 and x.max() <= images.max() + 1e-6
    # multi-hot targets are mixed with the images' own weight: lam x t + (1 - lam) x t reversed, where lam is
    # the pixel weight (mixup) or the kept area (cutmix)
    a, b = images, images.flip(0)
    ta, tb = targets, targets.flip(0)
    for x, y in (seen[k] for k in mixed):
        differ = ta != tb
        lam = ((y - tb)[differ] / (ta - tb)[differ])
        assert torch.allclose(lam, lam[0], atol=1e-5)
        lam = lam[0].item()
        from_b = torch.isclose(x, b) & ~torch.isclose(x, a)
        if from_b.any() and torch.all(torch.isclose(x, a) | torch.isclose(x, b)):  # cutmix: a box from b
            assert 1 - from_b[0, 0].float().mean().item() == pytest.approx(lam, abs=0.02)
        else:  # mixup
            torch.testing.assert_close(x, lam * a + (1 - lam) * b)


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
def test_tiny_run_beats_the_constant_predictor_out_of_fold(tmp_path, monkeypatch, competition):
    """A pretrained lite0, 2 folds x 3 epochs on 160 demo images at 48 px (seconds): out of fold it beats the
    training folds' prior, so a label misalignment or a broken head cannot pass."""
    from kaggle_planet.config.schema import config_from_dict
    from kaggle_planet.data.synthetic import make_demo_data
    from kaggle_planet.pipeline import train_experiment

    monkeypatch.chdir(tmp_path)
    data = make_demo_data(competition, tmp_path / "data", seed=2, n_train=160, n_test=8, size=48)
    cfg = config_from_dict({
        "name": "learns", "competition": competition, "data_dir": str(data), "folds": {"k": 2, "seed": 0},
        "image_size": 48, "augment": "none", "tta": "none", "epochs": 3, "batch_size": 16, "num_workers": 0,
        "models": [{"backbone": "tf_efficientnet_lite0", "pretrained": True}],
    })
    [model_dir] = train_experiment(cfg, CPU)
    run = artifacts.load_run(model_dir)
    constant = np.zeros_like(run.oof_probs)  # each row gets the class prior of the other fold's rows
    for f in np.unique(run.folds):
        constant[run.folds == f] = run.y_true[run.folds != f].mean(0)
    assert score(cfg.metric, run.y_true, run.oof_probs) > score(cfg.metric, run.y_true, constant) + 0.02
    for fold in (0, 1):
        done = json.loads((model_dir / f"fold{fold}" / "done.json").read_text())
        assert done["step0_loss"] == pytest.approx(done["prior_loss"], rel=0.15), fold


def test_shared_tiny_runs_start_at_the_prior_loss(tmp_path_factory, demo_datasets):
    work = tiny_experiment(tmp_path_factory, "invasive", demo_datasets["invasive"])
    exp = work / "runs" / experiment_name("invasive")
    for model_dir in (exp / "test_resnet", exp / "effnet"):
        for fold in (0, 1):
            done = json.loads((model_dir / f"fold{fold}" / "done.json").read_text())
            assert done["step0_loss"] == pytest.approx(done["prior_loss"], rel=0.15), (model_dir.name, fold)
