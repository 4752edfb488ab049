"""Scale-out: a 2-process torchrun job (gloo on CPU) trains every fold and leaves the same files."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from kaggle_planet.core import artifacts
from kaggle_planet.predict.tta import predict_run

TENSORBOARD = importlib.util.find_spec("tensorboard") is not None  # the optional tracker rides along when installed


@pytest.mark.slow  # two torchrun processes, each importing torch: ~14 s
def test_two_process_gloo_run_completes(demo_datasets, tmp_path, monkeypatch):
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({
        "name": "ddp", "competition": "planet", "data_dir": str(demo_datasets["planet"]),
        "folds": {"k": 2, "seed": 3}, "image_size": 32, "tta": "hflip", "epochs": 2, "batch_size": 8,
        "num_workers": 0, "models": [{"backbone": "test_resnet", "name": "tiny"}], "log": ["csv", "tensorboard"] if TENSORBOARD else ["csv"],
    }))
    cli = shutil.which("kaggle-planet", path=str(Path(sys.executable).parent)) or "kaggle-planet"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
           cli, "train", str(config), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    model_dir = tmp_path / "runs" / "ddp" / "tiny"
    for fold in (0, 1):
        done = json.loads((model_dir / f"fold{fold}" / "done.json").read_text())
        assert done["world_size"] == 2 and done["epochs_run"] == 2
        history = pd.read_csv(model_dir / f"fold{fold}" / "history.csv")
        assert history["epoch"].tolist() == [1, 2]  # one row per epoch: only rank 0 writes
        if not TENSORBOARD:
            continue
        # only rank 0 tracks: one event file per fold, one point per epoch
        [events] = (model_dir / "tb" / f"fold{fold}").glob("events.out.tfevents.*")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        assert [e.step for e in EventAccumulator(str(events)).Reload().Scalars("epoch/valid_metric")] == [1, 2]
    run = artifacts.load_run(model_dir)  # validates ids, probabilities, labels
    assert len(run.oof) == 60 and sorted(run.oof["fold"].unique()) == [0, 1]
    # validation predictions were gathered from both ranks: every valid image scored once
    assert json.loads((model_dir / "scores.json").read_text())["per_fold"].keys() == {"0", "1"}

    # the two ranks each predicted a share of the images: the gathered files equal one process's predictions
    sharded = {name: pd.read_csv(model_dir / name) for name in ("oof.csv", "test.csv")}
    monkeypatch.chdir(tmp_path)
    predict_run(model_dir, torch.device("cpu"))
    for name, frame in sharded.items():
        pd.testing.assert_frame_equal(frame, pd.read_csv(model_dir / name), check_exact=False, atol=1e-6, obj=name)


_NAN_ON_ONE_RANK = r'''
import os, sys, datetime
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from kaggle_planet.recipe.engine import NonFiniteError, Precision, Trainer, train_one_epoch

rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
torch.manual_seed(0)
model = DDP(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1)))
images = torch.rand(6, 3, 2, 2)
if rank == 1:
    images[2:4] = float("nan")  # rank 1's second batch: its loss is NaN, rank 0's is finite
loader = [(images[i:i + 2], torch.ones(2, 1), torch.arange(i, i + 2)) for i in range(0, 6, 2)]

class Schedule:
    def step_update(self, step):
        pass

trainer = Trainer(optimizer=torch.optim.SGD(model.parameters(), lr=0.1), schedule=Schedule(),
                  loss_fn=torch.nn.BCEWithLogitsLoss(), activation=torch.sigmoid,
                  precision=Precision(torch.device("cpu")), scaler=torch.amp.GradScaler("cpu", enabled=False))
steps = []
step = trainer.optimizer.step
trainer.optimizer.step = lambda *a, **k: (steps.append(1), step(*a, **k))
try:
    train_one_epoch(model, loader, trainer, epoch=0, step=0, show_progress=False)
except NonFiniteError as err:
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    print(f"RANK{rank} updates={len(steps)} finite={finite} {err}", flush=True)
    sys.exit(3)
print(f"RANK{rank} finished", flush=True)
'''


@pytest.mark.slow  # two processes, each importing torch: ~10 s
def test_a_nan_loss_on_one_rank_stops_every_rank_at_the_same_update(tmp_path):
    """Without the collective check the finite rank would take the update (with the NaN rank's NaN
    gradients, all-reduced) and then wait forever for the rank that stopped."""
    script = tmp_path / "nan_rank.py"
    script.write_text(_NAN_ON_ONE_RANK)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(script), str(r), str(tmp_path / "init")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for r, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 3, (out, err[-2000:])
        assert f"RANK{r} updates=1 finite=True" in out  # the first update taken, the second never: weights finite
    assert "training loss is nan in epoch 1 at update 1" in outs[1][0]
    assert "finite here, nan/inf on another rank" in outs[0][0]
