"""Competition-layout datasets made of real images that installed packages ship (no downloads).

The images are scikit-learn's ``load_digits`` (1,797 scanned 8x8 handwritten digits, 0-16 grey levels),
upscaled with bicubic interpolation and drawn as dark ink over low-contrast crops of scikit-learn's two
sample photos (``china.jpg``, ``flower.jpg``) at a random scale and offset, saved as RGB JPEG. None of
it comes from the toolkit's own generator (``kaggle_planet.data.synthetic``). Everything is rebuilt from a
seed: the same seed gives byte-identical files.

Layouts (``BUILDERS``: kind -> builder; each returns a :class:`Built` summary):

- ``binary``, Invasive Species layout: ``train_labels.csv`` (``name,invasive``), ``train/<name>.jpg``,
  ``test/<name>.jpg``, ``sample_submission.csv``. Label: the digit is one of ``POSITIVE_DIGITS`` (3, 5, 8:
  similar shapes, about 30% of the digits). Each scanned digit is used once (train, then test).
- ``multilabel``, Planet layout: ``train_v2.csv`` (``image_name,tags``), ``train-jpg/train_<i>.jpg``,
  ``test-jpg/test_<i>.jpg``, ``sample_submission_v2.csv``. A 2x2 mosaic; each cell is blank (a
  photo crop) with probability ``BLANK_CELL`` or holds a digit drawn with skewed class weights; the
  tags are the names of the digits present (10 tags, from about 4% to about 60% of the images; at least
  one digit per image). Cells re-use scanned digits (1,797 of them for ~3 cells x N images), each time
  on a new background, scale and offset; the baselines and the toolkit see the same re-use.
- ``multiclass``, image-folder (Intel scenes) layout: ``seg_train/<class>/<i>.jpg`` and
  ``seg_test/<class>/<i>.jpg``; the 10 digit classes, each scanned digit used once.

Digits have an orientation (6 vs 9): train these with label-preserving augmentation (``augment: none``)
and ``tta: none``.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POSITIVE_DIGITS = (3, 5, 8)
BLANK_CELL = 0.25
# multilabel: relative weight of each digit in a cell, assigned to digits in a seeded random order,
# so tag frequencies range from common to rare as in Planet
TAG_WEIGHTS = (8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.35)
JPEG_QUALITY = 95


@dataclass
class Built:
    """What a builder wrote: the competition name for the toolkit and counts for the report."""

    kind: str
    competition: str
    data_dir: Path
    n_train: int
    n_test: int
    image_size: int
    classes: list[str]
    positives: dict[str, int] = field(default_factory=dict)  # class -> training images carrying it

    def describe(self) -> str:
        freq = ", ".join(f"{c} {n} ({n / self.n_train:.0%})" for c, n in self.positives.items())
        return (f"{self.kind} ({self.competition} layout): {self.n_train} train + {self.n_test} test images, "
                f"{self.image_size} px, {len(self.classes)} class(es); per class: {freq}")


# ---------------------------------------------------------------------------------------- drawing


def load_sources() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(digits (1797, 8, 8) float in [0, 1], labels (1797,) int, photos: list of (H, W, 3) uint8 RGB)."""
    from sklearn.datasets import load_digits, load_sample_images

    digits = load_digits()
    photos = [np.asarray(img, dtype=np.uint8) for img in load_sample_images().images]
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64), photos


def background(photos: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8: a random square crop of a sample photo, lightened to low contrast."""
    photo = photos[rng.integers(len(photos))]
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 6, min(h, w) // 2 + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(photo[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (0.45 * crop + 0.55 * 200.0).astype(np.uint8)


def draw_digit(canvas: np.ndarray, digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``canvas`` (S, S, 3) uint8 with ``digit`` (8, 8) in [0, 1] drawn as dark ink at 70-100% of the
    side and a random offset; bicubic upscaling of the scan."""
    size = canvas.shape[0]
    side = int(round(size * rng.uniform(0.7, 1.0)))
    alpha = np.clip(cv2.resize(digit, (side, side), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)[..., None]
    y, x = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
    ink = rng.integers(0, 70, size=3).astype(np.float32)
    out = canvas.astype(np.float32)
    region = out[y:y + side, x:x + side]
    out[y:y + side, x:x + side] = region * (1.0 - alpha) + ink * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def digit_image(digit: np.ndarray, photos: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    return draw_digit(background(photos, size, rng), digit, rng)


def mosaic_image(cells: list[np.ndarray | None], photos: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """2x2 mosaic of side ``size``; a cell is a digit (8, 8) or None (blank background)."""
    half = size // 2
    out = np.zeros((2 * half, 2 * half, 3), dtype=np.uint8)
    for k, digit in enumerate(cells):
        tile = background(photos, half, rng)
        if digit is not None:
            tile = draw_digit(tile, digit, rng)
        r, c = divmod(k, 2)
        out[r * half:(r + 1) * half, c * half:(c + 1) * half] = tile
    return out


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"{path}: could not write JPEG")


def _fresh(out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _split_digits(n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Shuffled digit scans: (train indices, test indices, (scans, labels), photos)."""
    digits, labels, photos = load_sources()
    if n_train + n_test > len(digits):
        raise ValueError(f"{n_train} train + {n_test} test images need more than the {len(digits)} scanned digits")
    order = np.random.default_rng(seed).permutation(len(digits))
    return order[:n_train], order[n_train:n_train + n_test], (digits, labels), photos


# --------------------------------------------------------------------------------------- builders


def build_binary(out: Path, n_train: int = 1500, n_test: int = 48, size: int = 48, seed: int = 0) -> Built:
    """Invasive layout; ``invasive`` = 1 when the digit is in ``POSITIVE_DIGITS`` (~30%)."""
    out = _fresh(Path(out))
    train_idx, test_idx, (digits, labels), photos = _split_digits(n_train, n_test, seed)
    rng = np.random.default_rng([seed, 1])
    for folder, idx in (("train", train_idx), ("test", test_idx)):
        for name, i in enumerate(idx, start=1):
            write_jpeg(out / folder / f"{name}.jpg", digit_image(digits[i], photos, size, rng))
    target = np.isin(labels[train_idx], POSITIVE_DIGITS).astype(int)
    pd.DataFrame({"name": np.arange(1, n_train + 1), "invasive": target}).to_csv(out / "train_labels.csv", index=False)
    pd.DataFrame({"name": np.arange(1, n_test + 1), "invasive": 0.5}).to_csv(out / "sample_submission.csv", index=False)
    return Built("binary", "invasive", out, n_train, n_test, size, ["invasive"], {"invasive": int(target.sum())})


def _mosaic_cells(n: int, weights: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
    """For each image, 4 cells: a digit scan index or -1 (blank); at least one digit per image."""
    by_class = [np.flatnonzero(labels == d) for d in range(10)]
    images = []
    for _ in range(n):
        blank = rng.random(4) < BLANK_CELL
        if blank.all():
            blank[rng.integers(4)] = False
        classes = rng.choice(10, size=4, p=weights)
        images.append([-1 if b else int(rng.choice(by_class[c])) for b, c in zip(blank, classes)])
    return images


def build_multilabel(out: Path, n_train: int = 1200, n_test: int = 32, size: int = 64, seed: int = 0) -> Built:
    """Planet layout; 2x2 digit mosaics tagged with the digits present."""
    out = _fresh(Path(out))
    digits, labels, photos = load_sources()
    rng = np.random.default_rng([seed, 2])
    weights = np.empty(10)
    weights[rng.permutation(10)] = TAG_WEIGHTS
    weights /= weights.sum()
    rows = []
    for split, prefix, folder, n in (("train", "train", "train-jpg", n_train), ("test", "test", "test-jpg", n_test)):
        for i, cells in enumerate(_mosaic_cells(n, weights, labels, rng)):
            name = f"{prefix}_{i}"
            write_jpeg(out / folder / f"{name}.jpg", mosaic_image([digits[c] if c >= 0 else None for c in cells], photos, size, rng))
            present = sorted({int(labels[c]) for c in cells if c >= 0})
            rows.append((split, name, " ".join(DIGIT_NAMES[d] for d in present)))
    frame = pd.DataFrame(rows, columns=["split", "image_name", "tags"])
    train = frame[frame.split == "train"][["image_name", "tags"]]
    train.to_csv(out / "train_v2.csv", index=False)
    test = frame[frame.split == "test"][["image_name"]].assign(tags=DIGIT_NAMES[0])
    test.to_csv(out / "sample_submission_v2.csv", index=False)
    tags = train["tags"].str.split(" ").explode().value_counts()
    classes = sorted(tags.index)
    return Built("multilabel", "planet", out, n_train, n_test, size, classes, {c: int(tags[c]) for c in classes})


def build_multiclass(out: Path, n_train: int = 1200, n_test: int = 40, size: int = 48, seed: int = 0) -> Built:
    """Image-folder layout (``seg_train/<class>/``, ``seg_test/<class>/``); 10 digit classes."""
    out = _fresh(Path(out))
    train_idx, test_idx, (digits, labels), photos = _split_digits(n_train, n_test, seed)
    rng = np.random.default_rng([seed, 3])
    for folder, idx in (("seg_train", train_idx), ("seg_test", test_idx)):
        for i in idx:
            write_jpeg(out / folder / DIGIT_NAMES[labels[i]] / f"{i}.jpg", digit_image(digits[i], photos, size, rng))
    counts = np.bincount(labels[train_idx], minlength=10)
    classes = sorted(DIGIT_NAMES)
    return Built("multiclass", "imagefolder", out, n_train, n_test, size, classes,
                 {c: int(counts[DIGIT_NAMES.index(c)]) for c in classes})


COMPETITIONS = {"binary": "invasive", "multilabel": "planet", "multiclass": "imagefolder"}
BUILDERS: dict[str, Callable[..., Built]] = {
    "binary": build_binary,
    "multilabel": build_multilabel,
    "multiclass": build_multiclass,
}
