"""Predict tags / labels for single image files with a trained run or blend.

A model run folder predicts with its fold models (``fold<k>/best.pt``), averaged like its test
predictions, or with one fold's model (``fold=k``: then a training image of fold ``k`` gets exactly
its OOF row, the same model, preprocessing and TTA). A blend folder predicts with its members and
combines them as the blend did: every method of ``blend.BLENDERS`` applies its state fitted on all OOF
rows (the blend folder's ``blend.json``) with its own ``apply``, the function that made the blend's
test rows. ``rank`` ranks each member's probability within that member's test predictions (the set
the blend ranked), so a test image gets exactly its blend row and a new image its place among them.

Decisions follow the submission formatters: multilabel tags are the classes above the run's
thresholds (thresholds.json, else 0.2), the most probable one when none passes; multiclass takes the
argmax; binary reports the probability and calls it positive above 0.5.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import artifacts
from ..core.artifacts import BEST as CHECKPOINT
from ..core.errors import KagglePlanetError
from ..core.metrics import DEFAULT_THRESHOLD
from ..data.competitions import get_spec
from ..data.files import image_file_problem, path_problem
from ..ensemble.blend import apply_saved_blend, get_blender
from ..ensemble.members import find_member

log = logging.getLogger(__name__)

BINARY_THRESHOLD = 0.5


@dataclass
class ImagePredictions:
    """Probabilities and decisions for ``files``; ``probs: (N, C) float in [0, 1]``, classes in run order."""

    run_dir: Path
    task: str
    classes: list[str]
    files: list[Path]
    probs: np.ndarray
    labels: list[list[str]]  # decided tags (multilabel), [label] (multiclass), [class] or [] (binary)
    thresholds: np.ndarray | None  # (C,) multilabel/binary thresholds, None for multiclass (argmax)
    thresholds_source: str
    tta: str
    fold: int | None
    method: str  # "folds" for a model run, else the blend's method
    models: list[str] = field(default_factory=list)  # "<model run>/fold<k>" of every model used


# ------------------------------------------------------------------------------------ checking


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def expand_images(images: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for its image files (``IMAGE_SUFFIXES``, not recursive), in natural order."""
    from ..ensemble.members import natural_key

    paths: list[Path] = []
    for path in map(Path, images):
        if not path.is_dir():
            paths.append(path)
            continue
        found = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
        others = sum(1 for _ in path.iterdir()) - len(found)
        if not found:
            raise KagglePlanetError(f"{path}: folder holds no image files (expected {', '.join(IMAGE_SUFFIXES)})")
        if others:
            log.info("%s: %d image(s); %d other entr(ies) skipped (not files ending in %s)", path, len(found), others, ", ".join(IMAGE_SUFFIXES))
        paths += found
    return paths


def check_images(images: Sequence[Path]) -> list[Path]:
    """Every image exists and has a known image signature; else one line naming the first bad file.

    Only the file's first bytes are read (``cv2.haveImageReader``): the full decode happens once per
    model in the DataLoader, whose ``read_image`` names a file that fails there."""
    import cv2

    paths = [Path(p) for p in images]
    if not paths:
        raise KagglePlanetError("predict-image: no image files given")
    for path in paths:
        problem = path_problem(path)
        if problem:
            raise KagglePlanetError(f"{path}: image file {problem}")
        problem = image_file_problem(str(path))  # first and last bytes: a cut-short JPEG may decode, grey below the cut
        if problem and problem.startswith("truncated"):
            raise KagglePlanetError(f"{path}: {problem}")
        if problem or not cv2.haveImageReader(str(path)):
            raise KagglePlanetError(f"{path}: not a readable image (expected a JPEG, PNG, TIFF, BMP or WebP file)")
    return paths


def fold_checkpoints(model_dir: Path) -> dict[int, Path]:
    """``{fold: fold<k>/best.pt}`` of a model run folder, folds ascending."""
    found = artifacts.fold_files(model_dir, CHECKPOINT)
    if not found:
        raise KagglePlanetError(f"{model_dir}: no fold<k>/{CHECKPOINT} found; train the model first (kaggle-planet train)")
    return found


# ---------------------------------------------------------------------------------- predicting


@dataclass
class _Context:
    files: list[Path]
    device: Any
    tta: str | None  # None: each model run's own TTA
    fold: int | None
    used: list[str]
    ttas: set[str]
    batch_size: int | None = None  # None: each model's training batch size
    num_workers: int | None = None  # None: each model's configured DataLoader workers


def _model_probs(model_dir: Path, info: artifacts.RunInfo, ctx: _Context) -> np.ndarray:
    """Mean over the run's fold models (or the one asked for) of their TTA probabilities; (N, C)."""
    from .tta import load_fold_model, predict_files

    checkpoints = fold_checkpoints(model_dir)
    if ctx.fold is not None and ctx.fold not in checkpoints:
        raise KagglePlanetError(f"{model_dir}: no fold{ctx.fold}/{CHECKPOINT}; folds available: {', '.join(map(str, checkpoints))}")
    folds = [ctx.fold] if ctx.fold is not None else list(checkpoints)
    tta = ctx.tta or info.extra.get("tta") or "none"
    ctx.ttas.add(tta)
    files = [str(f) for f in ctx.files]
    probs = []
    for k in folds:
        model, settings = load_fold_model(model_dir, k, ctx.device)  # once per fold model: every image goes through it in batches
        settings.batch_size = ctx.batch_size or settings.batch_size
        settings.num_workers = settings.num_workers if ctx.num_workers is None else ctx.num_workers
        probs.append(np.asarray(predict_files(model, files, settings, ctx.device, tta), dtype=np.float64))
        ctx.used.append(f"{model_dir}/fold{k}")
        log.debug("%s fold %d: predicted %d image(s) with TTA %s", model_dir, k, len(files), tta)
    return np.mean(probs, axis=0)


def blend_method(run_dir: Path, info: artifacts.RunInfo) -> str:
    scores = run_dir / artifacts.SCORES
    method = info.extra.get("method") or (artifacts.read_json(scores).get("method") if scores.is_file() else None)
    if not method:
        raise KagglePlanetError(f"{run_dir / artifacts.RUN_INFO}: blend without a recorded method (extra.method)")
    return str(method)


def _resolve_member(blend_dir: Path, member: str) -> Path:
    found = find_member(blend_dir, member)
    if found is not None:
        return found
    raise KagglePlanetError(f"{blend_dir / artifacts.RUN_INFO}: member {member} not found (nor beside the blend in {blend_dir.parent})")


def _run_probs(run_dir: Path, ctx: _Context, classes: list[str] | None = None) -> tuple[np.ndarray, artifacts.RunInfo]:
    """(N, C) probabilities of a model run or (recursively) a blend, columns in ``run.json`` class order."""
    info = artifacts.read_run_info(run_dir)
    if classes is not None and list(info.classes) != list(classes):
        raise KagglePlanetError(f"{run_dir / artifacts.RUN_INFO}: classes {info.classes} differ from the blend's {classes}")
    if info.kind != "blend":
        return _model_probs(run_dir, info, ctx), info
    method = blend_method(run_dir, info)
    get_blender(method)  # an unknown method fails before any model runs
    members = [_resolve_member(run_dir, m) for m in info.members]
    stack = np.stack([_run_probs(member, ctx, info.classes)[0] for member in members])

    def member_tests() -> np.ndarray:  # rank places new images among the members' test predictions
        return np.stack([
            artifacts.read_predictions(m / artifacts.TEST, info.id_col, info.classes)[info.classes].to_numpy(dtype=np.float64)
            for m in members
        ])

    return apply_saved_blend(run_dir, info, method, stack, member_tests), info


def _thresholds(run_dir: Path, info: artifacts.RunInfo) -> tuple[np.ndarray | None, str]:
    if info.task == "multiclass":
        return None, "argmax"
    if info.task == "binary":
        return np.full(len(info.classes), BINARY_THRESHOLD), f"{BINARY_THRESHOLD} (binary)"
    from ..ensemble.thresholds import THRESHOLDS, read_run_thresholds

    thr = read_run_thresholds(run_dir)
    if thr is None:
        return np.full(len(info.classes), DEFAULT_THRESHOLD), f"default {DEFAULT_THRESHOLD} (no {THRESHOLDS} in {run_dir})"
    return thr, str(run_dir / THRESHOLDS)


def _decide_multilabel(info: artifacts.RunInfo, probs: np.ndarray, thresholds: np.ndarray | None) -> list[list[str]]:
    # the competition's own formatter: tags above threshold, the argmax when none passes
    ids = [str(i) for i in range(len(probs))]
    frame = get_spec(info.competition, info.options).format_submission(ids, probs, info.classes, thresholds)
    tags_col = [c for c in frame.columns if c != info.id_col][0]
    return [str(t).split() for t in frame[tags_col]]


def _decide_multiclass(info: artifacts.RunInfo, probs: np.ndarray, thresholds: np.ndarray | None) -> list[list[str]]:
    return [[info.classes[j]] for j in probs.argmax(axis=1)]


def _decide_binary(info: artifacts.RunInfo, probs: np.ndarray, thresholds: np.ndarray | None) -> list[list[str]]:
    return [[info.classes[0]] if p > t else [] for p, t in zip(probs[:, 0], np.broadcast_to(thresholds, (len(probs), 1))[:, 0])]


DECIDERS: dict[str, Callable[[artifacts.RunInfo, np.ndarray, np.ndarray | None], list[list[str]]]] = {
    "multilabel": _decide_multilabel,
    "multiclass": _decide_multiclass,
    "binary": _decide_binary,
}


def predict_images(
    run_dir: str | Path,
    images: Sequence[str | Path],
    device: Any,
    tta: str | None = None,
    fold: int | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
) -> ImagePredictions:
    """Predict ``images`` (files, or folders standing for their image files) with a model run (its fold
    models, or ``fold``) or a blend of any method. Each fold model is loaded once and predicts every
    image in batches of ``batch_size`` (default: its training batch size) read by ``num_workers``
    DataLoader workers (default: its config's); the probabilities do not depend on either.

    ``tta``: "none" | "hflip" | "d4"; None uses each model run's own (run.json extra.tta).
    ``device``: a ``torch.device``. Returns probabilities ``(N, C)`` in [0, 1] and the decided labels.
    """
    run_dir = Path(run_dir)
    if batch_size is not None and batch_size < 1 or num_workers is not None and num_workers < 0:
        raise KagglePlanetError(f"predict-image: expected batch size >= 1 and workers >= 0 (got {batch_size}, {num_workers})")
    files = check_images(expand_images(images))
    ctx = _Context(files, device, tta, fold, [], set(), batch_size, num_workers)
    probs, info = _run_probs(run_dir, ctx)
    if info.task not in DECIDERS:
        raise KagglePlanetError(f"{run_dir / artifacts.RUN_INFO}: unknown task {info.task!r}; valid: {', '.join(DECIDERS)}")
    thresholds, source = _thresholds(run_dir, info)
    return ImagePredictions(
        run_dir=run_dir,
        task=info.task,
        classes=list(info.classes),
        files=files,
        probs=probs,
        labels=DECIDERS[info.task](info, probs, thresholds),
        thresholds=thresholds,
        thresholds_source=source,
        tta=",".join(sorted(ctx.ttas)),
        fold=fold,
        method=blend_method(run_dir, info) if info.kind == "blend" else "folds",
        models=ctx.used,
    )


# ----------------------------------------------------------------------------------- formatting


def check_predictions_out(out: str | Path) -> Path:
    """``predict-image --out``: a new .csv, or one that predict-image wrote before (its header begins with
    ``file`` and ends with ``labels``); never a data folder's labels, a folds file or a run's file."""
    def is_own(path: Path) -> bool:
        header = artifacts.first_line(path).split(",")
        return header[:1] == ["file"] and header[-1:] == ["labels"]

    return artifacts.check_output_file(out, "predictions CSV", ".csv", is_own)


def image_predictions_frame(result: ImagePredictions) -> pd.DataFrame:
    """One row per image: ``file``, one probability column per class (run order), ``labels`` (space-separated)."""
    frame = pd.DataFrame(result.probs, columns=result.classes)
    frame.insert(0, "file", [str(f) for f in result.files])
    frame["labels"] = [" ".join(labels) for labels in result.labels]
    return frame


def format_image_predictions(result: ImagePredictions, top: int = 5) -> str:
    """Per image: the decision, then the classes by descending probability (decided ones marked ``*``).

    Shows every decided class plus the ``top`` most probable others (all classes when there are few).
    """
    folds = f"fold {result.fold}" if result.fold is not None else "mean over folds"
    runs = sorted({m.rsplit("/fold", 1)[0] for m in result.models})
    what = "model run" if result.method == "folds" else f"{result.method} blend of {len(runs)} runs"
    lines = [
        f"run: {result.run_dir} ({what}, {len(result.models)} fold model(s), {folds}, TTA {result.tta})",
        f"thresholds: {result.thresholds_source}",
    ]
    width = max(len(c) for c in result.classes)
    for path, row, labels in zip(result.files, result.probs, result.labels):
        decided = set(labels)
        shown_label = " ".join(labels) if labels else f"not {result.classes[0]}"
        lines.append(f"{path}: {shown_label}")
        order = np.argsort(-row, kind="stable")
        others = [j for j in order if result.classes[j] not in decided][:top]
        for j in order:
            name = result.classes[j]
            if name not in decided and j not in others:
                continue
            mark = "*" if name in decided else " "
            thr = f"  (threshold {result.thresholds[j]:.3f})" if result.thresholds is not None else ""
            lines.append(f"  {mark} {name:<{width}}  {row[j]:.4f}{thr}")
    return "\n".join(lines)
