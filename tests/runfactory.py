"""Realistic synthetic labels, predictions, data folders and run folders for tests and benchmarks.

Planet-like labels follow the competition's structure: exactly one of the four weather tags per image
(cloudy images carry nothing else), land tags with Planet's frequencies that co-occur through a shared
"development" factor (agriculture, road, habitation, cultivation, bare ground). Predictions are noisy,
roughly calibrated probabilities whose skill varies by class (rare tags are harder) and, across
models, share an image-level error so blending helps but does not make the task trivial.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kaggle_planet.core import artifacts
from kaggle_planet.data.competitions import get_spec, load_dataset

WEATHER = {"clear": 0.703, "partly_cloudy": 0.179, "haze": 0.067, "cloudy": 0.052}
# marginal frequencies in Planet's train_v2.csv (approximately) and loading on the development factor
LAND = {
    "primary": (0.927, -0.3),
    "agriculture": (0.305, 1.6),
    "road": (0.199, 1.5),
    "water": (0.183, 0.3),
    "cultivation": (0.110, 1.2),
    "habitation": (0.090, 1.8),
    "bare_ground": (0.021, 1.0),
    "selective_logging": (0.0084, 0.2),
    "artisinal_mine": (0.0084, 0.5),
    "blooming": (0.0082, -0.2),
    "slash_burn": (0.0052, 0.6),
    "conventional_mine": (0.0025, 0.8),
    "blow_down": (0.0024, 0.0),
}
PLANET_CLASSES = sorted([*WEATHER, *LAND])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _intercept(freq: float, slope: float, z: np.ndarray) -> float:
    """Logit intercept giving mean(sigmoid(a + slope z)) == freq (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + slope * z).mean() < freq else (lo, mid)
    return (lo + hi) / 2


def planet_labels(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """(n, 17) 0/1 labels in sorted class order with Planet's structure."""
    col = {c: j for j, c in enumerate(PLANET_CLASSES)}
    y = np.zeros((n, len(PLANET_CLASSES)), dtype=np.int64)
    names = list(WEATHER)
    weather = rng.choice(len(names), size=n, p=np.array(list(WEATHER.values())) / sum(WEATHER.values()))
    y[np.arange(n), [col[names[w]] for w in weather]] = 1
    land = weather != names.index("cloudy")
    z = rng.standard_normal(n)
    for tag, (freq, slope) in LAND.items():
        a = _intercept(freq / land.mean(), slope, z[land])
        y[:, col[tag]] = land & (rng.random(n) < _sigmoid(a + slope * z))
    return y, list(PLANET_CLASSES)


def noisy_probs(
    y: np.ndarray,
    rng: np.random.Generator,
    skill: float = 1.0,
    shared: np.ndarray | None = None,
    exclusive: list[int] | None = None,
) -> np.ndarray:
    """Roughly calibrated probabilities for labels ``y (N, C)``.

    Per-class separation shrinks with rarity; ``shared (N, C)`` adds an error common to several models;
    ``exclusive`` columns (the weather tags) go through a softmax so they sum to about one.
    """
    n, c = y.shape
    freq = y.mean(axis=0).clip(1e-3, 1 - 1e-3)
    separation = skill * (1.5 + 1.2 * np.log10(freq * 1000) / 3)  # ~1.5 rare .. ~2.7 common
    noise = rng.standard_normal((n, c)) + (0 if shared is None else shared)
    logits = np.log(freq / (1 - freq)) + separation * (2 * y - 1) + noise
    p = _sigmoid(logits)
    if exclusive:
        w = logits[:, exclusive]
        e = np.exp(w - w.max(axis=1, keepdims=True))
        p[:, exclusive] = e / e.sum(axis=1, keepdims=True)
    return p.clip(0.0, 1.0)


def planet_oof(n: int, seed: int = 0, skill: float = 0.65) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels and one model's OOF probabilities: (y (n, 17), probs (n, 17), classes)."""
    rng = np.random.default_rng(seed)
    y, classes = planet_labels(n, rng)
    weather = [classes.index(w) for w in WEATHER]
    return y, noisy_probs(y, rng, skill=skill, exclusive=weather), classes


def write_run(
    run_dir: Path,
    competition: str,
    classes: list[str],
    train_ids: list[str],
    y: np.ndarray,
    oof: np.ndarray,
    folds: np.ndarray,
    test_ids: list[str],
    test: np.ndarray,
    data_dir: Path | str = "data",
    options: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """A complete model run folder (run.json, labels.csv, oof.csv, test.csv) via the artifacts API; ``options``
    complete a csv-layout competition (``{"target": "tags", "metric": "f1_macro"}``) as they do for a real run."""
    spec = get_spec(competition, options)
    run_dir = Path(run_dir)
    info = artifacts.RunInfo(
        competition=competition,
        task=spec.task,
        id_col=spec.id_col,
        classes=list(classes),
        data_dir=str(data_dir),
        options=dict(options or {}),
        extra=dict(extra or {"config": {"model": run_dir.name}}),
    )
    artifacts.write_run_info(run_dir, info)
    artifacts.write_labels(run_dir, train_ids, y, spec.id_col, classes)
    artifacts.write_predictions(run_dir / artifacts.OOF, train_ids, oof, spec.id_col, classes, folds)
    artifacts.write_predictions(run_dir / artifacts.TEST, test_ids, test, spec.id_col, classes)
    return run_dir


# ------------------------------------------------------------------- minimal competition data folders


_TINY_JPEG: list[bytes] = []


def _touch_images(folder: Path, stems: list[str]) -> None:
    """Placeholder images: one real 8x8 JPEG, so that the load-time image check passes them."""
    if not _TINY_JPEG:
        import cv2

        _TINY_JPEG.append(cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes())
    folder.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        (folder / f"{stem}.jpg").write_bytes(_TINY_JPEG[0])


def make_planet_data(data_dir: Path, y: np.ndarray, classes: list[str], n_test: int) -> tuple[list[str], list[str]]:
    """train_v2.csv, sample_submission_v2.csv and placeholder test images; (train ids, test ids)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    train_ids = [f"train_{i}" for i in range(len(y))]
    names = np.asarray(classes)
    tags = [" ".join(names[row == 1]) or "clear" for row in y]
    (data_dir / "train_v2.csv").write_text("image_name,tags\n" + "".join(f"{i},{t}\n" for i, t in zip(train_ids, tags)))
    half = n_test // 2
    test_ids = [f"test_{i}" for i in range(half)] + [f"file_{i}" for i in range(n_test - half)]
    (data_dir / "sample_submission_v2.csv").write_text(
        "image_name,tags\n" + "".join(f"{i},primary clear\n" for i in test_ids)
    )
    _touch_images(data_dir / "test-jpg", test_ids[:half])
    _touch_images(data_dir / "test-jpg-additional", test_ids[half:])
    return train_ids, test_ids


def make_invasive_data(data_dir: Path, y: np.ndarray, n_test: int) -> tuple[list[str], list[str]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    train_ids = [str(i + 1) for i in range(len(y))]
    (data_dir / "train_labels.csv").write_text("name,invasive\n" + "".join(f"{i},{v}\n" for i, v in zip(train_ids, y[:, 0])))
    test_ids = [str(i + 1) for i in range(n_test)]
    (data_dir / "sample_submission.csv").write_text("name,invasive\n" + "".join(f"{i},0.5\n" for i in test_ids))
    _touch_images(data_dir / "train", train_ids)
    _touch_images(data_dir / "test", test_ids)
    return train_ids, test_ids


def make_imagefolder_data(data_dir: Path, y: np.ndarray, classes: list[str], n_test: int) -> tuple[list[str], list[str]]:
    """seg_train/<class>/ and a flat seg_test/; ids are posix paths relative to ``data_dir``."""
    train_ids = []
    for i, label in enumerate(y.argmax(axis=1)):
        _touch_images(data_dir / "seg_train" / classes[label], [f"{i}"])
        train_ids.append(f"seg_train/{classes[label]}/{i}.jpg")
    _touch_images(data_dir / "seg_test", [f"t{i:04d}" for i in range(n_test)])
    test_ids = [f"seg_test/t{i:04d}.jpg" for i in range(n_test)]
    return train_ids, test_ids


def planet_member_runs(root: Path, n_models: int, n_train: int, n_test: int, member=None, seed: int = 0) -> list[Path]:
    """``n_models`` Planet-size run folders sharing labels, folds (5) and part of their error.

    member(m, y, rng, shared, weather) -> (folder name, probs (n_train + n_test, 17)); default: model<m> with
    slowly rising skill. Each member's OOF rows are written in its own order, as real runs may be.
    """
    rng = np.random.default_rng(seed)
    y, classes = planet_labels(n_train + n_test, rng)
    weather = [classes.index(w) for w in WEATHER]
    ids = [f"train_{i}" for i in range(n_train)]
    test_ids = [f"test_{i}" for i in range(n_test)]
    folds = np.arange(n_train) % 5
    shared = 0.8 * rng.standard_normal(y.shape)
    member = member or (lambda m, y, rng, shared, weather: (f"model{m}", noisy_probs(y, rng, skill=0.6 + 0.02 * m, shared=shared, exclusive=weather)))
    dirs = []
    for m in range(n_models):
        name, p = member(m, y, rng, shared, weather)
        order = rng.permutation(n_train)
        dirs.append(write_run(root / name, "planet", classes, [ids[i] for i in order], y[:n_train][order],
                              p[:n_train][order], folds[order], test_ids, p[n_train:]))
    return dirs


def make_run(tmp_path, data_dir, competition, seed=0, shuffle_test=False):
    """A model run for the dataset in ``data_dir`` with noisy but informative probabilities."""
    table = load_dataset(competition, data_dir, check_images=False)
    rng = np.random.default_rng(seed)
    y = table.targets
    oof = noisy_probs(y, rng, skill=0.8)
    test = rng.random((len(table.test), len(table.classes)))
    if table.task == "multiclass":
        oof, test = oof / oof.sum(1, keepdims=True), test / test.sum(1, keepdims=True)
    test_ids = table.test[table.id_col].tolist()
    order = rng.permutation(len(test_ids)) if shuffle_test else np.arange(len(test_ids))
    run = write_run(
        tmp_path / f"{competition}_run", competition, table.classes, table.train[table.id_col].tolist(), y, oof,
        np.arange(len(y)) % 3, [test_ids[i] for i in order], test[order], data_dir=data_dir, options=table.options,
        extra={"config": {"model": "tiny", "seed": seed}},
    )
    return run, table, test
