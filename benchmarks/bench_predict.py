"""predict-image on a folder against predict's batched pass over the same images, in one run.

    python benchmarks/bench_predict.py                 # 512 images, resnet18 at 64 px, 2 folds, TTA none
    python benchmarks/bench_predict.py --images 2048 --size 128 --device cuda

A model run is trained for one epoch on generated Planet data (the numbers do not matter, the
speed does). Then, over the same folder of test images:

- ``predict``: what ``predict_run`` does for the test set: each fold model loaded once and
  ``predict_files`` over every image (the model's batch size and workers);
- ``predict-image`` on the folder: ``predict_images(run, [folder])`` (each fold model loaded once,
  batched, the same probabilities);
- ``predict-image`` one call per image, as before it took folders (a few images only: it loads
  every fold model once per image).

Prints images/s of each and the ratio of predict-image's to predict's; checks the probabilities agree.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _log(msg: str) -> None:
    print(msg, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="images in the folder (default 512)")
    p.add_argument("--size", type=int, default=64, help="image size the model is trained at (default 64)")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--single", type=int, default=8, help="images predicted one call each (default 8)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="DataLoader workers (default min(4, cores))")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    from kaggle_planet.config.schema import config_from_dict
    from kaggle_planet.data.synthetic import make_demo_data
    from kaggle_planet.pipeline import train_experiment
    from kaggle_planet.predict.images import fold_checkpoints, predict_images
    from kaggle_planet.predict.tta import load_fold_model, predict_files

    device = torch.device(args.device)
    root = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    cwd = os.getcwd()
    try:
        os.chdir(root)
        data = make_demo_data("planet", root / "data", n_train=120, n_test=args.images, size=args.size, seed=0)
        cfg = config_from_dict({
            "name": "bench", "competition": "planet", "data_dir": str(data), "folds": {"k": 2, "seed": 0},
            "image_size": args.size, "epochs": 1, "batch_size": 32, "num_workers": args.workers, "tta": "none",
            "device": args.device, "models": [{"backbone": args.backbone, "pretrained": False}],
        })
        t0 = time.perf_counter()
        [run] = train_experiment(cfg, device)
        run = root / run if not run.is_absolute() else run
        _log(f"trained {run} (1 epoch, 2 folds) in {time.perf_counter() - t0:.0f}s")
        folder = root / "images"
        folder.mkdir()
        for sub in ("test-jpg", "test-jpg-additional"):
            for f in (data / sub).iterdir():
                shutil.copy(f, folder / f.name)
        files = sorted(folder.iterdir())
        n = len(files)

        t0 = time.perf_counter()
        probs = []
        for k in fold_checkpoints(run):
            model, settings = load_fold_model(run, k, device)
            probs.append(predict_files(model, [str(f) for f in files], settings, device, "none"))
        predict_s = time.perf_counter() - t0
        reference = np.mean(probs, axis=0)

        t0 = time.perf_counter()
        result = predict_images(run, [folder], device, tta="none")
        folder_s = time.perf_counter() - t0
        order = {f.name: i for i, f in enumerate(files)}
        rows = [order[f.name] for f in result.files]
        diff = float(np.abs(result.probs - reference[rows]).max())

        singles = result.files[: args.single]
        t0 = time.perf_counter()
        for f in singles:
            predict_images(run, [f], device, tta="none")
        single_s = time.perf_counter() - t0

        _log(f"\n{n} images of {args.size} px, {args.backbone}, 2 fold models, TTA none, device {args.device}, {args.workers} workers")
        _log(f"{'how':<38} {'seconds':>8} {'images/s':>9}")
        _log(f"{'predict (batched pass, per fold)':<38} {predict_s:8.1f} {n / predict_s:9.1f}")
        _log(f"{'predict-image on the folder':<38} {folder_s:8.1f} {n / folder_s:9.1f}")
        _log(f"{'predict-image, one call per image':<38} {single_s:8.1f} {len(singles) / single_s:9.1f}  ({len(singles)} images)")
        _log(f"predict-image folder / predict: {predict_s / folder_s:.2f}x the images/s; "
             f"batched / one call per image: {(n / folder_s) / (len(singles) / single_s):.0f}x; max |diff| {diff:.1e}")
        _log(f"command: python benchmarks/bench_predict.py {' '.join(sys.argv[1:])}")
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
