"""Reproducible K-fold assignments: ``folds/<competition>_k<K>_s<seed>.csv`` with columns (id, fold).

Multi-label data uses multilabel iterative stratification (``iterstrat``), binary and multiclass data
``StratifiedKFold``; both shuffle with the given seed, so the same labels, K and seed give a
byte-identical file. Iterative stratification is greedy and, on small or strongly co-occurring label
sets, can leave a fold a few images off its share of a class; :func:`balance_folds` then repairs it
with deterministic moves/swaps so every fold holds its ideal share of every class (and of images)
within one.

A table with a group column (``table.groups``: a patient, a user) never has a group in two folds:
``StratifiedGroupKFold`` for binary / multiclass, a size-weighted greedy over the groups' label counts
for multi-label, then the same balancing moving or swapping whole groups (see :func:`assign_folds`).
:func:`suspected_groups` hints when a table without a group column looks grouped.
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


def folds_name(competition: str, data_dir: str | Path) -> str:
    """The name a folds file starts with: the competition's, and for the generic ``csv`` layout (any data set)
    ``csv-<the data folder's name>``, so that two csv data sets never share a folds file."""
    return f"csv-{Path(data_dir).resolve().name}" if competition == "csv" else competition


def fold_file_path(competition: str, k: int, seed: int, folds_dir: str | Path = "folds", data_dir: str | Path | None = None) -> Path:
    """``folds/<name>_k<K>_s<seed>.csv``; ``data_dir`` names a csv layout's data set (:func:`folds_name`)."""
    name = competition if data_dir is None else folds_name(competition, data_dir)
    return Path(folds_dir) / f"{name}_k{k}_s{seed}.csv"


MAX_SEED = 2**32 - 1  # numpy's and scikit-learn's seed range


def _class_columns(table: DatasetTable) -> tuple[list[str], np.ndarray]:
    """The classes every fold needs and their ``(N, C') int 0/1`` columns; binary: both values (``c=1``, ``c=0``)."""
    targets = table.targets
    if table.task == "binary":
        name = table.classes[0]
        return [f"{name}=1", f"{name}=0"], np.concatenate([targets, 1 - targets], axis=1)
    return list(table.classes), targets


def _sum_by_group(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """``values: (N, C)`` summed per group code (``codes: (N,)`` in 0..n_groups-1): ``(n_groups, C)`` float."""
    return np.stack([np.bincount(codes, weights=values[:, c], minlength=n_groups) for c in range(values.shape[1])], axis=1)


def _check_k(table: DatasetTable, k: int, seed: int = 0) -> None:
    if k < 2:
        raise KagglePlanetError(f"folds: k={k} is too small; expected k >= 2")
    if not 0 <= seed <= MAX_SEED:
        raise KagglePlanetError(f"folds: seed={seed} is out of range; expected an integer from 0 to {MAX_SEED}")
    names, columns = _class_columns(table)
    counts = columns.sum(axis=0)
    rarest = int(np.argmin(counts))  # the first of equals, in class order
    n = int(counts[rarest])
    if n < k:
        raise KagglePlanetError(
            f"folds: k={k} is larger than the rarest class allows: {names[rarest]!r} has {n} training image(s); "
            f"expected k <= {n} (every fold needs at least one)"
        )
    groups = table.groups
    if groups is None:
        return
    group_names, codes = np.unique(groups, return_inverse=True)
    if k > len(group_names):
        raise KagglePlanetError(
            f"folds: k={k} is larger than the number of groups allows: column {table.group_col!r} has {len(group_names)} "
            f"group(s); expected k <= {len(group_names)} (a group stays in one fold)"
        )
    in_groups = (_sum_by_group(columns, codes, len(group_names)) > 0).sum(axis=0)
    rarest = int(np.argmin(in_groups))
    n = int(in_groups[rarest])
    if n < k:
        raise KagglePlanetError(
            f"folds: k={k} is larger than the rarest class allows: {names[rarest]!r} is in {n} group(s) of column "
            f"{table.group_col!r}; expected k <= {n} (every fold needs at least one, and a group stays in one fold)"
        )


def assign_folds(table: DatasetTable, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) for each ``table.train`` row, stratified on the targets.

    ``targets: (N, C) int 0/1``. Multi-label: ``MultilabelStratifiedKFold`` (iterative stratification);
    binary / multiclass: ``StratifiedKFold`` on the class index.

    With groups (``table.groups`` not None) no group has images in two folds: binary / multiclass use
    ``StratifiedGroupKFold`` on the class index; multi-label (no library splitter) places the groups,
    largest first, each where it adds least squared deviation from every fold's ideal count of each class
    and of images (:func:`greedy_group_folds`). :func:`balance_folds` then moves or swaps whole groups
    until every fold holds its share of every class (binary: of both values) and of images within one
    image and at least one image of every class. With many small groups that is reached; with large
    groups (one holding more than a fold's share of a class, or few groups) it often cannot be: the folds
    are then as even as single group moves and swaps make them, and a warning is logged.
    """
    _check_k(table, k, seed)
    if table.groups is not None:
        return _assign_group_folds(table, table.groups, k, seed)
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


def _assign_group_folds(table: DatasetTable, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold per row with every group in one fold; see :func:`assign_folds`."""
    _, codes = np.unique(groups, return_inverse=True)
    n_groups = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=n_groups)
    names, columns = _class_columns(table)
    per_group = _sum_by_group(columns, codes, n_groups)
    if table.task == "multilabel":
        group_folds = greedy_group_folds(per_group, sizes, k, seed)
    else:
        from sklearn.model_selection import StratifiedGroupKFold

        labels = columns.argmax(axis=1)  # binary: 0 for c=1, 1 for c=0
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        group_folds = np.full(n_groups, -1, dtype=np.int64)
        for fold, (_, valid_idx) in enumerate(splitter.split(np.zeros((len(codes), 1)), labels, codes)):
            group_folds[codes[valid_idx]] = fold
    group_folds = balance_folds(per_group, group_folds, k, seed, sizes=sizes, need_one=True)
    folds = group_folds[codes]
    counts = np.stack([columns[folds == f].sum(axis=0) for f in range(k)])
    dev = np.abs(counts - columns.sum(axis=0) / k)
    f, c = np.unravel_index(int(np.argmax(dev)), dev.shape)
    if dev[f, c] > 1.0 + 1e-9:
        log.warning(
            "folds: the groups are too large to give every fold its share of every class within one image: "
            "fold %d has %d image(s) of %r, %.1f off its share", f, counts[f, c], names[c], dev[f, c]
        )
    empty = np.argwhere(counts == 0)
    if len(empty):
        log.warning("folds: fold %d has no image of %r (the groups are too large to share it out)", empty[0][0], names[empty[0][1]])
    return folds


def greedy_group_folds(per_group: np.ndarray, sizes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) per group: largest groups first (equal sizes in a seeded random order), each to the
    fold where it adds least squared deviation from the ideal counts ``total / k`` (classes and images).

    ``per_group: (G, C)`` count of each class's images in each group; ``sizes: (G,)`` images per group.
    Counts are absolute, so a rare class weighs as much per image as a common one; the small groups
    placed last fill the gaps the large ones left. Ties go to the lowest fold number.
    """
    y = np.concatenate([per_group, np.asarray(sizes, dtype=np.float64)[:, None]], axis=1)
    order = np.random.default_rng(seed).permutation(len(y))
    order = order[np.argsort(-y[order, -1], kind="stable")]
    ideal = y.sum(axis=0) / k
    counts = np.zeros((k, y.shape[1]))
    folds = np.empty(len(y), dtype=np.int64)
    for g in order:
        # sum((counts + y_g - ideal)^2) - sum((counts - ideal)^2) = 2 (counts - ideal) . y_g + |y_g|^2
        f = int(np.argmin((counts - ideal) @ y[g]))
        folds[g] = f
        counts[f] += y[g]
    return folds


def _penalty(dev: np.ndarray) -> np.ndarray:
    """Cost of deviations from the ideal counts; being more than one off costs far more."""
    excess = np.maximum(np.abs(dev) - 1.0, 0.0)
    return (dev**2).sum(axis=-1) + 100.0 * (excess**2).sum(axis=-1)


def _missing(dev: np.ndarray, ideal: np.ndarray, need: np.ndarray) -> np.ndarray:
    """How many of the ``need`` columns a fold (``dev``: its counts minus ``ideal``) holds none of."""
    return ((np.rint(dev + ideal) <= 0) & need).sum(axis=-1)


def _worst(counts: np.ndarray, ideal: np.ndarray, need: np.ndarray | None) -> np.ndarray:
    """(k, C) how far each fold's count is outside its band: within one of ideal, and at least one where needed."""
    worst = np.abs(counts - ideal) - 1.0
    if need is not None:
        worst = np.maximum(worst, np.where(need & (counts < 0.5), 1.0, -np.inf))
    return worst


def balance_folds(
    targets: np.ndarray,
    folds: np.ndarray,
    k: int,
    seed: int,
    max_steps: int = 5000,
    sizes: np.ndarray | None = None,
    need_one: bool = False,
) -> np.ndarray:
    """Move or swap images between folds until each fold's count of every class is within one of
    ``count / k`` (images per fold too), or no single move/swap improves.

    ``targets: (N, C) 0/1``; ``folds: (N,)`` in 0..k-1. Deterministic for a seed. Each step picks the
    worst (fold, class) deviation and applies the best move/swap between that fold and a fold deviating
    the other way, judged on all classes at once, so fixing one class never silently breaks another.

    Units other than images (whole groups): ``targets: (G, C)`` counts per unit and ``sizes: (G,)``
    images per unit. ``need_one``: every fold must also hold at least one image of each class (and an
    image) whose ideal share is at least one.
    """
    folds = folds.copy()
    rng = np.random.default_rng(seed)
    size_col = np.ones((len(targets), 1)) if sizes is None else np.asarray(sizes, dtype=np.float64)[:, None]
    y = np.concatenate([targets, size_col], axis=1).astype(np.float64)
    ideal = y.sum(axis=0) / k
    need = ideal >= 1.0 - 1e-9 if need_one else None
    counts = np.stack([y[folds == f].sum(axis=0) for f in range(k)])
    for _ in range(max_steps):
        worst = _worst(counts, ideal, need)
        if worst.max() <= 1e-9:
            break
        if not _improve_once(y, folds, counts, ideal, worst, rng, need):
            if sizes is None:  # groups: the caller says which class is off, by how much
                log.warning("folds: could not balance every class within one image of its ideal share")
            break
    return folds


def _improve_once(y, folds, counts, ideal, worst, rng, need=None, cap: int = 256) -> bool:
    dev = counts - ideal
    for flat in np.argsort(-worst, axis=None):
        f, c = np.unravel_index(flat, worst.shape)
        if worst[f, c] <= 1e-9:
            return False
        if need is not None and need[c] and counts[f, c] < 0.5:  # an empty fold takes from any fold holding some
            others = np.flatnonzero(counts[:, c] > 0.5)
        else:
            others = np.flatnonzero(dev[:, c] < 0) if dev[f, c] > 0 else np.flatnonzero(dev[:, c] > 0)
        for g in others[np.argsort(-np.abs(dev[others, c]))]:
            src, dst = (f, g) if dev[f, c] > 0 else (g, f)
            give = np.flatnonzero((folds == src) & (y[:, c] > 0))
            # a swap helps class c only if the unit taken back holds fewer of c (0/1 images: none)
            take = np.flatnonzero((folds == dst) & (y[:, c] < (y[give, c].max() if len(give) else 1.0)))
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
            if need is None:
                best = int(np.argmax(gain))
                if gain[best] <= 1e-9:
                    continue
            else:  # a fold holding none of a class costs more than any imbalance: compared first, exactly
                filled = _missing(dev[src], ideal, need) + _missing(dev[dst], ideal, need)
                filled = filled - (_missing(dev[src] - d, ideal, need) + _missing(dev[dst] + d, ideal, need))
                best = int(np.lexsort((-np.arange(len(gain)), gain, filled))[-1])  # the first of equals
                if filled[best] < 0 or (filled[best] == 0 and gain[best] <= 1e-9):
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
    """Fold per ``table.train`` row from an existing fold file, matched by id; the ids must be the same set,
    and with groups no group may be in two folds."""
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
    folds = by_id.loc[train_ids].to_numpy()
    if table.groups is not None:
        _check_groups_unsplit(path, table, folds)
    return folds


def _check_groups_unsplit(path: Path, table: DatasetTable, folds: np.ndarray) -> None:
    groups = table.groups
    first = pd.Series(folds).groupby(groups, sort=False).transform("first").to_numpy()
    split = np.flatnonzero(first != folds)
    if len(split):
        row = int(split[0])
        raise KagglePlanetError(
            f"{path}: group {str(groups[row])!r} of column {table.group_col!r} is in folds {first[row]} and {folds[row]}; "
            "a group must stay in one fold (the file predates the group column, or was edited): delete it to make new folds"
        )


def load_or_make_folds(table: DatasetTable, k: int, seed: int, folds_dir: str | Path = "folds") -> np.ndarray:
    """Fold per ``table.train`` row: read ``folds/<competition>_k<K>_s<seed>.csv`` or create it."""
    path = fold_file_path(table.competition, k, seed, folds_dir, table.data_dir)
    if path.exists():
        return read_folds(path, table, k)
    frame = make_folds(table, k, seed)
    write_folds(frame, path)
    log.info("wrote %s", path)
    return frame[FOLD_COL].to_numpy()


def fold_summary(table: DatasetTable, folds: np.ndarray) -> str:
    """Per-fold image counts (and group counts, with groups) and per-class positives, for the CLI."""
    k = int(folds.max()) + 1
    counts = pd.DataFrame(
        [table.targets[folds == f].sum(axis=0) for f in range(k)], columns=table.classes, index=[f"fold{f}" for f in range(k)]
    )
    counts.insert(0, "images", np.bincount(folds, minlength=k))
    if table.groups is not None:
        per_fold = pd.Series(table.groups).groupby(folds).nunique().reindex(range(k), fill_value=0)
        counts.insert(1, "groups", per_fold.to_numpy())
    return counts.T.to_string()


# a column whose name holds one of these (case-insensitive) may name each image's group; earlier words win
GROUP_WORDS = (
    "patient", "subject", "user", "person", "individual", "donor", "study", "series", "session",
    "group", "source", "hospital", "site", "location", "region", "camera",
)  # fmt: skip
_ID_PREFIX = r"^(?P<prefix>[^_.\-]+)(?P<sep>[_.\-])"


def _repeats(values: pd.Series) -> tuple[int, int] | None:
    """(distinct values, images) when ``values`` look like group names: at least two, most images (>= 50%)
    sharing theirs with another image, and at most one value per two images; else None. Empty cells do
    not count, and a column mostly empty is not a grouping."""
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if len(text) < max(len(values) / 2, 2):
        return None
    counts = text.value_counts()
    shared = int(counts[counts >= 2].sum())
    if len(counts) < 2 or len(counts) > len(text) / 2 or shared < len(text) / 2:
        return None
    return len(counts), len(text)


def _label_codes(table: DatasetTable) -> np.ndarray:
    """(N,) int code of each training row's label (multi-label: of its label set)."""
    return np.unique(table.targets, axis=0, return_inverse=True)[1].reshape(-1)


def group_hint(table: DatasetTable) -> str | None:
    """:func:`suspected_groups` for ``check`` and ``init``: None when the table has its group column; a csv layout's raw
    labels CSV is read for group-like columns the table does not keep."""
    if table.group_col is not None:
        return None
    from .competitions import get_spec
    from .layout import labels_frame

    return suspected_groups(table, labels_frame(table) if get_spec(table.competition).is_layout else None)


def suspected_groups(table: DatasetTable, frame: pd.DataFrame | None = None) -> str | None:
    """A one-line hint when a table without a group column looks grouped, else None (also when it has one).

    Looks at (a) training columns other than the id, file and class columns, in ``table.train`` and in
    ``frame`` (the raw labels CSV, whose extra columns the table drops), whose name holds a
    :data:`GROUP_WORDS` word and whose values repeat (see :func:`_repeats`); then (b) ids sharing a
    prefix before their first ``_``, ``-`` or ``.`` with the same rule. A prefix that is a label is not a
    group: prefixes that are class names (Dogs vs Cats' ``cat.0``, ``dog.1``), or no more prefixes than
    label values with each prefix holding one label, give no hint. Vectorised: cheap for 100k ids.
    """
    if table.group_col is not None:
        return None
    known = {table.id_col, "file", *table.classes}
    found: dict[str, tuple[int, tuple[int, int]]] = {}
    for source in [table.train] + ([frame] if frame is not None else []):
        for col in map(str, source.columns):
            rank = next((i for i, word in enumerate(GROUP_WORDS) if word in col.lower()), None)
            if col in known or col in found or rank is None:
                continue
            shape = _repeats(source[col])
            if shape is not None:
                found[col] = (rank, shape)
    if found:
        col, (_, (n_values, n_images)) = min(found.items(), key=lambda item: item[1][0])
        return (
            f"ids look grouped: column {col!r} has {n_values:,} values for {n_images:,} images; "
            f"set layout.group_column: {col} so that folds never split a group"
        )
    ids = table.train[table.id_col].astype(str)
    parts = ids.str.extract(_ID_PREFIX)
    shape = _repeats(parts["prefix"])
    if shape is None:
        return None
    n_prefixes, n_ids = shape
    prefixes = parts["prefix"]
    class_names = {str(c).lower() for c in table.classes}
    if prefixes.str.lower().isin(class_names).mean() >= 0.5:
        return None
    labels = pd.Series(_label_codes(table), index=ids.index)
    named = prefixes.notna()
    if n_prefixes <= labels.nunique() and (labels[named].groupby(prefixes[named]).nunique() == 1).all():
        return None
    sizes = prefixes.value_counts()
    sep = parts["sep"].dropna().value_counts().index[0]
    return (
        f"ids look grouped: {n_ids:,} of {len(ids):,} ids share {n_prefixes:,} prefixes before {str(sep)!r} "
        f"(e.g. {str(sizes.index[0])!r}: {int(sizes.iloc[0]):,} images); if a prefix names a group (a patient, a user), "
        "add a column naming it and set layout.group_column so that folds never split a group"
    )
