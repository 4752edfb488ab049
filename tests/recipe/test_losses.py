"""Losses against their formulas written out here, element by element, in float64 numpy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.recipe import losses

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(0, 2, size=(6, 5))
HARD = (RNG.random((6, 5)) < 0.4).astype(np.float64)
SOFT = RNG.random((6, 5))


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _run(loss, logits, targets) -> float:
    return float(loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32)))


def _bce(x, y, pw=1.0):
    p = _sig(x)
    return np.mean(-(pw * y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.mark.parametrize("targets", [HARD, SOFT], ids=["hard", "soft"])
def test_bce_with_label_smoothing_and_pos_weight(targets):
    assert _run(losses.build_loss("bce", "multilabel"), LOGITS, targets) == pytest.approx(_bce(LOGITS, targets), rel=1e-5)
    eps = 0.1
    smoothed = targets * (1 - eps) + eps / 2
    got = _run(losses.build_loss("bce", "multilabel", label_smoothing=eps), LOGITS, targets)
    assert got == pytest.approx(_bce(LOGITS, smoothed), rel=1e-5)
    pw = np.array([1.0, 2.0, 3.0, 0.5, 1.5])
    got = _run(losses.build_loss("bce", "binary", pos_weight=torch.tensor(pw, dtype=torch.float32)), LOGITS, targets)
    assert got == pytest.approx(_bce(LOGITS, targets, pw), rel=1e-5)


@pytest.mark.parametrize("gamma, alpha", [(2.0, -1.0), (0.0, -1.0), (1.5, 0.25)])
def test_focal_equals_its_formula(gamma, alpha):
    p = _sig(LOGITS)
    y = HARD
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    expected = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        expected = expected * (alpha * y + (1 - alpha) * (1 - y))
    got = _run(losses.build_loss("focal", "multilabel", {"gamma": gamma, "alpha": alpha}), LOGITS, y)
    assert got == pytest.approx(expected.mean(), rel=1e-5)
    if gamma == 0 and alpha < 0:  # focal with gamma 0 is BCE
        assert got == pytest.approx(_bce(LOGITS, y), rel=1e-5)


def test_focal_pos_weight_scales_the_positive_terms():
    p = _sig(LOGITS)
    y = HARD
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    expected = ce * (1 - p_t) ** 2 * (1 + (3.0 - 1) * y)
    got = _run(losses.build_loss("focal", "binary", pos_weight=torch.full((5,), 3.0)), LOGITS, y)
    assert got == pytest.approx(expected.mean(), rel=1e-5)


def test_asl_equals_its_formula():
    gn, gp, clip = 4.0, 1.0, 0.05
    p = _sig(LOGITS)
    y = HARD
    p_neg = np.minimum(1 - p + clip, 1.0)  # asymmetric clipping: shifted probability of "negative"
    pos = y * np.log(p) * (1 - p) ** gp
    neg = (1 - y) * np.log(p_neg) * (1 - p_neg) ** gn
    expected = -(pos + neg).mean()
    got = _run(losses.build_loss("asl", "multilabel", {"gamma_neg": gn, "gamma_pos": gp, "clip": clip}), LOGITS, y)
    assert got == pytest.approx(expected, rel=1e-5)


def test_soft_f2_equals_its_formula_and_tends_to_one_minus_f2_on_confident_logits():
    p = _sig(LOGITS)
    y = HARD
    f = []
    for pi, yi in zip(p, y):
        tp, fp, fn = (pi * yi).sum(), (pi * (1 - yi)).sum(), ((1 - pi) * yi).sum()
        f.append(5 * tp / (5 * tp + 4 * fn + fp + 1e-7))
    got = _run(losses.build_loss("soft_f2", "multilabel"), LOGITS, y)
    assert got == pytest.approx(1 - np.mean(f), rel=1e-5)
    with_bce = _run(losses.build_loss("soft_f2", "multilabel", {"bce_weight": 0.5}), LOGITS, y)
    assert with_bce == pytest.approx(1 - np.mean(f) + 0.5 * _bce(LOGITS, y), rel=1e-5)
    # with near-hard probabilities the soft F2 is the sample-averaged F2 of the thresholded predictions
    from sklearn.metrics import fbeta_score

    y_nonempty = y.copy()
    y_nonempty[y_nonempty.sum(1) == 0, 0] = 1
    hard_logits = np.where(LOGITS > 0, 30.0, -30.0)
    expected = fbeta_score(y_nonempty, (LOGITS > 0).astype(int), beta=2, average="samples", zero_division=0)
    assert _run(losses.build_loss("soft_f2", "multilabel"), hard_logits, y_nonempty) == pytest.approx(1 - expected, abs=1e-5)


def test_ce_with_label_smoothing_and_soft_targets():
    logp = LOGITS - np.log(np.exp(LOGITS).sum(1, keepdims=True))
    onehot = np.eye(5)[RNG.integers(0, 5, size=6)]
    assert _run(losses.build_loss("ce", "multiclass"), LOGITS, onehot) == pytest.approx(-(onehot * logp).sum(1).mean(), rel=1e-5)
    eps = 0.2
    smoothed = onehot * (1 - eps) + eps / 5
    got = _run(losses.build_loss("auto", "multiclass", label_smoothing=eps), LOGITS, onehot)
    assert got == pytest.approx(-(smoothed * logp).sum(1).mean(), rel=1e-5)
    mixed = 0.7 * onehot + 0.3 * onehot[::-1]
    assert _run(losses.build_loss("ce", "multiclass"), LOGITS, mixed) == pytest.approx(-(mixed * logp).sum(1).mean(), rel=1e-5)


def test_pos_weight_auto_is_negatives_over_positives():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert losses.pos_weight_for("auto", y).tolist() == pytest.approx([1 / 3, 3.0, 4.0])
    assert losses.pos_weight_for(2.5, y).tolist() == [2.5] * 3
    assert losses.pos_weight_for(None, y) is None


def test_the_table_refuses_misuse_in_one_line():
    with pytest.raises(KagglePlanetError, match="loss soft_f2: not for binary tasks"):
        losses.build_loss("soft_f2", "binary")
    with pytest.raises(KagglePlanetError, match="loss ce: not for multilabel"):
        losses.build_loss("ce", "multilabel")
    with pytest.raises(KagglePlanetError, match="unknown loss 'dice'.*bce, focal, asl, soft_f2, ce"):
        losses.build_loss("dice", "multilabel")
    with pytest.raises(KagglePlanetError, match="loss_args.gama: not a parameter of loss focal; valid: gamma, alpha"):
        losses.build_loss("focal", "multilabel", {"gama": 2})
    with pytest.raises(KagglePlanetError, match=r"loss_args.gamma: expected a number in \[0, 10\]"):
        losses.build_loss("focal", "multilabel", {"gamma": -1})
    with pytest.raises(KagglePlanetError, match="pos_weight: only for sigmoid"):
        losses.build_loss("ce", "multiclass", pos_weight=torch.ones(3))
    for name, spec in losses.LOSSES.items():
        assert spec.help and spec.tasks, name
        assert all(math.isfinite(p.default) for p in spec.params.values())
