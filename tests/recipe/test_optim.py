"""Optimizers (timm's groups), schedules, gradient accumulation and clipping."""
from __future__ import annotations

import copy

import pytest
import torch
from timm.optim import create_optimizer_v2
from torch import nn

from kaggle_planet.config.schema import ModelSettings
from kaggle_planet.recipe import models, optim
from kaggle_planet.recipe.engine import Trainer, resolve_precision, train_one_epoch

CPU = torch.device("cpu")


def settings(**kw) -> ModelSettings:
    base = dict(name="m", backbone="test_resnet", epochs=5, lr=1e-3, warmup_epochs=1, min_lr=1e-6)
    return ModelSettings(**{**base, **kw})


def per_param(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    """id(param) -> (weight_decay, lr_scale) as the optimizer will apply them."""
    out = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            out[id(p)] = (group.get("weight_decay", optimizer.defaults.get("weight_decay")), group.get("lr_scale", 1.0))
    return out


@pytest.mark.parametrize("backbone, opt, layer_decay", [
    ("test_efficientnet", "adamw", None),
    ("test_resnet", "sgd", None),
    ("test_vit", "lamb", 0.75),
    ("test_convnext", "adan", 0.8),
])
def test_parameter_groups_equal_timms(backbone, opt, layer_decay):
    model = models.create_model(backbone, num_classes=3)
    s = settings(backbone=backbone, optimizer=opt, weight_decay=0.05, layer_decay=layer_decay)
    ours = optim.make_optimizer(model, s)
    timms = create_optimizer_v2(model, opt=opt, lr=s.lr, weight_decay=0.05, layer_decay=layer_decay)
    assert type(ours) is type(timms)
    assert per_param(ours) == per_param(timms)
    assert len(per_param(ours)) == len(list(model.parameters()))
    if layer_decay is None:  # no decay on norm layers and biases, decay on the rest
        for p in model.parameters():
            assert per_param(ours)[id(p)][0] == (0.0 if p.ndim <= 1 else 0.05)


def test_head_lr_scale_multiplies_only_the_classifier():
    model = models.create_model("test_vit", num_classes=4)
    base = per_param(create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.01, layer_decay=0.7))
    scaled = per_param(optim.make_optimizer(model, settings(backbone="test_vit", layer_decay=0.7, head_lr_scale=10.0)))
    head = {id(p) for p in models.classifier_parameters(model)}
    assert head
    for pid, (wd, scale) in base.items():
        assert scaled[pid] == (wd, pytest.approx(scale * (10.0 if pid in head else 1.0)))


def _lrs(schedule: optim.LRSchedule, steps: int) -> list[float]:
    return [schedule.base_lr(t) for t in range(steps)]


def test_frozen_stage_then_warmup_then_cosine_to_min_lr():
    model = nn.Linear(3, 2)
    s = settings(epochs=5, freeze_epochs=1, freeze_lr=1e-2, warmup_epochs=1, lr=1e-3, min_lr=1e-5)
    opt = optim.make_optimizer(model, s, head_params=[model.weight, model.bias])
    lrs = _lrs(optim.LRSchedule(opt, s, steps_per_epoch=10), 51)
    assert lrs[:10] == [pytest.approx(1e-2)] * 10  # frozen stage at freeze_lr
    warm = lrs[10:20]
    assert warm == sorted(warm) and 0 < warm[0] < warm[-1] < 1e-3  # linear warmup from near 0
    cosine = lrs[20:51]
    assert cosine[0] == pytest.approx(1e-3) and cosine == sorted(cosine, reverse=True)
    assert cosine[-1] == pytest.approx(1e-5)


@pytest.mark.parametrize("name", list(optim.SCHEDULERS))
def test_every_schedule_is_a_function_of_the_update_count(name):
    """What resume relies on: a schedule built afresh at update k sets what a running one sets at k."""
    s = settings(scheduler=name, epochs=4, warmup_epochs=1, lr=1e-3, min_lr=1e-6)
    model = nn.Linear(3, 2)
    running = optim.LRSchedule(optim.make_optimizer(model, s), s, steps_per_epoch=5)
    progressive = _lrs(running, 20)
    for k in (0, 3, 7, 12, 19):
        fresh = optim.LRSchedule(optim.make_optimizer(model, s), s, steps_per_epoch=5)
        assert fresh.base_lr(k) == pytest.approx(progressive[k])
    assert max(progressive) == pytest.approx(1e-3, rel=0.02)
    assert all(lr > 0 for lr in progressive)
    if name in ("cosine", "linear", "onecycle"):
        assert progressive[-1] < 2e-4


def test_min_lr_above_lr_does_not_turn_the_decay_into_a_rise():
    s = settings(lr=1e-5, min_lr=1e-4, warmup_epochs=0)
    lrs = _lrs(optim.LRSchedule(optim.make_optimizer(nn.Linear(2, 2), s), s, steps_per_epoch=4), 20)
    assert max(lrs) <= 1e-5 * (1 + 1e-9)


# ------------------------------------------------------------------------------ accumulation, clipping


class Tiny(nn.Module):
    """BatchNorm-free: a batch of 16 then 16 sees the same weights as one of 32."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.GELU())
        self.fc = nn.Linear(8, 3)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(self.body(x))


def _batches(batch_size: int, n: int = 64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 4, 4, generator=g)
    y = (torch.rand(n, 3, generator=g) < 0.4).float()
    return [(x[i:i + batch_size], y[i:i + batch_size], torch.arange(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]


def _train(batch_size: int, grad_accum: int, clip_grad=None, opt="adamw", weight_decay=0.01):
    model = Tiny()
    s = settings(optimizer=opt, lr=1e-2, warmup_epochs=0, epochs=1, grad_accum=grad_accum, scheduler="constant", weight_decay=weight_decay)
    optimizer = optim.make_optimizer(model, s, head_params=list(model.fc.parameters()))
    batches = _batches(batch_size)
    trainer = Trainer(optimizer=optimizer, schedule=optim.LRSchedule(optimizer, s, optim.steps_per_epoch(len(batches), grad_accum)),
                      loss_fn=nn.BCEWithLogitsLoss(), activation=torch.sigmoid, precision=resolve_precision(CPU, False, False),
                      scaler=torch.amp.GradScaler("cpu", enabled=False), grad_accum=grad_accum, clip_grad=clip_grad)
    before = copy.deepcopy(model.state_dict())
    train_one_epoch(model, batches, trainer, show_progress=False)
    return before, model.state_dict()


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_grad_accum_2x16_equals_one_step_of_32(opt):
    _, accumulated = _train(16, 2, opt=opt)
    _, whole = _train(32, 1, opt=opt)
    for key in whole:
        torch.testing.assert_close(accumulated[key], whole[key], rtol=1e-5, atol=1e-6)
    _, unaccumulated = _train(16, 1, opt=opt)  # and it is not a no-op: 4 small steps differ
    assert not torch.allclose(unaccumulated["fc.weight"], whole["fc.weight"], atol=1e-5)


def test_clip_grad_bounds_the_update():
    before, after = _train(64, 1, clip_grad=1e-3, opt="momentum", weight_decay=0.0)
    # timm's "momentum" (no Nesterov): the first step has no momentum yet, update = lr x clipped gradient
    delta = torch.cat([(after[k] - before[k]).flatten() for k in before])
    assert delta.norm().item() == pytest.approx(1e-2 * 1e-3, rel=1e-3)


@pytest.mark.parametrize("name, fused", [("adamw", True), ("adam", True), ("momentum", True), ("lamb", None), ("adabelief", None)])
def test_fused_kernels_where_the_optimizer_takes_them_with_the_same_updates(name, fused):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    reference = copy.deepcopy(model)
    opt = optim.make_optimizer(model, settings(optimizer=name, lr=1e-2, weight_decay=0.05), head_params=[])
    assert all(g.get("fused") == fused for g in opt.param_groups)
    # the reference: timm's optimizer as built without fused kernels
    ref_opt = create_optimizer_v2(reference, opt=name, lr=1e-2, weight_decay=0.05)
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    for _ in range(5):
        for m, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
