"""Planet at full size: every stage that is not model compute, timed, with its peak memory.

    python benchmarks/bench_scale.py                 # 40,479 + 40,669 + 20,522 JPEGs at 256 px, then at 1/10 of that
    python benchmarks/bench_scale.py --scale 0.05    # a quick run (and 1/10 of it for the memory comparison)
    python benchmarks/bench_scale.py --workers 2 --keep /data/bench-planet

Generates a dataset in Planet's layout (``train-jpg/``, ``test-jpg/``, ``test-jpg-additional/``,
``train_v2.csv``, ``sample_submission_v2.csv``) with worker processes and cheap images (a noise tile,
the tags' motifs from ``synthetic.PLANET_MOTIFS``, ``cv2.imencode``), then runs each stage in its own
fresh child process:

- ``check`` and ``folds`` (the CLI);
- a DataLoader over the training images per augment preset at 128 and 256 px (the toolkit's
  ``image_dataset``/``make_loader``, streamed without the cache, no model), built for every training image and
  iterated for ``--loader-images`` of them (default 5,000, ``0`` for the whole pass: ten whole
  passes over 40,479 images would take most of the 20 minutes on 2 cores, and a pass's images/s and
  memory are reached long before its end);
- ``predictions``: five model runs of fake outputs of the right shape (N x 17, correlated with the
  labels) written by ``predict.write_run`` (oof.csv, test.csv, per-fold test.csv, labels, run.json);
- ``blend`` of the five runs with every method of ``blend.BLENDERS``; ``thresholds``; ``submission``;
  ``report`` of the experiment folder (the CLI).

Peak memory: a bare launcher interpreter forks each stage and ``os.wait4``s it, which returns that
stage's own rusage: ``ru_maxrss`` is the largest resident set of the stage or any descendant it reaped
(DataLoader workers), so stages never see each other's peaks (nor this process's: Linux counts the
memory a process had before ``exec`` in its peak, hence the small launcher). The process tree's summed PSS (child + workers, sampled every 0.2 s) is shown
too. Memory flatness: the same stages run at ``--scale`` and at ``--scale * --small``; the table shows
both peaks and the growth per 10,000 images. Predictions are N x 17 floats (a few MB per copy at full
size): a stage that grows by much more than that per 10k images holds images or quadratic tables.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve()
REPO = BENCH.parent.parent
FULL = {"train": 40_479, "test": 40_669, "additional": 20_522}
SIZE = 256
LOADER_SIZES = (128, 256)
MEMBERS = 5
K = 5
SEED = 42
BATCH = 64


def _log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------- generating

_TILES: dict[bool, np.ndarray] = {}


def _ground_tile(primary: bool) -> np.ndarray:
    """A noisy uint8 ground texture twice the image side, made once per worker; each image copies a window."""
    if not _TILES:
        rng = np.random.default_rng(os.getpid())
        noise = rng.normal(0, 12, size=(2 * SIZE, 2 * SIZE, 1)) + rng.normal(0, 4, size=(2 * SIZE, 2 * SIZE, 3))
        for key, base in ((True, (40, 110, 45)), (False, (120, 110, 90))):
            _TILES[key] = np.clip(noise + np.array(base), 0, 255).astype(np.uint8)
    return _TILES[primary]


def _cheap_image(tags: set[str], rng: np.random.Generator) -> np.ndarray:
    import cv2

    from kaggle_planet.data.synthetic import PLANET_MOTIFS

    y, x = (int(v) for v in rng.integers(0, SIZE, size=2))
    img = _ground_tile("primary" in tags)[y:y + SIZE, x:x + SIZE].copy()
    for tag in sorted(tags):
        if tag in PLANET_MOTIFS:
            PLANET_MOTIFS[tag](img, rng)
    if "cloudy" in tags:
        img = cv2.addWeighted(img, 0.15, np.full_like(img, 235), 0.85, 0)
    elif "haze" in tags:
        img = cv2.addWeighted(img, 0.55, np.full_like(img, 200), 0.45, 0)
    elif "partly_cloudy" in tags:
        cv2.circle(img, (x, y), SIZE // 5, (245, 245, 245), -1)
    return img


def _write_chunk(job: tuple[str, list[str], list[str], int]) -> int:
    import cv2

    cv2.setNumThreads(1)
    folder, names, tags, seed = job
    rng = np.random.default_rng(seed)
    for name, tag_text in zip(names, tags):
        ok, buf = cv2.imencode(".jpg", _cheap_image(set(tag_text.split()), rng)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        Path(folder, f"{name}.jpg").write_bytes(buf.tobytes())
    return len(names)


def generate(out: Path, scale: float, workers: int) -> dict[str, int]:
    """Planet's layout at ``scale`` of its real size, 256 px; returns the image counts."""
    import pandas as pd

    from kaggle_planet.data.synthetic import planet_labels

    counts = {k: max(20 if k == "train" else 1, int(round(n * scale))) for k, n in FULL.items()}
    rng = np.random.default_rng(0)
    train_tags = [" ".join(sorted(t)) for t in planet_labels(counts["train"], rng, min_per_tag=5)]
    test_tags = [" ".join(sorted(t)) for t in planet_labels(counts["test"] + counts["additional"], rng)]
    splits = [
        ("train-jpg", [f"train_{i}" for i in range(counts["train"])], train_tags),
        ("test-jpg", [f"test_{i}" for i in range(counts["test"])], test_tags[:counts["test"]]),
        ("test-jpg-additional", [f"file_{i}" for i in range(counts["additional"])], test_tags[counts["test"]:]),
    ]
    jobs = []
    for folder, names, tags in splits:
        (out / folder).mkdir(parents=True, exist_ok=True)
        for start in range(0, len(names), 500):
            jobs.append((str(out / folder), names[start:start + 500], tags[start:start + 500], len(jobs)))
    with ProcessPoolExecutor(workers) as pool:
        written = sum(pool.map(_write_chunk, jobs))
    pd.DataFrame({"image_name": splits[0][1], "tags": train_tags}).to_csv(out / "train_v2.csv", index=False, lineterminator="\n")
    pd.DataFrame({"image_name": splits[1][1] + splits[2][1], "tags": "primary clear"}).to_csv(
        out / "sample_submission_v2.csv", index=False, lineterminator="\n")
    assert written == sum(counts.values())
    return counts


# --------------------------------------------------------------------------- stages (child side)


def child_loader(data_dir: str, preset: str, size: int, workers: int, limit: int) -> None:
    """A training DataLoader over every training image (the dataset, sampler and shuffle are built for
    all of them), iterated for its first ``limit`` images (0: the whole pass); no model."""
    import torch

    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.loader import image_dataset, make_loader

    torch.set_num_threads(1)
    table = load_dataset("planet", data_dir, check_images=False)
    # training's own dataset (reduced-scale decode, uint8 batches); streamed (cache none): this stage is
    # about memory flat in the dataset size, and the cache holds images in RAM by design
    dataset = image_dataset(table.train["file"].tolist(), table.targets, preset, size, train=True, seed=0, cache="none")
    loader = make_loader(dataset, BATCH, train=True, device=torch.device("cpu"), num_workers=workers, seed=0)
    n = 0
    for images, _, _ in loader:
        n += len(images)
        if limit and n >= limit:
            break
    print(f"images {n}")


def _fake_probs(targets: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    logits = rng.normal(0, 1.0, targets.shape) + strength * (2 * targets - 1) - 1.5
    return 1 / (1 + np.exp(-logits))


def child_predictions(data_dir: str, config: str) -> None:
    """Five model runs of fake outputs written through ``predict.write_run`` (the toolkit's writer)."""
    from kaggle_planet.config.schema import load_config, single_model_config
    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.folds import load_or_make_folds
    from kaggle_planet.predict.tta import write_run

    cfg = load_config(config)
    table = load_dataset("planet", data_dir, check_images=False)
    folds = load_or_make_folds(table, K, SEED)
    test_y = np.zeros((len(table.test), len(table.classes)))  # the test labels are unknown: noise around a prior
    for m, model in enumerate(cfg.models):
        rng = np.random.default_rng(m)
        oof = _fake_probs(table.targets, rng, 1.0 + 0.2 * m)
        fold_tests = [_fake_probs(test_y, rng, 0.0) for _ in range(K)]
        write_run(Path(cfg.runs_dir) / cfg.name / model.name, single_model_config(cfg, model.name), table, folds, oof,
                  np.mean(fold_tests, axis=0), "none", ["bench_scale"], fold_tests)
    print(f"images {len(table.train) + len(table.test)}")


CHILDREN = {"loader": child_loader, "predictions": child_predictions}


# ---------------------------------------------------------------------------- measuring (parent)


from bench_train import _tree_pss_kb  # noqa: E402 - the sibling script (benchmarks/ is on sys.path when run)

# Linux records the pre-exec memory of a forked process in its peak RSS, so a stage forked straight
# from this (large) process would inherit our peak. A bare interpreter forks the stage instead, waits
# for it with os.wait4 (that child's own rusage, its reaped DataLoader workers included) and prints it.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execv(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run_stage(argv: list[str], cwd: Path, log_path: Path) -> tuple[float, float, float]:
    """(seconds, peak RSS MB of the stage's largest process, peak PSS MB of its whole process tree)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    maxrss = log_path.with_suffix(".maxrss")
    t0 = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(maxrss), *argv], cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
        peak_pss = [0]
        done = threading.Event()

        def sample() -> None:  # the launcher's own few MB are counted too
            while not done.wait(0.2):
                peak_pss[0] = max(peak_pss[0], _tree_pss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log_path.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"stage failed ({proc.returncode}): {' '.join(argv)}\n  " + "\n  ".join(tail))
    return seconds, int(maxrss.read_text()) / 1024, peak_pss[0] / 1024


def _config(work: Path, data_dir: Path) -> Path:
    import yaml

    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bench", "competition": "planet", "data_dir": str(data_dir), "folds": {"k": K, "seed": SEED},
        "image_size": 128, "device": "cpu", "models": [{"backbone": "resnet18", "name": f"m{i}"} for i in range(MEMBERS)],
    }))
    return path


def stages(work: Path, data_dir: Path, counts: dict[str, int], workers: int, loader_images: int) -> list[tuple[str, list[str], int]]:
    """(name, argv, images handled) of every stage, in pipeline order."""
    from kaggle_planet.data import augment
    from kaggle_planet.ensemble import blend

    cli, me = [sys.executable, "-m", "kaggle_planet.cli"], [sys.executable, str(BENCH), "--child"]
    data = ["--competition", "planet", "--data-dir", str(data_dir)]
    n_train, n_all = counts["train"], sum(counts.values())
    runs = work / "runs" / "bench"
    members = [str(runs / f"m{i}") for i in range(MEMBERS)]
    out = [("check", [*cli, "check", *data], n_all), ("folds", [*cli, "folds", *data, "--k", str(K), "--seed", str(SEED)], n_train)]
    n_loaded = min(n_train, loader_images) if loader_images else n_train
    n_loaded = -(-n_loaded // BATCH) * BATCH if n_loaded < n_train else n_train  # whole batches
    out += [(f"loader {preset} {size}px", [*me, "loader", str(data_dir), preset, str(size), str(workers), str(loader_images)], min(n_loaded, n_train))
            for size in LOADER_SIZES for preset in augment.PRESETS]
    out.append((f"predictions x{MEMBERS}", [*me, "predictions", str(data_dir), str(_config(work, data_dir))], MEMBERS * n_all))
    # the experiment holds the five models and one blend (as `kaggle-planet run` leaves it); every other
    # method blends into its own folder beside it, so the report below is that of a real experiment
    for method, blender in blend.BLENDERS.items():
        if blender.requires and not _importable(blender.requires):
            _log(f"  blend {method}: skipped ({blender.requires} not installed)")
            continue
        dest = runs / "blend" if method == "mean" else work / "runs" / "bench-blends" / method
        out.append((f"blend {method}", [*cli, "blend", *members, "--method", method, "--out", str(dest)], n_all))
    focus = str(runs / "blend")
    out += [
        ("thresholds", [*cli, "thresholds", focus], n_train),
        ("submission", [*cli, "submission", focus, "--out", str(work / "submissions" / "bench.csv")], n_all - n_train),
        ("report", [*cli, "report", str(runs), "--log", str(work / "no-log.csv")], n_all),
    ]
    return out


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def measure(scale: float, workers: int, root: Path, loader_images: int) -> tuple[dict[str, int], dict[str, tuple[float, float, float, int]]]:
    data_dir, work = root / "data", root / "work"
    if (data_dir / "train_v2.csv").is_file():
        import pandas as pd

        counts = {"train": len(pd.read_csv(data_dir / "train_v2.csv")), "test": len(list((data_dir / "test-jpg").iterdir())),
                  "additional": len(list((data_dir / "test-jpg-additional").iterdir()))}
        _log(f"scale {scale}: reusing {data_dir} ({sum(counts.values())} images)")
    else:
        t0 = time.perf_counter()
        counts = generate(data_dir, scale, workers)
        took = time.perf_counter() - t0
        _log(f"scale {scale}: generated {sum(counts.values())} images ({counts}) at {SIZE} px in {took:.0f}s "
             f"({sum(counts.values()) / took:.0f} images/s, {workers} workers) -> {data_dir}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = {}
    for name, argv, images in stages(work, data_dir, counts, workers, loader_images):
        seconds, rss, pss = run_stage(argv, work, work / f"{name.replace(' ', '_')}.log")
        results[name] = (seconds, rss, pss, images)
        _log(f"  {name:<24} {seconds:8.1f}s  peak {rss:7.0f} MB (tree PSS {pss:7.0f} MB)")
    return counts, results


def print_table(big: tuple[dict[str, int], dict], small: tuple[dict[str, int], dict] | None) -> None:
    counts, results = big
    n_big = sum(counts.values())
    header = f"{'stage':<24} {'seconds':>8} {'peak MB':>8} {'tree MB':>8} {'images/s':>9}"
    if small:
        n_small = sum(small[0].values())
        header += f" {'peak MB @' + str(n_small):>15} {'ratio':>6} {'MB/10k img':>10}"
    _log(f"\nPlanet at {n_big} images ({counts['train']} train + {counts['test']} test + {counts['additional']} additional, {SIZE} px)")
    _log(header)
    _log("-" * len(header))
    for name, (seconds, rss, pss, images) in results.items():
        line = f"{name:<24} {seconds:8.1f} {rss:8.0f} {pss:8.0f} {images / seconds:9.0f}"
        if small and name in small[1]:
            s_rss = small[1][name][1]
            growth = (rss - s_rss) / max(1, n_big - n_small) * 10_000
            line += f" {s_rss:15.0f} {rss / s_rss:6.2f} {growth:10.1f}"
        _log(line)
    _log(f"total wall time of the stages: {sum(r[0] for r in results.values()):.0f}s")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *args = sys.argv[2:]
        fn = CHILDREN[kind]
        fn(*[int(a) if a.isdigit() else a for a in args])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of Planet's real size (default 1.0)")
    p.add_argument("--small", type=float, default=0.1, help="the memory comparison runs at scale*small (default 0.1; 0 skips it)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="generation processes and DataLoader workers (default: the cores)")
    p.add_argument("--loader-images", type=int, default=5_000,
                   help="each loader pass stops after this many training images (default 5000; 0: the whole pass)")
    p.add_argument("--keep", type=Path, help="generate into (or reuse) this folder and keep it; default a temporary folder, removed")
    args = p.parse_args()
    t0 = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        big = measure(args.scale, args.workers, root / f"scale_{args.scale:g}", args.loader_images)
        # the loader's peak is reached within a few batches: the small run iterates proportionally fewer
        small_loader = max(4 * BATCH, int(args.loader_images * args.small)) if args.loader_images else 0
        small = (measure(args.scale * args.small, args.workers, root / f"scale_{args.scale * args.small:g}", small_loader)
                 if args.small > 0 else None)
        print_table(big, small)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    _log(f"total wall time (generation included): {time.perf_counter() - t0:.0f}s")
    _log(f"command: python benchmarks/bench_scale.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
