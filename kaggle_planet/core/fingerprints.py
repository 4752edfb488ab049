"""What a run folder was made from: fingerprints of each stage's inputs, checked by every later stage.

A stage records digests of what it read; the next stage compares them with what is there now and, on a
mismatch, recomputes what is stale (saying so) or stops with one line naming what changed. Never old and
new mixed. The chain:

- **model folder** (``fingerprints.json``, written by ``train`` when the first fold starts): the training
  labels (ids and targets), the class list and the fold assignment (and which folds file held it). ``train``
  refuses to go on with a folder whose fold models were trained on other labels, classes or folds, before
  any fold is reused or labels.csv rewritten; so does ``predict``.
- **prediction files** (``run.json``'s ``fingerprints``): the same three, plus a digest of every fold's
  ``best.pt`` (``models``) and the TTA; ``run.json``'s ``files`` holds the sha256 of the files it describes
  (``labels.csv``, ``oof.csv``, ``test.csv``, a blend's ``blend.json``), so a folder left half rewritten (a
  stage killed between two of its files, or a file edited by hand) is refused by whoever loads it.
- **blend** (``run.json``): its members' ``files`` digests and the method.
- **thresholds.json / decision.json**: :func:`run_inputs_digest` (``oof.csv`` + ``labels.csv``) of the run
  they were fitted on and what that run was (``fitted_on``: a model's predictions or a blend and its method).

Digests are order-free (rows sorted by id) so a file rewritten in another row order is the same input.
This module uses hashlib, numpy and pandas only and imports nothing of the package but its error type.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import KagglePlanetError

FINGERPRINTS = "fingerprints.json"  # a model folder's record of what its fold models are trained on
# the keys every record of the data side holds, in the order a change is reported (the first one found)
DATA_KEYS = ("classes", "labels", "folds")


# ---------------------------------------------------------------------------------------- digests


def _sha256(*chunks: bytes) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(len(chunk).to_bytes(8, "little"))  # framed: ("ab", "c") and ("a", "bc") differ
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _by_id(ids: Sequence[str], values: np.ndarray) -> tuple[bytes, bytes]:
    ids = np.asarray(list(ids), dtype=str)
    order = np.argsort(ids, kind="stable")
    return "\n".join(ids[order].tolist()).encode("utf-8"), np.ascontiguousarray(values[order]).tobytes()


def labels_digest(ids: Sequence[str], targets: np.ndarray) -> str:
    """The training labels: every id with its 0/1 targets ``(N, C)``, whatever the row order."""
    targets = np.asarray(targets).astype(np.int64)
    shape = f"{targets.shape[0]}x{targets.shape[1] if targets.ndim > 1 else 1}".encode()
    return _sha256(shape, *_by_id(ids, targets))


def folds_digest(ids: Sequence[str], folds: np.ndarray) -> str:
    """The fold assignment: every training id with its fold, whatever the row order."""
    return _sha256(*_by_id(ids, np.asarray(folds).astype(np.int64)))


def data_fingerprints(ids: Sequence[str], targets: np.ndarray, classes: Sequence[str], folds: np.ndarray,
                      folds_file: str | Path | None = None) -> dict[str, Any]:
    """The record of the data side of a stage: classes, labels, folds (and where the folds came from)."""
    folds = np.asarray(folds)
    return {
        "classes": list(classes),
        "labels": labels_digest(ids, targets),
        "n_train": len(folds),
        "folds": folds_digest(ids, folds),
        "k": int(folds.max()) + 1 if len(folds) else 0,
        "folds_file": None if folds_file is None else str(folds_file),
    }


def run_inputs_digest(run_dir: str | Path) -> str:
    """What a fit on a run's OOF rows depends on: ``oof.csv`` and ``labels.csv`` (thresholds, decisions).
    The same digest ``decision.json`` has recorded as ``inputs_sha256`` from the start."""
    digest = hashlib.sha256()
    for name in ("oof.csv", "labels.csv"):
        digest.update((Path(run_dir) / name).read_bytes())
    return digest.hexdigest()


def file_digests(folder: str | Path, names: Sequence[str]) -> dict[str, str]:
    """``{name: sha256}`` of the files ``names`` that exist in ``folder``."""
    return {name: file_sha256(Path(folder) / name) for name in names if (Path(folder) / name).is_file()}


# ------------------------------------------------------------------------------------ comparison


def class_change(before: Sequence[str], after: Sequence[str]) -> str:
    """One phrase: how the class list ``after`` differs from ``before``."""
    before, after = list(before), list(after)
    added = [c for c in after if c not in before]
    removed = [c for c in before if c not in after]
    count = f"{len(before)} classes, the data now has {len(after)}" if len(before) != len(after) else f"{len(before)} classes"
    if len(added) == 1 and len(removed) == 1:
        return f"{count} ({removed[0]!r} renamed to {added[0]!r}, or replaced by it)"
    parts = ([f"{'tag' if len(added) == 1 else 'tags'} {', '.join(map(repr, added))} added"] if added else []) + \
            ([f"{', '.join(map(repr, removed))} removed"] if removed else [])
    return f"{count} ({'; '.join(parts) or 'the same names in another order'})"


def first_label_difference(old_ids: Sequence[str], old: np.ndarray, new_ids: Sequence[str], new: np.ndarray,
                           classes: Sequence[str], id_col: str) -> str:
    """The first id (in ``new_ids`` order) whose targets differ, or an id only one side has."""
    old_rows = {i: row for i, row in zip(old_ids, np.asarray(old))}
    new_ids = list(new_ids)
    for i, row in zip(new_ids, np.asarray(new)):
        if i not in old_rows:
            return f"{id_col} {i!r} is new"
        if (old_rows[i] != row).any():
            j = int(np.flatnonzero(old_rows[i] != row)[0])
            return f"{id_col} {i!r}: {classes[j]} {int(old_rows[i][j])} -> {int(row[j])}"
    gone = [i for i in old_ids if i not in set(new_ids)]
    return f"{id_col} {gone[0]!r} is gone" if gone else "the same targets"


def data_change(recorded: dict[str, Any], current: dict[str, Any],
                labels_detail: Callable[[], str | None] | None = None) -> str | None:
    """What differs between two :func:`data_fingerprints` records (classes first, then labels, then folds),
    as one phrase, or None when they agree. Keys a record lacks (written before them) are not compared.
    ``labels_detail()``: the first differing id, asked for only when the labels differ."""
    if recorded.get("classes") is not None and list(recorded["classes"]) != list(current["classes"]):
        return f"trained on {class_change(recorded['classes'], current['classes'])}"
    if recorded.get("labels") is not None and recorded["labels"] != current["labels"]:
        sizes = f"{recorded.get('n_train')} training images, now {current['n_train']}" \
            if recorded.get("n_train") not in (None, current["n_train"]) else None
        first = labels_detail() if labels_detail is not None else None
        detail = "; ".join(d for d in (sizes, first and f"first difference: {first}") if d)
        return "trained on other labels than the data folder holds now" + (f" ({detail})" if detail else "")
    if recorded.get("folds") is not None and recorded["folds"] != current["folds"]:
        where = current.get("folds_file") or recorded.get("folds_file") or "the folds file"
        if recorded.get("k") not in (None, current.get("k")):
            return f"trained on {recorded['k']} folds, {where} now holds {current['k']}"
        return f"trained on another fold assignment than {where} holds now (it was edited or made again)"
    return None


def read_record(folder: str | Path, name: str = FINGERPRINTS) -> dict[str, Any] | None:
    """A stage's record (``fingerprints.json``) in ``folder``, or None when there is none."""
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KagglePlanetError(f"{path}: not a readable record ({exc}); delete it and the folder's fold models, or restore it") from None
    if not isinstance(data, dict):
        raise KagglePlanetError(f"{path}: expected a JSON object of fingerprints, found {type(data).__name__}")
    return data


def stale_files(folder: str | Path, recorded: dict[str, str]) -> list[str]:
    """The files of ``recorded`` (``{name: sha256}``) whose content is not the recorded one (or that are gone)."""
    folder = Path(folder)
    return [name for name, sha in recorded.items() if not (folder / name).is_file() or file_sha256(folder / name) != sha]
