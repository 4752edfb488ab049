"""Model quality on real images the toolkit's generator did not make, for every task kind, in one run.

    python benchmarks/bench_quality.py                       # all kinds, default size (sized for ~15 min on 2 cores)
    python benchmarks/bench_quality.py --quick               # smoke test: small data, 1 epoch, 1 seed
    python benchmarks/bench_quality.py --kinds binary --threads 1 --out /tmp/q
    python benchmarks/bench_quality.py --set lr=0.0003 --set models.0.backbone=resnet18

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

Also printed: the bare loop's loss at step 0 (first batch, before any update), the toolkit's and the bare
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import realdata  # noqa: E402 - the benchmarks folder is not a package

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
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    x = data.images.reshape(len(data.images), -1).astype(np.float32)
    y = data.targets
    out = np.zeros(y.shape, dtype=np.float64)
    for f in np.unique(data.folds):
        tr, va = data.folds != f, data.folds == f
        scaler = StandardScaler().fit(x[tr])
        xt, xv = scaler.transform(x[tr]), scaler.transform(x[va])
        lr = LogisticRegression(C=LOGREG_C, max_iter=1000)
        if data.task == "binary":
            out[va, 0] = lr.fit(xt, y[tr, 0]).predict_proba(xv)[:, 1]
        elif data.task == "multiclass":
            out[va] = lr.fit(xt, y[tr].argmax(axis=1)).predict_proba(xv)
        else:
            out[va] = OneVsRestClassifier(lr).fit(xt, y[tr]).predict_proba(xv)
    return out


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
    import torch
    from torch import nn

    from kaggle_planet.core.metrics import score
    from kaggle_planet.recipe import models

    torch.manual_seed(seed)
    y = data.targets.astype(np.float32)
    tr, va = np.flatnonzero(data.folds != fold), np.flatnonzero(data.folds == fold)
    model = models.create_model(settings.backbone, y.shape[1], pretrained=settings.pretrained)
    prior = np.clip(y[tr].mean(axis=0), 1e-4, 1 - 1e-4)
    bias = np.log(prior) if data.task == "multiclass" else np.log(prior / (1 - prior))
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    cfg = models.model_data_config(model)
    x = to_tensor(data.images, settings.image_size, cfg["mean"], cfg["std"])
    target = torch.from_numpy(y)
    if data.task == "multiclass":
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
                run = BareRun(step0_loss=float(loss))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss) * len(idx)
            count += len(idx)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(x[va[i:i + 256]]) for i in range(0, len(va), 256)])
            run.valid_loss.append(float(loss_fn(logits, to_target(target[va]))))
            probs = act(logits).numpy().astype(np.float64)
        run.train_loss.append(total / count)
        run.valid_metric.append(score(data.metric, data.targets[va], probs))
        log.info("bare loop seed %d epoch %d: train loss %.4f valid loss %.4f %s %.4f", seed, epoch + 1,
                 run.train_loss[-1], run.valid_loss[-1], data.metric, run.valid_metric[-1])
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
        f"| logistic regression on pixels | {res['logreg'][0]:.4f} | {res['logreg'][1]:.4f} | "
        f"{data.images[0].size} standardised pixels, C={LOGREG_C:g} |",
        f"| toolkit recipe | {tk['oof']:.4f} | {tk['per_fold']['0']:.4f} | best-epoch checkpoint per fold; "
        f"per fold {', '.join(f'{v:.4f}' for v in tk['per_fold'].values())} |",
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
    out["bare"] = {s: vars(r) for s, r in res["bare"].items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke test: small data, 1 epoch, 1 seed")
    parser.add_argument("--kinds", default=",".join(DATA), help=f"comma-separated subset of {','.join(DATA)}")
    parser.add_argument("--out", type=Path, help="output folder (default: a new temporary folder); its data/, folds/ and runs/ are replaced")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RECIPE key (config syntax, e.g. lr=0.0003, models.0.pretrained=false); repeatable")
    parser.add_argument("--seeds", type=int, help=f"fold-0 seeds for the bare loop and the toolkit (default {SEEDS}; --quick 1)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--variant", dest="variants", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                        help="compare recipe variants on fold 0 instead of the full table, e.g. "
                             "--variant 'defaults:' --variant 'no warmup:warmup_epochs=0' (repeatable)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in DATA]
    if unknown or not kinds:
        parser.error(f"--kinds: unknown {unknown}; valid: {', '.join(DATA)}")
    logging.basicConfig(level=logging.INFO, format="    %(levelname)s %(name)s: %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sets = [*(QUICK_SETS if args.quick else []), *args.sets]
    n_seeds = args.seeds or (1 if args.quick else SEEDS)
    sizes = QUICK_DATA if args.quick else DATA
    out = (args.out or Path(tempfile.mkdtemp(prefix="bench_quality_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "folds", "runs"):
        if (out / sub).exists():
            import shutil

            shutil.rmtree(out / sub)
    _say(f"command: python benchmarks/bench_quality.py {' '.join(sys.argv[1:])}")
    _say(f"out: {out}; torch threads {torch.get_num_threads()}; recipe {json.dumps(RECIPE)}; --set {sets}")
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
    except KagglePlanetError as exc:  # a bad --set or recipe value: one line, as the toolkit's CLI does
        raise SystemExit(f"error: {exc}") from None
