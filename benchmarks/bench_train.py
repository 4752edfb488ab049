"""Training benchmarks: memory vs dataset size, what bounds training speed, what pretraining buys.

    python benchmarks/bench_train.py memory      # one epoch on 2k and 8k generated images: peak memory of both
    python benchmarks/bench_train.py loader      # loader per worker vs the bare decode floor, per preset, cached or not
    python benchmarks/bench_train.py speed       # the loader table, then resnet18 @128 px: model, loader (heavy), both
    python benchmarks/bench_train.py pretrained  # tf_efficientnet_lite0 pretrained vs scratch on Planet demo data
    python benchmarks/bench_train.py all

Every figure is measured in one run, on this machine, and printed with the command that made it.
``memory`` runs each epoch in a fresh subprocess and reports (a) the largest single process's peak RSS
(``resource.getrusage(RUSAGE_CHILDREN)``) and (b) the peak of the whole process tree's PSS (main
process + DataLoader workers, sampled from /proc every 0.1 s; PSS splits shared pages fairly so forked
workers are not double-counted).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve()
WORK = Path(os.environ.get("BENCH_DIR", Path(tempfile.gettempdir()) / "kaggle_planet_bench"))


def _log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------- data


def demo_data(n_train: int, size: int, name: str | None = None) -> Path:
    """Planet-format generated data (cached under BENCH_DIR)."""
    from kaggle_planet.data.synthetic import make_demo_data

    out = WORK / (name or f"planet_{n_train}_{size}")
    if not (out / "train_v2.csv").is_file():
        t0 = time.time()
        make_demo_data("planet", out, n_train=n_train, n_test=16, size=size, seed=0)
        _log(f"  generated {n_train} images of {size} px in {time.time() - t0:.0f}s -> {out}")
    return out


# ---------------------------------------------------------------------------------------- memory


def _tree_pss_kb(pid: int) -> int:
    """PSS of ``pid`` and all its descendants, in kB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack += [int(c) for c in children]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _settings(backbone: str, lr: float = 1e-3):
    """Constant lr, no warmup: the speed of the training step, not of a recipe."""
    from kaggle_planet.config.schema import ModelSettings

    return ModelSettings(name=backbone, backbone=backbone, lr=lr, scheduler="constant", warmup_epochs=0, epochs=1, amp=False, channels_last=False)


def one_epoch(data_dir: str, image_size: int, batch_size: int, num_workers: int, backbone: str) -> dict:
    """Train ``backbone`` for one epoch over every training image of ``data_dir`` (streamed from disk)."""
    import numpy as np
    import torch

    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.loader import image_dataset, make_loader
    from kaggle_planet.recipe import models
    from kaggle_planet.recipe.engine import train_one_epoch
    from kaggle_planet.train.trainer import build_trainer

    device = torch.device("cpu")
    table = load_dataset("planet", data_dir)
    model = models.create_model(backbone, len(table.classes))
    # streamed from disk (no cache): the memory bench is about memory flat in the dataset size
    dataset = image_dataset(table.train["file"].to_numpy(), table.targets, "heavy", image_size, train=True, seed=0, cache="none")
    loader = make_loader(dataset, batch_size, train=True, device=device, num_workers=num_workers, seed=0)
    trainer = build_trainer(model, _settings(backbone), table.task, table.targets, len(loader), device, 0)
    t0 = time.time()
    out = train_one_epoch(model, loader, trainer, show_progress=False)
    seconds = time.time() - t0
    return {"images": int(len(out.indices)), "seconds": seconds, "images_per_s": len(out.indices) / seconds, "loss": out.loss,
            "finite": bool(np.isfinite(out.loss))}


def bench_memory(sizes=(2000, 8000), image_px: int = 64, image_size: int = 64, num_workers: int = 2) -> dict:
    _log(f"memory: one epoch of resnet18 @{image_size} px, heavy preset, {num_workers} workers, on {sizes} generated images")
    results = {}
    for n in sizes:
        data = demo_data(n, image_px)
        code = (f"import json,sys; sys.path.insert(0, {str(BENCH.parent)!r}); import bench_train as b; "
                f"print('RESULT', json.dumps(b.one_epoch({str(data)!r}, {image_size}, 64, {num_workers}, 'resnet18')))")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        peak_pss = 0
        while proc.poll() is None:
            peak_pss = max(peak_pss, _tree_pss_kb(proc.pid))
            time.sleep(0.1)
        out = proc.stdout.read()
        if proc.returncode != 0:
            raise SystemExit(f"epoch on {n} images failed (exit {proc.returncode})")
        result = json.loads(out.split("RESULT", 1)[1])
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result.update({"peak_rss_mb_largest_process": maxrss / 1024 if maxrss > before else float("nan"),
                       "peak_pss_mb_process_tree": peak_pss / 1024})
        results[n] = result
        _log(f"  {n:>6} images: {result['seconds']:.0f}s ({result['images_per_s']:.0f} img/s); "
             f"peak RSS largest process {result['peak_rss_mb_largest_process']:.0f} MB; "
             f"peak PSS main+workers {result['peak_pss_mb_process_tree']:.0f} MB")
    a, b = (results[n] for n in sizes)
    _log(f"  ratio {sizes[1]}/{sizes[0]} images: peak PSS x{b['peak_pss_mb_process_tree'] / a['peak_pss_mb_process_tree']:.2f}, "
         f"dataset x{sizes[1] / sizes[0]:.0f}")
    return results


# ----------------------------------------------------------------------------------------- speed


def _loader_rate(dataset, batch_size: int, workers: int, epochs: int = 1) -> float:
    """Images/s of iterating a training loader over ``dataset`` (worker start-up and the first batch excluded)."""
    import torch

    from kaggle_planet.data.loader import make_loader

    loader = make_loader(dataset, batch_size, train=True, device=torch.device("cpu"), num_workers=workers, seed=0)
    count, t0 = 0, None
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for images, _, _ in loader:
            if t0 is None:
                t0 = time.time()  # the first batch pays for worker start-up
                continue
            count += len(images)
    return count / (time.time() - t0)


def _against_floor(dataset, files, size: int, batch_size: int, epochs: int = 2) -> tuple[float, float]:
    """(loader img/s, floor img/s) over ``epochs`` of a training loader in this process (0 workers: what one
    worker does), timed batch by batch, each batch followed by the bare floor (``cv2.imread`` + ``cv2.resize``
    to ``size``) on the same batch's files, so both see the same machine state (clock, neighbours, page
    cache). The first batch is left out (it pays for start-up)."""
    import cv2
    import torch

    from kaggle_planet.data.loader import make_loader

    loader = make_loader(dataset, batch_size, train=True, device=torch.device("cpu"), num_workers=0, seed=0)
    loader_s = floor_s = 0.0
    images, first = 0, True
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        batches = iter(loader)
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            t1 = time.perf_counter()
            if batch is None:
                break
            for i in batch[2].tolist():
                cv2.resize(cv2.imread(files[i], cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
            t2 = time.perf_counter()
            if not first:
                loader_s, floor_s, images = loader_s + t1 - t0, floor_s + t2 - t1, images + len(batch[2])
            first = False
    return images / loader_s, images / floor_s


def _one_worker_against_floor(dataset, files, size: int, batch_size: int, rounds: int = 4) -> tuple[float, float]:
    """(loader img/s, floor img/s) with one real worker process (shared-memory batches to this process
    included), medians over ``rounds`` of one epoch then one floor pass over the same files. This process only
    receives while the worker decodes, so an epoch's time is the worker's; not interleaved batch by batch
    (the worker runs ahead), hence the rounds."""
    import cv2
    import numpy as np
    import torch

    from kaggle_planet.data.loader import make_loader

    loader = make_loader(dataset, batch_size, train=True, device=torch.device("cpu"), num_workers=1, seed=0)
    rates, floors = [], []
    for epoch in range(rounds):
        loader.sampler.set_epoch(epoch)
        images, t0 = 0, None
        for batch in loader:
            if t0 is None:
                t0 = time.perf_counter()  # the first batch pays for start-up
                continue
            images += len(batch[2])
        rates.append(images / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for f in files:
            cv2.resize(cv2.imread(f, cv2.IMREAD_COLOR), (size, size), interpolation=cv2.INTER_AREA)
        floors.append(len(files) / (time.perf_counter() - t0))
    return float(np.median(rates)), float(np.median(floors))


def bench_loader(image_sizes=(128, 256), image_px: int = 256, batch_size: int = 32, n_images: int = 1024) -> dict:
    """The loader in one process (= per worker) against the bare decode floor (cv2.imread + cv2.resize) on
    the same generated Planet JPEGs, interleaved batch by batch: each preset without cache (every image
    decoded), and cached epochs (after one epoch that fills the cache)."""
    import cv2

    from kaggle_planet.data import loader as kp_data
    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.loader import image_dataset

    cv2.setNumThreads(0)
    table = load_dataset("planet", demo_data(n_images, image_px))
    files = [str(f) for f in table.train["file"]]
    _log(f"loader: {len(files)} generated Planet JPEGs of {image_px} px, batch {batch_size}, 2 epochs, one process "
         f"(0 workers: the main process does what one worker does), {os.cpu_count()} cores; each batch is followed by "
         f"the bare floor (cv2.imread + cv2.resize) on its files, ratio = floor time / loader time")
    results: dict = {}
    rows = [(preset, "none") for preset in ("none", "d4", "heavy")] + [(preset, "ram") for preset in ("d4", "heavy")]
    for size in image_sizes:
        for preset, cache in rows:
            kp_data._caches.clear()
            dataset = image_dataset(files, table.targets, preset, size, train=True, seed=0, cache=cache)
            if cache != "none":
                _against_floor(dataset, files, size, batch_size, epochs=1)  # fills the cache
            rate, floor = _against_floor(dataset, files, size, batch_size)
            key = f"{preset}@{size}" + ("_cached" if cache != "none" else "")
            results[key], results[f"floor_{key}"] = rate, floor
            what = "cached base images" if cache != "none" else "decode every image"
            _log(f"  @{size} px  loader {preset:5s} ({what:18s}) {rate:7.1f} img/s   floor {floor:7.1f} img/s   {rate / floor:4.2f}x")
        for preset in ("none", "d4"):
            kp_data._caches.clear()
            dataset = image_dataset(files, table.targets, preset, size, train=True, seed=0, cache="none")
            rate, floor = _one_worker_against_floor(dataset, files, size, batch_size)
            results[f"{preset}@{size}_1worker"], results[f"floor_{preset}@{size}_1worker"] = rate, floor
            _log(f"  @{size} px  loader {preset:5s} (1 worker process)  {rate:7.1f} img/s   floor {floor:7.1f} img/s   {rate / floor:4.2f}x")
    kp_data._caches.clear()
    return results


def bench_speed(image_size: int = 128, image_px: int = 256, batch_size: int = 32, n_images: int = 512, workers=(0, 2)) -> dict:
    """resnet18 @``image_size`` on CPU: compute-only, loader-only (heavy preset), and both together."""
    import torch

    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.loader import image_dataset, make_loader
    from kaggle_planet.recipe import models
    from kaggle_planet.recipe.engine import train_one_epoch
    from kaggle_planet.train.trainer import build_trainer

    results: dict = {"loader": bench_loader(image_px=image_px, batch_size=batch_size)}
    _log(f"speed: resnet18 @{image_size} px, batch {batch_size}, {torch.get_num_threads()} torch threads, "
         f"{os.cpu_count()} cores; {n_images} generated Planet images of {image_px} px")
    data = demo_data(n_images, image_px)
    table = load_dataset("planet", data)
    device = torch.device("cpu")
    model = models.create_model("resnet18", len(table.classes))

    # 1. the model alone: random tensors, forward + backward + AdamW step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size)
    y = torch.zeros(batch_size, len(table.classes))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for step in range(8):
        if step == 2:
            t0 = time.time()
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()
    results["model_images_per_s"] = 6 * batch_size / (time.time() - t0)
    _log(f"  model only (fwd+bwd+step):       {results['model_images_per_s']:7.1f} img/s")

    # 2. the loader alone: decode + heavy augmentation + collate, every image decoded
    dataset = image_dataset(table.train["file"].to_numpy(), table.targets, "heavy", image_size, train=True, seed=0, cache="none")
    for w in workers:
        results[f"loader_images_per_s_w{w}"] = _loader_rate(dataset, batch_size, w)
        _log(f"  loader only, heavy, {w} workers:    {results[f'loader_images_per_s_w{w}']:7.1f} img/s")

    # 3. both: one real training epoch through the library's loop
    w = max(workers)
    loader = make_loader(dataset, batch_size, train=True, device=device, num_workers=w, seed=0)
    trainer = build_trainer(model, _settings("resnet18", lr=1e-4), table.task, table.targets, len(loader), device, 0)
    t0 = time.time()
    out = train_one_epoch(model, loader, trainer, show_progress=False)
    results["train_images_per_s"] = len(out.indices) / (time.time() - t0)
    _log(f"  training epoch ({w} workers):     {results['train_images_per_s']:7.1f} img/s")
    bound = "the model (compute)" if results["model_images_per_s"] < results[f"loader_images_per_s_w{w}"] else "the loader"
    _log(f"  -> training is bound by {bound}")
    results["bound_by"] = bound
    return results


# ------------------------------------------------------------------------------------ pretrained


def bench_pretrained(epochs: int = 6, image_size: int = 64, k: int = 3) -> dict:
    """OOF F2 of tf_efficientnet_lite0 with ImageNet weights vs random init, same data/folds/epochs/recipe."""
    import torch

    from kaggle_planet.config.schema import config_from_dict
    from kaggle_planet.pipeline import DEMO_DATA, train_experiment

    data = demo_data(DEMO_DATA["n_train"], DEMO_DATA["size"], name="demo-planet")
    base = {
        "name": f"pretrained_vs_scratch_e{epochs}", "competition": "planet", "data_dir": str(data), "runs_dir": str(WORK / "runs"),
        "folds": {"k": k, "seed": 42}, "image_size": image_size, "augment": "d4", "tta": "d4", "epochs": epochs,
        "batch_size": 32, "lr": 0.001, "patience": 0, "num_workers": 2,
        "models": [
            {"backbone": "tf_efficientnet_lite0", "name": "lite0_imagenet", "pretrained": True},
            {"backbone": "tf_efficientnet_lite0", "name": "lite0_scratch", "pretrained": False},
        ],
    }
    _log(f"pretrained: tf_efficientnet_lite0 @{image_size} px, {epochs} epochs, {k} folds, d4 aug + d4 TTA, on {data}")
    cwd = os.getcwd()
    os.chdir(WORK)
    try:
        t0 = time.time()
        dirs = train_experiment(config_from_dict(base), torch.device("cpu"))
    finally:
        os.chdir(cwd)
    results = {}
    for d in dirs:
        s = json.loads((WORK / d / "scores.json").read_text() if not Path(d).is_absolute() else (d / "scores.json").read_text())
        results[Path(d).name] = {"oof_f2@0.2": s["oof"], "per_fold": s["per_fold"], "f2@0.5": s["extra"]["f2@0.5"]}
        _log(f"  {Path(d).name:16s} OOF F2@0.2 {s['oof']:.4f}  F2@0.5 {s['extra']['f2@0.5']:.4f}  per fold {s['per_fold']}")
    _log(f"  ({time.time() - t0:.0f}s)")
    return results


BENCHES = {"memory": bench_memory, "loader": bench_loader, "speed": bench_speed, "pretrained": bench_pretrained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", choices=[*BENCHES, "all"])
    parser.add_argument("--epochs", type=int, default=6, help="pretrained: epochs per fold (default 6)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="    %(levelname)s %(name)s: %(message)s")
    WORK.mkdir(parents=True, exist_ok=True)
    _log(f"command: python benchmarks/bench_train.py {' '.join(sys.argv[1:])}")
    names = list(BENCHES) if args.which == "all" else [args.which]
    results = {}
    for name in names:
        kwargs = {"epochs": args.epochs} if name == "pretrained" else {}
        results[name] = BENCHES[name](**kwargs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
