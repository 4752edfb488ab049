"""The steps of one fold's training (:class:`kaggle_planet.train.trainer.FoldRun`), each alone on a tiny run:
restore, train_epoch, evaluate, record, checkpoint, finish, and the per-model helpers around them."""
from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from kaggle_planet.config.schema import ExperimentConfig, config_from_dict
from kaggle_planet.core.artifacts import HISTORY_COLUMNS
from kaggle_planet.data.competitions import load_dataset
from kaggle_planet.data.folds import load_or_make_folds
from kaggle_planet.recipe.engine import NonFiniteError
from kaggle_planet.train import experiment
from kaggle_planet.train import trainer as trainer_mod
from kaggle_planet.train.trainer import Dist, FoldRun, FoldState

CPU = Dist(0, 1, torch.device("cpu"))


@pytest.fixture
def fold_run(demo_datasets, tmp_path, monkeypatch):
    """``fold_run(tracking=None, **overrides)``: a prepared FoldRun on fold 0 of the tiny invasive data (30 training
    and 30 validation images at 32 px, batches of 16, timm's test_resnet), in a fresh working folder."""
    monkeypatch.chdir(tmp_path)
    made: dict = {}

    def make(tracking=None, **overrides) -> FoldRun:
        data = {"name": "steps", "competition": "invasive", "data_dir": str(demo_datasets["invasive"]),
                "folds": {"k": 2, "seed": 3}, "image_size": 32, "augment": "light", "epochs": 2, "batch_size": 16,
                "lr": 0.003, "num_workers": 0, "patience": 0, "drop_rate": 0.2,
                "models": [{"backbone": "test_resnet", "name": "tiny"}]}
        data.update(overrides)
        cfg = config_from_dict(data)
        if "table" not in made:
            made["table"] = load_dataset(cfg.competition, cfg.data_dir, cfg.options)
            made["folds"] = load_or_make_folds(made["table"], 2, 3)
        return FoldRun.prepare(cfg, cfg.resolved_model("tiny"), made["table"], made["folds"], 0, cfg.model_dir("tiny"), CPU,
                               tracking=tracking)

    return make


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_epoch(run: FoldRun) -> tuple[dict, bool]:
    row, improved = run.epoch()
    run.checkpoint(row, improved)
    return row, improved


# ------------------------------------------------------------------------------------------- restore


def test_restore_without_last_pt_is_a_fresh_state(fold_run):
    run = fold_run()
    before = _weights(run.model)
    state = run.restore()
    assert state == FoldState() and run.state is state
    assert state.epoch == 0 and state.best_score == -math.inf and state.history == []
    assert _same(before, _weights(run.model))
    assert run.should_continue()
    assert not run.out_dir.exists()  # restoring writes nothing


def test_restore_from_last_pt_resumes_where_the_epoch_left_off(fold_run, caplog):
    first = fold_run(ema=True, ema_decay=0.9)
    first.restore()
    fresh = _weights(first.model)
    row1, _ = _one_epoch(first)
    trained, trained_ema = _weights(first.model), _weights(first.trainer.ema.module)
    assert not _same(fresh, trained)  # the epoch moved the weights: the check below means something

    second = fold_run(ema=True, ema_decay=0.9)
    assert _same(fresh, _weights(second.model))  # same seed: it starts from the same initial weights
    with caplog.at_level(logging.INFO, logger="kaggle_planet"):
        state = second.restore()
    assert "tiny fold 0: resuming after epoch 1 (best roc_auc" in caplog.text
    assert state.epoch == 1 and state.best_epoch == 1 and state.step == first.state.step > 0
    assert state.history == [row1]
    assert _same(trained, _weights(second.model)) and _same(trained_ema, _weights(second.trainer.ema.module))
    assert second.trainer.optimizer.state_dict()["state"].keys() == first.trainer.optimizer.state_dict()["state"].keys()

    # the resumed run's epoch 2 is the uninterrupted run's epoch 2 (reseeded from (seed, epoch), sampler epoch)
    row2_straight, _ = first.epoch()
    row2_resumed, _ = second.epoch()
    for key in ("epoch", "lr", "train_loss", "valid_loss", "train_metric", "valid_metric"):
        assert row2_resumed[key] == pytest.approx(row2_straight[key], rel=1e-6, abs=1e-9), key


# ---------------------------------------------------------------------------------- epoch and checkpoint


def test_one_epoch_then_checkpoint_writes_best_history_and_last(fold_run):
    run = fold_run()
    run.restore()
    row, improved = run.epoch()
    assert improved  # the first finite score beats -inf
    assert list(row) == HISTORY_COLUMNS and row["epoch"] == 1 and row["seconds"] >= 0
    assert (run.state.epoch, run.state.best_epoch, run.state.bad_epochs) == (1, 1, 0)
    assert run.state.best_score == row["valid_metric"] and run.state.history == [row]
    assert not run.out_dir.exists()  # epoch() computes, checkpoint() writes

    run.checkpoint(row, improved)
    best = torch.load(run.out_dir / "best.pt", weights_only=True)
    assert (best["epoch"], best["fold"], best["metric"]) == (1, 0, "roc_auc")
    assert best["score"] == pytest.approx(row["valid_metric"])
    assert _same(best["model"], _weights(run.model))  # no EMA: best.pt holds the trained weights
    history = pd.read_csv(run.out_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and history["epoch"].tolist() == [1]
    assert history["valid_loss"][0] == pytest.approx(row["valid_loss"], rel=1e-5)
    last = torch.load(run.out_dir / "last.pt", weights_only=True)
    assert last["state"] == dataclasses.asdict(run.state)
    assert _same(last["model"], _weights(run.model))
    assert not (run.out_dir / "curves.png").exists()  # redrawn at most every CURVES_EVERY_S, and at the end


def test_an_epoch_that_does_not_improve_counts_towards_patience_and_keeps_best(fold_run, monkeypatch):
    run = fold_run(patience=1, epochs=5)
    run.restore()
    _one_epoch(run)
    best_before = (run.out_dir / "best.pt").read_bytes()
    run.state.best_score = math.inf  # nothing can beat it now
    monkeypatch.setattr(trainer_mod, "CURVES_EVERY_S", -1)  # the throttle let through: curves drawn this epoch
    row, improved = _one_epoch(run)
    assert not improved and row["epoch"] == 2
    assert (run.state.epoch, run.state.best_epoch, run.state.bad_epochs) == (2, 1, 1)
    assert (run.out_dir / "best.pt").read_bytes() == best_before
    assert pd.read_csv(run.out_dir / "history.csv")["epoch"].tolist() == [1, 2]
    assert (run.out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not run.should_continue()  # patience 1 reached, though 3 epochs are left


def _fake_row(epoch: int, valid_metric: float) -> dict[str, float]:
    return {"epoch": epoch, "lr": 1e-3, "train_loss": 0.5, "valid_loss": 0.5, "train_metric": valid_metric,
            "valid_metric": valid_metric, "seconds": 0.1}


FAKE_VALID = [0.6, 0.4, 0.5, 0.3, 0.45]  # the highest is epoch 1, the lowest epoch 4


@pytest.mark.parametrize("metric, direction", [("roc_auc", max), ("log_loss", min)])
def test_record_keeps_the_best_epoch_and_stops_early_in_the_metrics_direction(fold_run, monkeypatch, metric, direction):
    monkeypatch.setattr(ExperimentConfig, "metric", property(lambda self: metric))
    run = fold_run(patience=2, epochs=len(FAKE_VALID))
    assert run.metric == metric and run.restore().best_score == (-math.inf if direction is max else math.inf)
    improved = []
    while run.should_continue():
        improved.append(run.record(_fake_row(run.state.epoch + 1, FAKE_VALID[run.state.epoch])))
    # by hand: the epochs that beat every earlier one in the direction, and patience 2 after the last of them
    seen = FAKE_VALID[: len(improved)]
    expected = [direction(seen[: i + 1]) == v and v not in seen[:i] for i, v in enumerate(seen)]
    assert improved == expected
    best = direction(seen)
    assert (run.state.best_epoch, run.state.best_score) == (seen.index(best) + 1, best)
    assert run.state.bad_epochs == len(seen) - seen.index(best) - 1
    if direction is max:  # 0.6 then two worse epochs: stopped after epoch 3
        assert len(seen) == 3 and run.state.best_epoch == 1
    else:  # 0.6, 0.4 better, 0.5 worse, 0.3 better, 0.45 worse: all five epochs
        assert len(seen) == 5 and run.state.best_epoch == 4


def test_a_resume_payload_from_before_directions_still_loads_and_its_first_epoch_counts(fold_run, monkeypatch):
    monkeypatch.setattr(ExperimentConfig, "metric", property(lambda self: "log_loss"))
    run = fold_run()
    old = dataclasses.asdict(FoldState())  # what last.pt held: best_score -inf whatever the metric
    run.state = FoldState(**old)
    assert run.record(_fake_row(1, 0.7))
    assert (run.state.best_epoch, run.state.best_score) == (1, 0.7)
    assert run.record(_fake_row(2, 0.6)) and not run.record(_fake_row(3, 0.65))
    assert (run.state.best_epoch, run.state.best_score, run.state.bad_epochs) == (2, 0.6, 1)


def test_train_epoch_freezes_then_unfreezes_and_checks_step0(fold_run, caplog):
    run = fold_run(freeze_epochs=1)
    run.restore()
    head = set(run.model.get_classifier().parameters())
    backbone = [p for p in run.model.parameters() if p not in head]
    backbone_before = [p.detach().clone() for p in backbone]
    with caplog.at_level(logging.INFO, logger="kaggle_planet"):
        trained = run.train_epoch()
    assert trained.epoch == 0 and run.state.epoch == 0  # the epoch is recorded by record(), not here
    assert run.state.step == run.trainer.schedule.steps_per_epoch > 0
    assert not any(p.requires_grad for p in backbone)
    assert all(torch.equal(a, b) for a, b in zip(backbone_before, backbone))  # frozen: untouched
    # the constant-prior loss, by hand: binary cross-entropy of predicting the training rows' mean
    y = run.setup.train_targets.astype(np.float64)
    p = y.mean()
    prior = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert run.state.prior_loss == pytest.approx(prior, rel=1e-5)
    assert math.isfinite(run.state.step0_loss)
    assert "tiny fold 0: loss at step 0" in caplog.text

    run.record(run.evaluate(trained))
    step0 = run.state.step0_loss
    second = run.train_epoch()
    assert all(p.requires_grad for p in backbone)
    # each epoch has its own shuffle (the sampler is told the epoch)
    assert not np.array_equal(trained.result.indices, second.result.indices)
    assert any(not torch.equal(a, b) for a, b in zip(backbone_before, backbone))  # unfrozen: trained
    assert run.state.step0_loss == step0  # only the first epoch's first batch counts


def test_train_epoch_reseeds_torch_from_seed_and_epoch(fold_run):
    # dropout (before the classifier) draws from torch's global generator: whatever state that is left in,
    # an epoch ends with the same weights
    weights = []
    for noise in (1, 1000):
        run = fold_run()
        run.restore()
        torch.manual_seed(noise)
        torch.rand(noise)
        run.train_epoch()
        weights.append(_weights(run.model))
    assert _same(*weights)


def test_evaluate_stops_on_nan_predictions_before_anything_is_recorded(fold_run):
    run = fold_run(ema=True, ema_decay=0.9)
    run.restore()
    trained = run.train_epoch()
    with torch.no_grad():
        run.trainer.ema.module.get_classifier().bias.fill_(float("nan"))  # validation uses the EMA weights
    with pytest.raises(NonFiniteError, match=r"validation loss is nan in epoch 1 at update \d+ \(lr "):
        run.evaluate(trained)
    assert run.state.history == [] and run.state.epoch == 0


def test_checkpoint_never_saves_non_finite_weights_as_best(fold_run):
    run = fold_run()
    run.restore()
    row, improved = run.epoch()
    with torch.no_grad():
        run.model.get_classifier().weight.fill_(float("inf"))
    with pytest.raises(NonFiniteError, match=r"weight .*weight is nan/inf in epoch 1"):
        run.checkpoint(row, improved)
    assert not (run.out_dir / "best.pt").exists() and not (run.out_dir / "last.pt").exists()


# ---------------------------------------------------------------------------------------------- finish


def test_finish_writes_done_json_and_removes_last_pt(fold_run):
    run = fold_run(epochs=1)
    run.restore()
    _one_epoch(run)
    assert (run.out_dir / "last.pt").is_file() and not run.should_continue()
    done = run.finish()
    assert json.loads((run.out_dir / "done.json").read_text()) == done
    assert not (run.out_dir / "last.pt").exists()
    assert (run.out_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # drawn once at the end
    assert (done["fold"], done["epochs_run"], done["best_epoch"], done["stopped_early"]) == (0, 1, 1, False)
    assert (done["train_images"], done["valid_images"], done["extra_train_images"]) == (30, 30, 0)  # 60 images, 2 folds
    assert done["best_score"] == run.state.best_score and done["world_size"] == 1 and done["device"] == "cpu"


class _Recorder:
    """A stand-in for recipe.tracking.Tracking that notes each call and the fold's files at that moment."""

    def __init__(self, out_dir_of):
        self.calls: list[tuple] = []
        self.out_dir_of = out_dir_of

    def _files(self) -> tuple[str, ...]:
        out = self.out_dir_of()
        return tuple(sorted(p.name for p in out.iterdir())) if out.is_dir() else ()

    def on_update(self, model_name, fold, lr_of):
        self.calls.append(("on_update", model_name, fold, self._files()))
        return lambda update, loss: self.calls.append(("update", update))

    def epoch(self, model_name, fold, row):
        self.calls.append(("epoch", model_name, fold, int(row["epoch"]), self._files()))

    def end_fold(self, model_name, fold):
        self.calls.append(("end_fold", model_name, fold, self._files()))


def test_tracking_calls_come_in_order_after_the_files(fold_run):
    holder: dict = {}
    recorder = _Recorder(lambda: holder["run"].out_dir)
    run = holder["run"] = fold_run(tracking=recorder, epochs=1)
    run.restore()
    _one_epoch(run)
    run.finish()
    kinds = [c[0] for c in recorder.calls]
    assert kinds[0] == "on_update" and kinds[-2:] == ["epoch", "end_fold"]
    updates = [c[1] for c in recorder.calls if c[0] == "update"]
    assert updates == list(range(run.trainer.schedule.steps_per_epoch))
    assert recorder.calls[0][3] == ()  # before the epoch: nothing written yet
    assert recorder.calls[-2][1:4] == ("tiny", 0, 1)
    assert set(recorder.calls[-2][4]) >= {"best.pt", "history.csv", "last.pt"}  # the epoch's files come first
    assert "done.json" in recorder.calls[-1][3] and "last.pt" not in recorder.calls[-1][3]


# ------------------------------------------------------------------------------------ per-model helpers


def test_model_trained_waits_for_every_fold_before_on_model_done(demo_datasets, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    cfg = config_from_dict({"name": "m", "competition": "invasive", "data_dir": str(demo_datasets["invasive"]),
                            "folds": {"k": 2, "seed": 3}, "models": [{"backbone": "test_resnet", "name": "tiny"}]})
    called = []

    class NoTracking:
        def summary(self, *args):
            called.append(("summary", *args))

    def done_hook(c, name, ctx):
        called.append(("done", name))

    model_dir = cfg.model_dir("tiny")

    def mark_done(fold: int) -> None:  # a done fold: done.json and best.pt
        (model_dir / f"fold{fold}").mkdir(parents=True)
        for name in ("done.json", "best.pt"):
            (model_dir / f"fold{fold}" / name).write_text("{}")

    mark_done(0)
    with caplog.at_level(logging.INFO, logger="kaggle_planet"):
        experiment._model_trained(cfg, "tiny", CPU, NoTracking(), done_hook)
    assert called == [] and "tiny: folds [1] not trained yet" in caplog.text

    mark_done(1)
    experiment._model_trained(cfg, "tiny", CPU, NoTracking(), done_hook)
    assert called == [("done", "tiny")]  # no scores.json: no summary


def test_restore_removes_temporary_files_a_stopped_writer_left(fold_run, caplog):
    """A run killed inside atomic_write (SIGKILL, power loss) leaves .<name>.<random>.tmp files; the next run
    of the fold (holding its lock) removes them before resuming, and keeps everything else."""
    run = fold_run()
    folder = run.last_path.parent
    folder.mkdir(parents=True, exist_ok=True)
    stale = [folder / ".last.pt.k2j4x9.tmp", folder / ".history.csv.a81bq0.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    kept = folder / "notes.tmp"  # not the atomic_write pattern: not ours to remove
    kept.write_text("user file")
    with caplog.at_level(logging.INFO, logger="kaggle_planet"):
        run.restore()
    assert not any(p.exists() for p in stale) and kept.read_text() == "user file"
    assert "removed 2 temporary file(s)" in caplog.text and ".last.pt.k2j4x9.tmp" in caplog.text
