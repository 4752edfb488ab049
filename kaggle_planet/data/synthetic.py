"""Synthetic demo datasets in the exact folder layouts and CSV formats of the real competitions.

Each class draws a distinct visual motif (colour, shape, texture) at a random place, so a CNN can learn
the labels; the label structure mimics the real data (Planet: exactly one weather tag per image, cloudy
images carry no other tag, land tags co-occur, rare tags are rare). Same seed, same files.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

Image = np.ndarray  # (H, W, 3) uint8, RGB
Rng = np.random.Generator

PLANET_TAGS = (
    "agriculture", "artisinal_mine", "bare_ground", "blooming", "blow_down", "clear", "cloudy",
    "conventional_mine", "cultivation", "habitation", "haze", "partly_cloudy", "primary", "road",
    "selective_logging", "slash_burn", "water",
)
# Approximate shares in the real train_v2.csv (40,479 images).
WEATHER_SHARE = {"clear": 0.70, "partly_cloudy": 0.18, "haze": 0.07, "cloudy": 0.05}
LAND_SHARE = {
    "primary": 0.93, "agriculture": 0.31, "road": 0.20, "water": 0.18, "cultivation": 0.11, "habitation": 0.09,
    "bare_ground": 0.02, "selective_logging": 0.009, "artisinal_mine": 0.008, "blooming": 0.008,
    "slash_burn": 0.005, "blow_down": 0.0025, "conventional_mine": 0.0025,
}
INTEL_CLASSES = ("buildings", "forest", "glacier", "mountain", "sea", "street")


# --------------------------------------------------------------------------------------- drawing


def _canvas(rng: Rng, size: tuple[int, int], base: tuple[int, int, int], noise: float = 12.0) -> Image:
    h, w = size
    img = np.empty((h, w, 3), dtype=np.float32)
    img[:] = base
    img += rng.normal(0, noise, size=(h, w, 1)) + rng.normal(0, noise / 3, size=(h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _xy(rng: Rng, img: Image, margin: float = 0.1) -> tuple[int, int]:
    h, w = img.shape[:2]
    return int(rng.uniform(margin, 1 - margin) * w), int(rng.uniform(margin, 1 - margin) * h)


def _scale(img: Image, fraction: float) -> int:
    return max(1, int(round(min(img.shape[:2]) * fraction)))


def _rect(img: Image, rng: Rng, colour, frac: float) -> None:
    import cv2

    x, y = _xy(rng, img)
    s = _scale(img, frac)
    cv2.rectangle(img, (x - s, y - s // 2), (x + s, y + s // 2), colour, -1)


def _blobs(img: Image, rng: Rng, colour, frac: float, count: int) -> None:
    import cv2

    for _ in range(count):
        cv2.circle(img, _xy(rng, img), _scale(img, frac), colour, -1)


def _line(img: Image, rng: Rng, colour, frac: float, curved: bool = False) -> None:
    import cv2

    h, w = img.shape[:2]
    if curved:
        xs = np.linspace(0, w - 1, 12)
        phase, amp = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.25) * h
        y0 = rng.uniform(0.3, 0.7) * h
        pts = np.stack([xs, y0 + amp * np.sin(xs / w * 2 * np.pi + phase)], axis=1).astype(np.int32)
        cv2.polylines(img, [pts], False, colour, _scale(img, frac))
    else:
        cv2.line(img, _xy(rng, img, 0.0), _xy(rng, img, 0.0), colour, _scale(img, frac))


def _stripes(img: Image, rng: Rng, colour, frac: float) -> None:
    import cv2

    x, y = _xy(rng, img, 0.2)
    s = _scale(img, 0.25)
    step = max(2, _scale(img, frac) * 3)
    for offset in range(-s, s, step):
        cv2.line(img, (x - s, y + offset), (x + s, y + offset), colour, max(1, step // 3))


PLANET_MOTIFS: dict[str, Callable[[Image, Rng], None]] = {
    "agriculture": lambda im, r: _rect(im, r, (190, 205, 110), 0.22),
    "cultivation": lambda im, r: _stripes(im, r, (160, 120, 70), 0.03),
    "habitation": lambda im, r: _blobs(im, r, (200, 200, 200), 0.04, 6),
    "road": lambda im, r: _line(im, r, (215, 180, 140), 0.03),
    "water": lambda im, r: _line(im, r, (30, 60, 170), 0.06, curved=True),
    "bare_ground": lambda im, r: _blobs(im, r, (150, 100, 60), 0.12, 1),
    "artisinal_mine": lambda im, r: _blobs(im, r, (240, 200, 40), 0.07, 2),
    "conventional_mine": lambda im, r: _rect(im, r, (230, 120, 30), 0.15),
    "blooming": lambda im, r: _blobs(im, r, (230, 110, 200), 0.03, 10),
    "selective_logging": lambda im, r: _stripes(im, r, (120, 70, 40), 0.015),
    "slash_burn": lambda im, r: _blobs(im, r, (20, 20, 20), 0.06, 3),
    "blow_down": lambda im, r: _line(im, r, (140, 230, 120), 0.08),
}


def _planet_image(tags: set[str], rng: Rng, size: int) -> Image:
    import cv2

    base = (40, 110, 45) if "primary" in tags else (120, 110, 90)
    img = _canvas(rng, (size, size), base)
    for tag in sorted(tags):
        if tag in PLANET_MOTIFS:
            PLANET_MOTIFS[tag](img, rng)
    # weather last: it sits between the camera and the ground
    if "cloudy" in tags:
        img = (0.15 * img + 0.85 * _canvas(rng, (size, size), (235, 235, 240), 20)).astype(np.uint8)
    elif "haze" in tags:
        img = (0.55 * img + 0.45 * np.array([200, 200, 210])).astype(np.uint8)
    elif "partly_cloudy" in tags:
        clouds = np.zeros((size, size), np.uint8)
        _blobs_mask(clouds, rng, 3)
        mask = cv2.GaussianBlur(clouds, (0, 0), max(1, size / 16)).astype(np.float32)[..., None] / 255.0
        img = (img * (1 - 0.9 * mask) + 245 * 0.9 * mask).astype(np.uint8)
    return img


def _blobs_mask(mask: np.ndarray, rng: Rng, count: int) -> None:
    import cv2

    for _ in range(count):
        cv2.circle(mask, _xy(rng, mask[..., None]), _scale(mask[..., None], 0.18), 255, -1)


def planet_labels(n: int, rng: Rng, min_per_tag: int = 0) -> list[set[str]]:
    """Tag sets with Planet's structure: one weather tag each, cloudy alone, land tags co-occurring."""
    weather = rng.choice(list(WEATHER_SHARE), size=n, p=list(WEATHER_SHARE.values()))
    labels: list[set[str]] = []
    for w in weather:
        tags = {str(w)}
        if w != "cloudy":
            for tag, share in LAND_SHARE.items():
                p = share
                if tag == "cultivation":  # cultivation sits inside agricultural land
                    p = 0.3 if "agriculture" in tags else 0.02
                elif tag == "habitation":
                    p = 0.25 if "road" in tags else 0.03
                elif tag in ("road", "water") and "agriculture" in tags:
                    p = share * 1.8
                if rng.random() < p:
                    tags.add(tag)
        labels.append(tags)
    _ensure_min_count(labels, rng, min_per_tag)
    return labels


def _ensure_min_count(labels: list[set[str]], rng: Rng, min_per_tag: int) -> None:
    """Make every tag appear at least ``min_per_tag`` times (tiny demos still allow K folds)."""
    if min_per_tag <= 0:
        return
    ground = [i for i, tags in enumerate(labels) if "cloudy" not in tags]
    for tag in PLANET_TAGS:
        count = sum(tag in tags for tags in labels)
        if count >= min_per_tag:
            continue
        # as many as the images allow: a dozen images cannot hold every tag min_per_tag times
        if tag in WEATHER_SHARE:
            pool = [i for i, tags in enumerate(labels) if "clear" in tags and len(tags) <= 2]
            for i in rng.choice(pool, size=min(min_per_tag - count, len(pool)), replace=False):
                labels[i] = {tag} if tag == "cloudy" else (labels[i] - {"clear"}) | {tag}
        else:
            candidates = [i for i in ground if tag not in labels[i]]
            for i in rng.choice(candidates, size=min(min_per_tag - count, len(candidates)), replace=False):
                labels[i].add(tag)


# ------------------------------------------------------------------------------------- writers


def _write_jpeg(path: Path, img: Image) -> None:
    import cv2

    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _make_planet(out: Path, n_train: int, n_test: int, size: int, rng: Rng) -> None:
    labels = planet_labels(n_train, rng, min_per_tag=min(5, max(3, n_train // 40)))
    (out / "train-jpg").mkdir()
    names = [f"train_{i}" for i in range(n_train)]
    for name, tags in zip(names, labels):
        _write_jpeg(out / "train-jpg" / f"{name}.jpg", _planet_image(tags, rng, size))
    pd.DataFrame({"image_name": names, "tags": [" ".join(sorted(t)) for t in labels]}).to_csv(
        out / "train_v2.csv", index=False, lineterminator="\n"
    )
    # the real test set is split 2:1 between test-jpg (test_<i>) and test-jpg-additional (file_<i>)
    n_main = n_test - n_test // 3
    test_ids = [("test-jpg", f"test_{i}") for i in range(n_main)] + [
        ("test-jpg-additional", f"file_{i}") for i in range(n_test - n_main)
    ]
    for folder in ("test-jpg", "test-jpg-additional"):
        (out / folder).mkdir()
    for (folder, name), tags in zip(test_ids, planet_labels(n_test, rng)):
        _write_jpeg(out / folder / f"{name}.jpg", _planet_image(tags, rng, size))
    pd.DataFrame({"image_name": [n for _, n in test_ids], "tags": "primary clear agriculture road water"}).to_csv(
        out / "sample_submission_v2.csv", index=False, lineterminator="\n"
    )


def _invasive_image(invasive: bool, rng: Rng, size: int) -> Image:
    import cv2

    h, w = int(size * 0.75), size  # the real photos are 1154x866 (landscape, 4:3)
    img = _canvas(rng, (h, w), (50, 95, 40), 18)
    for _ in range(12):  # foliage texture
        cv2.ellipse(img, _xy(rng, img, 0), (_scale(img, 0.08), _scale(img, 0.03)), float(rng.uniform(0, 180)), 0, 360,
                    (int(rng.integers(30, 70)), int(rng.integers(90, 140)), 40), -1)
    if invasive:  # hydrangea: clusters of small blue-violet florets
        for _ in range(int(rng.integers(2, 5))):
            cx, cy = _xy(rng, img, 0.15)
            for _ in range(15):
                p = (int(cx + rng.normal(0, _scale(img, 0.05))), int(cy + rng.normal(0, _scale(img, 0.05))))
                cv2.circle(img, p, _scale(img, 0.018), (int(rng.integers(110, 160)), 120, 225), -1)
    return img


def _make_invasive(out: Path, n_train: int, n_test: int, size: int, rng: Rng) -> None:
    (out / "train").mkdir()
    (out / "test").mkdir()
    labels = (rng.random(n_train) < 0.63).astype(int)  # the real train set is about 63% invasive
    labels[:2], labels[2:4] = 1, 0
    for name, y in zip(range(1, n_train + 1), labels):
        _write_jpeg(out / "train" / f"{name}.jpg", _invasive_image(bool(y), rng, size))
    pd.DataFrame({"name": range(1, n_train + 1), "invasive": labels}).to_csv(out / "train_labels.csv", index=False, lineterminator="\n")
    for name in range(1, n_test + 1):
        _write_jpeg(out / "test" / f"{name}.jpg", _invasive_image(bool(rng.random() < 0.6), rng, size))
    pd.DataFrame({"name": range(1, n_test + 1), "invasive": 0.5}).to_csv(out / "sample_submission.csv", index=False, lineterminator="\n")


def _scene_image(scene: str, rng: Rng, size: int) -> Image:
    import cv2

    palette = {
        "buildings": (150, 140, 130), "forest": (35, 90, 35), "glacier": (210, 225, 240),
        "mountain": (120, 110, 105), "sea": (40, 90, 170), "street": (90, 90, 95),
    }
    img = _canvas(rng, (size, size), palette[scene])
    if scene == "buildings":
        for _ in range(4):
            _rect(img, rng, (int(rng.integers(170, 220)),) * 3, 0.12)
    elif scene == "forest":
        _blobs(img, rng, (20, 130, 30), 0.08, 12)
    elif scene == "glacier":
        _line(img, rng, (160, 200, 235), 0.04)
    elif scene == "mountain":
        pts = np.array([[0, size - 1], [rng.integers(size // 4, 3 * size // 4), rng.integers(0, size // 3)], [size - 1, size - 1]], np.int32)
        cv2.fillPoly(img, [pts], (90, 80, 75))
    elif scene == "sea":
        img[: size // 3] = (150, 190, 235)
    elif scene == "street":
        cv2.line(img, (size // 2, 0), (size // 2, size - 1), (240, 230, 80), _scale(img, 0.04))
    return img


def _make_imagefolder(out: Path, n_train: int, n_test: int, size: int, rng: Rng) -> None:
    for split, n in (("seg_train", n_train), ("seg_test", n_test)):
        scenes = [INTEL_CLASSES[i % len(INTEL_CLASSES)] for i in range(n)]
        for scene in INTEL_CLASSES:
            (out / split / scene).mkdir(parents=True)
        for i, scene in enumerate(scenes):
            _write_jpeg(out / split / scene / f"{i}.jpg", _scene_image(scene, rng, size))


MAKERS: dict[str, Callable[[Path, int, int, int, Rng], None]] = {
    "planet": _make_planet,
    "invasive": _make_invasive,
    "imagefolder": _make_imagefolder,
}


# (lowest, highest) allowed per argument: every count inside makes a dataset that passes `check`; the tops
# keep a typo (--size 100000) from allocating tens of GB before any message.
DEMO_BOUNDS: dict[str, tuple[int, int]] = {"n_train": (12, 200_000), "n_test": (1, 200_000), "size": (16, 2048), "seed": (0, 2**32 - 1)}
DEMO_MAX_PIXELS = 2_000_000_000  # (n_train + n_test) x size^2: about 100k images of 128 px, a few GB of JPEG


def check_demo_bounds(**values: int) -> None:
    """Refuse a make-demo-data argument outside :data:`DEMO_BOUNDS`, or a dataset over :data:`DEMO_MAX_PIXELS`."""
    for name, value in values.items():
        lo, hi = DEMO_BOUNDS[name]
        if not lo <= value <= hi:
            raise KagglePlanetError(f"make-demo-data: --{name.replace('_', '-')} {value} is out of range; expected {lo} to {hi}")
    pixels = (values["n_train"] + values["n_test"]) * values["size"] ** 2
    if pixels > DEMO_MAX_PIXELS:
        raise KagglePlanetError(
            f"make-demo-data: {values['n_train']} + {values['n_test']} images of {values['size']}x{values['size']} are "
            f"{pixels:,} pixels; expected at most {DEMO_MAX_PIXELS:,} (fewer images or a smaller --size)"
        )


def make_demo_data(
    competition: str,
    out_dir: str | Path,
    n_train: int = 600,
    n_test: int = 150,
    size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic dataset in ``competition``'s real layout to ``out_dir``; returns ``out_dir``.

    Built in a temporary sibling folder and renamed into place, so an interrupted run leaves nothing.
    """
    if competition not in MAKERS:
        raise KagglePlanetError(f"make-demo-data: unknown competition {competition!r}; valid: {', '.join(MAKERS)}")
    check_demo_bounds(n_train=n_train, n_test=n_test, size=size, seed=seed)
    out = Path(out_dir)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise KagglePlanetError(f"{out}: exists and is not a folder; choose another --out")
        if any(out.iterdir()) and not overwrite:
            raise KagglePlanetError(f"{out}: folder exists and is not empty; choose another --out or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise KagglePlanetError(f"{out}: cannot create the folder ({exc.strerror})") from None
    try:
        MAKERS[competition](tmp, n_train, n_test, size, np.random.default_rng(seed))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s demo data to %s", competition, out)
    return out
