"""Model quality on real images the toolkit's generator did not make, for every task kind, in one run.

    python benchmarks/bench_quality.py                       # all kinds, default size (digit kinds ~6 min, photo kinds ~6 min on 2 cores)
    python benchmarks/bench_quality.py --quick               # smoke test: small data, 1 epoch (photo kinds 2), 1 seed
    python benchmarks/bench_quality.py --kinds binary --threads 1 --out /tmp/q
    python benchmarks/bench_quality.py --set lr=0.0003 --set models.0.backbone=resnet18
    python benchmarks/bench_quality.py --kinds logloss,columnauc    # the photo kinds only (pip install -e ".[bench]")

Data (``realdata.py``): scikit-learn's scanned handwritten digits over crops of its sample photos, written
in each competition's real folder layout and rebuilt from a seed every run: binary = Invasive layout
("is the digit a 3, 5 or 8", ~30% positive), multilabel = Planet layout (2x2 digit mosaics tagged with
the digits present, 10 tags of skewed frequency), multiclass = image-folder layout (10 digit classes).

For each kind, on exactly the folds the toolkit uses (``load_or_make_folds`` in ``--out``), scored
with ``kaggle_planet.core.metrics.score`` (ROC AUC; F2 at 0.2; accuracy):

1. constant: each row predicted with its training folds' class prior (accuracy: the majority class);
2. logistic regression on the standardised pixels of the images as stored (per fold, fit on the others);
3. the toolkit's recipe (``RECIPE`` below, ``--set`` overrides it): ``train_experiment`` over all k folds,
   OOF score from the model folder's ``scores.json`` (each fold's best-epoch checkpoint, as the toolkit
   predicts);
4. a bare torch loop beside the toolkit's fold 0: same backbone and weights, head zeroed with its bias
   at the training prior (log-odds for sigmoid, log-frequency for softmax), AdamW at the recipe's
   constant lr and weight decay, same epochs and batch size, no augmentation, resize + the backbone's
   mean/std; over ``SEEDS`` seeds, valid score per epoch; and the toolkit's fold 0 over the same seeds
   (config key ``seed``; fold 0 of the recipe run is the first seed) read from ``fold0/history.csv``.

The photo kinds (``realphotos.py``, scikit-image's bundled photographs, textures, microscopy, astronomy and faces
cut into patches; needs the ``bench`` extra): logloss = dog-breed-identification layout (14 classes, one per source,
Kaggle log loss), columnauc = plant-pathology-2020-fgvc7 layout (4 one-hot columns, each a grouping of sources,
mean column-wise ROC AUC). Each patch comes from one region (tile) of its source, and the test images come from
regions no training image comes from; their labels stay outside the data folder (``--out``/heldout/) and are used
only to score. For each, scored out of fold (the toolkit's folds) and on that held-out split: the constant
predictor (class prior) and the logistic regression (on the patches shrunk to ``LOGREG_PX``); the config
``kaggle-planet init <preset>`` writes for the data folder (``INIT_SETS`` size it for 2 cores; ``--set`` then
applies), run end to end (``run_experiment``): each model's fold models, with the full-data refit where this
version has the ``refit`` key (fold models, refit, both and the model's test.csv; the refit rows have no OOF of
their own), and the submitted blend beside its best member's OOF; and a bare loop of each of its backbones (same
epochs, image size, lr and batch size; every training image, no folds, no TTA) on the held-out split.

Also printed (digit kinds): the bare loop's loss at step 0 (first batch, before any update), the toolkit's and the bare
loop's first-epoch train/valid loss, and the constant-prior loss (plain BCE / cross-entropy of predicting
the training prior for every row). Results go to ``--out`` (default: a new temporary folder; the script
writes nothing into the repository): ``report.md``, ``results.json``, ``data/``, ``folds/``, ``runs/``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import realdata
import realphotos

# The toolkit's shipped recipe: the config defaults (lr, optimizer, schedule, warmup, loss, head init) plus
# what this data and this machine decide: one experiment config (minus name/competition/data_dir/runs_dir,
# which the script fills in per kind). Edit here or override on the command line: --set key=value (config syntax,
# e.g. --set models.0.pretrained=false). Digits have an orientation (6 vs 9): keep augment and tta
# label-preserving (no flips/rotations): augment none (what the bare loop does) or affine; tta none.
RECIPE: dict[str, Any] = {
    "folds": {"k": 3, "seed": 42},
    "image_size": 48,
    "augment": "none",
    "tta": "none",
    "epochs": 3,
    "batch_size": 32,
    "patience": 0,
    "seed": 42,
    "num_workers": 0,
    "refit": "off",  # the digit kinds score OOF only (no held-out split): the refit, which changes only test.csv, is not trained
    "models": [{"backbone": "tf_efficientnet_lite0", "pretrained": True}],
}
SEEDS = 3  # fold-0 runs of the bare loop and of the toolkit: seeds recipe seed, +1, +2

# kind -> builder arguments of the default run
DATA: dict[str, dict[str, int]] = {
    "binary": {"n_train": 1500, "n_test": 48},
    "multilabel": {"n_train": 1000, "n_test": 32},
    "multiclass": {"n_train": 1000, "n_test": 40},
}
QUICK_DATA: dict[str, dict[str, int]] = {
    "binary": {"n_train": 300, "n_test": 16},
    "multilabel": {"n_train": 240, "n_test": 16},
    "multiclass": {"n_train": 300, "n_test": 20},
}
QUICK_SETS = ["epochs=1"]
DATA_SEED = 0
IMAGE_PX = 48  # side of the stored images (the recipe's image_size is what the models see)
LOGREG_C = 1e-3  # strong L2: the best of 1e-4..1e-1 on fold 0 of a development build, for every kind

# The photo kinds (realphotos.py): patches of scikit-image's bundled images in two presets' layouts, a held-out test
# split of regions the training images never come from. The toolkit there is the config `kaggle-planet init` writes.
PHOTO_DATA: dict[str, dict[str, int]] = {
    "logloss": {"n_train": 1120, "n_test": 280},
    "columnauc": {"n_train": 1000, "n_test": 250},
}
PHOTO_QUICK_DATA: dict[str, dict[str, int]] = {
    "logloss": {"n_train": 280, "n_test": 84},
    "columnauc": {"n_train": 300, "n_test": 100},
}
PHOTO_PX = 64  # side of the stored patches (init reads its image_size from them)
# what this machine decides on top of the init config (init writes epochs 10, folds.k 5, image_size from the images)
INIT_SETS = ["epochs=3", "folds.k=3", "image_size=48"]
PHOTO_QUICK_SETS = ["epochs=2"]  # the leaf recipe's freeze_epochs 1 needs a second epoch
# the photo kinds' logistic regression sees the patches shrunk to this side (1,728 features): at the stored 64 px
# (12,288) one fit of the 14-class kind takes minutes on 2 cores; C stays LOGREG_C (the held-out split, not fold 0,
# would pick another C here, and choosing by it would be fitting the test)
LOGREG_PX = 24
REFIT = "with_folds"  # the refit mode the photo kinds run with where the config has the key
REFIT_FILES = {"fold models": "test_folds.csv", "refit": "test_refit.csv"}  # + test.csv: what the config chose

log = logging.getLogger("bench_quality")


def _say(msg: str = "") -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------ data


@dataclass
class KindData:
    """One kind's dataset as the toolkit reads it, its folds and its training images in memory."""

    built: realdata.Built
    table: Any  # kaggle_planet.data.competitions.DatasetTable
    folds: np.ndarray  # (N,) fold per training row
    images: np.ndarray  # (N, S, S, 3) uint8 RGB, as stored (decoded JPEG)
    metric: str

    @property
    def targets(self) -> np.ndarray:
        return self.table.targets

    @property
    def task(self) -> str:
        return self.table.task


def prepare_kind(kind: str, data_dir: Path, sizes: dict[str, int], image_size: int, k: int, fold_seed: int) -> KindData:
    from kaggle_planet.data.competitions import get_spec, load_dataset
    from kaggle_planet.data.folds import load_or_make_folds
    from kaggle_planet.data.loader import read_image

    built = realdata.BUILDERS[kind](data_dir, size=image_size, seed=DATA_SEED, **sizes)
    table = load_dataset(built.competition, built.data_dir)
    folds = load_or_make_folds(table, k, fold_seed)  # relative to the working directory: out/folds/
    images = np.stack([read_image(f) for f in table.train["file"]])
    return KindData(built, table, folds, images, get_spec(built.competition).metric)


# ------------------------------------------------------------------------------------- baselines


def oof_constant(data: KindData) -> np.ndarray:
    """(N, C): every row gets the class prior of its training folds."""
    y = data.targets.astype(np.float64)
    out = np.zeros_like(y)
    for f in np.unique(data.folds):
        out[data.folds == f] = y[data.folds != f].mean(axis=0)
    return out


def oof_logreg(data: KindData) -> np.ndarray:
    """(N, C): logistic regression on standardised raw pixels, one fit per fold on the other folds."""
    x = pixels(data.images)
    y = data.targets
    out = np.zeros(y.shape, dtype=np.float64)
    for f in np.unique(data.folds):
        tr, va = data.folds != f, data.folds == f
        out[va] = fit_logreg(x[tr], y[tr], x[va], data.task)
    return out


def pixels(images: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, S*S*3) float32: the logistic regression's features."""
    return images.reshape(len(images), -1).astype(np.float32)


def fit_logreg(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, task: str) -> np.ndarray:
    """(M, C) probabilities of ``x_eval`` from a logistic regression fit on the standardised ``x_train`` (N, F)
    with 0/1 targets ``y_train`` (N, C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    xt, xv = scaler.transform(x_train), scaler.transform(x_eval)
    lr = LogisticRegression(C=LOGREG_C, max_iter=1000)
    if task == "binary":
        return lr.fit(xt, y_train[:, 0]).predict_proba(xv)[:, 1:]
    if task == "multiclass":
        return lr.fit(xt, y_train.argmax(axis=1)).predict_proba(xv)
    return OneVsRestClassifier(lr).fit(xt, y_train).predict_proba(xv)


def constant_prior_loss(y_train: np.ndarray, y_eval: np.ndarray, task: str) -> float:
    """Plain BCE (mean over rows and classes) / cross-entropy of predicting ``y_train``'s prior for
    every row of ``y_eval`` (both (N, C) 0/1)."""
    prior = np.clip(y_train.mean(axis=0), 1e-7, 1 - 1e-7)
    y = y_eval.astype(np.float64)
    if task == "multiclass":
        return float(-(y * np.log(prior)).sum(axis=1).mean())
    return float(-(y * np.log(prior) + (1 - y) * np.log(1 - prior)).mean())


def fold_scores(metric: str, y: np.ndarray, probs: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """(OOF score over every row, fold 0's score)."""
    from kaggle_planet.core.metrics import score

    return score(metric, y, probs), score(metric, y[folds == 0], probs[folds == 0])


# ---------------------------------------------------------------------------------------- toolkit


def make_config(kind: str, competition: str, data_dir: Path, out: Path, name: str, sets: list[str]):
    """RECIPE as an experiment config for ``kind``'s data, with ``sets`` (KEY=VALUE) applied."""
    from kaggle_planet.config.schema import config_from_dict

    base = {"name": name, "competition": competition, "data_dir": str(data_dir), "runs_dir": str(out / "runs"), **RECIPE}
    return config_from_dict(base, sets, source=f"bench_quality RECIPE ({kind})")


def read_history(model_dir: Path, fold: int = 0):
    import pandas as pd

    from kaggle_planet.core.artifacts import HISTORY, fold_dir

    return pd.read_csv(fold_dir(model_dir, fold) / HISTORY)


class StepZeroLog(logging.Handler):
    """Keeps the toolkit's own "fold 0: loss at step 0 X" log line, when the toolkit writes one (history.csv
    has epoch rows only); the benchmark works without it."""

    PATTERN = re.compile(r"fold 0: loss at step 0 ([-+0-9.eE]+|nan|inf)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.value: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        match = self.PATTERN.search(record.getMessage())
        if match and self.value is None:
            self.value = float(match.group(1))


def run_toolkit(kind: str, data: KindData, out: Path, sets: list[str], seeds: list[int], all_folds: bool = True,
                tag: str = "") -> dict[str, Any]:
    """The recipe over all folds (first seed; unless ``all_folds`` is False), then fold 0 alone for the other seeds."""
    import torch

    from kaggle_planet.pipeline import train_experiment

    result: dict[str, Any] = {"fold0": {}}
    for i, seed in enumerate(seeds):
        whole = all_folds and i == 0
        cfg = make_config(kind, data.built.competition, data.built.data_dir, out, f"{kind}{tag}_seed{seed}", [*sets, f"seed={seed}"])
        log.info("%s: toolkit seed %d (%s)", kind, seed, "all folds" if whole else "fold 0")
        step0 = StepZeroLog()
        logging.getLogger("kaggle_planet").addHandler(step0)
        try:
            (model_dir,) = train_experiment(cfg, torch.device("cpu"), folds=None if whole else [0])
        finally:
            logging.getLogger("kaggle_planet").removeHandler(step0)
        if i == 0:
            result["settings"] = cfg.resolved_model(cfg.models[0])
        if whole:
            scores = json.loads((model_dir / "scores.json").read_text())
            result.update(oof=scores["oof"], per_fold=scores["per_fold"], model_dir=str(model_dir))
        history = read_history(model_dir)
        result["fold0"][seed] = {
            "valid_metric": history["valid_metric"].tolist(),
            "train_loss": history["train_loss"].tolist(),
            "valid_loss": history["valid_loss"].tolist(),
            "lr": history["lr"].tolist(),
            "step0_loss": step0.value,
        }
    return result


# -------------------------------------------------------------------------------------- bare loop


@dataclass
class BareRun:
    step0_loss: float
    valid_metric: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    probs: np.ndarray | None = None  # the last epoch's valid probabilities (len(va), C)


def to_tensor(images: np.ndarray, size: int, mean, std):
    """(N, S, S, 3) uint8 -> (N, 3, size, size) float32 normalised (cv2 INTER_AREA resize when needed)."""
    import cv2
    import torch

    if images.shape[1] != size:
        images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    x = (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def bare_loop(data: KindData, settings, seed: int, fold: int = 0) -> BareRun:
    """Fine-tune ``settings.backbone`` on every fold but ``fold``; valid score after each epoch."""
    tr, va = np.flatnonzero(data.folds != fold), np.flatnonzero(data.folds == fold)
    return bare_run(data.images, data.targets, tr, va, data.task, data.metric, settings, seed)


def bare_run(images: np.ndarray, targets: np.ndarray, tr: np.ndarray, va: np.ndarray, task: str, metric: str,
             settings, seed: int) -> BareRun:
    """Fine-tune ``settings.backbone`` on the rows ``tr`` of ``images`` (N, S, S, 3) uint8 / ``targets`` (N, C) 0/1;
    the score of the rows ``va`` after each epoch (``probs`` keeps the last epoch's (len(va), C) probabilities)."""
    import torch
    from torch import nn

    from kaggle_planet.core.metrics import score
    from kaggle_planet.recipe import models

    torch.manual_seed(seed)
    y = targets.astype(np.float32)
    model = models.create_model(settings.backbone, y.shape[1], pretrained=settings.pretrained)
    prior = np.clip(y[tr].mean(axis=0), 1e-4, 1 - 1e-4)
    bias = np.log(prior) if task == "multiclass" else np.log(prior / (1 - prior))
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    cfg = models.model_data_config(model)
    x = to_tensor(images, settings.image_size, cfg["mean"], cfg["std"])
    target = torch.from_numpy(y)
    if task == "multiclass":
        loss_fn, act, to_target = nn.CrossEntropyLoss(), (lambda z: torch.softmax(z, 1)), (lambda t: t.argmax(1))
    else:
        loss_fn, act, to_target = nn.BCEWithLogitsLoss(), torch.sigmoid, (lambda t: t)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    bs = settings.batch_size
    run: BareRun | None = None
    for epoch in range(settings.epochs):
        model.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        n_batches = len(order) // bs if len(order) > bs else 1  # drop the last partial batch, as the toolkit
        total, count = 0.0, 0
        for b in range(n_batches):
            idx = order[b * bs:(b + 1) * bs]
            loss = loss_fn(model(x[idx]), to_target(target[idx]))
            if run is None:
                run = BareRun(step0_loss=loss.item())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x[va[i:i + 256]]) for i in range(0, len(va), 256)])
            run.valid_loss.append(float(loss_fn(logits, to_target(target[va]))))
            probs = act(logits).numpy().astype(np.float64)
        run.train_loss.append(total / count)
        run.valid_metric.append(score(metric, targets[va], probs))
        run.probs = probs
        log.info("bare loop seed %d epoch %d: train loss %.4f valid loss %.4f %s %.4f", seed, epoch + 1,
                 run.train_loss[-1], run.valid_loss[-1], metric, run.valid_metric[-1])
    return run


# ----------------------------------------------------------------------------------------- report


def _ms(values: list[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def _num(value: float | None) -> str:
    return "(not logged)" if value is None else f"{value:.4f}"


def kind_report(kind: str, data: KindData, res: dict[str, Any]) -> str:
    seeds = res["seeds"]
    tk, bare = res["toolkit"], res["bare"]
    metric = data.metric + (" (F2 at threshold 0.2)" if data.metric == "f2_samples" else "")
    n_seeds = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    k = len(tk["per_fold"])
    t_last = [tk["fold0"][s]["valid_metric"][-1] for s in seeds]
    t_best = [max(tk["fold0"][s]["valid_metric"]) for s in seeds]
    b_last = [bare[s].valid_metric[-1] for s in seeds]
    b_best = [max(bare[s].valid_metric) for s in seeds]
    lines = [
        f"### {kind}: {data.built.competition} layout, metric {metric}",
        "",
        f"data: {data.built.describe()}; folds: k={k}, {np.bincount(data.folds).tolist()} images per fold",
        "",
        f"| method | OOF ({k} folds) | fold 0 | notes |",
        "|---|---|---|---|",
        f"| constant (training-fold prior) | {res['constant'][0]:.4f} | {res['constant'][1]:.4f} | |",
        (f"| logistic regression on pixels | {res['logreg'][0]:.4f} | {res['logreg'][1]:.4f} | "
        f"{data.images[0].size} standardised pixels, C={LOGREG_C:g} |"),
        (f"| toolkit recipe | {tk['oof']:.4f} | {tk['per_fold']['0']:.4f} | best-epoch checkpoint per fold; "
        f"per fold {', '.join(f'{v:.4f}' for v in tk['per_fold'].values())} |"),
        f"| bare loop, fold 0 ({n_seeds}) | | {_ms(b_last)} | last epoch; best epoch {_ms(b_best)} |",
        f"| toolkit, fold 0 ({n_seeds}) | | {_ms(t_last)} | last epoch; best epoch {_ms(t_best)} |",
        "",
        "fold-0 valid score per epoch:",
        "",
        "| epoch | " + " | ".join(f"bare s{s}" for s in seeds) + " | " + " | ".join(f"toolkit s{s}" for s in seeds) + " |",
        "|---" * (1 + 2 * len(seeds)) + "|",
    ]
    for e in range(len(bare[seeds[0]].valid_metric)):
        cells = [f"{bare[s].valid_metric[e]:.4f}" for s in seeds]
        cells += [f"{tk['fold0'][s]['valid_metric'][e]:.4f}" if e < len(tk["fold0"][s]["valid_metric"]) else "" for s in seeds]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    loss = res["prior_loss"]
    lines += [
        "",
        f"- constant-prior loss (fold 0, prior of its training rows): train rows {loss['train']:.4f}, valid rows {loss['valid']:.4f}",
        "- bare loop loss at step 0 (first batch, before any update): "
        + ", ".join(f"s{s} {bare[s].step0_loss:.4f}" for s in seeds)
        + "; toolkit's own log line 'fold 0: loss at step 0': "
        + ", ".join(f"s{s} {_num(tk['fold0'][s]['step0_loss'])}" for s in seeds),
        "- first-epoch loss, train / valid: bare "
        + ", ".join(f"s{s} {bare[s].train_loss[0]:.4f} / {bare[s].valid_loss[0]:.4f}" for s in seeds)
        + "; toolkit "
        + ", ".join(f"s{s} {tk['fold0'][s]['train_loss'][0]:.4f} / {tk['fold0'][s]['valid_loss'][0]:.4f}" for s in seeds),
    ]
    lines.append(f"- toolkit lr at the start of each epoch (history.csv, s{seeds[0]}): "
                 + ", ".join(f"{v:.3g}" for v in tk["fold0"][seeds[0]]["lr"])
                 + f"; bare loop: constant {tk['settings'].lr:g}")
    gap = float(np.mean(t_last) - np.mean(b_last))
    spread = max(np.std(t_last, ddof=1), np.std(b_last, ddof=1)) if len(seeds) > 1 else float("nan")
    if math.isnan(spread):
        verdict = "one seed: no spread to compare with"
    elif gap < -2 * spread:
        verdict = "the toolkit is WORSE than the bare loop by more than 2x the seed spread"
    elif gap > 2 * spread:
        verdict = "the toolkit is better than the bare loop by more than 2x the seed spread"
    else:
        verdict = "within 2x the seed spread"
    lines.append(f"- toolkit minus bare loop, fold 0 last epoch: {gap:+.4f} (largest seed std {spread:.4f}): {verdict}")
    lines.append(f"- wall time of this kind (data, baselines, {len(seeds)} toolkit + {len(seeds)} bare runs): {res['seconds']:.0f} s")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- main


def run_kind(kind: str, out: Path, sizes: dict[str, int], sets: list[str], n_seeds: int) -> tuple[KindData, dict[str, Any]]:
    t0 = time.time()
    data_dir = out / "data" / kind
    recipe_cfg = make_config(kind, realdata.COMPETITIONS[kind], data_dir, out, "recipe", sets)
    settings = recipe_cfg.resolved_model(recipe_cfg.models[0])
    data = prepare_kind(kind, data_dir, sizes, IMAGE_PX, recipe_cfg.folds.k, recipe_cfg.folds.seed)
    _say(f"{kind}: {data.built.describe()}")
    y = data.targets
    res: dict[str, Any] = {"seeds": [settings.seed + i for i in range(n_seeds)]}
    res["constant"] = fold_scores(data.metric, y, oof_constant(data), data.folds)
    res["logreg"] = fold_scores(data.metric, y, oof_logreg(data), data.folds)
    _say(f"{kind}: constant OOF {res['constant'][0]:.4f}, logistic regression OOF {res['logreg'][0]:.4f}")
    tr, va = data.folds != 0, data.folds == 0
    res["prior_loss"] = {"train": constant_prior_loss(y[tr], y[tr], data.task), "valid": constant_prior_loss(y[tr], y[va], data.task)}
    res["toolkit"] = run_toolkit(kind, data, out, sets, res["seeds"])
    res["bare"] = {s: bare_loop(data, res["toolkit"]["settings"], s) for s in res["seeds"]}
    res["seconds"] = time.time() - t0
    return data, res


def run_variants(kind: str, out: Path, sizes: dict[str, int], sets: list[str], n_seeds: int,
                 variants: list[tuple[str, list[str]]]) -> str:
    """Recipe variants side by side on fold 0 (same data, same seeds), beside the bare loop: a table of
    the valid score after the first and the last epoch and the best epoch, mean +- std over seeds."""
    data_dir = out / "data" / kind
    base = make_config(kind, realdata.COMPETITIONS[kind], data_dir, out, "recipe", sets)
    data = prepare_kind(kind, data_dir, sizes, IMAGE_PX, base.folds.k, base.folds.seed)
    _say(f"{kind}: {data.built.describe()}")
    seeds = [base.resolved_model(base.models[0]).seed + i for i in range(n_seeds)]
    rows = []
    settings = base.resolved_model(base.models[0])
    bare = [bare_loop(data, settings, s) for s in seeds]
    rows.append((f"bare loop (constant lr {settings.lr:g}, no augmentation)", [b.valid_metric for b in bare]))
    for i, (name, extra) in enumerate(variants):
        t0 = time.time()
        res = run_toolkit(kind, data, out, [*sets, *extra], seeds, all_folds=False, tag=f"_v{i}")
        rows.append((f"{name} ({time.time() - t0:.0f} s)", [res["fold0"][s]["valid_metric"] for s in seeds]))
    lines = [f"### {kind}: recipe variants, fold 0, {len(seeds)} seed(s), metric {data.metric}", "",
             "| variant | epoch 1 | last epoch | best epoch |", "|---|---|---|---|"]
    for name, curves in rows:
        lines.append(f"| {name} | {_ms([c[0] for c in curves])} | {_ms([c[-1] for c in curves])} | {_ms([max(c) for c in curves])} |")
    return "\n".join(lines)


def _jsonable(res: dict[str, Any]) -> dict[str, Any]:
    out = dict(res)
    out["toolkit"] = {k: v for k, v in res["toolkit"].items() if k != "settings"}
    out["recipe_settings"] = res["toolkit"]["settings"].to_dict()
    out["bare"] = {s: {k: v for k, v in vars(r).items() if k != "probs"} for s, r in res["bare"].items()}
    return out


# ------------------------------------------------------------------------------------- photo kinds


@dataclass
class PhotoData(KindData):
    """A photo kind: the training side as :class:`KindData`, plus the test images and their held-out labels."""

    test_images: np.ndarray  # (M, S, S, 3) uint8 RGB, in table.test order
    test_targets: np.ndarray  # (M, C) 0/1: the labels the benchmark kept out of the data folder


def shrink(images: np.ndarray, side: int) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, side, side, 3) uint8 (cv2 INTER_AREA)."""
    import cv2

    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in images])


def refit_available() -> bool:
    """Whether this version's config has the ``refit`` key (full-data refit after CV)."""
    from kaggle_planet.config.schema import ExperimentConfig

    return "refit" in ExperimentConfig.model_fields


def build_photo_kind(kind: str, out: Path, sizes: dict[str, int]) -> realphotos.Built:
    """Write the kind's data folder; its test labels and every patch's group go to ``out/heldout/``, outside it."""
    built = realphotos.BUILDERS[kind](out / "data" / kind, size=PHOTO_PX, seed=DATA_SEED, **sizes)
    heldout = out / "heldout"
    heldout.mkdir(parents=True, exist_ok=True)
    built.test_labels.to_csv(heldout / f"{kind}_test_labels.csv", index=False)
    built.groups.to_csv(heldout / f"{kind}_groups.csv", index=False)
    return built


def _dotted(mapping: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(mapping, dict) or part not in mapping:
            return None
        mapping = mapping[part]
    return mapping


def init_config(kind: str, built: realphotos.Built, out: Path, sets: list[str]):
    """(path, what init wrote, the config run): ``kaggle-planet init <preset>`` on the data folder, then ``sets``."""
    import yaml

    from kaggle_planet.config.schema import load_config
    from kaggle_planet.config.starter import write_starter_config

    path = write_starter_config(built.competition, built.data_dir, out / "configs" / f"{kind}.yaml")
    written = yaml.safe_load(path.read_text())
    cfg = load_config(path, [f"name={kind}", f"runs_dir={out / 'runs'}", *sets])
    return path, written, cfg


def load_photo_data(built: realphotos.Built, cfg) -> PhotoData:
    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.folds import load_or_make_folds
    from kaggle_planet.data.loader import read_image

    table = load_dataset(cfg.competition, cfg.data_dir, cfg.options)
    folds = load_or_make_folds(table, cfg.folds.k, cfg.folds.seed)  # the toolkit's folds file (out/folds/)
    images = np.stack([read_image(f) for f in table.train["file"]])
    test_images = np.stack([read_image(f) for f in table.test["file"]])
    labels = built.test_labels.set_index(table.id_col)
    test_targets = labels.loc[table.test[table.id_col].astype(str), table.classes].to_numpy()
    return PhotoData(built, table, folds, images, cfg.metric, test_images, test_targets)


def read_test(path: Path, data: PhotoData) -> np.ndarray:
    """(M, C) probabilities of a prediction file (id column + one column per class), in table.test order."""
    from kaggle_planet.core.artifacts import read_predictions

    table = data.table
    frame = read_predictions(path, table.id_col, table.classes).set_index(table.id_col)
    return frame.loc[table.test[table.id_col].astype(str), table.classes].to_numpy()


def heldout(data: PhotoData, probs: np.ndarray) -> float:
    from kaggle_planet.core.metrics import score

    return score(data.metric, data.test_targets, probs, data.task)


def refit_scores(model_dir: Path, data: PhotoData, k: int) -> dict[str, float] | None:
    """Held-out scores of the refit files in ``model_dir`` (None when they are not there): the fold models' TTA
    mean, the refit model's, both ((k * folds + refit) / (k + 1): each model one vote) and test.csv (the config's choice)."""
    if not all((model_dir / f).is_file() for f in REFIT_FILES.values()):
        return None
    folds_p, refit_p = (read_test(model_dir / REFIT_FILES[n], data) for n in ("fold models", "refit"))
    return {"fold models": heldout(data, folds_p), "refit": heldout(data, refit_p),
            "both": heldout(data, (k * folds_p + refit_p) / (k + 1)), "test.csv": heldout(data, read_test(model_dir / "test.csv", data))}


def run_photo_kind(kind: str, out: Path, sizes: dict[str, int], sets: list[str], refit: str | None) -> tuple[PhotoData, dict[str, Any]]:
    """Baselines, the init config's full run and a bare loop per backbone, each on the held-out test split."""
    import torch

    from kaggle_planet.core.metrics import score
    from kaggle_planet.pipeline import run_experiment

    t0 = time.time()
    built = build_photo_kind(kind, out, sizes)
    _say(f"{kind}: {built.describe()}")
    run_sets = [*INIT_SETS, *([f"refit={refit}"] if refit else []), *sets]
    path, written, cfg = init_config(kind, built, out, run_sets)
    data = load_photo_data(built, cfg)
    y, task, metric = data.targets, data.task, data.metric
    given = dict(item.partition("=")[::2] for item in run_sets)  # the last value of each key wins, as in the config
    res: dict[str, Any] = {
        "config": str(path), "k": cfg.folds.k, "sets": run_sets, "refit": refit, "refit_available": refit_available(),
        "changed": {key: (_dotted(written, key), value) for key, value in given.items()},
        "written": {key: written.get(key) for key in ("augment", "tta", "epochs", "image_size", "ema", "freeze_epochs", "lr", "blend")},
        "backbones": [m.backbone for m in cfg.models],
    }
    prior = np.tile(y.mean(axis=0), (len(data.test_targets), 1))
    res["constant"] = {"oof": score(metric, y, oof_constant(data), task), "test": heldout(data, prior)}
    small = replace(data, images=shrink(data.images, LOGREG_PX), test_images=shrink(data.test_images, LOGREG_PX))
    res["logreg"] = {"oof": score(metric, y, oof_logreg(small), task), "features": int(small.images[0].size),
                     "test": heldout(data, fit_logreg(pixels(small.images), y, pixels(small.test_images), task))}
    _say(f"{kind}: constant OOF {res['constant']['oof']:.4f} held-out {res['constant']['test']:.4f}; logistic regression "
         f"OOF {res['logreg']['oof']:.4f} held-out {res['logreg']['test']:.4f}")

    t1 = time.time()
    result = run_experiment(cfg, torch.device("cpu"))
    res["toolkit_seconds"] = time.time() - t1
    exp = result.experiment_dir
    res["models"] = {}
    for name, model_scores in result.scores["models"].items():
        res["models"][name] = {"backbone": cfg.get_model(name).backbone, "oof": model_scores["oof"],
                               "test": heldout(data, read_test(exp / name / "test.csv", data)),
                               "refit": refit_scores(exp / name, data, cfg.folds.k) if refit else None}
    blend = result.scores["blend"]
    res["blend"] = {"asked": cfg.blend_method, "method": blend["method"], "oof": blend["oof"],
                    "best_member": Path(blend["best_member"]).name, "best_member_oof": blend["members"][blend["best_member"]],
                    "gain": blend["gain_over_best"], "test": heldout(data, read_test(exp / "blend" / "test.csv", data)),
                    "submission": str(result.submission) if result.submission else None,
                    "submission_test": heldout(data, read_test(result.submission, data)) if result.submission else None}

    images = np.concatenate([data.images, data.test_images])
    targets = np.concatenate([data.targets, data.test_targets])
    tr, va = np.arange(len(data.images)), np.arange(len(data.images), len(images))
    res["bare"] = {}
    for model in cfg.models:
        settings = cfg.resolved_model(model)
        run = bare_run(images, targets, tr, va, task, metric, settings, settings.seed)
        res["bare"][model.name] = {"backbone": model.backbone, "seed": settings.seed, "epochs": settings.epochs,
                                   "image_size": settings.image_size, "lr": settings.lr, "test": run.valid_metric[-1],
                                   "test_per_epoch": run.valid_metric}
    res["seconds"] = time.time() - t0
    return data, res


def photo_report(kind: str, data: PhotoData, res: dict[str, Any]) -> str:
    from kaggle_planet.core.metrics import get_metric

    metric, k = data.metric, res["k"]
    lower = not get_metric(metric).higher_is_better
    test_regions = len(data.built.region_sets().get("test", ()))
    w = res["written"]
    changed = ", ".join(f"{key} {'(not written)' if old is None else old} -> {new}" for key, (old, new) in res["changed"].items()
                        if str(old) != new)
    lines = [
        f"### {kind}: {data.built.competition} layout, metric {metric}" + (" (lower is better)" if lower else ""),
        "",
        f"data: {data.built.describe()}",
        (f"folds: the toolkit's, k={k}, {np.bincount(data.folds).tolist()} images per fold (they know nothing of the regions: "
        f"patches of one region fall on both sides of a fold)"),
        (f"held-out test: {len(data.test_targets)} images from {test_regions} regions no training image comes from; "
        f"labels kept in heldout/{kind}_test_labels.csv (never in the data folder), used only to score"),
        f"toolkit: `kaggle-planet init {data.built.competition}` wrote {res['config']} (models {', '.join(res['backbones'])}; "
        + ", ".join(f"{key} {value}" for key, value in w.items() if value is not None)
        + f"); run here with {changed or 'nothing changed'} (--set; sized for this 2-core machine)",
        "refit: " + (res["refit"] or "off") if res["refit_available"] else "refit: not available in this version (run with refit off)",
        "",
        f"| method | OOF ({k} folds) | held-out test | held-out minus OOF | notes |",
        "|---|---|---|---|---|",
    ]

    def row(name: str, oof: float | None, test: float | None, notes: str = "", no_oof: str = "no OOF of its own") -> str:
        gap = f"{test - oof:+.4f}" if oof is not None and test is not None else ""
        return (f"| {name} | {no_oof if oof is None else f'{oof:.4f}'} | "
                f"{'(not written)' if test is None else f'{test:.4f}'} | {gap} | {notes} |")

    lines.append(row("constant (class prior)", res["constant"]["oof"], res["constant"]["test"],
                     "OOF: each row its training folds' prior; held-out: the prior of every training image"))
    lines.append(row("logistic regression on pixels", res["logreg"]["oof"], res["logreg"]["test"],
                     f"{res['logreg']['features']} standardised pixels ({LOGREG_PX} px), C={LOGREG_C:g}; held-out: fit on every training image"))
    for name, m in res["models"].items():
        r = m["refit"]
        if r is None:
            lines.append(row(f"toolkit {name}", m["oof"], m["test"], f"{m['backbone']}: test.csv, the {k} fold models' TTA mean (tta {w.get('tta')})"))
        if res["refit"] is not None and r is None:
            lines.append(row(f"toolkit {name}: refit", None, None, f"refit {res['refit']} asked, but test_folds.csv / test_refit.csv are not in its folder"))
        elif r is not None:
            lines.append(row(f"toolkit {name}: fold models", m["oof"], r["fold models"], f"{m['backbone']}: test_folds.csv, the {k} fold models' TTA mean (tta {w.get('tta')})"))
            lines.append(row(f"toolkit {name}: refit", None, r["refit"], "test_refit.csv: one model trained on every training image for the folds' mean best epoch"))
            lines.append(row(f"toolkit {name}: both", None, r["both"], f"(k * fold models + refit) / (k + 1), k={k}, computed here"))
            lines.append(row(f"toolkit {name}: test.csv", m["oof"], r["test.csv"], f"what refit: {res['refit']} wrote as the model's test.csv (OOF: the fold models')"))
    b = res["blend"]
    method = b["method"] if b["method"] == b["asked"] else f"{b['asked']} -> {b['method']}"
    lines.append(row(f"toolkit blend ({method}), submitted", b["oof"], b["submission_test"] if b["submission"] else b["test"],
                     "the submission file" if b["submission"] else "blend/test.csv (no submission written)"))
    for name, bare in res["bare"].items():
        lines.append(row(f"bare loop {name}", None, bare["test"],
                         f"{bare['backbone']}, {bare['epochs']} epoch(s) on every training image, no folds, no TTA, no augmentation, "
                         f"constant lr {bare['lr']:g}, {bare['image_size']} px, seed {bare['seed']}; held-out per epoch "
                         + ", ".join(f"{v:.4f}" for v in bare["test_per_epoch"]), no_oof="(no folds)"))
    ok = b["gain"] >= 0
    lines += [
        "",
        (f"- held-out minus OOF: the baselines' gap is the shift to unseen regions alone; the toolkit's test files average {k} fold "
        "models (and the refit) where each OOF row has one model's prediction, so part of its gap is that ensemble"),
        f"- submitted blend ({method}) OOF {b['oof']:.4f} beside its best member ({b['best_member']}) {b['best_member_oof']:.4f}: "
        f"gain {b['gain']:+.4f} (positive: better); " + ("not below its best member" if ok else "BELOW ITS BEST MEMBER"),
        f"- the blend's test.csv on the held-out split {b['test']:.4f}"
        + (f"; the submission file {b['submission_test']:.4f}" if b["submission"] else ""),
        (f"- wall time of this kind (data, baselines, the init config's run {res['toolkit_seconds']:.0f} s, "
        f"{len(res['bare'])} bare loop(s)): {res['seconds']:.0f} s"),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: small data, 1 epoch, 1 seed")
    parser.add_argument("--kinds", default=",".join([*DATA, *PHOTO_DATA]), help=f"comma-separated subset of {','.join([*DATA, *PHOTO_DATA])} "
                        "(the photo kinds logloss and columnauc need the bench extra: pip install -e \".[bench]\")")
    parser.add_argument("--out", type=Path, help="output folder (default: a new temporary folder); its data/, folds/ and runs/ are replaced")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RECIPE key (config syntax, e.g. lr=0.0003, models.0.pretrained=false); repeatable")
    parser.add_argument("--seeds", type=int, help=f"fold-0 seeds for the bare loop and the toolkit (default {SEEDS}; --quick 1)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--refit", default=REFIT, choices=("off", "alone", "with_folds"),
                        help=f"photo kinds: the config's refit mode, where this version has the key (default {REFIT})")
    parser.add_argument("--variant", dest="variants", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="compare recipe variants on fold 0 instead of the full table, e.g. "
                             "--variant 'defaults:' --variant 'no warmup:warmup_epochs=0' (repeatable)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in DATA and k not in PHOTO_DATA]
    if unknown or not kinds:
        parser.error(f"--kinds: unknown {unknown}; valid: {', '.join([*DATA, *PHOTO_DATA])}")
    if args.variants:  # recipe variants compare the RECIPE on the digit kinds' fold 0
        kinds = [k for k in kinds if k in DATA] or parser.error("--variant compares RECIPE variants on the digit kinds: "
                                                               f"{', '.join(DATA)}")
    photo_kinds = [k for k in kinds if k in PHOTO_DATA]
    if photo_kinds:
        realphotos.data_folder()  # scikit-image missing: one line naming the extra, before anything runs
    logging.basicConfig(level=logging.INFO, format="    %(levelname)s %(name)s: %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sets = [*(QUICK_SETS if args.quick else []), *args.sets]
    n_seeds = args.seeds or (1 if args.quick else SEEDS)
    sizes = QUICK_DATA if args.quick else DATA
    out = (args.out or Path(tempfile.mkdtemp(prefix="bench_quality_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "folds", "runs", "configs", "heldout", "submissions"):
        if (out / sub).exists():
            import shutil

            shutil.rmtree(out / sub)
    _say(f"command: python benchmarks/bench_quality.py {' '.join(sys.argv[1:])}")
    _say(f"out: {out}; torch threads {torch.get_num_threads()}; recipe {json.dumps(RECIPE)}; --set {sets}")
    refit, photo_sets = None, [*(PHOTO_QUICK_SETS if args.quick else []), *args.sets]
    if photo_kinds:
        refit = args.refit if refit_available() and args.refit != "off" else None
        _say(f"photo kinds: the config kaggle-planet init writes, with {' '.join(INIT_SETS)} (this machine) then --set {photo_sets}; "
             + (f"refit: {args.refit}" if refit_available() else "refit: not available in this version"))
    t0 = time.time()
    cwd = os.getcwd()
    os.chdir(out)  # the toolkit writes folds/ relative to the working directory
    reports, results = [], {}
    variants = [(v.partition(":")[0], [x for x in v.partition(":")[2].split(",") if x.strip()]) for v in args.variants]
    try:
        for kind in kinds if variants else []:
            reports.append(run_variants(kind, out, sizes[kind], sets, n_seeds, variants))
            _say("\n" + reports[-1] + "\n")
        for kind in [] if variants else kinds:
            if kind in PHOTO_DATA:
                data, res = run_photo_kind(kind, out, (PHOTO_QUICK_DATA if args.quick else PHOTO_DATA)[kind], photo_sets, refit)
                reports.append(photo_report(kind, data, res))
                results[kind] = res
            else:
                data, res = run_kind(kind, out, sizes[kind], sets, n_seeds)
                reports.append(kind_report(kind, data, res))
                results[kind] = _jsonable(res)
            _say("\n" + reports[-1] + "\n")
    finally:
        os.chdir(cwd)
    wall = time.time() - t0
    text = "\n\n".join(reports) + f"\n\ntotal wall time {wall:.0f} s ({torch.get_num_threads()} torch threads)\n"
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"wall_seconds": wall, "sets": sets, "recipe": RECIPE, "kinds": results},
                                                 indent=2, default=str))
    _say("=" * 100)
    _say(text)
    _say(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    from kaggle_planet.core.errors import KagglePlanetError

    try:
        main()
    except (KagglePlanetError, realphotos.MissingExtra) as exc:  # a bad --set or recipe value, a missing extra: one line, as the CLI does
        raise SystemExit(f"error: {exc}") from None
