"""Competition specs: how each supported competition lays out its data, scores and submits.

``COMPETITIONS`` maps a name to a :class:`CompetitionSpec`. A spec reads a data folder into a
:class:`DatasetTable` (train ids + image paths + 0/1 targets, test ids in submission order), names its
metric and formats its submission. The class vocabulary always comes from the data, sorted.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import KagglePlanetError
from .files import image_file_problem, path_problem

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PLANET_WEATHER = ("clear", "cloudy", "haze", "partly_cloudy")
_TAGS_RE = re.compile(r"^[a-z0-9_]+( [a-z0-9_]+)*$")


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

    @property
    def spec(self) -> CompetitionSpec:
        return get_spec(self.competition)


@dataclass(frozen=True)
class CompetitionSpec:
    name: str
    task: str  # multilabel | binary | multiclass
    id_col: str
    metric: str  # key into metrics.METRICS: f2_samples | roc_auc | accuracy
    description: str
    slug: str | None  # the Kaggle competition slug, None for generic layouts
    reader: Callable[[Path, dict[str, Any]], DatasetTable]
    formatter: Callable[[Sequence[str], np.ndarray, Sequence[str], np.ndarray | None], pd.DataFrame]
    default_options: dict[str, Any] = field(default_factory=dict)
    folder_options: tuple[str, ...] = ()  # options that name a folder inside the data folder

    def load(self, data_dir: str | Path, options: dict[str, Any] | None = None, *, check_images: bool = True) -> DatasetTable:
        """Read ``data_dir``; raise :class:`KagglePlanetError` on the first problem found.

        ``check_images``: every listed image must be a regular file whose header is an image format and
        whose end is intact (a truncated JPEG lacks its end marker): reads a few bytes of each file, no decode.
        """
        data_dir = Path(data_dir)
        resolved = self.resolve_options(options)
        # a folder the user named (not a default) must exist: a typo must not silently mean "no test set"
        for key, value in resolved.items():
            if key in self.folder_options and value != self.default_options.get(key):
                folder = option_folder(data_dir, key, value)
                problem = path_problem(folder, "folder")
                if problem:
                    raise KagglePlanetError(f"{folder}: {key} {value!r} {problem}; expected a folder inside the data folder {data_dir}")
        table = self.reader(data_dir, resolved)
        if table.task == "binary":
            _check_both_labels(table)
        if check_images:
            problems = find_image_problems(table, decode=False)
            if problems:
                more = f" ({len(problems) - 1} more image problem(s); kaggle-planet check lists them all)" if len(problems) > 1 else ""
                raise KagglePlanetError(problems[0] + more)
        return table

    def resolve_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.default_options))
        if unknown:
            valid = sorted(self.default_options) or ["(none)"]
            raise KagglePlanetError(f"competition {self.name!r}: unknown option(s) {unknown}; valid: {valid}")
        return {**self.default_options, **{k: v for k, v in options.items() if v is not None}}

    def format_submission(
        self,
        ids: Sequence[str],
        probs: np.ndarray,
        classes: Sequence[str],
        thresholds: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Submission rows for ``probs: (M, C) float in [0, 1]`` (thresholds only used by multilabel)."""
        return self.formatter(ids, np.asarray(probs, dtype=np.float64), list(classes), thresholds)


# ----------------------------------------------------------------------------------------- reading


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


def _check_both_labels(table: DatasetTable) -> None:
    """A binary task needs both labels: AUC, the prior and stratified folds are undefined otherwise."""
    values = table.targets[:, 0]
    if values.min() == values.max():
        raise KagglePlanetError(
            f"{table.data_dir}: all {len(values)} training images have {table.classes[0]}={int(values[0])}; "
            f"a binary task needs images of both labels (0 and 1)"
        )


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


def _read_sample_submission(path: Path, id_col: str, target_col: str) -> pd.DataFrame:
    frame = read_csv(path, [id_col, target_col], "sample submission")
    _check_ids(frame, id_col, path)
    return frame


def _read_planet(data_dir: Path, options: dict[str, Any]) -> DatasetTable:
    labels_path = data_dir / "train_v2.csv"
    frame = read_csv(labels_path, ["image_name", "tags"], "Planet training labels")
    _check_ids(frame, "image_name", labels_path)
    bad = ~frame["tags"].str.match(_TAGS_RE)
    if bad.any():
        row = frame[bad].iloc[0]
        what = "empty tags" if row["tags"] == "" else f"tags {row['tags']!r} not in the expected format"
        raise KagglePlanetError(
            f"{labels_path}: line {_line(frame, bad)} ({row['image_name']}): {what}; expected space-separated tags such as 'clear primary'"
        )
    tag_lists = frame["tags"].str.split(" ")
    repeated = tag_lists.map(lambda tags: len(tags) != len(set(tags)))
    if repeated.any():
        raise KagglePlanetError(f"{labels_path}: line {_line(frame, repeated)}: a tag is repeated in {frame['tags'][repeated].iloc[0]!r}")
    classes = sorted({tag for tags in tag_lists for tag in tags})
    _refuse_reserved(classes, labels_path, "tag")
    _require_folder(data_dir / "train-jpg", "the folder of training images train-jpg/<image_name>.jpg")
    train = pd.DataFrame({"image_name": frame["image_name"]})
    train["file"] = [str(data_dir / "train-jpg" / f"{name}.jpg") for name in frame["image_name"]]
    hot = np.zeros((len(frame), len(classes)), dtype=np.int64)
    col = {c: j for j, c in enumerate(classes)}
    for i, tags in enumerate(tag_lists):
        hot[i, [col[t] for t in tags]] = 1
    train[classes] = hot

    sample_path = data_dir / "sample_submission_v2.csv"
    sample = _read_sample_submission(sample_path, "image_name", "tags")
    index = {**_index_folder(data_dir / "test-jpg-additional"), **_index_folder(data_dir / "test-jpg")}
    test = _locate_test_images(sample, "image_name", index, sample_path, "test-jpg/ or test-jpg-additional/")
    return DatasetTable("planet", "multilabel", "image_name", classes, data_dir, train, test, sample, options)


def _locate_test_images(sample: pd.DataFrame, id_col: str, index: dict[str, Path], sample_path: Path, where: str) -> pd.DataFrame:
    paths = sample[id_col].map(lambda name: str(index[name]) if name in index else "")
    missing = paths == ""
    if missing.any():
        raise KagglePlanetError(
            f"{sample_path}: line {_line(sample, missing)}: no image for {id_col} {sample[id_col][missing].iloc[0]!r} in {where} "
            f"({int(missing.sum())} of {len(sample)} ids have none)"
        )
    return pd.DataFrame({id_col: sample[id_col], "file": paths})


def _read_invasive(data_dir: Path, options: dict[str, Any]) -> DatasetTable:
    labels_path = data_dir / "train_labels.csv"
    frame = read_csv(labels_path, ["name", "invasive"], "Invasive Species training labels")
    _check_ids(frame, "name", labels_path)
    _check_integer_names(frame, labels_path)
    bad = ~frame["invasive"].isin(["0", "1"])
    if bad.any():
        raise KagglePlanetError(
            f"{labels_path}: line {_line(frame, bad)} (name {frame['name'][bad].iloc[0]}): invasive is "
            f"{frame['invasive'][bad].iloc[0]!r}; expected 0 or 1"
        )
    _require_folder(data_dir / "train", "the folder of training images train/<name>.jpg")
    train = pd.DataFrame({"name": frame["name"]})
    train["file"] = [str(data_dir / "train" / f"{name}.jpg") for name in frame["name"]]
    train["invasive"] = frame["invasive"].astype(np.int64)

    sample_path = data_dir / "sample_submission.csv"
    sample = _read_sample_submission(sample_path, "name", "invasive")
    _check_integer_names(sample, sample_path)
    test_dir = data_dir / "test"
    if test_dir.is_dir() and not _index_folder(test_dir):
        raise KagglePlanetError(f"{test_dir}: test folder holds no images (expected <name>.jpg files)")
    test = _locate_test_images(sample, "name", _index_folder(test_dir), sample_path, "test/")
    return DatasetTable("invasive", "binary", "name", ["invasive"], data_dir, train, test, sample, options)


def _check_integer_names(frame: pd.DataFrame, path: Path) -> None:
    bad = ~frame["name"].str.fullmatch(r"\d+")
    if bad.any():
        raise KagglePlanetError(f"{path}: line {_line(frame, bad)}: name {frame['name'][bad].iloc[0]!r} is not an integer image number")


def _class_folders(root: Path, split: str) -> dict[str, list[Path]]:
    """``<class>/<image>`` under ``root``: images directly in each class folder. Loose images beside the
    class folders and sub-folders inside a class folder are refused by name, never skipped."""
    top = list_folder(root)
    if top.images and top.folders:
        raise KagglePlanetError(
            f"{root}: {split} folder mixes {len(top.images)} loose image(s) (e.g. {top.images[0].name}) with "
            f"{len(top.folders)} class folder(s) ({', '.join(p.name for p in top.folders[:5])}); expected only <class>/<image>"
        )
    folders: dict[str, list[Path]] = {}
    ignored = list(top.ignored)
    for folder in top.folders:
        inside = list_folder(folder)
        if inside.folders:
            raise KagglePlanetError(
                f"{inside.folders[0]}: a sub-folder inside {split} class folder {folder.name!r}; expected images directly "
                f"in {folder} (move them up into it, or remove the sub-folder)"
            )
        folders[folder.name] = inside.images
        ignored += inside.ignored
    _warn_ignored(root, ignored)
    return folders


# Columns of the toolkit's own tables and files beside the class columns: the image path of a training table,
# the fold of an OOF file, the image-folder submission's label, predict-image's labels, Planet's tags, and every
# competition's id column. A class of one of these names would overwrite it (or be overwritten).
TOOLKIT_COLUMNS = ("file", "fold", "label", "labels", "tags")


def reserved_columns() -> list[str]:
    return sorted({*TOOLKIT_COLUMNS, *(spec.id_col for spec in COMPETITIONS.values())})


def _refuse_reserved(classes: Sequence[str], where: Path, what: str) -> None:
    """One line before anything is trained: a class named like one of the toolkit's own columns."""
    reserved = reserved_columns()
    clash = [c for c in classes if c in reserved]
    if clash:
        raise KagglePlanetError(f"{where}: {what} {clash[0]!r} has the name of one of the toolkit's own columns "
                                f"({', '.join(reserved)}); rename it (for example {clash[0] + '_'!r})")


def _descend_duplicate(folder: Path) -> Path:
    """Kaggle's Intel scenes zip nests ``seg_train/seg_train/<class>``: step into such a twin folder."""
    if path_problem(folder, "folder"):
        return folder
    listing = list_folder(folder)
    inner = folder / folder.name
    return inner if listing.folders == [inner] and not listing.images and not any(
        not p.name.startswith(".") for p in listing.ignored) else folder


def _read_imagefolder(data_dir: Path, options: dict[str, Any]) -> DatasetTable:
    train_root = _descend_duplicate(option_folder(data_dir, "train_dir", options["train_dir"]))
    problem = path_problem(train_root, "folder")
    if problem:
        what = "training folder not found" if problem == "not found" else f"training folder {problem}"
        raise KagglePlanetError(f"{train_root}: {what} (expected <data_dir>/{options['train_dir']}/<class>/<image>)")
    folders = _class_folders(train_root, "training")
    if len(folders) < 2:
        raise KagglePlanetError(f"{train_root}: found {len(folders)} class folder(s); expected at least 2 (<class>/<image>)")
    empty = [name for name, files in folders.items() if not files]
    if empty:
        raise KagglePlanetError(f"{train_root / empty[0]}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    classes = sorted(folders)
    _refuse_reserved(classes, train_root, "class folder")
    train = _imagefolder_frame(data_dir, [(c, p) for c in classes for p in folders[c]], classes)

    test = pd.DataFrame({"file": pd.Series(dtype=str)})
    labelled = False
    if options.get("test_dir"):
        test_root = _descend_duplicate(option_folder(data_dir, "test_dir", options["test_dir"]))
        problem = path_problem(test_root, "folder")
        if problem == "not found":
            log.warning("%s: no test folder (optional): training and OOF scores only, no submission can be made", test_root)
        elif problem:
            raise KagglePlanetError(f"{test_root}: test folder {problem}; expected a folder of images, flat or in class subfolders")
        else:
            test, labelled = _read_imagefolder_test(data_dir, test_root, classes)
    # the id is the image path relative to the data folder, in posix form: stable across machines
    for frame in (train, test):
        frame.insert(0, "path", [Path(f).relative_to(data_dir).as_posix() for f in frame["file"]])
    return DatasetTable("imagefolder", "multiclass", "path", classes, data_dir, train, test, None, options, labelled)


def _read_imagefolder_test(data_dir: Path, test_root: Path, classes: list[str]) -> tuple[pd.DataFrame, bool]:
    top = list_folder(test_root)
    if top.images and not top.folders:
        _warn_ignored(test_root, top.ignored)
        return pd.DataFrame({"file": [str(p) for p in top.images]}), False
    folders = _class_folders(test_root, "test")
    files = [(c, p) for c, ps in folders.items() for p in ps]
    if not files:
        raise KagglePlanetError(f"{test_root}: test folder holds no images (expected images, flat or in class subfolders)")
    unknown = sorted(set(c for c, _ in files) - set(classes))
    if unknown:
        raise KagglePlanetError(f"{test_root / unknown[0]}: test class {unknown[0]!r} is not a training class; expected one of {classes}")
    return _imagefolder_frame(data_dir, files, classes), True


def _imagefolder_frame(data_dir: Path, files: list[tuple[str, Path]], classes: list[str]) -> pd.DataFrame:
    files = sorted(files, key=lambda cp: cp[1].relative_to(data_dir).as_posix())
    frame = pd.DataFrame({"file": [str(p) for _, p in files]})
    hot = np.zeros((len(files), len(classes)), dtype=np.int64)
    index = {c: j for j, c in enumerate(classes)}
    hot[np.arange(len(files)), [index[c] for c, _ in files]] = 1
    frame[classes] = hot
    return frame


# ------------------------------------------------------------------------------------ submissions


def _planet_submission(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray | None) -> pd.DataFrame:
    thr = np.full(len(classes), 0.2) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    chosen = probs > thr
    # every image gets at least one tag: the most probable one when none passes its threshold
    none = ~chosen.any(axis=1)
    chosen[none, probs[none].argmax(axis=1)] = True
    names = np.asarray(classes)
    tags = [" ".join(names[row]) for row in chosen]
    return pd.DataFrame({"image_name": list(ids), "tags": tags})


def _invasive_submission(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray | None) -> pd.DataFrame:
    return pd.DataFrame({"name": list(ids), "invasive": probs[:, 0]})


def _imagefolder_submission(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray | None) -> pd.DataFrame:
    frame = pd.DataFrame({"path": list(ids), "label": np.asarray(classes)[probs.argmax(axis=1)]})
    frame[list(classes)] = probs
    return frame


COMPETITIONS: dict[str, CompetitionSpec] = {
    "planet": CompetitionSpec(
        name="planet",
        task="multilabel",
        id_col="image_name",
        metric="f2_samples",
        description="Planet: Understanding the Amazon from Space (multi-label, mean F2)",
        slug="planet-understanding-the-amazon-from-space",
        reader=_read_planet,
        formatter=_planet_submission,
    ),
    "invasive": CompetitionSpec(
        name="invasive",
        task="binary",
        id_col="name",
        metric="roc_auc",
        description="Invasive Species Monitoring (binary, ROC AUC)",
        slug="invasive-species-monitoring",
        reader=_read_invasive,
        formatter=_invasive_submission,
    ),
    "imagefolder": CompetitionSpec(
        name="imagefolder",
        task="multiclass",
        id_col="path",
        metric="accuracy",
        description="Image folders <train_dir>/<class>/*.jpg (Intel scenes, EuroSAT, fruits; accuracy + log loss)",
        slug=None,
        reader=_read_imagefolder,
        formatter=_imagefolder_submission,
        default_options={"train_dir": "seg_train", "test_dir": "seg_test"},
        folder_options=("train_dir", "test_dir"),
    ),
}


def get_spec(name: str) -> CompetitionSpec:
    try:
        return COMPETITIONS[name]
    except KeyError:
        raise KagglePlanetError(f"unknown competition {name!r}; valid: {', '.join(COMPETITIONS)}") from None


def load_dataset(name: str, data_dir: str | Path, options: dict[str, Any] | None = None, *, check_images: bool = True) -> DatasetTable:
    """Read a competition's data folder (labels, test ids, image paths); see :class:`DatasetTable`."""
    data_dir = Path(data_dir)
    problem = path_problem(data_dir, "folder")
    if problem == "not found":
        raise KagglePlanetError(f"{data_dir}: data folder not found")
    if problem:
        raise KagglePlanetError(f"{data_dir}: the data folder {problem}")
    return get_spec(name).load(data_dir, options, check_images=check_images)


# -------------------------------------------------------------------------------------- checking


def _image_problem(path: str, decode: bool) -> str | None:
    problem = image_file_problem(path)
    if problem is None and decode:
        import cv2  # local: keeps `import kaggle_planet.data.competitions` light

        data = np.fromfile(path, dtype=np.uint8)
        try:
            image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2)  # half scale: a quarter of the work
        except cv2.error:  # a side of 1 pixel has no half-scale image (OpenCV's resize asserts): decode it whole
            image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        if image is None:
            return "unreadable (not a decodable image)"
    return problem


CHECK_CHUNK = 4096  # images checked per batch of thread-pool tasks


def find_image_problems(table: DatasetTable, *, decode: bool, limit: int | None = None, workers: int = 8) -> list[str]:
    """One line per listed image that is absent, not an image file or truncated (:func:`image_file_problem`),
    or, with ``decode``, not decodable; at most ``limit``."""
    problems: list[str] = []
    for split, frame in (("train", table.train), ("test", table.test)):
        paths = frame["file"].tolist()
        ids = frame[table.id_col].tolist()
        with ThreadPoolExecutor(workers) as pool:
            # Executor.map submits every task at once: one future per image held until the end. Chunks
            # keep the pending futures (and memory) bounded whatever the dataset size.
            for start in range(0, len(paths), CHECK_CHUNK):
                chunk = slice(start, start + CHECK_CHUNK)
                results = pool.map(lambda p: _image_problem(p, decode), paths[chunk])
                for image_id, path, problem in zip(ids[chunk], paths[chunk], results):
                    if problem:
                        problems.append(f"{path}: {split} image for {table.id_col} {image_id!r} {problem}")
                        if limit is not None and len(problems) >= limit:
                            return problems
    return problems


@dataclass
class CheckReport:
    table: DatasetTable
    problems: list[str]

    def summary(self) -> str:
        t = self.table
        counts = t.train[t.classes].sum().astype(int)
        width = max(len(c) for c in t.classes)
        lines = [
            f"competition: {t.competition} ({t.spec.description})",
            f"data folder: {t.data_dir}",
            f"train images: {len(t.train)}    classes: {len(t.classes)}    test images: {len(t.test)}",
            "per-class training counts:" if t.task != "binary" else "training label counts:",
        ]
        if t.task == "binary":
            positives = int(counts.iloc[0])
            lines += [f"  {t.classes[0]}=1  {positives}", f"  {t.classes[0]}=0  {len(t.train) - positives}"]
        else:
            lines += [f"  {c:<{width}}  {n:>7}  ({n / len(t.train):6.1%})" for c, n in counts.items()]
        if t.test_labelled:
            lines.append("test folder has class subfolders: labels used only to report test accuracy")
        lines.append(f"images missing or unreadable: {len(self.problems)}")
        lines += [f"  {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more")
        return "\n".join(lines)


def check_dataset(name: str, data_dir: str | Path, options: dict[str, Any] | None = None) -> CheckReport:
    """Validate labels (raises on the first label error) and decode every image (collects problems)."""
    table = load_dataset(name, data_dir, options, check_images=False)
    return CheckReport(table, find_image_problems(table, decode=True))


def iter_competitions() -> Iterable[CompetitionSpec]:
    return COMPETITIONS.values()
