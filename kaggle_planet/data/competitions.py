"""Competition specs: how each supported competition lays out its data, scores and submits.

``COMPETITIONS`` maps a name to a :class:`CompetitionSpec`. A spec reads a data folder into a
:class:`DatasetTable` (train ids + image paths + 0/1 targets, test ids in submission order), names its
metric and formats its submission. The class vocabulary always comes from the data, sorted.
"""
from __future__ import annotations

import logging
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
from .layout import LAYOUT_KEYS, check_labels, check_probabilities, check_tags, read_layout, top_tag_when_none
from .tables import (  # noqa: F401 - re-exported: the readers' helpers are part of this module's face
    IMAGE_EXTENSIONS,
    TOOLKIT_COLUMNS,
    DatasetTable,
    FolderListing,
    _check_ids,
    _index_folder,
    _line,
    _require_folder,
    _warn_ignored,
    csv_line,
    list_folder,
    multi_hot,
    option_folder,
    read_csv,
    read_string_csv,
    refuse_reserved,
)

log = logging.getLogger(__name__)

PLANET_WEATHER = ("clear", "cloudy", "haze", "partly_cloudy")
_TAGS_RE = re.compile(r"^[a-z0-9_]+( [a-z0-9_]+)*$")


@dataclass(frozen=True)
class CompetitionSpec:
    name: str
    task: str  # multilabel | binary | multiclass
    id_col: str
    metric: str  # key into metrics.METRICS: f2_samples | roc_auc | accuracy
    description: str
    slug: str | None  # the Kaggle competition slug, None for generic layouts
    reader: Callable[[Path, dict[str, Any]], DatasetTable]
    # (ids, probs (M, C), classes, thresholds or None, the expected header or None) -> the submission frame
    formatter: Callable[..., pd.DataFrame]
    # (submission frame, table, source) -> None: the values checked (ids and columns are checked for every competition)
    validator: Callable[[pd.DataFrame, DatasetTable, str], None]
    default_options: dict[str, Any] = field(default_factory=dict)
    folder_options: tuple[str, ...] = ()  # options that name a folder inside the data folder
    layout: dict[str, Any] | None = None  # csv-layout entries: their layout keys (the user's layout: block is laid over them)
    facts: str = ""  # what the docs' preset table says about the competition

    @property
    def is_layout(self) -> bool:
        """Read by the generic csv layout (:mod:`kaggle_planet.data.layout`) from layout keys."""
        return self.layout is not None

    def with_options(self, options: dict[str, Any] | None) -> CompetitionSpec:
        """This entry completed by ``options``: a csv-layout entry takes its task, id column, metric and
        submission format from its layout keys laid over by ``options``; other entries are returned as they are."""
        if self.layout is None:
            return self
        from dataclasses import replace
        from functools import partial

        from .layout import check_layout_submission, format_layout_submission, resolve_layout

        resolved = resolve_layout(self.resolve_options(options))
        return replace(self, task=resolved.task, id_col=resolved.id_column, metric=resolved.metric,
                       formatter=partial(format_layout_submission, resolved),
                       validator=partial(check_layout_submission, resolved))

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
            what = "layout key(s)" if self.layout is not None else "option(s)"
            raise KagglePlanetError(f"competition {self.name!r}: unknown {what} {unknown}; valid: {valid}")
        if self.layout is not None:  # a layout key set to none means "none" (labels: none), not "the default"
            return {**self.default_options, **options}
        return {**self.default_options, **{k: v for k, v in options.items() if v is not None}}

    def format_submission(
        self,
        ids: Sequence[str],
        probs: np.ndarray,
        classes: Sequence[str],
        thresholds: np.ndarray | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Submission rows for ``probs: (M, C) float in [0, 1]`` (thresholds only used by multilabel); ``columns``:
        the header the submission must have (the sample submission's), for entries whose format follows it."""
        return self.formatter(ids, np.asarray(probs, dtype=np.float64), list(classes), thresholds, columns)

    def submission_columns(self, table: DatasetTable) -> list[str]:
        """The header a submission for ``table`` has: the sample submission's, else the entry's own format."""
        if table.sample_submission is not None:
            return [str(c) for c in table.sample_submission.columns]
        empty = self.format_submission([], np.zeros((0, len(table.classes))), table.classes)
        return [str(c) for c in empty.columns]


def _check_both_labels(table: DatasetTable) -> None:
    """A binary task needs both labels: AUC, the prior and stratified folds are undefined otherwise."""
    values = table.targets[:, 0]
    if values.min() == values.max():
        raise KagglePlanetError(
            f"{table.data_dir}: all {len(values)} training images have {table.classes[0]}={int(values[0])}; "
            f"a binary task needs images of both labels (0 and 1)"
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
    train[classes] = multi_hot(tag_lists.tolist(), classes)

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




def reserved_columns() -> list[str]:
    """:data:`TOOLKIT_COLUMNS` and every built-in competition's id column (a csv layout refuses its own id and group columns)."""
    return sorted({*TOOLKIT_COLUMNS, *(spec.id_col for spec in COMPETITIONS.values() if not spec.is_layout)})


def _refuse_reserved(classes: Sequence[str], where: Path, what: str) -> None:
    """One line before anything is trained: a class named like one of the toolkit's own columns."""
    refuse_reserved(classes, where, what, reserved_columns())


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


def _planet_submission(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray | None,
                       columns: Sequence[str] | None = None) -> pd.DataFrame:
    thr = np.full(len(classes), 0.2) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    chosen = top_tag_when_none(probs, probs > thr)  # every image gets at least one tag
    names = np.asarray(classes)
    tags = [" ".join(names[row]) for row in chosen]
    return pd.DataFrame({"image_name": list(ids), "tags": tags})


def _invasive_submission(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray | None,
                         columns: Sequence[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"name": list(ids), "invasive": probs[:, 0]})


def _imagefolder_submission(ids: Sequence[str], probs: np.ndarray, classes: Sequence[str], thresholds: np.ndarray | None,
                            columns: Sequence[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"path": list(ids), "label": np.asarray(classes)[probs.argmax(axis=1)]})
    frame[list(classes)] = probs
    return frame


def _check_planet(frame: pd.DataFrame, table: DatasetTable, source: str) -> None:
    check_tags(frame, "tags", table.classes, source)


def _check_invasive(frame: pd.DataFrame, table: DatasetTable, source: str) -> None:
    check_probabilities(frame, ["invasive"], source)


def _check_imagefolder(frame: pd.DataFrame, table: DatasetTable, source: str) -> None:
    check_labels(frame, "label", table.classes, source)
    check_probabilities(frame, table.classes, source)


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
        validator=_check_planet,
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
        validator=_check_invasive,
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
        validator=_check_imagefolder,
        default_options={"train_dir": "seg_train", "test_dir": "seg_test"},
        folder_options=("train_dir", "test_dir"),
    ),
}


def _layout_entry(name: str, description: str, slug: str | None, layout: dict[str, Any], facts: str = "") -> CompetitionSpec:
    """A row read by the generic csv layout: ``layout`` fills in the keys (the rest keep the layout defaults;
    a config's ``layout:`` block can set any of them). Task, metric and id column come from the keys."""
    keys = {key: entry.default for key, entry in LAYOUT_KEYS.items()}
    keys.update(layout)
    spec = CompetitionSpec(name=name, task="", id_col="", metric="", description=description, slug=slug,
                           reader=lambda data_dir, options: read_layout(name, data_dir, options),
                           formatter=_layout_formatter_unset, validator=_layout_formatter_unset,
                           default_options=keys, layout=dict(layout), facts=facts)
    return spec.with_options(None)


def _layout_formatter_unset(*args: Any, **kwargs: Any) -> Any:  # replaced by with_options; never called
    raise AssertionError("a csv-layout entry's formatter is set by CompetitionSpec.with_options")


# Named presets: real competitions as rows of the same table, on the csv layout's machinery. Their facts
# come from ../shared/COMPETITIONS.md; where a detail is uncertain it stays a layout key the user can set.
PRESETS: tuple[CompetitionSpec, ...] = (
    _layout_entry(
        "csv", "any image competition shaped as a labels CSV + image folder + sample submission (set the layout: block)", None, {},
        "the generic layout: every key of the layout table applies"),
    _layout_entry(
        "cassava-leaf-disease-classification", "Cassava Leaf Disease Classification (5 classes, accuracy; code competition)",
        "cassava-leaf-disease-classification",
        {"id_column": "image_id", "label_column": "label", "train_images": "train_images", "test_images": "test_images",
         "file_pattern": "{id}", "task": "multiclass", "metric": "accuracy"},
        "train.csv image_id,label (0-4; ids carry .jpg), train_images/, test_images/; submission image_id,label"),
    _layout_entry(
        "plant-pathology-2020-fgvc7", "Plant Pathology 2020 FGVC7 (4 one-hot classes, mean column-wise ROC AUC)",
        "plant-pathology-2020-fgvc7",
        {"id_column": "image_id", "target": "columns", "target_columns": ["healthy", "multiple_diseases", "rust", "scab"],
         "train_images": "images", "test_images": "images", "file_pattern": "{id}.jpg", "task": "multiclass", "metric": "mean_column_auc"},
        "train.csv image_id + healthy,multiple_diseases,rust,scab (one-hot), images/Train_<i>.jpg and images/Test_<i>.jpg; "
        "submission image_id + the four probabilities"),
    _layout_entry(
        "plant-pathology-2021-fgvc8", "Plant Pathology 2021 FGVC8 (multi-label, mean F1; code competition)",
        "plant-pathology-2021-fgvc8",
        {"id_column": "image", "target": "tags", "label_column": "labels", "train_images": "train_images", "test_images": "test_images",
         "file_pattern": "{id}", "metric": "f1_samples"},
        "train.csv image,labels (space-separated, e.g. scab frog_eye_leaf_spot; ids carry .jpg); submission image,labels; "
        "the averaging of the F1 is not certain: layout.metric (f1_samples) can be set to f1_micro or f1_macro"),
    _layout_entry(
        "dog-breed-identification", "Dog Breed Identification (120 breeds, multi-class log loss)", "dog-breed-identification",
        {"labels": "labels.csv", "id_column": "id", "label_column": "breed", "task": "multiclass", "metric": "log_loss"},
        "labels.csv id,breed, train/<id>.jpg, test/<id>.jpg; submission id + one probability per breed (the sample's column order)"),
    _layout_entry(
        "aerial-cactus-identification", "Aerial Cactus Identification (binary, ROC AUC; kernels-only)", "aerial-cactus-identification",
        {"id_column": "id", "label_column": "has_cactus", "file_pattern": "{id}", "task": "binary", "metric": "roc_auc"},
        "train.csv id,has_cactus (ids carry .jpg; 32x32 images), train/, test/; submission id,has_cactus (probability)"),
    _layout_entry(
        "histopathologic-cancer-detection", "Histopathologic Cancer Detection (binary, ROC AUC; 96x96 TIFF)",
        "histopathologic-cancer-detection",
        {"labels": "train_labels.csv", "id_column": "id", "label_column": "label", "class_name": "cancer", "file_pattern": "{id}.tif",
         "task": "binary", "metric": "roc_auc"},
        "train_labels.csv id,label, train/<id>.tif, test/<id>.tif; submission id,label (probability of cancer)"),
    _layout_entry(
        "dogs-vs-cats-redux-kernels-edition", "Dogs vs. Cats Redux: Kernels Edition (binary, log loss)", "dogs-vs-cats-redux-kernels-edition",
        {"labels": None, "filename_label": r"^(?P<label>cat|dog)\.", "id_column": "id", "label_column": "label", "positive": "dog",
         "class_name": "dog", "task": "binary", "metric": "log_loss"},
        "no labels CSV: train/cat.<n>.jpg, train/dog.<n>.jpg; test/<n>.jpg; submission id,label (probability of dog)"),
    _layout_entry(
        "siim-isic-melanoma-classification", "SIIM-ISIC Melanoma Classification (binary, ROC AUC; folds grouped by patient)",
        "siim-isic-melanoma-classification",
        {"id_column": "image_name", "label_column": "target", "group_column": "patient_id", "train_images": "jpeg/train",
         "test_images": "jpeg/test", "task": "binary", "metric": "roc_auc"},
        "train.csv image_name,patient_id,...,target, jpeg/train/<image_name>.jpg, jpeg/test/; test.csv; submission image_name,target; "
        "folds grouped by patient_id"),
)
COMPETITIONS.update({spec.name: spec for spec in PRESETS})


def get_spec(name: str, options: dict[str, Any] | None = None) -> CompetitionSpec:
    """The table's entry ``name``; ``options`` (a run's or config's competition options) complete the entries
    whose task, metric and id column come from a ``layout:`` block (the generic ``csv`` competition)."""
    try:
        spec = COMPETITIONS[name]
    except KeyError:
        raise KagglePlanetError(f"unknown competition {name!r}; valid: {', '.join(COMPETITIONS)}") from None
    return spec.with_options(options) if options else spec


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
            f"competition: {t.competition} ({get_spec(t.competition, t.options).description}; task {t.task}, metric {get_spec(t.competition, t.options).metric})",
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
        if t.group_col is not None:
            lines.append(f"groups: {t.train[t.group_col].nunique()} values of {t.group_col} (folds never split a group)")
        lines.append(f"images missing or unreadable: {len(self.problems)}")
        lines += [f"  {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more")
        return "\n".join(lines)


def check_dataset(name: str, data_dir: str | Path, options: dict[str, Any] | None = None) -> CheckReport:
    """Validate labels (raises on the first label error) and decode every image (collects problems)."""
    table = load_dataset(name, data_dir, options, check_images=False)
    return CheckReport(table, find_image_problems(table, decode=True))


def preset_table_markdown() -> str:
    """docs/competitions.md's table of named presets (every csv-layout row of the table)."""
    lines = ["| `competition` | task | metric | what the preset knows |", "|---|---|---|---|"]
    for spec in COMPETITIONS.values():
        if spec.is_layout:
            lines.append(f"| `{spec.name}` | {spec.task} | `{spec.metric}` | {spec.facts.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def iter_competitions() -> Iterable[CompetitionSpec]:
    return COMPETITIONS.values()
