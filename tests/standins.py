"""Small stand-ins of real competitions, in exactly each competition's file names and columns
(../shared/COMPETITIONS.md): a few dozen tiny images whose colour depends on the label, so a 1-epoch run
has something to learn. ``STANDINS[name](root, rng)`` writes one into ``root`` and returns its facts.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

SIZE = 32
N_TRAIN = 40
N_TEST = 12


def _image(path: Path, value: float, rng: np.random.Generator, size: int = SIZE) -> None:
    """A small image whose mean colour encodes ``value`` in [0, 1] (plus noise); format by extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = np.array([40 + 180 * value, 200 - 150 * value, 90], dtype=np.float64)
    img = np.clip(base + rng.normal(0, 18, (size, size, 3)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(path.suffix, img)
    assert ok, path
    path.write_bytes(data.tobytes())


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _hex_ids(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{v:016x}" for v in rng.integers(0, 2**62, n)]


def cassava(root: Path, rng: np.random.Generator) -> dict:
    labels = [i % 5 for i in range(N_TRAIN)]
    ids = [f"{1000015157 + 7919 * i}.jpg" for i in range(N_TRAIN + N_TEST)]
    for i, y in zip(ids, labels):
        _image(root / "train_images" / i, y / 4, rng)
    for i in ids[N_TRAIN:]:
        _image(root / "test_images" / i, rng.random(), rng)
    _write_csv(root / "train.csv", ["image_id", "label"], [[i, y] for i, y in zip(ids, labels)])
    _write_csv(root / "sample_submission.csv", ["image_id", "label"], [[i, 4] for i in ids[N_TRAIN:]])
    (root / "label_num_to_disease_map.json").write_text('{"0": "Cassava Bacterial Blight (CBB)", "1": "Cassava Brown Streak Disease (CBSD)", '
                                                         '"2": "Cassava Green Mottle (CGM)", "3": "Cassava Mosaic Disease (CMD)", "4": "Healthy"}')
    return {"classes": ["0", "1", "2", "3", "4"], "columns": ["image_id", "label"]}


def plant_pathology_2020(root: Path, rng: np.random.Generator) -> dict:
    names = ["healthy", "multiple_diseases", "rust", "scab"]
    rows = []
    for i in range(N_TRAIN):
        y = i % 4
        _image(root / "images" / f"Train_{i}.jpg", y / 3, rng)
        rows.append([f"Train_{i}", *[int(j == y) for j in range(4)]])
    _write_csv(root / "train.csv", ["image_id", *names], rows)
    for i in range(N_TEST):
        _image(root / "images" / f"Test_{i}.jpg", rng.random(), rng)
    _write_csv(root / "test.csv", ["image_id"], [[f"Test_{i}"] for i in range(N_TEST)])
    _write_csv(root / "sample_submission.csv", ["image_id", *names], [[f"Test_{i}", 0.25, 0.25, 0.25, 0.25] for i in range(N_TEST)])
    return {"classes": names, "columns": ["image_id", *names]}


def plant_pathology_2021(root: Path, rng: np.random.Generator) -> dict:
    choices = ["healthy", "scab", "frog_eye_leaf_spot", "scab frog_eye_leaf_spot", "rust", "complex", "powdery_mildew", "rust complex"]
    ids = [f"{h}.jpg" for h in _hex_ids(rng, N_TRAIN + N_TEST)]
    rows = []
    for n, i in enumerate(ids[:N_TRAIN]):
        tags = choices[n % len(choices)]
        _image(root / "train_images" / i, (n % len(choices)) / (len(choices) - 1), rng)
        rows.append([i, tags])
    _write_csv(root / "train.csv", ["image", "labels"], rows)
    for i in ids[N_TRAIN:]:
        _image(root / "test_images" / i, rng.random(), rng)
    _write_csv(root / "sample_submission.csv", ["image", "labels"], [[i, "healthy"] for i in ids[N_TRAIN:]])
    return {"classes": sorted({t for c in choices for t in c.split()}), "columns": ["image", "labels"]}


def dog_breed(root: Path, rng: np.random.Generator) -> dict:
    breeds = ["affenpinscher", "afghan_hound", "african_hunting_dog", "airedale"]
    ids = [h[:32].ljust(32, "0") for h in (a + b for a, b in zip(_hex_ids(rng, N_TRAIN + N_TEST), _hex_ids(rng, N_TRAIN + N_TEST)))]
    rows = []
    for n, i in enumerate(ids[:N_TRAIN]):
        _image(root / "train" / f"{i}.jpg", (n % 4) / 3, rng)
        rows.append([i, breeds[n % 4]])
    _write_csv(root / "labels.csv", ["id", "breed"], rows)
    for i in ids[N_TRAIN:]:
        _image(root / "test" / f"{i}.jpg", rng.random(), rng)
    _write_csv(root / "sample_submission.csv", ["id", *breeds], [[i, *[1 / 4] * 4] for i in ids[N_TRAIN:]])
    return {"classes": breeds, "columns": ["id", *breeds]}


def aerial_cactus(root: Path, rng: np.random.Generator) -> dict:
    ids = [f"{h[:32]}.jpg" for h in (a + b for a, b in zip(_hex_ids(rng, N_TRAIN + N_TEST), _hex_ids(rng, N_TRAIN + N_TEST)))]
    rows = []
    for n, i in enumerate(ids[:N_TRAIN]):
        y = int(n % 3 != 0)
        _image(root / "train" / i, y, rng)
        rows.append([i, y])
    _write_csv(root / "train.csv", ["id", "has_cactus"], rows)
    for i in ids[N_TRAIN:]:
        _image(root / "test" / i, rng.random(), rng)
    _write_csv(root / "sample_submission.csv", ["id", "has_cactus"], [[i, 0.5] for i in ids[N_TRAIN:]])
    return {"classes": ["has_cactus"], "columns": ["id", "has_cactus"]}


def histopathologic(root: Path, rng: np.random.Generator) -> dict:
    ids = [(a + b)[:40] for a, b in zip(_hex_ids(rng, N_TRAIN + N_TEST), _hex_ids(rng, N_TRAIN + N_TEST))]
    rows = []
    for n, i in enumerate(ids[:N_TRAIN]):
        y = n % 2
        _image(root / "train" / f"{i}.tif", y, rng)
        rows.append([i, y])
    _write_csv(root / "train_labels.csv", ["id", "label"], rows)
    for i in ids[N_TRAIN:]:
        _image(root / "test" / f"{i}.tif", rng.random(), rng)
    _write_csv(root / "sample_submission.csv", ["id", "label"], [[i, 0] for i in ids[N_TRAIN:]])
    return {"classes": ["cancer"], "columns": ["id", "label"]}


def dogs_vs_cats(root: Path, rng: np.random.Generator) -> dict:
    for n in range(N_TRAIN // 2):
        _image(root / "train" / f"cat.{n}.jpg", 0.0, rng)
        _image(root / "train" / f"dog.{n}.jpg", 1.0, rng)
    for n in range(1, N_TEST + 1):
        _image(root / "test" / f"{n}.jpg", rng.random(), rng)
    _write_csv(root / "sample_submission.csv", ["id", "label"], [[n, 0.5] for n in range(1, N_TEST + 1)])
    return {"classes": ["dog"], "columns": ["id", "label"]}


def siim_isic(root: Path, rng: np.random.Generator) -> dict:
    header = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis", "benign_malignant", "target"]
    rows = []
    for n in range(N_TRAIN):
        patient = f"IP_{1000000 + n // 3:07d}"  # three images per patient
        y = int((n // 3) % 3 == 0)
        name = f"ISIC_{20000 + n:07d}"
        _image(root / "jpeg" / "train" / f"{name}.jpg", y, rng)
        rows.append([name, patient, "male" if n % 2 else "female", 45, "torso", "melanoma" if y else "unknown",
                     "malignant" if y else "benign", y])
    _write_csv(root / "train.csv", header, rows)
    test = [f"ISIC_{90000 + n:07d}" for n in range(N_TEST)]
    for name in test:
        _image(root / "jpeg" / "test" / f"{name}.jpg", rng.random(), rng)
    _write_csv(root / "test.csv", ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge"],
               [[t, f"IP_{2000000 + n:07d}", "male", 50, "torso"] for n, t in enumerate(test)])
    _write_csv(root / "sample_submission.csv", ["image_name", "target"], [[t, 0] for t in test])
    return {"classes": ["target"], "columns": ["image_name", "target"], "groups": "patient_id"}


STANDINS: dict[str, Callable[[Path, np.random.Generator], dict]] = {
    "cassava-leaf-disease-classification": cassava,
    "plant-pathology-2020-fgvc7": plant_pathology_2020,
    "plant-pathology-2021-fgvc8": plant_pathology_2021,
    "dog-breed-identification": dog_breed,
    "aerial-cactus-identification": aerial_cactus,
    "histopathologic-cancer-detection": histopathologic,
    "dogs-vs-cats-redux-kernels-edition": dogs_vs_cats,
    "siim-isic-melanoma-classification": siim_isic,
}


def make_standin(name: str, root: Path, seed: int = 0) -> dict:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return STANDINS[name](root, np.random.default_rng(seed))
