"""Every blend method and every F2 decision rule side by side, at Planet's size, in one run.

    python benchmarks/bench_ensembles.py                       # 6 members, 40,479 OOF + 61,191 test rows
    python benchmarks/bench_ensembles.py --train 3000 --test 1000 --methods mean hillclimb ridge2

The members (tests/runfactory.py labels: one weather tag per image, cloudy alone, co-occurring land
tags with Planet's frequencies) share part of their error, differ in skill, and are calibrated
differently, as real backbones are: one well calibrated, one over- and one under-confident
(temperature on the logits), one biased low, one biased high, one squeezed into [0.1, 0.9]. They are
written as run folders with rows in different orders; each method is timed end to end by
``blend_runs`` (read, align, fit out of fold, write). Columns:

- ``OOF F2@0.2``: the blend's out-of-fold F2 at the fixed 0.2 threshold (the blend's own score);
- ``honest F2``: per-class thresholds fitted on K-1 folds of the blend's OOF, scored on the held-out
  fold (the number a submission with tuned thresholds should expect);
- ``vs mean``: honest F2 minus the mean blend's.

Then the decision rules (thresholds, expected F2, expected F2 after Platt scaling) on the mean
blend and on the best blend: each rule's honest F2 (fitted on K-1 folds) and the time to evaluate it.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from runfactory import noisy_probs, planet_member_runs  # noqa: E402

from kaggle_planet.core import artifacts
from kaggle_planet.core.metrics import f2_at, logit  # noqa: E402
from kaggle_planet.ensemble import decision  # noqa: E402
from kaggle_planet.ensemble.blend import BLENDERS, blend_runs  # noqa: E402
from kaggle_planet.ensemble.thresholds import heldout_f2  # noqa: E402


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# (name, skill, calibration applied to the member's roughly calibrated probabilities)
MEMBERS = [
    ("calibrated", 0.66, lambda p: p),
    ("overconfident", 0.64, lambda p: _sigmoid(2.0 * logit(p))),
    ("underconfident", 0.62, lambda p: _sigmoid(0.5 * logit(p))),
    ("biased_low", 0.60, lambda p: _sigmoid(logit(p) - 1.0)),
    ("biased_high", 0.58, lambda p: _sigmoid(logit(p) + 0.8)),
    ("squeezed", 0.56, lambda p: 0.1 + 0.8 * p),
]


def make_runs(root: Path, n_models: int, n_train: int, n_test: int, seed: int = 0) -> list[Path]:
    def member(m, y, rng, shared, weather):
        name, skill, calibration = MEMBERS[m % len(MEMBERS)]
        return f"m{m}_{name}", np.clip(calibration(noisy_probs(y, rng, skill=skill, shared=shared, exclusive=weather)), 0.0, 1.0)

    return planet_member_runs(root, n_models, n_train, n_test, member, seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=6)
    parser.add_argument("--train", type=int, default=40479)
    parser.add_argument("--test", type=int, default=61191)
    parser.add_argument("--methods", nargs="+", default=list(BLENDERS))
    args = parser.parse_args()
    methods = ["mean", *[m for m in args.methods if m != "mean"]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        dirs = make_runs(root, args.models, args.train, args.test)
        print(f"wrote {args.models} members ({args.train} OOF + {args.test} test rows x 17) in {time.perf_counter() - start:.1f} s")
        for d in dirs:
            run = artifacts.load_run(d)
            print(f"  {d.name:<18} OOF F2@0.2 {f2_at(run.y_true, run.oof_probs, 0.2):.5f}   honest F2 {heldout_f2(run.y_true, run.oof_probs, run.folds)[0]:.5f}")
        print(f"{'method':<10} {'seconds':>8} {'OOF F2@0.2':>11} {'honest F2':>10} {'vs mean':>9}")
        honest, runs = {}, {}
        for method in methods:
            start = time.perf_counter()
            try:
                scores = blend_runs(dirs, method, root / f"blend_{method}")
            except Exception as exc:  # e.g. lgbm without LightGBM: report and go on
                print(f"{method:<10} skipped: {exc}")
                continue
            seconds = time.perf_counter() - start
            runs[method] = artifacts.load_run(root / f"blend_{method}")
            run = runs[method]
            honest[method] = heldout_f2(run.y_true, run.oof_probs, run.folds)[0]
            print(f"{method:<10} {seconds:8.2f} {scores['oof']:11.5f} {honest[method]:10.5f} {honest[method] - honest['mean']:+9.5f}")
        best = max(honest, key=honest.get)
        print(f"best member OOF F2@0.2: {max(scores['members'].values()):.5f}; best blend by honest F2: {best}")
        for method in dict.fromkeys(["mean", best]):
            run = runs[method]
            start = time.perf_counter()
            result = decision.evaluate_decisions(run.y_true, run.oof_probs, run.folds)
            seconds = time.perf_counter() - start
            print(f"decision rules on the {method} blend (honest F2, fitted on K-1 folds; all rules evaluated in {seconds:.1f} s):")
            for name, rule in result["rules"].items():
                print(f"  {name:<24} {rule['honest_f2']:.5f}   ({rule['honest_f2'] - result['rules']['thresholds']['honest_f2']:+.5f} vs thresholds)")
            print(f"  auto picks {result['auto']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
