"""Prediction files and run metadata: the contract between pipeline stages.

A *run folder* holds one model's (or one blend's) predictions:

- ``run.json``: what the predictions are about (competition, task, id column, class order, data folder
  and the competition options needed to find the sample submission);
- ``labels.csv``: id column, one 0/1 column per class (multiclass: one-hot): the training targets,
  so thresholds, blends and reports need neither torch nor the images;
- ``oof.csv``: id column, one float column per class, ``fold``; every training id exactly once;
- ``test.csv``: id column, one float column per class; every test id exactly once;
- ``scores.json``: OOF scores.

``run.json`` also records what the predictions were made from (``fingerprints``: labels, classes, folds,
the fold models or the blend's members and method; :mod:`kaggle_planet.core.fingerprints`) and the sha256
of the files it describes (``files``): :func:`load_run` refuses a folder whose files are not those, so a
folder left half rewritten is never read as one run.

Everything is written atomically (temporary file in the same folder, then ``os.replace``) so a killed
process never leaves half a file. This module uses numpy/pandas only.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import fingerprints as fp
from .errors import KagglePlanetError

RUN_INFO = "run.json"
OOF = "oof.csv"
LABELS = "labels.csv"
TEST = "test.csv"
SCORES = "scores.json"
FOLD_COL = "fold"
# per-fold files of a model run folder (written by train): fold<k>/best.pt (best valid metric), last.pt (resume
# state, removed once the fold is done), history.csv, curves.png and done.json (the fold is finished)
BEST = "best.pt"
LAST = "last.pt"
DONE = "done.json"
HISTORY = "history.csv"
CURVES = "curves.png"
# a model's full-data refit (config refit: alone | with_folds): refit/ holds a fold folder's files; with a refit the
# model folder keeps both test predictions beside the test.csv the config chose from them
REFIT_DIR = "refit"
TEST_FOLDS = "test_folds.csv"
TEST_REFIT = "test_refit.csv"
# a model's training folder holds its config (written by train before any fold is done)
MODEL_CONFIG = "config.yaml"
CONFIG = MODEL_CONFIG
# What an experiment folder (runs/<exp>/) holds beside its model folders: the run's blend, its scores and
# submission copy, pseudo-labelling's record and the default report. A model folder may not take one of
# these names (compared without case: macOS and Windows folders ignore it); tests check the writers use them.
BLEND_DIR = "blend"
SUBMISSION_COPY = "submission.csv"
EXPERIMENT_ENTRIES = (BLEND_DIR, SCORES, SUBMISSION_COPY, "pseudo.json", "report.html")
HISTORY_COLUMNS = ["epoch", "lr", "train_loss", "valid_loss", "train_metric", "valid_metric", "seconds"]
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (the only way is to set it and put it back)


def fold_dir(model_dir: str | Path, fold: int) -> Path:
    return Path(model_dir) / f"fold{fold}"


def fold_model_digests(model_dir: str | Path, k: int) -> dict[str, str]:
    """sha256 of every fold's best.pt: which fold models something (predictions, a refit) was made from."""
    return {str(f): fp.file_sha256(fold_dir(model_dir, f) / BEST) for f in range(k)}


def refit_current(model_dir: str | Path, k: int) -> bool:
    """True when the model's full-data refit (``refit/``) is finished and was derived from its fold models there now."""
    folder = Path(model_dir) / REFIT_DIR
    if not (folder / DONE).is_file() or not (folder / BEST).is_file():
        return False
    try:
        done = read_json(folder / DONE)
    except KagglePlanetError:
        return False
    return isinstance(done, dict) and done.get("fold_models") == fold_model_digests(model_dir, k)


def is_fold_done(model_dir: str | Path, fold: int) -> bool:
    d = fold_dir(model_dir, fold)
    return (d / DONE).is_file() and (d / BEST).is_file()


def missing_folds(model_dir: str | Path, k: int) -> list[int]:
    return [f for f in range(k) if not is_fold_done(model_dir, f)]


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """torch.save through a temporary file and rename: a kill never leaves half a checkpoint."""
    import torch  # on use: core stays torch-free to import

    return atomic_write(path, lambda p: torch.save(payload, p))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's plain dicts and tensors (``weights_only``: no pickled code runs), on the CPU."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
        raise KagglePlanetError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc}); delete it to start the fold again") from None


def fold_files(model_dir: str | Path, name: str) -> dict[int, Path]:
    """``{k: fold<k>/<name>}`` for every fold folder of a model run that holds ``name``, folds ascending."""
    found = {}
    for folder in Path(model_dir).glob("fold*"):
        suffix = folder.name[len("fold"):]
        if suffix.isdigit() and (folder / name).is_file():
            found[int(suffix)] = folder / name
    return dict(sorted(found.items()))


def experiment_runs(path: str | Path, marker: str = RUN_INFO) -> list[Path]:
    """The run folders of an experiment folder ``runs/<exp>/``: its subfolders holding ``marker``, sorted
    (``run.json``: finished model runs and blends; ``config.yaml``: model runs, trained or not)."""
    return sorted(d for d in Path(path).iterdir() if d.is_dir() and (d / marker).is_file())


def command_line() -> str:
    """This process's command as a user would type it again, recorded in run files for provenance.

    The program is always written ``kaggle-planet``: the console script, ``python -m kaggle_planet.cli``
    and torchrun's ``--no-python kaggle-planet`` / ``-m kaggle_planet.cli`` all run the same CLI.
    """
    return shlex.join(["kaggle-planet", *sys.argv[1:]])


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file lives in the destination folder so the rename is atomic on one filesystem.
    On any failure the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp creates 0600; give the file the permissions a plain open() would have
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


TEMPORARY_GLOB = ".*.tmp"  # what atomic_write names its temporary files: .<name>.<random>.tmp beside <name>


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process died before the
    rename (SIGKILL, power loss). Call it only while holding the folder's lock: another live writer's file
    looks the same. Returns what was removed."""
    removed = []
    for path in sorted(Path(folder).glob(TEMPORARY_GLOB)):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame, **to_csv_kwargs: Any) -> Path:
    to_csv_kwargs.setdefault("index", False)
    return atomic_write(path, lambda p: frame.to_csv(p, **to_csv_kwargs))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise KagglePlanetError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise KagglePlanetError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


@dataclass
class RunInfo:
    """What a run folder's predictions describe; saved as ``run.json``.

    ``options`` holds the competition-specific keys (``train_dir``/``test_dir`` for image folders)
    so later stages can reload the dataset (e.g. the sample submission) exactly as training did.
    """

    competition: str
    task: str  # "multilabel" | "binary" | "multiclass"
    id_col: str
    classes: list[str]
    data_dir: str
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "model"  # "model" | "blend"
    members: list[str] = field(default_factory=list)  # blends: the run folders combined
    extra: dict[str, Any] = field(default_factory=dict)  # free-form provenance (config, commands)
    # what the predictions were made from (core.fingerprints: classes, labels, folds, models or members, method)
    fingerprints: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # sha256 of the files described (labels, oof, test): checked on load


def write_run_info(run_dir: str | Path, info: RunInfo) -> Path:
    return write_json(Path(run_dir) / RUN_INFO, asdict(info))


def run_kind(path: str | Path) -> str | None:
    """What a folder is in the run layout: ``"model"`` (a model's run or training folder), ``"blend"``,
    ``"experiment"`` (a folder holding model or blend folders), or None (none of these, or no folder)."""
    path = Path(path)
    own = _own_kind(path)
    if own is not None or not path.is_dir():
        return own
    try:
        children = [c for c in path.iterdir() if c.is_dir()]
    except OSError:
        return None
    return "experiment" if any(_own_kind(c) for c in children) else None


def _own_kind(path: Path) -> str | None:
    if (path / RUN_INFO).is_file():
        try:
            return "blend" if json.loads((path / RUN_INFO).read_text(encoding="utf-8")).get("kind") == "blend" else "model"
        except (OSError, ValueError, AttributeError):
            return "model"
    if (path / MODEL_CONFIG).is_file() and ((path / LABELS).is_file() or any(path.glob("fold*"))):
        return "model"  # being trained: no predictions (run.json) yet
    return None


def enclosing_run(path: str | Path) -> Path | None:
    """The nearest model or blend run folder that ``path`` lies in (``path`` itself included), if any."""
    for folder in [Path(path), *Path(path).parents]:
        if _own_kind(folder) is not None:
            return folder
    return None


def check_output_file(out: str | Path, kind: str, suffix: str, is_own: Callable[[Path], bool]) -> Path:
    """An ``--out`` file, checked before any work: never a folder, never inside a model or blend run folder
    (checkpoints, prediction files, configs), always ending in ``suffix``, and an existing file only when
    ``is_own(path)`` says this command wrote it (so a data folder's labels, a folds file, a log or a
    checkpoint is never overwritten)."""
    out = Path(out)
    if out.is_dir():
        raise KagglePlanetError(f"{out}: is a folder; --out names the {kind} file (ending in {suffix})")
    inside = enclosing_run(out.parent)
    if inside is not None:
        raise KagglePlanetError(f"{out}: lies inside the run folder {inside}, whose files it could overwrite; write the {kind} elsewhere")
    if out.suffix.lower() != suffix:
        raise KagglePlanetError(f"{out}: the {kind} is a {suffix} file; give a path ending in {suffix}")
    if out.exists() and not is_own(out):
        raise KagglePlanetError(f"{out}: exists and is not a {kind} written by kaggle-planet, so it is not overwritten; "
                                f"give a new path (or delete the file)")
    return out


def first_line(path: Path, limit: int = 4096) -> str:
    """The first line of a text file ('' when unreadable): enough to recognise a file's own kind."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    except OSError:
        return ""


def wants_folder(out: str | Path) -> bool:
    """``--out`` written with a trailing slash, or naming an existing folder."""
    text = str(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def read_run_info(run_dir: str | Path) -> RunInfo:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise KagglePlanetError(
            f"{run_dir}: not a run folder (no {RUN_INFO}); expected a model folder with its predictions "
            "written (kaggle-planet train / predict) or a blend folder (kaggle-planet blend)"
        )
    data = read_json(path)
    try:
        return RunInfo(**data)
    except TypeError as exc:
        raise KagglePlanetError(f"{path}: unexpected content ({exc})") from None


def read_predictions(
    path: str | Path,
    id_col: str,
    classes: Sequence[str],
    *,
    with_fold: bool = False,
) -> pd.DataFrame:
    """Read and validate a prediction CSV.

    Returns a frame with ``id_col`` (str), the class columns (float64, in ``classes`` order) and,
    when ``with_fold``, an int ``fold`` column. Checks: columns present, ids unique and non-empty,
    probabilities finite and within [0, 1]. Errors name the file and the first offending row.
    """
    path = Path(path)
    if not path.is_file():
        raise KagglePlanetError(f"{path}: prediction file not found")
    try:
        frame = pd.read_csv(path, dtype={id_col: str}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KagglePlanetError(f"{path}: not a readable CSV ({exc})") from None
    wanted = [id_col, *classes] + ([FOLD_COL] if with_fold else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise KagglePlanetError(
            f"{path}: missing column(s) {missing}; expected columns {wanted}, found {list(frame.columns)}"
        )
    frame = frame[wanted].copy()
    ids = frame[id_col]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 2
        raise KagglePlanetError(f"{path}: row {row}: empty {id_col}")
    dup = ids.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise KagglePlanetError(f"{path}: row {row + 2}: duplicate {id_col} {ids.iloc[row]!r}; ids must be unique")
    for col in classes:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0.0) | (values > 1.0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise KagglePlanetError(
                f"{path}: row {row + 2}, column {col!r}: {str(frame[col].iloc[row])!r} is not a probability in [0, 1]"
            )
        frame[col] = values
    if with_fold:
        folds = pd.to_numeric(frame[FOLD_COL], errors="coerce")
        if folds.isna().any() or (folds < 0).any() or (folds % 1 != 0).any():
            row = int(np.flatnonzero((folds.isna() | (folds < 0) | (folds % 1 != 0)).to_numpy())[0])
            raise KagglePlanetError(
                f"{path}: row {row + 2}, column 'fold': {frame[FOLD_COL].iloc[row]!r} is not a fold number"
            )
        frame[FOLD_COL] = folds.astype(int)
    return frame.reset_index(drop=True)


def write_predictions(
    path: str | Path,
    ids: Sequence[str],
    probs: np.ndarray,
    id_col: str,
    classes: Sequence[str],
    folds: Sequence[int] | None = None,
) -> Path:
    """Write ``probs: (N, C) float in [0, 1]`` with ids (and folds for OOF files) atomically."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(ids), len(classes)):
        raise ValueError(f"probs shape {probs.shape} does not match {len(ids)} ids x {len(classes)} classes")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0.0) < 0.0 or probs.max(initial=0.0) > 1.0:
        raise ValueError(f"{path}: refusing to write probabilities outside [0, 1] or non-finite")
    frame = pd.DataFrame(probs, columns=list(classes))
    frame.insert(0, id_col, list(ids))
    if folds is not None:
        frame[FOLD_COL] = np.asarray(folds, dtype=int)
    # shortest round-trip repr: a score recomputed from the file equals the one computed in memory
    return write_csv(path, frame)


def write_labels(run_dir: str | Path, ids: Sequence[str], targets: np.ndarray, id_col: str, classes: Sequence[str]) -> Path:
    """Write ``targets: (N, C) in {0, 1}`` as ``labels.csv`` (integers)."""
    frame = pd.DataFrame(np.asarray(targets).astype(np.int64), columns=list(classes))
    frame.insert(0, id_col, list(ids))
    return write_csv(Path(run_dir) / LABELS, frame)


def labels_record(run_dir: str | Path, id_col: str) -> dict[str, Any] | None:
    """The fingerprints (classes, labels) of a folder's ``labels.csv``, or None without one: what a model
    folder trained before fingerprints were kept was last trained on."""
    path = Path(run_dir) / LABELS
    if not path.is_file():
        return None
    try:
        classes = [str(c) for c in pd.read_csv(path, nrows=0).columns if c != id_col]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise KagglePlanetError(f"{path}: not a readable CSV ({exc})") from None
    frame = read_predictions(path, id_col, classes)
    return {"classes": classes, "n_train": len(frame),
            "labels": fp.labels_digest(frame[id_col].tolist(), frame[classes].to_numpy())}


def labels_difference(run_dir: str | Path, id_col: str, classes: Sequence[str], ids: Sequence[str], targets: np.ndarray) -> str | None:
    """The first id whose targets in the folder's ``labels.csv`` differ from ``targets``, or None (no
    readable labels.csv with these classes)."""
    try:
        old = read_predictions(Path(run_dir) / LABELS, id_col, classes)
    except KagglePlanetError:
        return None
    return fp.first_label_difference(old[id_col].tolist(), old[list(classes)].to_numpy(), ids, targets, classes, id_col)


@dataclass
class Run:
    """One run folder loaded: predictions with labels aligned to the OOF rows."""

    path: Path
    info: RunInfo
    oof: pd.DataFrame  # id_col, classes..., fold
    test: pd.DataFrame  # id_col, classes...
    y_true: np.ndarray  # (N, C) int 0/1, row i is oof row i

    @property
    def oof_probs(self) -> np.ndarray:
        return self.oof[self.info.classes].to_numpy(dtype=np.float64)

    @property
    def test_probs(self) -> np.ndarray:
        return self.test[self.info.classes].to_numpy(dtype=np.float64)

    @property
    def folds(self) -> np.ndarray:
        return self.oof[FOLD_COL].to_numpy(dtype=int)


def load_run(run_dir: str | Path) -> Run:
    """Load and validate a run folder; labels are matched to OOF rows by id, never by order."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    oof = read_predictions(run_dir / OOF, info.id_col, info.classes, with_fold=True)
    test = read_predictions(run_dir / TEST, info.id_col, info.classes)
    labels = read_predictions(run_dir / LABELS, info.id_col, info.classes)
    by_id = labels.set_index(info.id_col)
    missing = oof[info.id_col][~oof[info.id_col].isin(by_id.index)]
    if len(missing) or len(by_id) != len(oof):
        first = missing.iloc[0] if len(missing) else sorted(set(by_id.index) - set(oof[info.id_col]))[0]
        raise KagglePlanetError(
            f"{run_dir / OOF} and {run_dir / LABELS}: ids differ (first difference: {first!r}); "
            "every training id must appear once in both"
        )
    y_true = by_id.loc[oof[info.id_col], list(info.classes)].to_numpy().astype(np.int64)
    check_run_files(run_dir, info)
    return Run(run_dir, info, oof, test, y_true)


DESCRIBED_FILES = (LABELS, OOF, TEST)  # what a run.json's ``files`` covers (a blend's blend.json: fingerprints.state)


def rebuild_command(run_dir: str | Path, info: RunInfo) -> str:
    """The command that writes a run folder's prediction files again."""
    if info.kind == "blend":
        method = info.extra.get("method", "METHOD")
        return shlex.join(["kaggle-planet", "blend", *info.members, "--method", str(method), "--out", str(run_dir)])
    return shlex.join(["kaggle-planet", "predict", str(run_dir)])


def check_run_files(run_dir: str | Path, info: RunInfo) -> None:
    """Refuse a run folder whose files are not the ones its run.json describes (``files``; run.json written
    before it recorded them: not checked): a file edited since, or a stage stopped while rewriting the folder."""
    stale = fp.stale_files(run_dir, info.files)
    if stale:
        raise KagglePlanetError(
            f"{Path(run_dir) / stale[0]}: not the file {RUN_INFO} describes (changed since it was written, or the stage "
            f"that rewrites the folder stopped half-way); old and new are not mixed: write the folder again with "
            f"{rebuild_command(run_dir, info)}"
        )
