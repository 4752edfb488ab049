"""Reproducible K-fold assignments: ``folds/<competition>_k<K>_s<seed>.csv`` with columns (id, fold).

Multi-label data uses multilabel iterative stratification (``iterstrat``), binary and multiclass data
``StratifiedKFold``; both shuffle with the given seed, so the same labels, K and seed give a
byte-identical file. Iterative stratification is greedy and, on small or strongly co-occurring label
sets, can leave a fold a few images off its share of a class; :func:`balance_folds` then repairs it
with deterministic moves/swaps so every fold holds its ideal share of every class (and of images)
within one.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import artifacts
from ..core.errors import KagglePlanetError
from .competitions import DatasetTable, csv_line, read_string_csv

log = logging.getLogger(__name__)

FOLD_COL = "fold"


def fold_file_path(competition: str, k: int, seed: int, folds_dir: str | Path = "folds") -> Path:
    return Path(folds_dir) / f"{competition}_k{k}_s{seed}.csv"


MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seed range


def _check_k(table: DatasetTable, k: int, seed: int = 0) -> None:
    if k < 2:
        raise KagglePlanetError(f"folds: k={k} is too small; expected k >= 2")
    if not 0 <= seed <= MAX_SEED:
        raise KagglePlanetError(f"folds: seed={seed} is out of range; expected an integer from 0 to {MAX_SEED}")
    counts = {c: int(n) for c, n in zip(table.classes, table.targets.sum(axis=0))}
    if table.task == "binary":
        positives = counts[table.classes[0]]
        counts = {f"{table.classes[0]}=1": positives, f"{table.classes[0]}=0": len(table.train) - positives}
    rarest, n = min(counts.items(), key=lambda item: item[1])
    if n < k:
        raise KagglePlanetError(
            f"folds: k={k} is larger than the rarest class allows: {rarest!r} has {n} training image(s); "
            f"expected k <= {n} (every fold needs at least one)"
        )


def assign_folds(table: DatasetTable, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) for each ``table.train`` row, stratified on the targets.

    ``targets: (N, C) int 0/1``. Multi-label: ``MultilabelStratifiedKFold`` (iterative stratification);
    binary / multiclass: ``StratifiedKFold`` on the class index.
    """
    _check_k(table, k, seed)
    targets = table.targets
    placeholder = np.zeros((len(targets), 1))
    if table.task == "multilabel":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        splits = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(placeholder, targets)
    else:
        from sklearn.model_selection import StratifiedKFold

        labels = targets[:, 0] if table.task == "binary" else targets.argmax(axis=1)
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(placeholder, labels)
    folds = np.full(len(targets), -1, dtype=np.int64)
    for fold, (_, valid_idx) in enumerate(splits):
        folds[valid_idx] = fold
    if table.task == "multilabel":
        folds = balance_folds(targets, folds, k, seed)
    return folds


def _penalty(dev: np.ndarray) -> np.ndarray:
    """Cost of deviations from the ideal counts; being more than one off costs far more."""
    excess = np.maximum(np.abs(dev) - 1.0, 0.0)
    return (dev**2).sum(axis=-1) + 100.0 * (excess**2).sum(axis=-1)


def balance_folds(targets: np.ndarray, folds: np.ndarray, k: int, seed: int, max_steps: int = 5000) -> np.ndarray:
    """Move or swap images between folds until each fold's count of every class is within one of
    ``count / k`` (images per fold too), or no single move/swap improves.

    ``targets: (N, C) 0/1``; ``folds: (N,)`` in 0..k-1. Deterministic for a seed. Each step picks the
    worst (fold, class) deviation and applies the best move/swap between that fold and a fold deviating
    the other way, judged on all classes at once, so fixing one class never silently breaks another.
    """
    folds = folds.copy()
    rng = np.random.default_rng(seed)
    y = np.concatenate([targets, np.ones((len(targets), 1))], axis=1).astype(np.float64)
    ideal = y.sum(axis=0) / k
    counts = np.stack([y[folds == f].sum(axis=0) for f in range(k)])
    for _ in range(max_steps):
        dev = counts - ideal
        worst = np.abs(dev) - 1.0
        if worst.max() <= 1e-9:
            break
        if not _improve_once(y, folds, counts, ideal, worst, rng):
            log.warning("folds: could not balance every class within one image of its ideal share")
            break
    return folds


def _improve_once(y, folds, counts, ideal, worst, rng, cap: int = 256) -> bool:
    dev = counts - ideal
    for flat in np.argsort(-worst, axis=None):
        f, c = np.unravel_index(flat, worst.shape)
        if worst[f, c] <= 1e-9:
            return False
        others = np.flatnonzero(dev[:, c] < 0) if dev[f, c] > 0 else np.flatnonzero(dev[:, c] > 0)
        for g in others[np.argsort(-np.abs(dev[others, c]))]:
            src, dst = (f, g) if dev[f, c] > 0 else (g, f)
            give = np.flatnonzero((folds == src) & (y[:, c] > 0))
            take = np.flatnonzero((folds == dst) & (y[:, c] == 0))
            give = rng.choice(give, size=min(cap, len(give)), replace=False) if len(give) else give
            take = rng.choice(take, size=min(cap, len(take)), replace=False) if len(take) else take
            if not len(give):
                continue
            # candidate changes d moved from src to dst: single moves, then swaps
            moves = y[give]
            swaps = (y[give][:, None, :] - y[take][None, :, :]).reshape(-1, y.shape[1]) if len(take) else moves[:0]
            d = np.concatenate([moves, swaps])
            before = _penalty(dev[src]) + _penalty(dev[dst])
            gain = before - (_penalty(dev[src] - d) + _penalty(dev[dst] + d))
            best = int(np.argmax(gain))
            if gain[best] <= 1e-9:
                continue
            if best < len(moves):
                folds[give[best]] = dst
            else:
                i, j = divmod(best - len(moves), len(take))
                folds[give[i]], folds[take[j]] = dst, src
            counts[src] -= d[best]
            counts[dst] += d[best]
            return True
    return False


def make_folds(table: DatasetTable, k: int, seed: int) -> pd.DataFrame:
    """(id, fold) frame in training-label order."""
    return pd.DataFrame({table.id_col: table.train[table.id_col].to_numpy(), FOLD_COL: assign_folds(table, k, seed)})


def write_folds(frame: pd.DataFrame, path: str | Path) -> Path:
    return artifacts.write_csv(path, frame, lineterminator="\n")


def read_folds(path: str | Path, table: DatasetTable, k: int) -> np.ndarray:
    """Fold per ``table.train`` row from an existing fold file, matched by id; the ids must be the same set."""
    path = Path(path)
    frame = read_string_csv(path, "fold file", f"a CSV with columns {table.id_col},{FOLD_COL}")
    for col in (table.id_col, FOLD_COL):
        if col not in frame.columns:
            raise KagglePlanetError(f"{path}: missing column {col!r}; expected columns {table.id_col},{FOLD_COL}")
    folds = pd.to_numeric(frame[FOLD_COL], errors="coerce")
    bad = folds.isna() | ~folds.isin(range(k))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise KagglePlanetError(f"{path}: line {csv_line(frame, row)}: fold {frame[FOLD_COL].iloc[row]!r}; expected an integer 0..{k - 1}")
    by_id = pd.Series(folds.astype(int).to_numpy(), index=frame[table.id_col])
    if by_id.index.duplicated().any():
        raise KagglePlanetError(f"{path}: duplicate id {by_id.index[by_id.index.duplicated()][0]!r}")
    train_ids = table.train[table.id_col]
    missing = train_ids[~train_ids.isin(by_id.index)]
    extra = by_id.index[~by_id.index.isin(train_ids)]
    if len(missing) or len(extra):
        what = f"training id {missing.iloc[0]!r} has no fold" if len(missing) else f"id {extra[0]!r} is not a training id"
        raise KagglePlanetError(
            f"{path}: does not match the training labels ({what}); delete it to make new folds, or pick another seed"
        )
    return by_id.loc[train_ids].to_numpy()


def load_or_make_folds(table: DatasetTable, k: int, seed: int, folds_dir: str | Path = "folds") -> np.ndarray:
    """Fold per ``table.train`` row: read ``folds/<competition>_k<K>_s<seed>.csv`` or create it."""
    path = fold_file_path(table.competition, k, seed, folds_dir)
    if path.exists():
        return read_folds(path, table, k)
    frame = make_folds(table, k, seed)
    write_folds(frame, path)
    log.info("wrote %s", path)
    return frame[FOLD_COL].to_numpy()


def fold_summary(table: DatasetTable, folds: np.ndarray) -> str:
    """Per-fold image counts and per-class positives, for the CLI."""
    k = int(folds.max()) + 1
    counts = pd.DataFrame(
        [table.targets[folds == f].sum(axis=0) for f in range(k)], columns=table.classes, index=[f"fold{f}" for f in range(k)]
    )
    counts.insert(0, "images", np.bincount(folds, minlength=k))
    return counts.T.to_string()
