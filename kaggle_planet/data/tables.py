"""Reading a competition's files: the :class:`DatasetTable` every layout produces, CSVs of strings with
their physical line numbers (for one-line errors), and image folders listed without surprises.

Shared by the built-in readers (:mod:`kaggle_planet.data.competitions`) and the generic csv layout
(:mod:`kaggle_planet.data.layout`); numpy and pandas only.
"""
from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import KagglePlanetError
from .files import path_problem

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Columns of the toolkit's own tables and files beside the class columns: the image path of a training table,
# the fold of an OOF file, the image-folder submission's label, predict-image's labels, Planet's tags. A class of
# one of these names would overwrite it (or be overwritten).
TOOLKIT_COLUMNS = ("file", "fold", "label", "labels", "tags")


@dataclass
class DatasetTable:
    """A competition's data folder, read and validated.

    ``train``: ``id_col``, ``file`` (absolute image path) and one 0/1 int column per class (multiclass:
    one-hot). ``test``: ``id_col`` and ``file`` in submission order; image folders whose test split has
    class subfolders also carry 0/1 class columns there (``test_labelled``), used only for reporting.
    """

    competition: str
    task: str
    id_col: str
    classes: list[str]
    data_dir: Path
    train: pd.DataFrame
    test: pd.DataFrame
    sample_submission: pd.DataFrame | None = None
    options: dict[str, Any] = field(default_factory=dict)
    test_labelled: bool = False
    group_col: str | None = None  # a training column naming each image's group (patient, user): folds never split one

    @property
    def groups(self) -> np.ndarray | None:
        """(N,) str group of each ``train`` row, or None when the competition has no group column."""
        return None if self.group_col is None else self.train[self.group_col].to_numpy(dtype=str)

    def all_files(self) -> np.ndarray:
        """Every image of the dataset, training then test (one loader cache serves them all)."""
        return np.concatenate([self.train["file"].to_numpy(dtype=str), self.test["file"].to_numpy(dtype=str)])

    @property
    def targets(self) -> np.ndarray:
        """(N, C) int 0/1 training targets, rows in ``train`` order."""
        return self.train[self.classes].to_numpy(dtype=np.int64)

    @property
    def test_targets(self) -> np.ndarray | None:
        return self.test[self.classes].to_numpy(dtype=np.int64) if self.test_labelled else None


def read_string_csv(path: Path, what: str, expected: str = "a CSV file") -> pd.DataFrame:
    """Every cell as text (no NaN guessing); a missing or unparsable file is a one-line error.

    Header cells are stripped of spaces like the data cells; ``frame.attrs["lines"]`` holds each row's
    physical line number in the file (blank lines and quoted line breaks counted), see :func:`csv_line`.
    """
    path = Path(path)
    problem = path_problem(path)
    if problem == "not found":
        raise KagglePlanetError(f"{path}: {what} not found (expected {expected})")
    if problem:
        raise KagglePlanetError(f"{path}: {what} {problem} (expected {expected})")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KagglePlanetError(f"{path}: not a readable CSV ({str(exc).strip()})".replace("\n", " ")) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    twice = frame.columns[frame.columns.duplicated()]
    if len(twice):
        raise KagglePlanetError(f"{path}: line 1: column {twice[0]!r} appears twice in the header")
    lines = _record_lines(path)
    if lines is not None and len(lines) == len(frame):
        frame.attrs["lines"] = lines
    return frame


def _record_lines(path: Path) -> np.ndarray | None:
    """The physical line on which each data record of a CSV starts, skipping blank lines as pandas does
    (None when the file cannot be read as text: pandas' own error is reported instead)."""
    starts, end = [], 0
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            for row in reader:
                if row and (len(row) > 1 or row[0].strip()):
                    starts.append(end + 1)
                end = reader.line_num
    except csv.Error:
        return None
    return np.asarray(starts[1:], dtype=np.int64)  # the first record is the header


def csv_line(frame: pd.DataFrame, row: int) -> int:
    """The physical line number of ``frame``'s row ``row`` (0-based) as read by :func:`read_string_csv`;
    one past the last row for a row that is missing; row + 2 for frames not read from a file."""
    lines = frame.attrs.get("lines")
    if lines is None:
        return row + 2  # header is line 1
    return int(lines[row]) if row < len(lines) else (int(lines[-1]) + 1 if len(lines) else 2)


def read_csv(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """Read a CSV of strings and check its columns; errors name the file and what was expected."""
    frame = read_string_csv(path, what, f"a CSV with columns {','.join(columns)}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KagglePlanetError(
            f"{path}: missing column {missing[0]!r}; expected columns {','.join(columns)}, found {','.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise KagglePlanetError(f"{path}: no data rows")
    lines = frame.attrs.get("lines")
    frame = frame[list(columns)].copy()
    for col in columns:
        frame[col] = frame[col].str.strip()
    if lines is not None:
        frame.attrs["lines"] = lines
    return frame


def _check_ids(frame: pd.DataFrame, id_col: str, path: Path) -> None:
    empty = frame[id_col] == ""
    if empty.any():
        raise KagglePlanetError(f"{path}: line {_line(frame, empty)}: empty {id_col}")
    dup = frame[id_col].duplicated()
    if dup.any():
        first = frame[id_col][dup].iloc[0]
        lines = [csv_line(frame, i) for i in np.flatnonzero((frame[id_col] == first).to_numpy())[:2]]
        raise KagglePlanetError(f"{path}: line {lines[1]}: duplicate {id_col} {first!r} (first on line {lines[0]}); ids must be unique")


def _line(frame: pd.DataFrame, mask: pd.Series) -> int:
    """The file's line number of the first True in ``mask`` (a row mask of ``frame``)."""
    return csv_line(frame, int(np.flatnonzero(mask.to_numpy())[0]))


@dataclass
class FolderListing:
    """What one folder holds: images (regular files with an image extension), sub-folders, and the
    entries left out (hidden names, other files), each sorted by name."""

    images: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)


def list_folder(folder: Path) -> FolderListing:
    """List ``folder`` following symbolic links. An entry named like an image that is not an image file
    (a folder, a dangling link, a link loop, a pipe) or any other link that cannot be followed is an
    error naming it: never skipped unseen, never an OSError."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise KagglePlanetError(f"{folder}: cannot list this folder ({exc.strerror})") from None
    listing = FolderListing()
    for entry in entries:
        name, path = entry.name, Path(folder) / entry.name
        if name.startswith("."):  # .DS_Store, ._x.jpg (AppleDouble), .ipynb_checkpoints, editor locks
            listing.ignored.append(path)
            continue
        is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        problem = _entry_problem(entry, path)
        if problem is None:
            (listing.images if is_image else listing.ignored).append(path)
        elif problem == "is a folder, not a file":
            if is_image:
                raise KagglePlanetError(f"{path}: a folder named like an image; expected an image file (rename or remove it)")
            listing.folders.append(path)
        elif is_image or "link" in problem:
            raise KagglePlanetError(f"{path}: {problem}; expected {'an image file' if is_image else 'a file or folder'} (fix or remove it)")
        else:
            listing.ignored.append(path)
    return listing


def _entry_problem(entry: os.DirEntry, path: Path) -> str | None:
    """:func:`path_problem` of a listed entry; a plain file or folder is told from the listing itself
    (no system call per file: the Planet test folders hold 61k images)."""
    try:
        if not entry.is_symlink():
            if entry.is_file(follow_symlinks=False):
                return None
            if entry.is_dir(follow_symlinks=False):
                return "is a folder, not a file"
    except OSError:
        pass
    return path_problem(path, "file")


def _warn_ignored(where: Path, ignored: list[Path]) -> None:
    if ignored:
        examples = ", ".join(p.relative_to(where).as_posix() for p in ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        log.warning("%s: ignored %d entr%s that are not images (%s): %s", where, len(ignored), "y" if len(ignored) == 1 else "ies",
                    ", ".join(IMAGE_EXTENSIONS), examples)


def _index_folder(folder: Path) -> dict[str, Path]:
    """Map file stem -> path for the images directly in ``folder`` (empty when it does not exist)."""
    problem = path_problem(folder, "folder")
    if problem == "not found":
        return {}
    if problem:
        raise KagglePlanetError(f"{folder}: {problem}; expected a folder of images")
    index: dict[str, Path] = {}
    for path in sorted(list_folder(folder).images):
        if path.stem in index:  # test_3.jpg and test_3.png: which one is the id's image is not ours to guess
            raise KagglePlanetError(f"{folder}: two images for one id {path.stem!r}: {index[path.stem].name} and {path.name}; keep one")
        index[path.stem] = path
    return index


def _require_folder(folder: Path, expected: str) -> None:
    problem = path_problem(folder, "folder")
    if problem:
        raise KagglePlanetError(f"{folder}: {problem}; expected {expected}")


def option_folder(data_dir: Path, key: str, value: str) -> Path:
    """``data_dir / value`` for a folder option; an absolute path is accepted when it lies inside the data
    folder (image ids are paths relative to it), anything outside it is refused naming ``key``."""
    path = Path(value)
    if path.is_absolute():
        for base, target in ((lambda: data_dir, lambda: path), (lambda: data_dir.resolve(), lambda: path.resolve())):
            try:
                return data_dir / target().relative_to(base())
            except (ValueError, OSError, RuntimeError):  # RuntimeError: resolve() met a link loop
                continue
    elif os.path.normpath(value).split(os.sep)[0] != "..":
        return data_dir / path
    raise KagglePlanetError(
        f"{key} {value!r}: lies outside the data folder {data_dir}; expected a folder inside it "
        f"(a relative name such as seg_train, or an absolute path under the data folder)"
    )



def multi_hot(label_lists: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """(N, C) int 0/1: row i holds a 1 in the column of each of ``label_lists[i]`` (every name one of ``classes``)."""
    index = {c: j for j, c in enumerate(classes)}
    hot = np.zeros((len(label_lists), len(classes)), dtype=np.int64)
    for i, names in enumerate(label_lists):
        hot[i, [index[n] for n in names]] = 1
    return hot


def refuse_reserved(classes: Sequence[str], where: Path, what: str, reserved: Sequence[str]) -> None:
    """One line before anything is trained: a class named like one of the toolkit's own columns (``reserved``)."""
    reserved = sorted(set(reserved))
    clash = [c for c in classes if c in reserved]
    if clash:
        raise KagglePlanetError(f"{where}: {what} {clash[0]!r} has the name of one of the toolkit's own columns "
                                f"({', '.join(reserved)}); rename it (for example {clash[0] + '_'!r})")
