"""A blend's members: reading model (or blend) run folders into one stack, rows matched by id and checked to
share ids, classes, labels and folds (:func:`load_members`), and finding them again and checking they are
what the blend was fitted on (:func:`find_member`, :func:`check_members_current`). Torch-free.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import artifacts, fingerprints
from ..core.errors import KagglePlanetError
from ..data.competitions import get_spec

log = logging.getLogger(__name__)


@dataclass
class BlendInput:
    oof: np.ndarray  # (M, N, C) members' OOF probabilities, rows in canonical id order
    test: np.ndarray  # (M, T, C) members' test probabilities
    y_true: np.ndarray  # (N, C) int 0/1
    folds: np.ndarray  # (N,) int
    task: str  # multilabel | binary | multiclass
    metric: str = ""  # the competition's metric (a metrics.get_metric name); hillclimb and best optimise it, auto compares by it

    def rows(self, mask: np.ndarray) -> BlendInput:
        """The OOF rows selected by ``mask (N,) bool`` (test rows unchanged)."""
        return replace(self, oof=self.oof[:, mask], y_true=self.y_true[mask], folds=self.folds[mask])

    def members(self, keep: list[int]) -> BlendInput:
        """Only the members ``keep`` (indices into M)."""
        return replace(self, oof=self.oof[keep], test=self.test[keep])


def natural_key(value: str) -> tuple:
    """Sort key putting ``train_2`` before ``train_10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", value) if part)


def _canonical(ids: pd.Series) -> list[str]:
    return sorted(ids.tolist(), key=natural_key)


def _first_difference(a: set[str], b: set[str], name_a: str, name_b: str) -> str:
    only = min(a ^ b, key=natural_key)
    return f"{only!r} is in {name_a if only in a else name_b} only"


def check_compatible(ref: artifacts.Run, other: artifacts.Run) -> None:
    """Same competition, task, id column and class names, or a one-line error naming both run.json files."""
    ra, rb = ref.path / artifacts.RUN_INFO, other.path / artifacts.RUN_INFO
    for key in ("competition", "task", "id_col"):
        va, vb = getattr(ref.info, key), getattr(other.info, key)
        if va != vb:
            raise KagglePlanetError(f"{ra} and {rb}: {key} differs ({va!r} vs {vb!r})")
    if set(ref.info.classes) != set(other.info.classes):
        diff = _first_difference(set(ref.info.classes), set(other.info.classes), str(ra), str(rb))
        raise KagglePlanetError(f"{ra} and {rb}: classes differ (first difference: class {diff})")


def _positions(ref: artifacts.Run, other: artifacts.Run, name: str, ids: pd.Index, other_ids: pd.Series) -> np.ndarray:
    """Row of each canonical id in ``other``'s file; a one-line error when the id sets differ."""
    pos = pd.Index(other_ids).get_indexer(ids)  # ids are unique (checked when read)
    if (pos < 0).any() or len(other_ids) != len(ids):
        a, b = ref.path / name, other.path / name
        diff = _first_difference(set(ids), set(other_ids), str(a), str(b))
        raise KagglePlanetError(f"{a} and {b}: ids differ (first difference: {diff})")
    return pos


def _first_bad(ids: pd.Index, bad: np.ndarray) -> str:
    return min(ids[bad], key=natural_key)


def _align(ref: artifacts.Run, run: artifacts.Run, oof_ids: pd.Index, test_ids: pd.Index, ref_folds: np.ndarray, ref_y: np.ndarray):
    """``run``'s (oof (N, C), test (T, C)) in canonical row order and ``ref``'s class order.

    Checks against the reference run: the same OOF and test ids, the same fold and labels per id.
    """
    id_col, classes = ref.info.id_col, list(ref.info.classes)
    cols = [list(run.info.classes).index(c) for c in classes]
    pos = _positions(ref, run, artifacts.OOF, oof_ids, run.oof[id_col])
    test_pos = _positions(ref, run, artifacts.TEST, test_ids, run.test[id_col])
    folds = run.folds[pos]
    if ref_folds is not None and (bad := folds != ref_folds).any():
        first = _first_bad(oof_ids, bad)
        k = oof_ids.get_loc(first)
        raise KagglePlanetError(
            f"{ref.path / artifacts.OOF} and {run.path / artifacts.OOF}: folds differ (first difference: {id_col} {first!r} "
            f"is in fold {ref_folds[k]} vs {folds[k]}); blend runs made with the same folds"
        )
    y = run.y_true[pos][:, cols]
    if ref_y is not None and (bad := (y != ref_y).any(axis=1)).any():
        raise KagglePlanetError(
            f"{ref.path / artifacts.LABELS} and {run.path / artifacts.LABELS}: labels differ "
            f"(first difference: {id_col} {_first_bad(oof_ids, bad)!r})"
        )
    return run.oof_probs[pos][:, cols], run.test_probs[test_pos][:, cols], folds, y


def load_members(run_dirs: list[Path]) -> tuple[list[artifacts.RunInfo], BlendInput, list[str], list[str]]:
    """Load, check and align member runs; returns (their run.json infos, blend input, OOF ids, test ids)
    in canonical order.

    Every member must match the first one: same competition, classes, ids, folds and labels. Members
    are read one at a time into the stacked arrays, so memory holds the stack plus one member's files
    (not every member's frames at once).
    """
    if not run_dirs:
        raise KagglePlanetError("blend: no run folders given")
    ref = artifacts.load_run(run_dirs[0])
    id_col = ref.info.id_col
    oof_ids = pd.Index(_canonical(ref.oof[id_col]))
    test_ids = pd.Index(_canonical(ref.test[id_col]))
    oof0, test0, folds, y = _align(ref, ref, oof_ids, test_ids, None, None)
    oof = np.empty((len(run_dirs), *oof0.shape))
    test = np.empty((len(run_dirs), *test0.shape))
    oof[0], test[0] = oof0, test0
    infos = [ref.info]
    for i, run_dir in enumerate(run_dirs[1:], start=1):
        run = artifacts.load_run(run_dir)
        check_compatible(ref, run)
        oof[i], test[i] = _align(ref, run, oof_ids, test_ids, folds, y)[:2]
        infos.append(run.info)
        del run
    data = BlendInput(
        oof=oof,
        test=test,
        y_true=y.astype(np.int64),
        folds=folds.astype(int),
        task=ref.info.task,
        metric=get_spec(ref.info.competition, ref.info.options).metric,  # options: a csv layout names its metric
    )
    return infos, data, oof_ids.tolist(), test_ids.tolist()


def member_digests(run_dir: Path, info: artifacts.RunInfo) -> dict[str, str]:
    """The digests of a member's prediction files: those its run.json records, else computed now."""
    return dict(info.files) or fingerprints.file_digests(run_dir, artifacts.DESCRIBED_FILES)


def find_member(blend_dir: Path, member: str) -> Path | None:
    """Where a blend's member run lies now: as recorded (absolute or relative to the working directory), beside
    the blend, or inside it; None when none of these holds a run. Every reader of a blend looks it up here."""
    path = Path(member)
    for candidate in (path, Path(blend_dir).parent / path.name, Path(blend_dir) / path):
        if (candidate / artifacts.RUN_INFO).is_file():
            return candidate
    return None


def check_members_current(blend_dir: Path, info: artifacts.RunInfo) -> None:
    """Refuse applying a blend whose members' prediction files changed since it was fitted (re-predicted with
    another TTA, retrained): its state (weights, coefficients, trees) was fitted on the old ones. Members
    that cannot be found are left to whoever reads them."""
    for member, digests in info.fingerprints.get("members", {}).items():
        found = find_member(blend_dir, member)
        stale = fingerprints.stale_files(found, digests) if found is not None else []
        if stale:
            raise KagglePlanetError(
                f"{found / stale[0]}: changed since the blend {blend_dir} was fitted on it (the member was predicted or "
                f"trained again), so the blend's state is for other predictions; blend again: "
                f"{artifacts.rebuild_command(blend_dir, info)}"
            )
