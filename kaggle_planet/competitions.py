"""Competition specs: how each supported competition lays out its data, scores and submits.

``COMPETITIONS`` maps a name to a :class:`CompetitionSpec`. A spec reads a data folder into a
:class:`DatasetTable` (train ids + image paths + 0/1 targets, test ids in submission order), names its
metric and formats its submission. The class vocabulary always comes from the data, sorted.
"""
from __future__ import annotations

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

from .errors import KagglePlanetError

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

    def load(self, data_dir: str | Path, options: dict[str, Any] | None = None, *, check_images: bool = True) -> DatasetTable:
        """Read ``data_dir``; raise :class:`KagglePlanetError` on the first problem found."""
        table = self.reader(Path(data_dir), self.resolve_options(options))
        if check_images:
            problems = find_image_problems(table, decode=False, limit=1)
            if problems:
                raise KagglePlanetError(problems[0])
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
    """Every cell as text (no NaN guessing); a missing or unparsable file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise KagglePlanetError(f"{path}: {what} not found (expected {expected})")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KagglePlanetError(f"{path}: not a readable CSV ({str(exc).strip()})") from None


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
    frame = frame[list(columns)].copy()
    for col in columns:
        frame[col] = frame[col].str.strip()
    return frame


def _check_ids(frame: pd.DataFrame, id_col: str, path: Path) -> None:
    empty = frame[id_col] == ""
    if empty.any():
        raise KagglePlanetError(f"{path}: line {_line(empty)}: empty {id_col}")
    dup = frame[id_col].duplicated()
    if dup.any():
        first = frame[id_col][dup].iloc[0]
        lines = [i + 2 for i in np.flatnonzero((frame[id_col] == first).to_numpy())[:2]]
        raise KagglePlanetError(f"{path}: line {lines[1]}: duplicate {id_col} {first!r} (first on line {lines[0]}); ids must be unique")


def _line(mask: pd.Series) -> int:
    """CSV line number (header is line 1) of the first True in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 2


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _index_folder(folder: Path) -> dict[str, Path]:
    """Map file stem -> path for the images directly in ``folder`` (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {
            os.path.splitext(e.name)[0]: Path(e.path)
            for e in entries
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        }


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
            f"{labels_path}: line {_line(bad)} ({row['image_name']}): {what}; expected space-separated tags such as 'clear primary'"
        )
    tag_lists = frame["tags"].str.split(" ")
    repeated = tag_lists.map(lambda tags: len(tags) != len(set(tags)))
    if repeated.any():
        raise KagglePlanetError(f"{labels_path}: line {_line(repeated)}: a tag is repeated in {frame['tags'][repeated].iloc[0]!r}")
    classes = sorted({tag for tags in tag_lists for tag in tags})
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
            f"{sample_path}: line {_line(missing)}: no image for {id_col} {sample[id_col][missing].iloc[0]!r} in {where} "
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
            f"{labels_path}: line {_line(bad)} (name {frame['name'][bad].iloc[0]}): invasive is "
            f"{frame['invasive'][bad].iloc[0]!r}; expected 0 or 1"
        )
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
        raise KagglePlanetError(f"{path}: line {_line(bad)}: name {frame['name'][bad].iloc[0]!r} is not an integer image number")


def _class_folders(root: Path) -> dict[str, list[Path]]:
    return {d.name: _list_images(d) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def _descend_duplicate(folder: Path) -> Path:
    """Kaggle's Intel scenes zip nests ``seg_train/seg_train/<class>``: step into such a twin folder."""
    inner = folder / folder.name
    others = [p for p in folder.iterdir() if p != inner and not p.name.startswith(".")] if folder.is_dir() else []
    return inner if inner.is_dir() and not others else folder


def _read_imagefolder(data_dir: Path, options: dict[str, Any]) -> DatasetTable:
    train_root = _descend_duplicate(data_dir / options["train_dir"])
    if not train_root.is_dir():
        raise KagglePlanetError(f"{train_root}: training folder not found (expected <data_dir>/{options['train_dir']}/<class>/<image>)")
    folders = _class_folders(train_root)
    if len(folders) < 2:
        raise KagglePlanetError(f"{train_root}: found {len(folders)} class folder(s); expected at least 2 (<class>/<image>)")
    empty = [name for name, files in folders.items() if not files]
    if empty:
        raise KagglePlanetError(f"{train_root / empty[0]}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    classes = sorted(folders)
    train = _imagefolder_frame(data_dir, [(c, p) for c in classes for p in folders[c]], classes)

    test = pd.DataFrame({"file": pd.Series(dtype=str)})
    labelled = False
    if options.get("test_dir"):
        test_root = _descend_duplicate(data_dir / options["test_dir"])
        if test_root.is_dir():
            test, labelled = _read_imagefolder_test(data_dir, test_root, classes)
    # the id is the image path relative to the data folder, in posix form: stable across machines
    for frame in (train, test):
        frame.insert(0, "path", [Path(f).relative_to(data_dir).as_posix() for f in frame["file"]])
    return DatasetTable("imagefolder", "multiclass", "path", classes, data_dir, train, test, None, options, labelled)


def _read_imagefolder_test(data_dir: Path, test_root: Path, classes: list[str]) -> tuple[pd.DataFrame, bool]:
    flat = _list_images(test_root)
    folders = _class_folders(test_root)
    if flat:
        return pd.DataFrame({"file": [str(p) for p in flat]}), False
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
    if not data_dir.is_dir():
        raise KagglePlanetError(f"{data_dir}: data folder not found")
    return get_spec(name).load(data_dir, options, check_images=check_images)


# -------------------------------------------------------------------------------------- checking


def _image_problem(path: str, decode: bool) -> str | None:
    if not os.path.isfile(path):
        return "not found"
    if os.path.getsize(path) == 0:
        return "empty file"
    if decode:
        import cv2  # local: keeps `import kaggle_planet.competitions` light

        data = np.fromfile(path, dtype=np.uint8)
        if cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2) is None:
            return "unreadable (not a decodable image)"
    return None


CHECK_CHUNK = 4096  # images checked per batch of thread-pool tasks


def find_image_problems(table: DatasetTable, *, decode: bool, limit: int | None = None, workers: int = 8) -> list[str]:
    """One line per listed image that is absent (or, with ``decode``, unreadable); at most ``limit``."""
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
