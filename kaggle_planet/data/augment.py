"""Augmentation presets: albumentations pipelines from an HxWx3 uint8 RGB image to a model tensor.

A pipeline is a deterministic *base* step, decode and resize (INTER_AREA) to a square base image
(:func:`base_side`: ``image_size`` for evaluation and most presets, 1.5x for ``heavy``'s crops), then
the preset's random steps to ``image_size``, then ``A.Normalize(mean, std)`` (the backbone's timm data
config) and ``ToTensorV2``. The loader decodes JPEGs at a reduced scale when the base side allows,
may cache base images (``cache``), and leaves normalisation to the device (``normalize=False``: uint8
batches). Evaluation (``train=False``) is always resize + normalise, whatever the preset, so
predictions never depend on the training recipe; test-time augmentation is ttach's job.

Albumentations 2.x draws from the ``Compose``'s own generator, not from numpy's or Python's global
one: pass ``seed`` for a reproducible sequence, and call :func:`reseed` in each DataLoader worker so
that workers holding a copy of the same seeded pipeline do not repeat each other's draws.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# albumentations asks pypi.org for a newer version on import (a 2 s timeout offline, as on a Kaggle notebook
# with the internet off); the user's own setting wins
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A
import cv2
import numpy as np
from albumentations.core.type_definitions import d4_group_elements
from albumentations.pytorch import ToTensorV2

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

# Satellite chips and photos have no natural border colour; mirroring keeps edge statistics
# plausible where black corners would teach the model an artefact.
_BORDER = cv2.BORDER_REFLECT_101


def _resize(size: int) -> list[A.BasicTransform]:
    return [A.Resize(height=size, width=size, interpolation=cv2.INTER_AREA)]


def _none(size: int) -> list[A.BasicTransform]:
    return []


def _light(size: int) -> list[A.BasicTransform]:
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            scale=(0.9, 1.1),
            translate_percent=(-0.0625, 0.0625),
            rotate=(-15, 15),
            border_mode=_BORDER,
            p=0.5,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
    ]


def _heavy(size: int) -> list[A.BasicTransform]:
    return [
        # Crops from the base image (1.5x the output side, see PRESETS) so that even the smallest crop
        # (area 0.6, ratio 0.8: 0.69 of the side) keeps at least `size` pixels of detail; lands at `size`.
        A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25), p=1.0),
        FastD4(p=1.0),
        A.Affine(
            scale=(0.9, 1.1),
            translate_percent=(-0.1, 0.1),
            rotate=(-30, 30),
            shear=(-8, 8),
            border_mode=_BORDER,
            p=0.7,
        ),
        A.OneOf(
            [
                A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.05, p=1.0),
                A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=25, val_shift_limit=20, p=1.0),
                A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=1.0),
            ],
            p=0.8,
        ),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.1, 1.5), p=1.0),
                A.GaussNoise(std_range=(0.02, 0.08), p=1.0),
            ],
            p=0.4,
        ),
        A.CoarseDropout(
            num_holes_range=(1, 6),
            hole_height_range=(0.05, 0.15),
            hole_width_range=(0.05, 0.15),
            fill=0,
            p=0.5,
        ),
    ]


def _affine(size: int) -> list[A.BasicTransform]:
    # No flips, no right-angle turns: for data whose orientation is part of the label (digits, text,
    # oriented objects). Small shifts, zooms, rotations and colour changes keep such labels.
    return [
        A.Affine(
            scale=(0.9, 1.1),
            translate_percent=(-0.08, 0.08),
            rotate=(-10, 10),
            shear=(-5, 5),
            border_mode=_BORDER,
            p=0.7,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=0.3),
    ]


# albumentations' D4 group elements as OpenCV calls: the same pixels, contiguous, several times faster
# than its numpy rot90/flip plus copy (a 256 px image: ~25 us instead of ~200 us)
_CV2_D4 = {
    "e": lambda x: x,
    "r90": lambda x: cv2.rotate(x, cv2.ROTATE_90_COUNTERCLOCKWISE),
    "r180": lambda x: cv2.rotate(x, cv2.ROTATE_180),
    "r270": lambda x: cv2.rotate(x, cv2.ROTATE_90_CLOCKWISE),
    "v": lambda x: cv2.flip(x, 0),
    "hvt": lambda x: cv2.rotate(cv2.transpose(x), cv2.ROTATE_180),
    "h": lambda x: cv2.flip(x, 1),
    "t": cv2.transpose,
}


class FastD4(A.D4):
    """``A.D4`` (same draws, same output) with the image moved by OpenCV; masks, boxes and keypoints as A.D4."""

    def get_params(self) -> dict[str, str]:
        # the draw of A.D4's ``random_generator.choice(d4_group_elements)`` (numpy's choice over n items is
        # integers(0, n, dtype=int64)), without choice's array conversion: ~1 us instead of ~6
        return {"group_element": d4_group_elements[int(self.random_generator.integers(0, len(d4_group_elements), dtype=np.int64))]}

    def apply(self, img: np.ndarray, group_element: str, **params: Any) -> np.ndarray:
        if img.ndim == 3 and img.shape[2] > 4:  # more channels than OpenCV's fast paths take
            return super().apply(img, group_element, **params)
        out = _CV2_D4[group_element](img)
        return out[..., None] if img.ndim == 3 and out.ndim == 2 else out  # OpenCV drops a single channel


def _d4(size: int) -> list[A.BasicTransform]:
    # One of the 8 symmetries of the square, uniformly: identity, 3 rotations, 4 reflections.
    # Satellite chips have no "up", so these are label-preserving and add no interpolation blur.
    return [FastD4(p=1.0)]


@dataclass(frozen=True)
class Preset:
    """One training augmentation preset.

    Every image is first decoded and resized (INTER_AREA) to a square *base image* of side
    ``round(base_scale * image_size)``, a deterministic step the loader may cache; ``steps`` are the
    random transforms from the base image to the ``image_size`` output.
    """

    steps: Callable[[int], list[A.BasicTransform]]
    help: str  # the docs' presets table and --help
    base_scale: float = 1.0


PRESETS: dict[str, Preset] = {
    "none": Preset(_none, "resize only"),
    "light": Preset(_light, "horizontal flip, small affine, brightness/contrast (photos and scenes with an up)"),
    "heavy": Preset(_heavy, "random resized crop, D4, affine, colour, blur/noise, coarse dropout (satellite chips)",
                    base_scale=1.5),
    "d4": Preset(_d4, "one of the 8 flips/rotations of the square (no up, no handedness: satellite chips)"),
    "affine": Preset(_affine, "small affine + colour, no flips or turns (digits, text, oriented objects)"),
}
PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")


def is_pipeline_file(augment: str) -> bool:
    """True when ``augment`` names an albumentations pipeline file rather than a preset."""
    return str(augment).lower().endswith(PIPELINE_SUFFIXES)


def check_preset(preset: str) -> str:
    """Return ``preset`` if it names a preset or a loadable pipeline file, else raise a one-line error."""
    if is_pipeline_file(preset):
        load_pipeline(preset)
        return preset
    if preset not in PRESETS:
        raise KagglePlanetError(
            f"augment: unknown preset {preset!r}; expected one of {', '.join(PRESETS)} "
            f"or a path to an albumentations pipeline ({', '.join(PIPELINE_SUFFIXES)}) saved with A.save"
        )
    return preset


def load_pipeline(path: str | Path) -> A.BasicTransform | A.BaseCompose:
    """An albumentations pipeline saved with ``A.save(pipeline, path, data_format="yaml"|"json")``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise KagglePlanetError(f"augment: {path}: pipeline file not found (expected a preset name or a file saved with A.save)")
    data_format = "json" if path.suffix.lower() == ".json" else "yaml"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline = A.load(str(path), data_format=data_format)
    except Exception as exc:  # noqa: BLE001 - any reader failure: say which file and why, in one line
        problem = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise KagglePlanetError(f"augment: {path}: not an albumentations pipeline saved with A.save ({type(exc).__name__}: {problem})") from None
    if not isinstance(pipeline, (A.BasicTransform, A.BaseCompose)):
        raise KagglePlanetError(f"augment: {path}: holds {type(pipeline).__name__}, not an albumentations transform")
    return pipeline


def base_side(preset: str, image_size: int, train: bool) -> int | None:
    """Side of the square base image a split's pipeline starts from (see :class:`Preset`); None for a
    pipeline file, which sees the image as decoded."""
    if not train:
        return int(image_size)
    if is_pipeline_file(preset):
        return None
    return int(round(PRESETS[preset].base_scale * image_size))


def _random_steps(augment: str, size: int) -> list[A.BasicTransform]:
    if is_pipeline_file(augment):
        # the user's pipeline sees the decoded image; the toolkit's resize makes the size right afterwards
        pipeline = load_pipeline(augment)
        # a saved Compose is unpacked so that its steps draw from our Compose's seeded generator
        steps = list(pipeline.transforms) if isinstance(pipeline, A.Compose) else [pipeline]
        return steps + _resize(size)
    steps = PRESETS[augment].steps(size)
    return steps if PRESETS[augment].base_scale == 1.0 else steps + _resize(size)  # lands at `size` in any case


def build_transform(
    preset: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    seed: int | None = None,
    *,
    normalize: bool = True,
    base: bool = True,
) -> A.Compose:
    """Albumentations pipeline for one split.

    preset: a key of ``PRESETS`` or the path of a pipeline saved with ``A.save`` (resize and
    normalisation are added after it); image_size: output side in pixels (square);
    mean, std: per-channel RGB values in [0, 1] (timm data config); train: False gives resize +
    normalise only. Input ``image``: HxWx3 uint8 RGB; output ``{"image": float32 (3, S, S) tensor}``.
    seed: the Compose's own generator seed (None: fresh randomness).
    normalize: False leaves the output the uint8 (S, S, 3) array, to be batched as it is (NHWC) and
    normalised on the device (:meth:`kaggle_planet.recipe.engine.Precision.to_device`): 4x fewer bytes per batch, and
    the HWC -> CHW transposition happens there too (for free: channels_last is that layout).
    base: False leaves out the resize to the base image (:func:`base_side`): the input is the base
    image already (the loader's decode-and-resize, which it may cache).
    """
    check_preset(preset)
    if int(image_size) != image_size or image_size < 1:
        raise KagglePlanetError(f"augment: image_size must be a positive integer, got {image_size!r}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise KagglePlanetError(
            f"augment: mean and std must be 3 per-channel values with std > 0, got mean={mean!r} std={std!r}"
        )
    size = int(image_size)
    side = base_side(preset, size, train)
    steps = _random_steps(preset, size) if train else []
    if base and side is not None:
        steps = _resize(side) + steps
    if normalize:
        steps.append(A.Normalize(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), max_pixel_value=255.0))
        steps.append(ToTensorV2())
    # one image per call: no image/mask shapes to check against each other
    return A.Compose(steps, seed=seed, is_check_shapes=False)


def is_deterministic(transform: A.Compose) -> bool:
    """Whether ``transform`` draws nothing at random (only resizing, normalising, conversion to a tensor)."""
    return all(isinstance(step, (A.Resize, A.Normalize, ToTensorV2)) for step in transform.transforms)


def resize_to_base(image: np.ndarray, side: int) -> np.ndarray:
    """The deterministic base step of every pipeline: ``image`` resized (INTER_AREA) to side x side."""
    if image.shape[0] == side and image.shape[1] == side:
        return image
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def reseed(transform: A.Compose, seed: int) -> None:
    """Give a pipeline a new generator seed, e.g. ``torch.initial_seed() % 2**32`` in a
    DataLoader ``worker_init_fn`` (differs per worker and per epoch)."""
    transform.set_random_seed(int(seed) % 2**32)
