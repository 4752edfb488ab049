"""Competition-layout datasets of real photographs, textures, microscopy and astronomy that scikit-image ships.

The images are patches cut from the sample images in scikit-image's wheel (``skimage/data/``; read from that
folder directly, never through ``skimage.data``'s fetchers, so nothing is ever downloaded): photographs
(astronaut, camera, chelsea, coffee, rocket, motorcycle_left), textures (brick, grass, gravel), microscopy
(ihc, cell, retina), astronomy (hubble_deep_field, moon) and the 100 faces of ``lfw_subset.npy``. Each source
is scaled so that its longer side is at most :data:`MAX_SIDE` px and cut into :data:`TILE` px tiles: a tile is
a patch's **group** (the region of the source it was cut from; a face is a group of its own). Tiles with
almost no content (the black corners of the retina photo) are left out. For each source, a
:data:`TEST_SHARE` of its tiles is held out: the test patches come only from those tiles and the training
patches only from the others, so train and test are different regions of the same images (a real shift, as
when Invasive Species' train and test came from different places). A patch is a random square of
:data:`PATCH_SIDES` px (a face: 20-25 of its 25 px) inside its tile, resized to ``size`` px and saved as RGB
JPEG. Everything is rebuilt from a seed: the same seed gives byte-identical files.

The data folder holds exactly what the competition's preset reads; the test labels are never written
there: the builder returns them (:attr:`Built.test_labels`) for the benchmark to keep aside and score with,
and the groups of both splits (:attr:`Built.groups`).

Layouts (``BUILDERS``: kind -> builder; each returns a :class:`Built`):

- ``logloss``, ``dog-breed-identification`` preset: ``labels.csv`` (``id,breed``; 32-hex-digit ids),
  ``train/<id>.jpg``, ``test/<id>.jpg``, ``sample_submission.csv`` (``id`` + one probability column per
  class, sorted). The class is the source: :data:`LOGLOSS_CLASSES` (14 sources, the same number of patches
  each, as the breeds are roughly balanced).
- ``columnauc``, ``plant-pathology-2020-fgvc7`` preset: ``train.csv`` (``image_id`` + one-hot
  ``healthy,multiple_diseases,rust,scab``), ``images/Train_<i>.jpg``, ``images/Test_<i>.jpg``, ``test.csv``
  (``image_id``), ``sample_submission.csv`` (``image_id`` + the four columns). The class is a grouping of
  sources (:data:`COLUMN_GROUPS`: healthy = textures and astronomy, rust = microscopy, scab = photographs) and,
  as in the competition, multiple_diseases shows both: a scab patch with a rust patch pasted in
  (:data:`COLUMN_COMPOSITES`; its group is the pair of regions, both of its split). The classes come in the
  competition's shares (:data:`COLUMN_SHARES`: 28%, 5%, 34%, 33% of its training images); a class's patches are
  spread evenly over its sources. Every patch is relit (:func:`relight`: grey half of the time, contrast and
  brightness jittered), so that colour alone does not give the class away.

Within a source, patches are spread evenly over its tiles; several patches of a tile overlap, so the
toolkit's folds (which know nothing of the tiles) put near-copies on both sides of a fold, as random folds
of real data do. The held-out test split is the honest score.
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from realdata import Built as _Built
from realdata import write_jpeg

EXTRA_HINT = 'pip install -e ".[bench]"'
MAX_SIDE = 640  # sources are scaled down to this longer side first (the retina photo is 1411 px)
TILE = 128  # side of a group's region in the scaled source
PATCH_SIDES = (64, 128)  # side of a patch in the scaled source, drawn uniformly in this range
FACE_SIDES = (20, 25)  # lfw faces are 25 x 25: a patch is most of the face
TEST_SHARE = 0.25  # of each source's tiles (faces), held out for the test split
MIN_TILE_STD = 4.0  # grey-level std under which a tile holds no content (flat background)
MAX_DARK_SHARE = 0.5  # a tile more than half near-black (grey < 10) holds no content
N_FACES = 100  # lfw_subset.npy: the first 100 images are faces, the next 100 non-faces
INSET_SIDES = (0.4, 0.6)  # a composite's inset patch, as a share of the patch side
# relight: other light and cameras, so that colour alone does not give the class away
GREY_SHARE = 0.5
CONTRAST = (0.6, 1.4)
BRIGHTNESS = 30.0

# source name -> (file in skimage/data, category); lfw faces are "face"
SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("astronaut.png", "photograph"),
    "camera": ("camera.png", "photograph"),
    "chelsea": ("chelsea.png", "photograph"),
    "coffee": ("coffee.png", "photograph"),
    "rocket": ("rocket.jpg", "photograph"),
    "motorcycle_left": ("motorcycle_left.png", "photograph"),
    "brick": ("brick.png", "texture"),
    "grass": ("grass.png", "texture"),
    "gravel": ("gravel.png", "texture"),
    "ihc": ("ihc.png", "microscopy"),
    "cell": ("cell.png", "microscopy"),
    "retina": ("retina.jpg", "microscopy"),
    "hubble_deep_field": ("hubble_deep_field.jpg", "astronomy"),
    "moon": ("moon.png", "astronomy"),
    "face": ("lfw_subset.npy", "face"),
}
LOGLOSS_CLASSES = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "face", "grass", "gravel",
                   "hubble_deep_field", "ihc", "moon", "retina", "rocket")
COLUMN_CLASSES = ("healthy", "multiple_diseases", "rust", "scab")  # the preset's target columns, in its order
COLUMN_GROUPS: dict[str, tuple[str, ...]] = {
    "healthy": ("brick", "grass", "gravel", "hubble_deep_field", "moon"),  # textures and astronomy
    "rust": ("ihc", "cell", "retina"),  # microscopy
    "scab": ("astronaut", "camera", "chelsea", "coffee", "rocket", "motorcycle_left"),  # photographs
}
# as in the competition, multiple_diseases shows both: a scab patch with a rust patch pasted in
COLUMN_COMPOSITES = {"multiple_diseases": (COLUMN_GROUPS["scab"], COLUMN_GROUPS["rust"])}
COLUMN_SHARES = {"healthy": 516 / 1821, "multiple_diseases": 91 / 1821, "rust": 622 / 1821, "scab": 592 / 1821}


class MissingExtra(ImportError):
    """scikit-image (the benchmarks' optional extra) is not installed."""


@dataclass
class Built(_Built):
    """What a builder wrote (see :class:`realdata.Built`) plus what stays out of the data folder: the test
    split's labels (id column + one 0/1 column per class, in ``classes`` order) and every patch's group."""

    test_labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)  # id, split, class, source, group

    def region_sets(self) -> dict[str, set[str]]:
        """split -> the regions its patches come from (a composite's two regions both count)."""
        return {split: {r for group in rows["group"] for r in group.split("+")} for split, rows in self.groups.groupby("split")}

    def describe(self) -> str:
        found = self.region_sets()
        train, test = found.get("train", set()), found.get("test", set())
        sources = {s for name in self.groups["source"] for s in name.split("+")}
        return (super().describe() + f"; {len(sources)} sources cut into {len(train)} training and {len(test)} held-out test "
                f"regions (groups), {len(train & test)} in both splits")


# ---------------------------------------------------------------------------------------- sources


def data_folder() -> Path:
    """scikit-image's bundled data folder (``skimage/data/`` in the installed wheel)."""
    try:
        import skimage
    except ImportError:
        raise MissingExtra(f"scikit-image is not installed: the photo benchmarks need the bench extra: {EXTRA_HINT}") from None
    return Path(skimage.__file__).parent / "data"


def load_source(name: str) -> list[np.ndarray]:
    """The images of source ``name``, each (H, W, 3) uint8 RGB scaled to a longer side <= MAX_SIDE (faces: the
    100 lfw faces, 25 x 25)."""
    from PIL import Image

    file, _ = SOURCES[name]
    path = data_folder() / file
    if not path.is_file():
        raise MissingExtra(f"{path}: not in the installed scikit-image; the photo benchmarks need the files its wheel ships ({EXTRA_HINT})")
    if name == "face":
        faces = np.load(path)[:N_FACES]
        faces = np.clip(np.rint(faces * 255.0 if faces.max() <= 1.0 else faces), 0, 255).astype(np.uint8)
        return [np.repeat(f[..., None], 3, axis=2) for f in faces]
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return [rgb]


@dataclass(frozen=True)
class Region:
    """One group: a tile of a source image (a whole face for ``face``)."""

    source: str
    image: int
    y: int
    x: int
    side: int

    @property
    def name(self) -> str:
        return f"{self.source}/{self.image}" if self.source == "face" else f"{self.source}/r{self.y // TILE}c{self.x // TILE}"


def regions(name: str, images: list[np.ndarray]) -> list[Region]:
    """The usable groups of a source: TILE-px tiles with content (every face)."""
    if name == "face":
        return [Region(name, i, 0, 0, im.shape[0]) for i, im in enumerate(images)]
    out = []
    for i, im in enumerate(images):
        grey = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
        for y in range(0, grey.shape[0] - TILE + 1, TILE):
            for x in range(0, grey.shape[1] - TILE + 1, TILE):
                tile = grey[y:y + TILE, x:x + TILE]
                if tile.std() >= MIN_TILE_STD and (tile < 10).mean() <= MAX_DARK_SHARE:
                    out.append(Region(name, i, y, x, TILE))
    return out


def split_regions(found: list[Region], rng: np.random.Generator) -> tuple[list[Region], list[Region]]:
    """(training regions, held-out test regions): TEST_SHARE of them, at least one each, drawn at random."""
    if len(found) < 2:
        raise ValueError(f"{found[0].source if found else '?'}: {len(found)} usable region(s); a train/test split needs two")
    order = rng.permutation(len(found))
    n_test = min(len(found) - 1, max(1, round(TEST_SHARE * len(found))))
    return [found[i] for i in sorted(order[n_test:])], [found[i] for i in sorted(order[:n_test])]


def cut_patch(image: np.ndarray, region: Region, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8: a random square inside ``region`` of ``image``, resized to ``size``."""
    low, high = FACE_SIDES if region.source == "face" else PATCH_SIDES
    side = int(rng.integers(low, min(high, region.side) + 1))
    y = region.y + int(rng.integers(0, region.side - side + 1))
    x = region.x + int(rng.integers(0, region.side - side + 1))
    crop = image[y:y + side, x:x + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC)


def spread(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k,) counts summing to ``n``, as even as possible; the larger ones on randomly drawn places."""
    counts = np.full(k, n // k)
    counts[rng.permutation(k)[: n % k]] += 1
    return counts


@dataclass
class Patch:
    split: str
    label: str
    source: str  # the source's name; a composite: "<base>+<inset>"
    group: str  # the region's name; a composite: "<base region>+<inset region>" (both of the patch's split)
    pixels: np.ndarray


def relight(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` as if taken in other light: grey with probability GREY_SHARE, contrast and brightness jittered."""
    x = rgb.astype(np.float32)
    if rng.random() < GREY_SHARE:
        x = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2).astype(np.float32)
    contrast, brightness = rng.uniform(*CONTRAST), rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    mean = x.mean()
    return np.clip(np.rint((x - mean) * contrast + mean + brightness), 0, 255).astype(np.uint8)


def draw_patches(classes: dict[str, tuple[str, ...]], n_train: dict[str, int], n_test: dict[str, int], size: int, seed: int,
                 composites: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None, relit: bool = False) -> list[Patch]:
    """Patches of every class: ``n_train[c]`` from its sources' training regions, ``n_test[c]`` from their held-out
    regions; a class's patches spread evenly over its sources, a source's over its regions (round-robin in a
    random order). A ``composites`` class (base sources, inset sources) is a base patch with an inset patch
    (INSET_SIDES of its side) pasted in at a random place, both from regions of the same split. ``relit``:
    every patch through :func:`relight`. Deterministic in ``seed``."""
    composites = composites or {}
    rng = np.random.default_rng([seed, 21])
    used = [s for sources in classes.values() for s in sources] + [s for pair in composites.values() for part in pair for s in part]
    names = sorted(set(used))
    loaded = {name: load_source(name) for name in names}
    split = {name: split_regions(regions(name, loaded[name]), rng) for name in names}
    patches = []
    for label in [*classes, *composites]:
        base_sources, inset_sources = composites.get(label, (classes.get(label, ()), ()))
        for split_name, wanted, index in (("train", n_train, 0), ("test", n_test, 1)):
            for source, count in zip(base_sources, spread(wanted[label], len(base_sources), rng)):
                pool = split[source][index]
                order = rng.permutation(len(pool))
                for j in range(count):
                    region = pool[order[j % len(pool)]]
                    pixels, name, group = cut_patch(loaded[source][region.image], region, size, rng), source, region.name
                    if inset_sources:
                        inset_source = inset_sources[int(rng.integers(len(inset_sources)))]
                        inset_pool = split[inset_source][index]
                        inset_region = inset_pool[int(rng.integers(len(inset_pool)))]
                        side = round(size * rng.uniform(*INSET_SIDES))
                        inset = cut_patch(loaded[inset_source][inset_region.image], inset_region, side, rng)
                        y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
                        pixels = pixels.copy()
                        pixels[y:y + side, x:x + side] = inset
                        name, group = f"{source}+{inset_source}", f"{group}+{inset_region.name}"
                    patches.append(Patch(split_name, label, name, group, relight(pixels, rng) if relit else pixels))
    return patches


def _fresh(out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _one_hot(labels: list[str], classes: list[str]) -> np.ndarray:
    index = {c: j for j, c in enumerate(classes)}
    hot = np.zeros((len(labels), len(classes)), dtype=np.int64)
    hot[np.arange(len(labels)), [index[label] for label in labels]] = 1
    return hot


def _shuffled(patches: list[Patch], split: str, rng: np.random.Generator) -> list[Patch]:
    rows = [p for p in patches if p.split == split]
    return [rows[i] for i in rng.permutation(len(rows))]


def _groups_frame(ids: list[str], rows: list[Patch], split: str, id_col: str) -> pd.DataFrame:
    return pd.DataFrame({id_col: ids, "split": split, "class": [p.label for p in rows], "source": [p.source for p in rows],
                         "group": [p.group for p in rows]})


def _shares(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Counts per class summing to ``n`` in the given shares (largest remainders), at least 2 each."""
    raw = {c: n * s for c, s in shares.items()}
    counts = {c: max(2, int(v)) for c, v in raw.items()}
    for c in sorted(raw, key=lambda c: raw[c] - int(raw[c]), reverse=True)[: max(0, n - sum(counts.values()))]:
        counts[c] += 1
    return counts


# --------------------------------------------------------------------------------------- builders


def build_logloss(out: Path, n_train: int = 1120, n_test: int = 280, size: int = 64, seed: int = 0) -> Built:
    """dog-breed-identification preset; the class (``breed``) is the source, the same count per class."""
    out = _fresh(Path(out))
    classes = list(LOGLOSS_CLASSES)
    per_train = dict(zip(classes, spread(n_train, len(classes), np.random.default_rng([seed, 22]))))
    per_test = dict(zip(classes, spread(n_test, len(classes), np.random.default_rng([seed, 23]))))
    patches = draw_patches({c: (c,) for c in classes}, per_train, per_test, size, seed)
    rng = np.random.default_rng([seed, 24])
    frames = {}
    for split, folder in (("train", "train"), ("test", "test")):
        rows = _shuffled(patches, split, rng)
        ids = [rng.bytes(16).hex() for _ in rows]
        for i, p in zip(ids, rows):
            write_jpeg(out / folder / f"{i}.jpg", p.pixels)
        frames[split] = (ids, rows)
    train_ids, train_rows = frames["train"]
    test_ids, test_rows = frames["test"]
    pd.DataFrame({"id": train_ids, "breed": [p.label for p in train_rows]}).to_csv(out / "labels.csv", index=False)
    sample = pd.DataFrame({"id": test_ids, **{c: 1.0 / len(classes) for c in classes}})
    sample.to_csv(out / "sample_submission.csv", index=False)
    test_labels = pd.DataFrame(_one_hot([p.label for p in test_rows], classes), columns=classes)
    test_labels.insert(0, "id", test_ids)
    groups = pd.concat([_groups_frame(train_ids, train_rows, "train", "id"), _groups_frame(test_ids, test_rows, "test", "id")])
    counts = pd.Series([p.label for p in train_rows]).value_counts()
    return Built("logloss", "dog-breed-identification", out, len(train_rows), len(test_rows), size, classes,
                 {c: int(counts.get(c, 0)) for c in classes}, test_labels=test_labels, groups=groups.reset_index(drop=True))


def build_columnauc(out: Path, n_train: int = 1000, n_test: int = 250, size: int = 64, seed: int = 0) -> Built:
    """plant-pathology-2020-fgvc7 preset; the four one-hot columns are groupings of sources (multiple_diseases: a scab
    patch with a rust inset) in the competition's shares, every patch relit."""
    out = _fresh(Path(out))
    classes = list(COLUMN_CLASSES)
    patches = draw_patches(COLUMN_GROUPS, _shares(n_train, COLUMN_SHARES), _shares(n_test, COLUMN_SHARES), size, seed + 1000,
                           composites=COLUMN_COMPOSITES, relit=True)
    rng = np.random.default_rng([seed, 25])
    frames = {}
    for split, prefix in (("train", "Train"), ("test", "Test")):
        rows = _shuffled(patches, split, rng)
        ids = [f"{prefix}_{i}" for i in range(len(rows))]
        for i, p in zip(ids, rows):
            write_jpeg(out / "images" / f"{i}.jpg", p.pixels)
        frames[split] = (ids, rows)
    train_ids, train_rows = frames["train"]
    test_ids, test_rows = frames["test"]
    train = pd.DataFrame(_one_hot([p.label for p in train_rows], classes), columns=classes)
    train.insert(0, "image_id", train_ids)
    train.to_csv(out / "train.csv", index=False)
    pd.DataFrame({"image_id": test_ids}).to_csv(out / "test.csv", index=False)
    pd.DataFrame({"image_id": test_ids, **{c: 0.25 for c in classes}}).to_csv(out / "sample_submission.csv", index=False)
    test_labels = pd.DataFrame(_one_hot([p.label for p in test_rows], classes), columns=classes)
    test_labels.insert(0, "image_id", test_ids)
    groups = pd.concat([_groups_frame(train_ids, train_rows, "train", "image_id"),
                        _groups_frame(test_ids, test_rows, "test", "image_id")])
    counts = train[classes].sum()
    return Built("columnauc", "plant-pathology-2020-fgvc7", out, len(train_rows), len(test_rows), size, classes,
                 {c: int(counts[c]) for c in classes}, test_labels=test_labels, groups=groups.reset_index(drop=True))


COMPETITIONS = {"logloss": "dog-breed-identification", "columnauc": "plant-pathology-2020-fgvc7"}
BUILDERS: dict[str, Callable[..., Built]] = {
    "logloss": build_logloss,
    "columnauc": build_columnauc,
}
