"""Blending at Planet's size: 10 model runs x 61,191 test rows x 17 classes (+ 40,479 OOF rows).

    python benchmarks/bench_blend.py                 # all methods
    python benchmarks/bench_blend.py --models 5 --methods mean ridge

Writes 10 synthetic run folders (tests/runfactory.py: Planet-like labels, models sharing part of
their error) to a temporary folder, then times ``blend_runs`` end to end for each method (read and
check 30 CSVs, align by id, blend, score, write the blend run folder). The baseline measured in the
same run is the floor any file-based blend pays: ``pandas.read_csv`` of the same 30 files.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runfactory import planet_member_runs  # noqa: E402

from kaggle_planet.ensemble.blend import BLENDERS, blend_runs  # noqa: E402


def make_runs(root: Path, n_models: int, n_train: int, n_test: int, seed: int = 0) -> list[Path]:
    return planet_member_runs(root, n_models, n_train, n_test, seed=seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--train", type=int, default=40479)
    parser.add_argument("--test", type=int, default=61191)
    parser.add_argument("--methods", nargs="+", default=list(BLENDERS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        dirs = make_runs(root, args.models, args.train, args.test)
        print(f"wrote {args.models} runs ({args.train} OOF + {args.test} test rows x 17) in {time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        for d in dirs:
            for name in ("oof.csv", "test.csv", "labels.csv"):
                pd.read_csv(d / name)
        floor = time.perf_counter() - start
        print(f"baseline: pandas.read_csv of the {3 * len(dirs)} input files   {floor:6.2f} s")
        print(f"{'method':<10} {'seconds':>8} {'x read floor':>13} {'OOF F2@0.2':>11} {'gain':>9}")
        for method in args.methods:
            needs = BLENDERS[method].requires
            if needs and importlib.util.find_spec(needs) is None:
                print(f"{method:<10} skipped: needs {needs}, not installed here")
                continue
            start = time.perf_counter()
            scores = blend_runs(dirs, method, root / f"blend_{method}")
            seconds = time.perf_counter() - start
            print(f"{method:<10} {seconds:8.2f} {seconds / floor:13.2f} {scores['oof']:11.5f} {scores['gain_over_best']:+9.5f}")
        print(f"best member OOF F2@0.2: {max(scores['members'].values()):.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
