"""The data side of the project's bad-input matrix (issue 11, classes 1, 2, 3 and 8).

Each case damages a copy of a tiny dataset the way a user's real data goes wrong, runs a command
through the CLI entry point and asserts: exit status 2, exactly one stderr line, starting with
``error:``, naming the path / key / bound at fault; and that nothing on disk changed (the whole
temporary tree is snapshotted before and after: names, kinds, sizes, mtimes). Cases where the right
answer is to go on assert exit 0 and a warning naming what was left out. A case that applies to
several commands (every command that lists images) runs once per command.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from kaggle_planet.cli import main
from kaggle_planet.data.synthetic import DEMO_BOUNDS, DEMO_MAX_PIXELS, make_demo_data

LISTING = ("check", "folds", "train", "run", "lr-find")  # every command that lists a data folder's images
DECODING = ("check", "train", "run", "lr-find")  # ... and checks the image files themselves (folds reads labels only)


@dataclass
class Case:
    """``setup(root, tmp)`` damages the dataset copy ``root`` (or makes paths in ``tmp``) and returns
    overrides: ``data_dir``, ``train_dir``, ``test_dir`` (flags or config keys), ``set`` (--set list),
    ``argv`` (the whole command line, for commands without a dataset)."""

    competition: str | None
    setup: Callable[[Path, Path], dict | None]
    commands: tuple[str, ...]
    pattern: str  # regex the error line (or, for "warn", a warning) must contain
    outcome: str = "error"  # error | warn


# ------------------------------------------------------------------------------------ damage


def _link(target: str | Path, link: Path) -> None:
    os.symlink(str(target), str(link))


def _replace_with_link(path: Path, target: str) -> None:
    path.unlink()
    _link(target, path)


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _fifo(path: Path) -> None:
    if path.exists():
        path.unlink()
    os.mkfifo(path)


def _cut(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _image(tmp: Path, fmt: str) -> bytes:
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(fmt, np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _first(root: Path, split: str = "seg_train", cls: str = "forest") -> Path:
    return sorted((root / split / cls).glob("*.jpg"))[0]


def _edit_labels(path: Path, column: str, value: str) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame[column] = value
    frame.to_csv(path, index=False)


def _outside(tmp: Path, name: str = "elsewhere") -> str:
    """A real image-folder tree outside the data folder."""
    other = tmp / name
    (other / "a").mkdir(parents=True)
    (other / "b").mkdir()
    return str(other)


CASES: dict[str, Case] = {
    # ---- class 1: filesystem oddities in data folders
    "dangling link in a class folder": Case(
        "imagefolder", lambda r, t: _link("/nonexistent/x.jpg", r / "seg_train/forest/zz.jpg"), LISTING,
        r"seg_train/forest/zz\.jpg: is a dangling symbolic link \(to '/nonexistent/x\.jpg'"),
    "link loop named like an image": Case(
        "imagefolder", lambda r, t: _link("zz.jpg", r / "seg_train/forest/zz.jpg"), ("check", "folds", "train"),
        r"seg_train/forest/zz\.jpg: is a symbolic link loop; expected an image file"),
    "folder named like an image": Case(
        "imagefolder", lambda r, t: (r / "seg_train/sea/folder.jpg").mkdir(), ("check", "folds", "train"),
        r"seg_train/sea/folder\.jpg: a folder named like an image"),
    "pipe named like an image": Case(
        "imagefolder", lambda r, t: _fifo(r / "seg_train/sea/pipe.jpg"), ("check", "folds"),
        r"seg_train/sea/pipe\.jpg: is not a regular file"),
    "class folder is a dangling link": Case(
        "imagefolder", lambda r, t: _link(t / "gone", r / "seg_train/lake"), ("check", "folds"),
        r"seg_train/lake: is a dangling symbolic link"),
    "class folder is a link loop": Case(
        "imagefolder", lambda r, t: _link("lake", r / "seg_train/lake"), ("check", "train"),
        r"seg_train/lake: is a symbolic link loop"),
    "dangling link in a flat test folder": Case(
        "imagefolder", lambda r, t: _flat_test(r) or _link("/nonexistent/y.jpg", r / "seg_test/zz.jpg"), ("check", "run"),
        r"seg_test/zz\.jpg: is a dangling symbolic link"),
    "test image is a folder (planet)": Case(
        "planet", lambda r, t: _replace_with_dir(r / "test-jpg/test_1.jpg"), ("check", "folds", "train"),
        r"test-jpg/test_1\.jpg: a folder named like an image"),
    "train image is a dangling link (planet)": Case(
        "planet", lambda r, t: _replace_with_link(r / "train-jpg/train_3.jpg", "/nonexistent/train_3.jpg"), DECODING,
        r"train-jpg/train_3\.jpg: train image for image_name 'train_3' is a dangling symbolic link"),
    "train image is a folder (planet)": Case(
        "planet", lambda r, t: _replace_with_dir(r / "train-jpg/train_4.jpg"), ("check", "train"),
        r"train-jpg/train_4\.jpg: train image for image_name 'train_4' is a folder, not a file"),
    "train image is a pipe (invasive)": Case(
        "invasive", lambda r, t: _fifo(r / "train/3.jpg"), ("check", "train"),
        r"train/3\.jpg: train image for name '3' is not a regular file"),
    "test image is a dangling link (invasive)": Case(
        "invasive", lambda r, t: _replace_with_link(r / "test/2.jpg", "/nonexistent/2.jpg"), ("check", "train"),
        r"test/2\.jpg: is a dangling symbolic link \(to '/nonexistent/2\.jpg'"),
    "train-jpg is a link loop": Case(
        "planet", lambda r, t: shutil.rmtree(r / "train-jpg") or _link("train-jpg", r / "train-jpg"), ("check", "folds", "train"),
        r"train-jpg: is a symbolic link loop; expected the folder of training images"),
    "train-jpg is a file": Case(
        "planet", lambda r, t: shutil.rmtree(r / "train-jpg") or (r / "train-jpg").write_text("x"), ("check",),
        r"train-jpg: is a file, not a folder"),
    "test-jpg is a file": Case(
        "planet", lambda r, t: shutil.rmtree(r / "test-jpg") or (r / "test-jpg").write_text("x"), ("check",),
        r"test-jpg: is a file, not a folder; expected a folder of images"),
    "invasive train folder is a file": Case(
        "invasive", lambda r, t: shutil.rmtree(r / "train") or (r / "train").write_text("x"), ("check", "folds"),
        r"/train: is a file, not a folder"),
    "labels CSV is a folder": Case(
        "planet", lambda r, t: _replace_with_dir(r / "train_v2.csv"), ("check", "folds", "train"),
        r"train_v2\.csv: Planet training labels is a folder, not a file"),
    "labels CSV is a dangling link": Case(
        "invasive", lambda r, t: _replace_with_link(r / "train_labels.csv", "/nonexistent/labels.csv"), ("check", "folds"),
        r"train_labels\.csv: Invasive Species training labels is a dangling symbolic link"),
    "labels CSV is a pipe": Case(
        "invasive", lambda r, t: _fifo(r / "train_labels.csv"), ("check",),
        r"train_labels\.csv: Invasive Species training labels is not a regular file"),
    "sample submission is a folder": Case(
        "planet", lambda r, t: _replace_with_dir(r / "sample_submission_v2.csv"), ("check",),
        r"sample_submission_v2\.csv: sample submission is a folder, not a file"),
    "data folder is a file": Case(
        "planet", lambda r, t: {"data_dir": _write(t / "data.txt", "x")}, ("check", "folds"),
        r"data\.txt: the data folder is a file, not a folder"),
    "data folder is a link loop": Case(
        "planet", lambda r, t: _link("loop", t / "loop") or {"data_dir": t / "loop"}, ("check", "train"),
        r"loop: the data folder is a symbolic link loop"),
    "data folder is a dangling link": Case(
        "invasive", lambda r, t: _link(t / "gone", t / "dangling") or {"data_dir": t / "dangling"}, ("check",),
        r"dangling: the data folder is a dangling symbolic link"),
    "absolute train_dir outside the data folder": Case(
        "imagefolder", lambda r, t: {"train_dir": _outside(t)}, LISTING,
        r"train_dir '/.*elsewhere': lies outside the data folder"),
    "absolute test_dir outside the data folder": Case(
        "imagefolder", lambda r, t: {"test_dir": _outside(t, "tests")}, ("check", "folds", "run"),
        r"test_dir '/.*tests': lies outside the data folder"),
    "train_dir climbing out with ..": Case(
        "imagefolder", lambda r, t: _outside(t) and {"train_dir": "../elsewhere"}, ("check", "train"),
        r"train_dir '\.\./elsewhere': lies outside the data folder"),
    "train_dir is a file": Case(
        "imagefolder", lambda r, t: _write(r / "train.txt", "x") and {"train_dir": "train.txt"}, ("check", "folds"),
        r"train\.txt: train_dir 'train.txt' is a file, not a folder"),
    "test folder is a file": Case(
        "imagefolder", lambda r, t: shutil.rmtree(r / "seg_test") or (r / "seg_test").write_text("x"), ("check", "folds", "train"),
        r"seg_test: test folder is a file, not a folder"),

    # ---- class 2: nothing dropped silently
    "images in a sub-folder of a class folder": Case(
        "imagefolder", lambda r, t: _nest(r / "seg_train/forest"), LISTING,
        r"seg_train/forest/more: a sub-folder inside training class folder 'forest'"),
    "images in a sub-folder of a test class folder": Case(
        "imagefolder", lambda r, t: _nest(r / "seg_test/sea"), ("check", "train"),
        r"seg_test/sea/more: a sub-folder inside test class folder 'sea'"),
    "link to an ancestor inside a class folder": Case(
        "imagefolder", lambda r, t: _link("..", r / "seg_train/forest/up"), ("check", "train"),
        r"seg_train/forest/up: a sub-folder inside training class folder 'forest'"),
    "pseudo-labels without test images": Case(
        "imagefolder", lambda r, t: shutil.rmtree(r / "seg_test") or {"extra": ["pseudo: {rounds: 1, confidence: 0.9}"]}, ("run",),
        r"config 'bad_imagefolder': pseudo needs test images to label, and .* has none"),
    "loose images beside the class folders": Case(
        "imagefolder", lambda r, t: shutil.copy(_first(r), r / "seg_train/loose.jpg"), ("check", "folds", "train"),
        r"seg_train: training folder mixes 1 loose image\(s\) \(e\.g\. loose\.jpg\) with 6 class folder"),
    "test folder mixing loose images and class folders": Case(
        "imagefolder", lambda r, t: shutil.copy(_first(r), r / "seg_test/loose.jpg"), ("check", "folds", "train", "run"),
        r"seg_test: test folder mixes 1 loose image\(s\) \(e\.g\. loose\.jpg\) with 6 class folder\(s\) \(buildings, forest"),
    "named test_dir missing": Case(
        "imagefolder", lambda r, t: {"test_dir": "seg_tset"}, LISTING,
        r"seg_tset: test_dir 'seg_tset' not found"),
    "named train_dir missing": Case(
        "imagefolder", lambda r, t: {"train_dir": "trian"}, ("check", "folds", "run"),
        r"trian: train_dir 'trian' not found"),
    "a folder option given for a layout without one": Case(
        "planet", lambda r, t: {"train_dir": "train-jpg"}, ("check", "folds"),
        r"competition 'planet': unknown option\(s\) \['train_dir'\]; valid: \['\(none\)'\]"),
    "default train folder missing": Case(
        "imagefolder", lambda r, t: shutil.rmtree(r / "seg_train"), ("check",),
        r"seg_train: training folder not found"),
    "data folder missing": Case(
        "invasive", lambda r, t: {"data_dir": t / "no-such-folder"}, LISTING,
        r"no-such-folder: data folder not found"),
    "all training images invasive": Case(
        "invasive", lambda r, t: _edit_labels(r / "train_labels.csv", "invasive", "1"), ("check", "folds", "train"),
        r"all 60 training images have invasive=1; a binary task needs images of both labels"),
    "no training image invasive": Case(
        "invasive", lambda r, t: _edit_labels(r / "train_labels.csv", "invasive", "0"), ("check", "run"),
        r"all 60 training images have invasive=0"),
    "test class that is not a training class": Case(
        "imagefolder", lambda r, t: (r / "seg_test/forest").rename(r / "seg_test/woods"), ("check",),
        r"seg_test/woods: test class 'woods' is not a training class"),
    "empty class folder": Case(
        "imagefolder", lambda r, t: (r / "seg_train/lake").mkdir(), ("check", "folds"),
        r"seg_train/lake: class folder holds no images"),
    "non-image files in a class folder": Case(
        "imagefolder", lambda r, t: _write(r / "seg_train/forest/notes.txt", "x") and _write(r / "seg_train/sea/labels.csv", "x"),
        ("check", "folds"), r"seg_train: ignored 2 entries that are not images .*: forest/notes\.txt, sea/labels\.csv", "warn"),
    "hidden files in class folders": Case(
        "imagefolder", lambda r, t: _write(r / "seg_train/.DS_Store", "x") and shutil.copy(_first(r), r / "seg_train/forest/._1.jpg"),
        ("check",), r"seg_train: ignored 2 entries that are not images .*: \.DS_Store, forest/\._1\.jpg", "warn"),
    "no test folder (optional)": Case(
        "imagefolder", lambda r, t: shutil.rmtree(r / "seg_test"), ("check",),
        r"seg_test: no test folder \(optional\)", "warn"),

    # ---- class 3: damaged images found before training
    "truncated JPEG training image": Case(
        "invasive", lambda r, t: _cut(r / "train/5.jpg"), DECODING,
        r"train/5\.jpg: train image for name '5' truncated: the file was cut short \(no JPEG end-of-image marker FFD9\)"),
    "truncated JPEG test image": Case(
        "invasive", lambda r, t: _cut(r / "test/3.jpg", 0.9), DECODING,
        r"test/3\.jpg: test image for name '3' truncated"),
    "truncated JPEG in test-jpg-additional": Case(
        "planet", lambda r, t: _cut(r / "test-jpg-additional/file_1.jpg", 0.5), ("check", "train"),
        r"test-jpg-additional/file_1\.jpg: test image for image_name 'file_1' truncated"),
    "truncated JPEG in a class folder": Case(
        "imagefolder", lambda r, t: _cut(_first(r, cls="glacier"), 0.7), ("check", "train", "run"),
        r"seg_train/glacier/\d+\.jpg: train image for path 'seg_train/glacier/\d+\.jpg' truncated"),
    "truncated PNG": Case(
        "imagefolder", lambda r, t: (r / "seg_train/sea/cut.png").write_bytes(_image(t, ".png")[:-30]), ("check", "train"),
        r"seg_train/sea/cut\.png: .*truncated: the file was cut short \(no PNG IEND chunk\)"),
    "truncated BMP": Case(
        "imagefolder", lambda r, t: (r / "seg_train/sea/cut.bmp").write_bytes(_image(t, ".bmp")[:-100]), ("check", "train"),
        r"seg_train/sea/cut\.bmp: .*truncated: the file was cut short \(its BMP header says \d+ bytes, the file has \d+\)"),
    "truncated WebP": Case(
        "imagefolder", lambda r, t: (r / "seg_train/sea/cut.webp").write_bytes(_image(t, ".webp")[:-20]), ("check",),
        r"seg_train/sea/cut\.webp: .*truncated: the file was cut short \(its WebP header says"),
    "web page saved as a JPEG": Case(
        "planet", lambda r, t: (r / "train-jpg/train_7.jpg").write_text("<!DOCTYPE html><html>rate limited</html>"), DECODING,
        r"train-jpg/train_7\.jpg: train image for image_name 'train_7' is not an image file \(it starts with b'<!DOCTYP'; expected JPEG, PNG"),
    "empty image file": Case(
        "invasive", lambda r, t: (r / "train/8.jpg").write_bytes(b""), ("check", "train"),
        r"train/8\.jpg: train image for name '8' empty file"),
    "complete JPEG that does not decode": Case(
        "invasive", lambda r, t: (r / "train/9.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"), ("check",),
        r"train/9\.jpg: train image for name '9' unreadable \(not a decodable image\)"),

    # predict-image checks the files it is given the same way, before loading any model
    "predict-image: dangling link": Case(
        "invasive", lambda r, t: _link(t / "gone.jpg", t / "photo.jpg") and 0 or _predict(t, t / "photo.jpg"), ("predict-image",),
        r"photo\.jpg: image file is a dangling symbolic link"),
    "predict-image: a folder": Case(
        "invasive", lambda r, t: (t / "photos.jpg").mkdir() or _predict(t, t / "photos.jpg"), ("predict-image",),
        r"photos\.jpg: folder holds no image files"),
    "predict-image: a pipe": Case(
        "invasive", lambda r, t: _fifo(t / "pipe.jpg") or _predict(t, t / "pipe.jpg"), ("predict-image",),
        r"pipe\.jpg: image file is not a regular file"),
    "predict-image: truncated JPEG": Case(
        "invasive", lambda r, t: _cut(r / "test/1.jpg", 0.7) or _predict(t, r / "test/1.jpg"), ("predict-image",),
        r"test/1\.jpg: truncated: the file was cut short \(no JPEG end-of-image marker FFD9\)"),
    "predict-image: truncated PNG": Case(
        "invasive", lambda r, t: (t / "cut.png").write_bytes(_image(t, ".png")[:-12]) and _predict(t, t / "cut.png"), ("predict-image",),
        r"cut\.png: truncated: the file was cut short \(no PNG IEND chunk\)"),
    "predict-image: the second of two files is bad": Case(
        "invasive", lambda r, t: _write(t / "page.jpg", "<html></html>") and _predict(t, r / "test/2.jpg", t / "page.jpg"), ("predict-image",),
        r"page\.jpg: not a readable image"),

    # ---- class 8: bounds, refused before any allocation
    "demo image side far too large": Case(None, lambda r, t: {"argv": _demo(t, "--size", "100000")}, ("make-demo-data",),
                                          r"--size 100000 is out of range; expected 16 to 2048"),
    "demo image side too small": Case(None, lambda r, t: {"argv": _demo(t, "--size", "8")}, ("make-demo-data",),
                                      r"--size 8 is out of range; expected 16 to 2048"),
    "demo with too few training images": Case(None, lambda r, t: {"argv": _demo(t, "--n-train", "5")}, ("make-demo-data",),
                                              r"--n-train 5 is out of range; expected 12 to 200000"),
    "demo with absurdly many training images": Case(None, lambda r, t: {"argv": _demo(t, "--n-train", "1000000000")}, ("make-demo-data",),
                                                    r"--n-train 1000000000 is out of range; expected 12 to 200000"),
    "demo with no test images": Case(None, lambda r, t: {"argv": _demo(t, "--n-test", "0")}, ("make-demo-data",),
                                     r"--n-test 0 is out of range; expected 1 to 200000"),
    "demo with a negative seed": Case(None, lambda r, t: {"argv": _demo(t, "--seed", "-1")}, ("make-demo-data",),
                                      r"--seed -1 is out of range; expected 0 to 4294967295"),
    "demo with a seed over 32 bits": Case(None, lambda r, t: {"argv": _demo(t, "--seed", str(2**40))}, ("make-demo-data",),
                                          r"--seed 1099511627776 is out of range"),
    "demo over the pixel budget": Case(None, lambda r, t: {"argv": _demo(t, "--n-train", "150000", "--size", "1024")}, ("make-demo-data",),
                                       rf"are [\d,]+ pixels; expected at most {DEMO_MAX_PIXELS:,}"),
    "demo --out is a file": Case(None, lambda r, t: {"argv": _demo(t, out=_write(t / "taken", "x"))}, ("make-demo-data",),
                                 r"taken: exists and is not a folder"),
    "demo --out under a file": Case(None, lambda r, t: {"argv": _demo(t, out=Path(_write(t / "file", "x")) / "sub")}, ("make-demo-data",),
                                    r"file/sub: cannot create the folder"),
    "image_size far too large (--set)": Case(
        "invasive", lambda r, t: {"set": ["image_size=100000"]}, ("train", "run", "lr-find"),
        r"image_size: expected an integer in \[8, 4096\], got 100000"),
    "a model's image_size far too large": Case(
        "invasive", lambda r, t: {"set": ["models.0.image_size=50000"]}, ("train",),
        r"models\.0\.image_size: expected an integer in \[8, 4096\], got 50000"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _nest(class_dir: Path) -> None:
    (class_dir / "more").mkdir()
    shutil.copy(sorted(class_dir.glob("*.jpg"))[0], class_dir / "more" / "extra.jpg")


def _flat_test(root: Path) -> None:
    files = sorted((root / "seg_test").rglob("*.jpg"))
    flat = root / "flat"
    flat.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, flat / f"{i}.jpg")
    shutil.rmtree(root / "seg_test")
    flat.rename(root / "seg_test")


def _predict(tmp: Path, *images: Path) -> dict:
    return {"argv": ["predict-image", str(tmp / "runs" / "any"), *map(str, images), "--device", "cpu"]}


def _demo(tmp: Path, *args: str, out: Path | None = None) -> list[str]:
    return ["make-demo-data", "-c", "planet", "--out", str(out or tmp / "demo"), *args]


# ------------------------------------------------------------------------------------ running


def _config(tmp: Path, competition: str, data_dir: Path, opts: dict) -> Path:
    lines = [f"name: bad_{competition}", f"competition: {competition}", f"data_dir: {data_dir}", "folds: {k: 2, seed: 0}",
             "image_size: 32", "epochs: 1", "batch_size: 4", "num_workers: 0", f"runs_dir: {tmp / 'runs'}"]
    lines += [f"{key}: {opts[key]}" for key in ("train_dir", "test_dir") if key in opts] + opts.get("extra", [])
    lines += ["models:", "  - {backbone: test_resnet, pretrained: false}"]
    path = tmp / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _argv(command: str, competition: str | None, root: Path, tmp: Path, opts: dict) -> list[str]:
    if "argv" in opts:
        return opts["argv"]
    data = Path(opts.get("data_dir", root))
    if command in ("check", "folds"):
        argv = [command, "-c", competition, "-d", str(data)]
        argv += [a for key in ("train_dir", "test_dir") if key in opts for a in (f"--{key.replace('_', '-')}", str(opts[key]))]
        return argv + (["--k", "2", "--folds-dir", str(tmp / "folds")] if command == "folds" else [])
    argv = [command, str(_config(tmp, competition, data, opts)), "--device", "cpu"]
    argv += [a for s in opts.get("set", []) for a in ("--set", s)]
    return argv + (["--steps", "10", "--out", str(tmp / "lr.png")] if command == "lr-find" else [])


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind, size and mtime (lstat: links are not followed, pipes not opened)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            state[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return state


PARAMS = [(name, command) for name, case in CASES.items() for command in case.commands]


@pytest.mark.parametrize("name, command", PARAMS, ids=[f"{n}-{c}" for n, c in PARAMS])
def test_bad_data_input(name, command, tmp_path, dataset_copy, monkeypatch, capsys, caplog):
    case = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    root = dataset_copy(case.competition) if case.competition else tmp_path / "none"
    opts = case.setup(root, work) or {}
    opts = opts if isinstance(opts, dict) else {}
    argv = _argv(command, case.competition, root, work, opts)
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    if case.outcome == "error":
        assert code == 2, err
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert re.search(case.pattern, lines[0]), lines[0]
        assert "Traceback" not in err
        assert snapshot(tmp_path) == before  # nothing written, nothing changed
    else:
        assert code == 0 and not any(line.startswith("error") for line in lines), err
        assert any(re.search(case.pattern, r.getMessage()) for r in caplog.records if r.levelname in ("WARNING", "INFO")), caplog.text
        after = snapshot(tmp_path)
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        assert changed <= {"work", "work/folds", "work/folds/imagefolder_k2_s42.csv"}, changed


def test_matrix_size():
    """The issue asks for >= 150 cases over all classes; this table holds the data side's share."""
    assert len(PARAMS) >= 80


# ------------------------------------------------------------------------- what must work


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
def test_make_demo_data_accepts_every_count_its_check_allows(tmp_path, competition, capsys):
    """The smallest counts and size inside DEMO_BOUNDS make a dataset that `check` accepts."""
    lo = {name: low for name, (low, _) in DEMO_BOUNDS.items()}
    for n_train in (lo["n_train"], lo["n_train"] + 1, 17, 40):
        out = tmp_path / f"{competition}-{n_train}"
        make_demo_data(competition, out, n_train=n_train, n_test=lo["n_test"], size=lo["size"], seed=lo["seed"])
        assert main(["check", "-c", competition, "-d", str(out)]) == 0, capsys.readouterr()


def test_absolute_train_and_test_dirs_inside_the_data_folder_are_accepted(dataset_copy, capsys):
    from kaggle_planet.data.competitions import load_dataset

    root = dataset_copy("imagefolder")
    table = load_dataset("imagefolder", root, {"train_dir": str(root / "seg_train"), "test_dir": str(root.resolve() / "seg_test")})
    reference = load_dataset("imagefolder", root)
    # the same ids as with the relative names: paths relative to the data folder
    assert table.train["path"].tolist() == reference.train["path"].tolist()
    assert table.test["path"].tolist() == reference.test["path"].tolist()


def test_jpeg_with_bytes_after_its_end_marker_is_accepted(dataset_copy):
    """Zero padding, and a trailer after the end marker (some phones append metadata there), are not truncation."""
    from kaggle_planet.data.competitions import image_file_problem

    root = dataset_copy("invasive")
    image = (root / "train" / "1.jpg").read_bytes()
    padded, trailer = root / "padded.jpg", root / "trailer.jpg"
    padded.write_bytes(image + b"\x00" * 300)
    trailer.write_bytes(image + b"SEFH" + os.urandom(500) + b"SEFT")
    assert image_file_problem(str(padded)) is None and image_file_problem(str(trailer)) is None
    cut = root / "cut.jpg"
    cut.write_bytes(image[:-2] + b"\x00" * 20)  # the marker itself missing: cut short, then padded
    assert "truncated" in image_file_problem(str(cut))


@pytest.mark.slow  # trains two tiny folds end to end
def test_imagefolder_without_test_folder_runs_to_oof_scores_and_says_no_submission(tmp_path, monkeypatch, capsys, caplog):
    """The test folder is optional: `run` trains, predicts OOF, blends, reports, and writes no submission."""
    data = make_demo_data("imagefolder", tmp_path / "data", n_train=24, n_test=6, size=16, seed=2)
    shutil.rmtree(data / "seg_test")
    config = _config(tmp_path, "imagefolder", data, {})
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(config), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "no submission written: the data folder has no test images" in out
    assert f"submission: none (no test images in {data})" in out
    assert any("no submission written" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    exp = tmp_path / "runs" / "bad_imagefolder"
    scores = pd.read_json(exp / "scores.json", typ="series")
    assert scores["submission"] is None and 0 <= scores["blend"]["oof"] <= 1
    oof = pd.read_csv(exp / "blend" / "oof.csv")
    assert len(oof) == 24 and len(pd.read_csv(exp / "blend" / "test.csv")) == 0
    assert not (tmp_path / "submissions").exists() and not (exp / "submission.csv").exists()
    assert main(["report", str(exp)]) == 0 and (exp / "report.html").is_file()
    # asking for a submission anyway is one line
    capsys.readouterr()
    assert main(["submission", str(exp / "blend"), "--out", str(tmp_path / "s.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not (tmp_path / "s.csv").exists()


def test_truncated_jpeg_with_an_exif_thumbnail_is_still_found(tmp_path):
    """An EXIF thumbnail carries its own end marker near the start of the file: the search for the
    marker walks the segments to the main image's scan, so a cut-short main image is still truncated."""
    from kaggle_planet.data.competitions import image_file_problem

    main_image, thumbnail = _image(tmp_path, ".jpg"), _image(tmp_path, ".jpg")
    payload = b"Exif\x00\x00" + thumbnail
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    whole = main_image[:2] + app1 + main_image[2:]
    path = tmp_path / "exif.jpg"
    path.write_bytes(whole + b"trailer")  # complete, with bytes after the marker: accepted
    assert image_file_problem(str(path)) is None
    path.write_bytes(whole[: len(whole) - 200] + b"trailer")
    assert "truncated" in image_file_problem(str(path))
