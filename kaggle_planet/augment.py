"""Augmentation presets: albumentations pipelines from an HxWx3 uint8 RGB image to a model tensor.

Every pipeline ends with ``A.Normalize(mean, std)`` (the backbone's timm data config) and
``ToTensorV2``, so ``transform(image=img)["image"]`` is a float32 ``(3, image_size, image_size)``
torch tensor. Evaluation (``train=False``) is always resize + normalise, whatever the preset, so
predictions never depend on the training recipe; test-time augmentation is ttach's job.

Albumentations 2.x draws from the ``Compose``'s own generator, not from numpy's or Python's global
one: pass ``seed`` for a reproducible sequence, and call :func:`reseed` in each DataLoader worker so
that workers holding a copy of the same seeded pipeline do not repeat each other's draws.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from .errors import KagglePlanetError

log = logging.getLogger(__name__)

# Satellite chips and photos have no natural border colour; mirroring keeps edge statistics
# plausible where black corners would teach the model an artefact.
_BORDER = cv2.BORDER_REFLECT_101


def _resize(size: int) -> list[A.BasicTransform]:
    return [A.Resize(height=size, width=size, interpolation=cv2.INTER_AREA)]


def _none(size: int) -> list[A.BasicTransform]:
    return _resize(size)


def _light(size: int) -> list[A.BasicTransform]:
    return _resize(size) + [
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
        # Crop from the full-resolution image so zoom-ins keep detail; always lands at `size`.
        A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25), p=1.0),
        A.D4(p=1.0),
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


def _d4(size: int) -> list[A.BasicTransform]:
    # One of the 8 symmetries of the square, uniformly: identity, 3 rotations, 4 reflections.
    # Satellite chips have no "up", so these are label-preserving and add no interpolation blur.
    return _resize(size) + [A.D4(p=1.0)]


PRESETS: dict[str, Callable[[int], list[A.BasicTransform]]] = {
    "none": _none,
    "light": _light,
    "heavy": _heavy,
    "d4": _d4,
}


def check_preset(preset: str) -> str:
    """Return ``preset`` if it names a preset, else raise a one-line error listing the valid names."""
    if preset not in PRESETS:
        raise KagglePlanetError(
            f"augment: unknown preset {preset!r}; expected one of {', '.join(sorted(PRESETS))}"
        )
    return preset


def build_transform(
    preset: str,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    seed: int | None = None,
) -> A.Compose:
    """Albumentations pipeline for one split.

    preset: a key of ``PRESETS``; image_size: output side in pixels (square);
    mean, std: per-channel RGB values in [0, 1] (timm data config); train: False gives resize +
    normalise only. Input ``image``: HxWx3 uint8 RGB; output ``{"image": float32 (3, S, S) tensor}``.
    seed: the Compose's own generator seed (None: fresh randomness).
    """
    check_preset(preset)
    if int(image_size) != image_size or image_size < 1:
        raise KagglePlanetError(f"augment: image_size must be a positive integer, got {image_size!r}")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise KagglePlanetError(
            f"augment: mean and std must be 3 per-channel values with std > 0, got mean={mean!r} std={std!r}"
        )
    size = int(image_size)
    steps = PRESETS[preset](size) if train else _resize(size)
    steps = steps + [
        A.Normalize(mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), max_pixel_value=255.0),
        ToTensorV2(),
    ]
    return A.Compose(steps, seed=seed)


def reseed(transform: A.Compose, seed: int) -> None:
    """Give a pipeline a new generator seed, e.g. ``torch.initial_seed() % 2**32`` in a
    DataLoader ``worker_init_fn`` (differs per worker and per epoch)."""
    transform.set_random_seed(int(seed) % 2**32)
