"""The generic csv layout: "a CSV of ids and labels, a folder of images, a sample submission".

A layout is a handful of keys (:data:`LAYOUT_KEYS`, each owning its default and help text) that say
where the labels, images and test ids are, what the target looks like and how the submission is
written. The ``csv`` competition takes them from the config's ``layout:`` block; each named preset of
the competitions table (cassava, plant pathology, dog breeds, ...) is the same reader with the keys
filled in, and any key can still be set by the user.

Targets (``target``):

- ``label``: one column; ``task: binary`` (two values, ``positive`` is the class predicted) or
  ``multiclass`` (integers or names; the class list is the sorted values, integers in numeric order);
- ``tags``: one column of tags joined by ``separator`` (multi-label);
- ``columns``: several 0/1 columns: one-hot (``task: multiclass``, exactly one 1 per row) or
  multi-binary (``task: multilabel``).

Submission formats (:data:`SUBMISSION_FORMATS`), read from the sample submission's header when
``submission: auto``: ``probability`` (one column, binary), ``label`` (one column, the argmax class),
``tags`` (one column, the chosen tags joined by ``separator``) and ``probabilities`` (one column per
class, in the sample's column order). Class lists always come from the data.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import KagglePlanetError
from .files import path_problem
from .tables import (
    TOOLKIT_COLUMNS,
    DatasetTable,
    _check_ids,
    _line,
    csv_line,
    list_folder,
    multi_hot,
    option_folder,
    read_string_csv,
    refuse_reserved,
)

log = logging.getLogger(__name__)

TARGETS = {
    "label": "one label column: binary (two values), integer or named classes",
    "tags": "one column of tags joined by the separator (multi-label)",
    "columns": "several 0/1 columns: one-hot (multiclass) or multi-binary (multilabel)",
}
TASKS = ("binary", "multiclass", "multilabel")
# the task a target kind means when the layout does not say
TARGET_TASK = {"label": "multiclass", "tags": "multilabel", "columns": "multiclass"}
TARGET_TASKS = {"label": ("binary", "multiclass"), "tags": ("multilabel",), "columns": ("multiclass", "multilabel")}


@dataclass(frozen=True)
class LayoutKey:
    default: Any
    help: str
    kind: str = "text"  # text | name (an optional text) | choice | list


# The one table of layout keys: config validation, the docs' key table and the readers read it.
LAYOUT_KEYS: dict[str, LayoutKey] = {
    "labels": LayoutKey("train.csv", "the training labels CSV inside the data folder; none: labels come from the file names (filename_label)", "name"),
    "id_column": LayoutKey("id", "the column naming each image; the submission's id column"),
    "train_images": LayoutKey("train", "the folder of training images inside the data folder"),
    "test_images": LayoutKey("test", "the folder of test images inside the data folder"),
    "file_pattern": LayoutKey("{id}.jpg", "an image's file name inside its folder: {id}.jpg, {id}.png, {id}.tif, or {id} when the id carries its extension"),
    "test_file_pattern": LayoutKey(None, "the test images' file name when it differs from file_pattern", "name"),
    "path_column": LayoutKey(None, "a labels column holding each training image's path relative to the data folder (instead of train_images + file_pattern)", "name"),
    "filename_label": LayoutKey(None, "no labels CSV: a regular expression with a (?P<label>...) group matched against each training file name (Dogs vs Cats: ^(?P<label>cat|dog)\\.)", "name"),
    "target": LayoutKey("label", "label: " + TARGETS["label"] + "; tags: " + TARGETS["tags"] + "; columns: " + TARGETS["columns"], "choice"),
    "label_column": LayoutKey("label", "target label or tags: the column holding the label or the tags"),
    "separator": LayoutKey(" ", "target tags: the separator between tags"),
    "target_columns": LayoutKey(None, "target columns: the 0/1 columns (default: every column but the id, group and path columns)", "list"),
    "task": LayoutKey("auto", "binary | multiclass | multilabel; auto: multiclass for label and columns, multilabel for tags", "choice"),
    "positive": LayoutKey("1", "task binary: the label value of the positive class (1, malignant, dog)"),
    "class_name": LayoutKey(None, "task binary: the positive class's name in prediction files (default: the label column)", "name"),
    "group_column": LayoutKey(None, "a labels column naming each image's group (patient, user, source): folds never split a group", "name"),
    "sample_submission": LayoutKey("sample_submission.csv", "the sample submission inside the data folder: test ids, their order and the submission's columns", "name"),
    "test_csv": LayoutKey(None, "a CSV listing the test ids in its id column, used when there is no sample submission", "name"),
    "metric": LayoutKey("auto", "the competition metric (the metrics table); auto: f2_samples, roc_auc or accuracy by task"),
    "submission": LayoutKey("auto", "auto: from the sample submission's header; probability | label | tags | probabilities", "choice"),
}


@dataclass(frozen=True)
class Layout:
    """Resolved layout keys (see :data:`LAYOUT_KEYS`); ``task`` and ``metric`` are never ``auto`` here."""

    labels: str | None
    id_column: str
    train_images: str
    test_images: str
    file_pattern: str
    test_file_pattern: str | None
    path_column: str | None
    filename_label: str | None
    target: str
    label_column: str
    separator: str
    target_columns: tuple[str, ...] | None
    task: str
    positive: str
    class_name: str | None
    group_column: str | None
    sample_submission: str | None
    test_csv: str | None
    metric: str
    submission: str


assert [f.name for f in fields(Layout)] == list(LAYOUT_KEYS)  # one table: the dataclass follows it


def layout_problem(key: str, value: Any) -> str | None:
    """What is wrong with one layout key's value (None: fine); for the config validator and :func:`resolve_layout`."""
    if key not in LAYOUT_KEYS:
        return f"unknown layout key; valid: {', '.join(LAYOUT_KEYS)}"
    entry = LAYOUT_KEYS[key]
    if value is None:
        return None if entry.kind in ("name", "list") else f"expected a value (default {entry.default!r})"
    if entry.kind == "list":
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            return "expected a non-empty list of column names"
        return None
    if not isinstance(value, str) or (not value.strip() and key != "separator") or value == "":
        return "expected a non-empty text"
    if key == "target" and value not in TARGETS:
        return f"expected one of {', '.join(TARGETS)}"
    if key == "task" and value not in ("auto", *TASKS):
        return f"expected one of auto, {', '.join(TASKS)}"
    if key == "submission" and value not in ("auto", *SUBMISSION_FORMATS):
        return f"expected one of auto, {', '.join(SUBMISSION_FORMATS)}"
    if key in ("file_pattern", "test_file_pattern"):
        return _pattern_problem(value)
    if key == "filename_label":
        try:
            compiled = re.compile(value)
        except re.error as exc:
            return f"not a regular expression ({exc})"
        if "label" not in compiled.groupindex:
            return "expected a regular expression with a (?P<label>...) group"
    if key == "metric" and value != "auto":
        from ..core import metrics

        try:
            metrics.get_metric(value)
        except KagglePlanetError as exc:
            return str(exc)
    return None


def _pattern_problem(pattern: str) -> str | None:
    if pattern.count("{id}") != 1 or pattern.replace("{id}", "").count("{") or pattern.replace("{id}", "").count("}"):
        return "expected a file name holding {id} once, e.g. {id}.jpg (or {id} when the id carries its extension)"
    if "/" in pattern or "\\" in pattern:
        return "expected a file name, not a path: put the folder in train_images / test_images"
    return None


def resolve_layout(options: dict[str, Any]) -> Layout:
    """The :class:`Layout` of ``options`` (layout keys; missing keys take their defaults); one line per problem."""
    values = {key: entry.default for key, entry in LAYOUT_KEYS.items()}
    values.update(options)
    for key, value in values.items():
        problem = layout_problem(key, value)
        if problem:
            raise KagglePlanetError(f"layout.{key}: {value!r}: {problem}")
    target = values["target"]
    task = TARGET_TASK[target] if values["task"] == "auto" else values["task"]
    if task not in TARGET_TASKS[target]:
        raise KagglePlanetError(f"layout.task: {task!r} does not go with target {target!r}; expected one of {', '.join(TARGET_TASKS[target])}")
    from ..core import metrics

    if values["metric"] == "auto":
        values["metric"] = metrics.default_metric(task)
    else:
        problem = metrics.metric_for_task_problem(values["metric"], task)
        if problem:
            raise KagglePlanetError(f"layout.metric: {values['metric']!r}: {problem}")
    if values["labels"] is None and values["filename_label"] is None:
        raise KagglePlanetError("layout.labels: none needs layout.filename_label (a regular expression reading the label from each file name)")
    if values["filename_label"] is not None and (target != "label" or values["labels"] is not None):
        raise KagglePlanetError("layout.filename_label: only with labels: none and target: label (the label comes from each file name)")
    if values["sample_submission"] is None and values["test_csv"] is None:
        raise KagglePlanetError("layout.sample_submission: none needs layout.test_csv (a CSV listing the test ids)")
    if values["target_columns"] is not None:
        values["target_columns"] = tuple(values["target_columns"])
    values["task"] = task
    return Layout(**values)


# ------------------------------------------------------------------------------------------ reading


def read_layout(name: str, data_dir: Path, options: dict[str, Any]) -> DatasetTable:
    """Read ``data_dir`` by the layout ``options`` into a :class:`DatasetTable` named ``name``."""
    layout = resolve_layout(options)
    if layout.labels is None:
        frame, labels_path = _labels_from_file_names(data_dir, layout), data_dir / layout.train_images
    else:
        labels_path = option_folder(data_dir, "layout.labels", layout.labels)
        frame = read_string_csv(labels_path, "training labels", f"a CSV with an id column {layout.id_column!r}")
        frame = _strip(frame)
    _require_columns(frame, labels_path, [layout.id_column, *_named_columns(layout)])
    if frame.empty:
        raise KagglePlanetError(f"{labels_path}: no data rows")
    _check_ids(frame, layout.id_column, labels_path)
    classes, hot = TARGET_READERS[layout.target](frame, layout, labels_path)
    reserved = [*TOOLKIT_COLUMNS, layout.id_column, *([layout.group_column] if layout.group_column else [])]
    refuse_reserved(classes, labels_path, "class", reserved)

    train = pd.DataFrame({layout.id_column: frame[layout.id_column].to_numpy()})
    if layout.filename_label is not None:
        train["file"] = frame["file"].to_numpy()
    elif layout.path_column is not None:
        train["file"] = _path_column_files(frame, layout, data_dir, labels_path)
    else:
        train["file"] = _pattern_files(frame, layout.id_column, data_dir, layout.train_images, layout.file_pattern, labels_path, "training")
    train[classes] = hot
    if layout.group_column is not None:
        empty = frame[layout.group_column] == ""
        if empty.any():
            raise KagglePlanetError(f"{labels_path}: line {_line(frame, empty)} ({layout.id_column} {frame[layout.id_column][empty].iloc[0]!r}): "
                                    f"empty {layout.group_column}; expected a group for every image (folds never split a group)")
        train[layout.group_column] = frame[layout.group_column].to_numpy()

    sample, test = _read_test(data_dir, layout)
    if sample is not None:
        submission_format(layout, classes, list(sample.columns), data_dir / layout.sample_submission)
    return DatasetTable(name, layout.task, layout.id_column, classes, data_dir, train, test, sample, dict(options),
                        group_col=layout.group_column)


def _strip(frame: pd.DataFrame) -> pd.DataFrame:
    lines = frame.attrs.get("lines")
    frame = frame.apply(lambda col: col.str.strip())
    if lines is not None:
        frame.attrs["lines"] = lines
    return frame


def _named_columns(layout: Layout) -> list[str]:
    named = [layout.group_column, layout.path_column]
    if layout.target in ("label", "tags"):
        named.append(layout.label_column)
    return [c for c in named if c] + list(layout.target_columns or ())


def _require_columns(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KagglePlanetError(
            f"{path}: line 1: missing column {missing[0]!r}; expected columns {','.join(dict.fromkeys(columns))}, found {','.join(map(str, frame.columns))}"
            f" (set the layout keys that name columns: id_column, label_column, group_column, ...)"
        )


def _labels_from_file_names(data_dir: Path, layout: Layout) -> pd.DataFrame:
    """Dogs vs Cats: ``train/cat.0.jpg``: the id is the file name without its extension, the label the pattern's group."""
    folder = option_folder(data_dir, "layout.train_images", layout.train_images)
    problem = path_problem(folder, "folder")
    if problem:
        raise KagglePlanetError(f"{folder}: training folder {problem}; expected a folder of images named by label (layout.filename_label)")
    images = list_folder(folder).images
    if not images:
        raise KagglePlanetError(f"{folder}: holds no images; expected images named by label (layout.filename_label)")
    pattern = re.compile(layout.filename_label or "")
    matches = [pattern.search(p.name) for p in images]
    unmatched = [p for p, m in zip(images, matches) if m is None]
    if unmatched:
        raise KagglePlanetError(f"{unmatched[0]}: file name does not match layout.filename_label {pattern.pattern!r} "
                                f"({len(unmatched)} of {len(images)} images do not); expected every training image to name its label")
    return pd.DataFrame({layout.id_column: [p.stem for p in images], layout.label_column: [m.group("label") for m in matches],
                         "file": [str(p) for p in images]})


def _sorted_values(values: Sequence[str]) -> list[str]:
    """Class names sorted: integers in numeric order (0, 1, 2, 10), names alphabetically."""
    unique = sorted(set(values))
    if all(re.fullmatch(r"-?\d+", v) for v in unique):
        return sorted(unique, key=int)
    return unique


def _read_label(frame: pd.DataFrame, layout: Layout, path: Path) -> tuple[list[str], np.ndarray]:
    col = layout.label_column
    values = frame[col]
    empty = values == ""
    if empty.any():
        raise KagglePlanetError(f"{path}: line {_line(frame, empty)} ({layout.id_column} {frame[layout.id_column][empty].iloc[0]!r}): "
                                f"empty {col}; expected a label for every image")
    if layout.task == "binary":
        found = _sorted_values(values.tolist())
        if len(found) > 2 or layout.positive not in found:
            other = [v for v in found if v != layout.positive]
            bad = values != layout.positive if layout.positive not in found else values.isin(other[1:])
            raise KagglePlanetError(
                f"{path}: line {_line(frame, bad)}: {col} {values[bad].iloc[0]!r} does not parse as a binary label; expected "
                f"{layout.positive!r} (layout.positive) or one other value, found {', '.join(found[:6])}{', ...' if len(found) > 6 else ''}"
            )
        name = layout.class_name or col
        return [name], (values == layout.positive).to_numpy(dtype=np.int64)[:, None]
    integers = values.str.fullmatch(r"-?\d+")
    if integers.mean() >= 0.5 and not integers.all():  # integer classes with a stray word: a label that does not parse
        raise KagglePlanetError(f"{path}: line {_line(frame, ~integers)}: {col} {values[~integers].iloc[0]!r} does not parse; "
                                f"expected an integer class like the other {int(integers.sum())} rows")
    classes = _sorted_values(values.tolist())
    if len(classes) < 2:
        raise KagglePlanetError(f"{path}: every row has {col} {classes[0]!r}; expected at least two classes")
    index = {c: j for j, c in enumerate(classes)}
    hot = np.zeros((len(frame), len(classes)), dtype=np.int64)
    hot[np.arange(len(frame)), values.map(index).to_numpy()] = 1
    return classes, hot


def _read_tags(frame: pd.DataFrame, layout: Layout, path: Path) -> tuple[list[str], np.ndarray]:
    col, sep = layout.label_column, layout.separator
    lists = frame[col].map(lambda text: [t.strip() for t in text.split(sep)] if text else [])
    bad = lists.map(lambda tags: not tags or "" in tags or len(set(tags)) != len(tags))
    if bad.any():
        tags = frame[col][bad].iloc[0]
        what = "empty tags" if not tags else f"tags {tags!r} do not parse (an empty or repeated tag)"
        raise KagglePlanetError(f"{path}: line {_line(frame, bad)} ({layout.id_column} {frame[layout.id_column][bad].iloc[0]!r}): {what}; "
                                f"expected tags joined by {sep!r} (layout.separator)")
    classes = sorted({t for tags in lists for t in tags})
    return classes, multi_hot(lists.tolist(), classes)


def _read_columns(frame: pd.DataFrame, layout: Layout, path: Path) -> tuple[list[str], np.ndarray]:
    skip = {layout.id_column, layout.group_column, layout.path_column}
    columns = list(layout.target_columns or [c for c in frame.columns if c not in skip])
    if len(columns) < 2:
        raise KagglePlanetError(f"{path}: target columns {columns}; expected at least two 0/1 columns (layout.target_columns)")
    for col in columns:
        bad = ~frame[col].isin(["0", "1", "0.0", "1.0"])
        if bad.any():
            raise KagglePlanetError(f"{path}: line {_line(frame, bad)} ({layout.id_column} {frame[layout.id_column][bad].iloc[0]!r}): "
                                    f"{col} {frame[col][bad].iloc[0]!r} does not parse; expected 0 or 1")
    hot = frame[columns].astype(float).to_numpy().astype(np.int64)
    if layout.task == "multiclass":
        ones = hot.sum(axis=1)
        bad = pd.Series(ones != 1, index=frame.index)
        if bad.any():
            raise KagglePlanetError(f"{path}: line {_line(frame, bad)} ({layout.id_column} {frame[layout.id_column][bad].iloc[0]!r}): "
                                    f"{int(ones[bad.to_numpy()][0])} of the columns {', '.join(columns)} are 1; a one-hot multiclass row has exactly one "
                                    f"(set layout.task: multilabel if an image can have several)")
    return columns, hot


TARGET_READERS: dict[str, Callable[[pd.DataFrame, Layout, Path], tuple[list[str], np.ndarray]]] = {
    "label": _read_label,
    "tags": _read_tags,
    "columns": _read_columns,
}


def _unsafe_name(name: str) -> bool:
    """An id used as a file name must stay one: no folder separators, no parent or hidden names."""
    return "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\x00" in name


def _pattern_files(frame: pd.DataFrame, id_col: str, data_dir: Path, folder_key: str, pattern: str, where: Path, split: str) -> list[str]:
    folder = option_folder(data_dir, "layout.train_images" if split == "training" else "layout.test_images", folder_key)
    problem = path_problem(folder, "folder")
    if problem:
        raise KagglePlanetError(f"{folder}: {split} image folder {problem}; expected {folder_key}/{pattern} (layout.{'train' if split == 'training' else 'test'}_images)")
    ids = frame[id_col]
    unsafe = ids.map(_unsafe_name)
    if unsafe.any():
        raise KagglePlanetError(f"{where}: line {_line(frame, unsafe)}: {id_col} {ids[unsafe].iloc[0]!r} cannot name a file "
                                f"(a folder separator or a hidden name); expected a plain file name")
    names = ids.map(lambda i: pattern.replace("{id}", i))
    present = {p.name for p in list_folder(folder).images}
    missing = ~names.isin(present)
    if missing.any():
        raise KagglePlanetError(f"{where}: line {_line(frame, missing)}: no image for {id_col} {ids[missing].iloc[0]!r}: expected "
                                f"{folder / names[missing].iloc[0]} ({int(missing.sum())} of {len(ids)} ids have none; layout.file_pattern is {pattern!r})")
    return [str(folder / n) for n in names]


def _path_column_files(frame: pd.DataFrame, layout: Layout, data_dir: Path, where: Path) -> list[str]:
    col = layout.path_column or ""
    files = []
    for row, value in enumerate(frame[col].tolist()):
        try:
            path = option_folder(data_dir, col, value)
        except KagglePlanetError:
            raise KagglePlanetError(f"{where}: line {csv_line(frame, row)}: {col} {value!r} lies outside the data folder {data_dir}; "
                                    f"expected a path relative to it") from None
        files.append(str(path))
    return files


def _read_test(data_dir: Path, layout: Layout) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """(sample submission or None, test table: id + file in submission order)."""
    id_col = layout.id_column
    sample = None
    path = option_folder(data_dir, "layout.sample_submission", layout.sample_submission) if layout.sample_submission else None
    if path is not None and (path.exists() or layout.test_csv is None):
        frame = sample = _strip(read_string_csv(path, "sample submission", f"a CSV with an id column {id_col!r}"))
    else:
        path = option_folder(data_dir, "layout.test_csv", layout.test_csv or "")
        frame = _strip(read_string_csv(path, "test ids", f"a CSV with an id column {id_col!r}"))
    _require_columns(frame, path, [id_col])
    _check_ids(frame, id_col, path)
    test = pd.DataFrame({id_col: frame[id_col].to_numpy()})
    test["file"] = _pattern_files(frame, id_col, data_dir, layout.test_images, layout.test_file_pattern or layout.file_pattern, path, "test") \
        if len(frame) else pd.Series(dtype=str)
    return sample, test


# -------------------------------------------------------------------------------------- submission


@dataclass(frozen=True)
class SubmissionFormat:
    help: str
    tasks: tuple[str, ...]
    # (ids, probs (M, C), classes, layout, value columns, thresholds or None) -> the submission frame
    write: Callable[..., pd.DataFrame]
    # (frame, classes, layout, value columns, source) -> None; a one-line error naming the first bad line
    check: Callable[..., None]


def _write_probability(ids, probs, classes, layout, columns, thresholds):
    return pd.DataFrame({layout.id_column: list(ids), columns[0]: probs[:, 0]})


def _write_label(ids, probs, classes, layout, columns, thresholds):
    return pd.DataFrame({layout.id_column: list(ids), columns[0]: np.asarray(classes)[probs.argmax(axis=1)]})


def top_tag_when_none(probs: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """``chosen (N, C) bool`` with each row that chose no tag given its most probable one (``probs (N, C)``), in
    place: a tag submission names at least one tag per image (Planet's rule, and every tags format's)."""
    none = ~chosen.any(axis=1)
    chosen[none, probs[none].argmax(axis=1)] = True
    return chosen


def _write_tags(ids, probs, classes, layout, columns, thresholds):
    # without thresholds ``probs`` holds the decided tags (0/1)
    chosen = top_tag_when_none(probs, probs > (0.5 if thresholds is None else np.asarray(thresholds, dtype=np.float64)))
    names = np.asarray(classes)
    return pd.DataFrame({layout.id_column: list(ids), columns[0]: [layout.separator.join(names[row]) for row in chosen]})


def _write_probabilities(ids, probs, classes, layout, columns, thresholds):
    frame = pd.DataFrame({layout.id_column: list(ids)})
    index = {c: j for j, c in enumerate(classes)}
    for col in columns:
        frame[col] = probs[:, index[col]]
    return frame


def check_probabilities(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    """Every value of ``columns`` a finite probability in [0, 1]; else one line naming the first bad line."""
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise KagglePlanetError(f"{source}: line {csv_line(frame, row)}: {col} {frame[col].iloc[row]!r} is not a probability in [0, 1]")


def check_tags(frame: pd.DataFrame, column: str, classes: Sequence[str], source: str, separator: str | None = None) -> None:
    """Each row of ``column`` one or more known tags joined by ``separator`` (None: any whitespace, Planet's), none repeated."""
    known = set(classes)
    joined = "space-separated tags" if separator is None else f"tags joined by {separator!r}"
    for row, tags in enumerate(frame[column].tolist()):
        words = [w for w in str(tags).split(separator) if w.strip()] if isinstance(tags, str) else []
        unknown = [w for w in words if w not in known]
        if not words or unknown or len(set(words)) != len(words):
            what = "no tags" if not words else f"unknown tag {unknown[0]!r}" if unknown else "a repeated tag"
            raise KagglePlanetError(f"{source}: line {csv_line(frame, row)}: {what} in {tags!r}; expected {joined} from {sorted(known)}")


def check_labels(frame: pd.DataFrame, column: str, classes: Sequence[str], source: str) -> None:
    bad = ~frame[column].astype(str).str.strip().isin(list(classes))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise KagglePlanetError(f"{source}: line {csv_line(frame, row)}: {column} {frame[column].iloc[row]!r} is not one of {list(classes)}")


SUBMISSION_FORMATS: dict[str, SubmissionFormat] = {
    "probability": SubmissionFormat("one probability column (binary): the positive class's probability", ("binary",), _write_probability,
                                    lambda frame, classes, layout, columns, source: check_probabilities(frame, columns, source)),
    "label": SubmissionFormat("one label column: the most probable class", ("multiclass",), _write_label,
                              lambda frame, classes, layout, columns, source: check_labels(frame, columns[0], classes, source)),
    "tags": SubmissionFormat("one column of the chosen tags joined by the separator (multi-label)", ("multilabel",), _write_tags,
                             lambda frame, classes, layout, columns, source: check_tags(frame, columns[0], classes, source, layout.separator)),
    "probabilities": SubmissionFormat("one probability column per class, in the sample submission's column order",
                                      ("multiclass", "multilabel"), _write_probabilities,
                                      lambda frame, classes, layout, columns, source: check_probabilities(frame, columns, source)),
}
ONE_COLUMN_FORMAT = {"binary": "probability", "multiclass": "label", "multilabel": "tags"}


def submission_format(layout: Layout, classes: Sequence[str], columns: Sequence[str] | None, source: Path | str) -> tuple[str, list[str]]:
    """(format name, value columns) of a submission with header ``columns`` (None: the default header for the layout).

    ``submission: auto`` reads the header: one column besides the id is ``probability`` / ``label`` /
    ``tags`` by task, one column per class is ``probabilities``; anything else is an error saying what
    was found and what was expected."""
    id_col = layout.id_column
    one = ONE_COLUMN_FORMAT[layout.task]
    if columns is None:
        name = one if layout.submission == "auto" else layout.submission
        return name, (list(classes) if name == "probabilities" else [layout.class_name or layout.label_column])
    columns = [str(c) for c in columns]
    if not columns or columns[0] != id_col:
        raise KagglePlanetError(f"{source}: line 1: the first column is {(columns[0] if columns else 'missing')!r}; expected the id column "
                                f"{id_col!r} (layout.id_column), found {','.join(columns)}")
    values = columns[1:]
    if layout.submission != "auto":
        name = layout.submission
    elif len(values) == 1 and (values[0] not in classes or len(classes) == 1):
        name = one
    elif len(values) > 1 and sorted(values) == sorted(classes):
        name = "probabilities"
    else:
        raise KagglePlanetError(
            f"{source}: line 1: columns {','.join(columns)} match no known submission format; expected {id_col} and one column "
            f"({one}) or {id_col} and one probability column per class ({', '.join(list(classes)[:8])}{', ...' if len(classes) > 8 else ''})"
        )
    if layout.task not in SUBMISSION_FORMATS[name].tasks:
        raise KagglePlanetError(f"{source}: submission format {name!r} does not suit task {layout.task!r}; expected one of "
                                f"{', '.join(n for n, f in SUBMISSION_FORMATS.items() if layout.task in f.tasks)}")
    if name == "probabilities" and sorted(values) != sorted(classes):
        differ = sorted(set(classes) ^ set(values))
        raise KagglePlanetError(f"{source}: line 1: the probability columns and the classes of the training labels differ "
                                f"(first difference {differ[0]!r}); expected one column per class: {', '.join(classes)}")
    if name != "probabilities" and len(values) != 1:
        raise KagglePlanetError(f"{source}: line 1: submission format {name!r} has one column besides {id_col}; found {','.join(columns)}")
    return name, values


def format_layout_submission(layout: Layout, ids: Sequence[str], probs: np.ndarray, classes: Sequence[str],
                             thresholds: np.ndarray | None = None, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The submission frame for ``probs: (M, C)`` (multilabel: the decided tags as 0/1, or probabilities with
    ``thresholds``), with header ``columns`` (the sample submission's; None: the layout's default)."""
    name, value_columns = submission_format(layout, classes, columns, "submission")
    return SUBMISSION_FORMATS[name].write(ids, np.asarray(probs, dtype=np.float64), list(classes), layout, value_columns, thresholds)


def check_layout_submission(layout: Layout, frame: pd.DataFrame, table: DatasetTable, source: str) -> None:
    """The values of a submission frame whose columns were already checked against the expected header."""
    columns = list(table.sample_submission.columns) if table.sample_submission is not None else None
    name, value_columns = submission_format(layout, table.classes, columns, source)
    SUBMISSION_FORMATS[name].check(frame, table.classes, layout, value_columns, source)


# ------------------------------------------------------------------------------------------ guessing


def labels_frame(table: DatasetTable) -> pd.DataFrame | None:
    """The raw training labels CSV of a csv-layout table (every column, as text), or None (labels from file names)."""
    layout = resolve_layout(table.options)
    if layout.labels is None:
        return None
    return read_string_csv(option_folder(table.data_dir, "layout.labels", layout.labels), "training labels")


def _image_folders(data_dir: Path, depth: int = 2) -> list[Path]:
    """Folders under ``data_dir`` (at most ``depth`` levels down) that directly hold images, by path."""
    found, frontier = [], [data_dir]
    for _ in range(depth):
        nxt = []
        for folder in frontier:
            listing = list_folder(folder)
            for sub in listing.folders:
                if list_folder(sub).images:
                    found.append(sub)
                nxt.append(sub)
        frontier = nxt
    return sorted(found)


def guess_layout(data_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """(layout keys, notes) for an unknown folder holding a labels CSV, image folders and a sample submission:
    what ``init csv`` writes when no layout is given, each guess said in a note. A folder that does not look
    like that is a one-line error saying what was found."""
    data_dir = Path(data_dir)
    csvs = sorted(p for p in list_folder(data_dir).ignored if p.suffix.lower() == ".csv")
    samples = [p for p in csvs if "sample" in p.name.lower() or "submission" in p.name.lower()]
    others = [p for p in csvs if p not in samples and p.stem.lower() != "test"]
    folders = _image_folders(data_dir)
    if len(samples) != 1 or not others or not folders:
        raise KagglePlanetError(
            f"{data_dir}: cannot guess a csv layout: found {len(csvs)} CSV file(s) ({', '.join(p.name for p in csvs) or 'none'}) and "
            f"{len(folders)} image folder(s); expected a labels CSV, a sample submission (sample_submission.csv) and a folder of images; "
            f"write the layout: block yourself (docs/competitions.md)")
    sample_path = samples[0]
    labels_path = next((p for p in others if "train" in p.name.lower() or "label" in p.name.lower()), others[0])
    labels = _strip(read_string_csv(labels_path, "training labels"))
    sample = read_string_csv(sample_path, "sample submission")
    id_col = str(sample.columns[0])
    notes = [f"labels {labels_path.name}, sample submission {sample_path.name}"]
    if id_col not in labels.columns:
        raise KagglePlanetError(f"{labels_path}: line 1: no column {id_col!r} (the sample submission's first column); "
                                f"expected the training labels to name images by the same id; found {','.join(labels.columns)}")
    train_dir = next((f for f in folders if "train" in f.name.lower()), folders[0])
    test_dir = next((f for f in folders if "test" in f.name.lower()), train_dir)
    layout: dict[str, Any] = {"labels": labels_path.name, "id_column": id_col,
                              "train_images": train_dir.relative_to(data_dir).as_posix(), "test_images": test_dir.relative_to(data_dir).as_posix()}
    notes.append(f"id column {id_col!r} (the sample submission's first column); images in {layout['train_images']}/ and {layout['test_images']}/")
    names = {p.name for p in list_folder(train_dir).images}
    ids = labels[id_col].head(50).tolist()
    pattern = "{id}" if all(i in names for i in ids) else next(
        (f"{{id}}{ext}" for ext in (".jpg", ".png", ".tif", ".jpeg", ".tiff", ".bmp", ".webp") if all(f"{i}{ext}" in names for i in ids)), None)
    if pattern is None:
        raise KagglePlanetError(f"{train_dir}: no image named like the ids of {labels_path.name} (e.g. {ids[0]!r} as {ids[0]}, {ids[0]}.jpg, "
                                f"{ids[0]}.png, ...); set layout.file_pattern or layout.path_column yourself")
    layout["file_pattern"] = pattern
    notes.append(f"file pattern {pattern!r}")
    values = [str(c) for c in sample.columns[1:]]
    if len(values) > 1 and all(v in labels.columns for v in values):
        layout.update(target="columns", target_columns=values)
        one_hot = labels[values].astype(float).sum(axis=1).eq(1).all() if labels[values].isin(["0", "1", "0.0", "1.0"]).all().all() else False
        layout["task"] = "multiclass" if one_hot else "multilabel"
        notes.append(f"target: the 0/1 columns {', '.join(values)} ({'one-hot: multiclass' if one_hot else 'several per row: multilabel'})")
    else:
        rest = [c for c in labels.columns if c != id_col]
        label_col = values[0] if len(values) == 1 and values[0] in rest else (rest[-1] if rest else None)
        if label_col is None:
            raise KagglePlanetError(f"{labels_path}: only the id column {id_col!r}; expected a label column beside it")
        column = labels[label_col]
        layout["label_column"] = label_col
        if column.str.contains(" ").mean() > 0.05:
            layout.update(target="tags", task="multilabel")
            notes.append(f"target: space-separated tags in {label_col!r} (multilabel)")
        elif set(column) == {"0", "1"}:
            layout.update(target="label", task="binary")
            notes.append(f"target: {label_col!r} is 0/1 (binary, positive 1)")
        else:
            layout.update(target="label", task="multiclass")
            notes.append(f"target: {label_col!r} with {column.nunique()} classes (multiclass)")
    from ..core import metrics

    notes.append(f"metric auto: {metrics.default_metric(layout['task'])} for {layout['task']}; set layout.metric to the competition's own metric "
                 f"(docs/metrics.md)")
    return layout, notes


# -------------------------------------------------------------------------------------------- docs


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def layout_table_markdown() -> str:
    """docs/competitions.md's table of layout keys, from :data:`LAYOUT_KEYS`."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {'(none)' if e.default is None else '`' + _cell(repr(e.default) if e.default == ' ' else e.default) + '`'} | {_cell(e.help)} |"
              for key, e in LAYOUT_KEYS.items()]
    return "\n".join(lines)


def submission_table_markdown() -> str:
    """docs/competitions.md's table of submission formats, from :data:`SUBMISSION_FORMATS`."""
    lines = ["| format | tasks | columns after the id |", "|---|---|---|"]
    lines += [f"| `{name}` | {', '.join(f.tasks)} | {_cell(f.help)} |" for name, f in SUBMISSION_FORMATS.items()]
    return "\n".join(lines)
