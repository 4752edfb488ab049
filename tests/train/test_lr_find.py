"""The learning-rate range test: its suggestion on a problem whose good learning rates are known, and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from kaggle_planet.cli import main
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.train.lr_find import range_test, valley


def _least_squares_sgd(seed: int = 0):
    """SGD on noisy least squares with Hessian H = X'X/n: stable for lr < 2/lambda_max, fastest near
    1/lambda_max, and much below 1/lambda_max it barely moves in the sweep's few steps."""
    rng = np.random.default_rng(seed)
    scales = np.array([3.0, 2.0, 1.0, 0.5, 0.3])
    x = rng.normal(size=(512, 5)) * scales
    y = x @ rng.normal(size=5) + 0.1 * rng.normal(size=512)
    lam_max = np.linalg.eigvalsh(x.T @ x / len(x)).max()
    w = np.zeros(5)

    def step(lr: float) -> float:
        nonlocal w
        batch = rng.choice(len(x), size=64, replace=False)
        residual = x[batch] @ w - y[batch]
        loss = 0.5 * np.mean(residual ** 2)
        w = w - lr * x[batch].T @ residual / len(batch)
        return loss

    return step, lam_max


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggestion_lies_in_the_known_good_range(seed):
    step, lam_max = _least_squares_sgd(seed)
    result = range_test(step, start_lr=1e-5, end_lr=10.0, num_steps=150)
    assert "diverged" in result.stopped  # lr > 2 / lambda_max blows up before the end
    assert 0.02 / lam_max <= result.suggestion <= 2.0 / lam_max, (result.suggestion, 1 / lam_max)
    assert result.lrs == sorted(result.lrs)


def test_valley_is_two_thirds_down_the_longest_descent():
    lrs = list(np.logspace(-6, 0, 13))
    losses = [5, 5, 5, 4.9, 4, 3, 2, 1, 0.5, 0.4, 2, 9, 20]
    # by hand, as fastai's valley counts: the longest falling run has 8 points and ends at index 9, so it
    # "starts" at 9 - 8 = 1; a third of its length is 8/3 -> index 1 + int(2.67) + int(1.33) = 4
    assert valley(lrs, losses) == lrs[4]


def test_an_immediately_diverging_sweep_says_what_to_change():
    with pytest.raises(KagglePlanetError, match="lower the start lr"):
        range_test(lambda lr: float("inf"), start_lr=1e-3)


def test_cli_prints_a_suggestion_and_writes_only_the_plot(demo_datasets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "lrf", "competition": "invasive", "data_dir": str(demo_datasets["invasive"]),
        "folds": {"k": 2, "seed": 0}, "image_size": 32, "batch_size": 8, "num_workers": 0,
        "models": [{"backbone": "test_resnet", "name": "tiny"}],
    }))
    assert main(["lr-find", str(config), "--steps", "30", "--device", "cpu", "--out", "plots/lr.png"]) == 0
    out = capsys.readouterr().out
    assert "suggested lr:" in out and "plots/lr.png" in out
    assert (tmp_path / "plots" / "lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "runs").exists()


def test_a_sweep_that_cannot_run_is_refused_before_anything_is_written(demo_datasets, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "lrf", "competition": "invasive", "data_dir": str(demo_datasets["invasive"]),
        "folds": {"k": 2, "seed": 0}, "models": [{"backbone": "test_resnet"}],
    }))
    assert main(["lr-find", str(config), "--start-lr", "1", "--end-lr", "0.1", "--device", "cpu"]) == 2
    assert "need 0 < start lr < end lr" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.yaml"]  # no folds/, no plot
