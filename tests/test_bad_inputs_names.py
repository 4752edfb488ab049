"""Hardening 2 (issue 20): names that collide with the toolkit's own columns (class 2), and the one-line cases of
classes 7 and 8: odd images, names as plain text, devices, long names, numbers as names, configs from a pipe,
one id with two test images, the file system saying no.

Each case runs the real command line in-process and asserts the exit status, exactly one ``error:`` line
naming the thing at fault, and (where it refuses) that nothing was written."""
from __future__ import annotations

import html
import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from cli_cases import one_error_line, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from runfactory import noisy_probs, write_run

from kaggle_planet.config.catalog import resolve_config
from kaggle_planet.config.schema import MAX_NAME, config_from_dict, load_config
from kaggle_planet.data.competitions import load_dataset, reserved_columns

RESERVED = ["fold", "image_name", "path", "file", "label", "labels", "tags", "name"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- class 2: reserved names


def test_reserved_names_are_every_internal_column():
    assert set(RESERVED) <= set(reserved_columns())


@pytest.mark.parametrize("name", RESERVED)
def test_a_class_folder_named_like_an_internal_column_is_refused_by_check(name, dataset_copy, capsys, tmp_path):
    root = dataset_copy("imagefolder")
    train = root / "seg_train"
    shutil.move(str(train / "sea"), str(train / name))
    shutil.move(str(root / "seg_test" / "sea"), str(root / "seg_test" / name))
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "check", "--competition", "imagefolder", "--data-dir", root)
    line = one_error_line(err)
    assert code == 2 and f"class folder {name!r}" in line and "toolkit's own columns" in line and str(train) in line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", RESERVED)
def test_a_planet_tag_named_like_an_internal_column_is_refused_before_training(name, dataset_copy, capsys, tmp_path, monkeypatch):
    if not name.replace("_", "").isalnum() or name != name.lower():
        pytest.skip("not a valid Planet tag")
    root = dataset_copy("planet")
    labels = root / "train_v2.csv"
    labels.write_text(labels.read_text().replace(" water", f" {name}"))
    code, _, err = run_cli(capsys, "check", "--competition", "planet", "--data-dir", root)
    assert code == 2 and f"tag {name!r}" in one_error_line(err) and "train_v2.csv" in err
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "competition": "planet", "data_dir": str(root), "image_size": 32, "epochs": 1,
                                   "models": [{"backbone": "test_resnet"}]}))
    code, _, err = run_cli(capsys, "train", cfg, "--device", "cpu")
    assert code == 2 and f"tag {name!r}" in one_error_line(err)
    assert not (tmp_path / "runs").exists(), "refused before any model folder is made"


CANDIDATES = [*RESERVED, "$5_to_$10", "a$b$c", "<script>alert(1)</script>", "<b>bold</b>", "naïve_çlass", "日本",
              "a/b", "with space", "x" * 60, "ok", "Fold", "-dash", "tab\tin"]


def _imagefolder_with(classes: list[str], source: Path, root: Path) -> Path:
    for split in ("seg_train", "seg_test"):
        images = sorted((source / split).rglob("*.jpg"))[: 4 * len(classes)]
        for j, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k, image in enumerate(images[j::len(classes)][:4]):
                shutil.copy(image, folder / f"{k}.jpg")
    return root


@settings(max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(classes=st.lists(st.sampled_from(CANDIDATES) | st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=12),
                min_size=2, max_size=3, unique_by=lambda s: s.lower()))
@example(classes=["$5_to_$10", "<b>bold</b>", "naïve_çlass"])  # passes check: every later stage runs
@example(classes=["ok", "fold"])  # refused in check
def test_any_class_names_work_through_every_stage_or_are_refused_in_check(classes, demo_datasets, tmp_path_factory, capsys):
    """check refuses, in one line, or every later stage works and the report shows each name as text."""
    if any(c in (".", "..") or c.strip() != c or not c.strip() for c in classes):
        return  # not a folder name a data set can hold
    work = tmp_path_factory.mktemp("names")
    root = _imagefolder_with(classes, demo_datasets["imagefolder"], work / "data")
    code, _, err = run_cli(capsys, "check", "--competition", "imagefolder", "--data-dir", root)
    if code != 0:
        line = one_error_line(err)
        assert code == 2 and any(c.split("/")[0] in line for c in classes), line  # names the class at fault
        if any(c in reserved_columns() for c in classes) and not any("/" in c for c in classes):
            assert "toolkit's own columns" in line
        return
    assert not any(c in reserved_columns() for c in classes)
    table = load_dataset("imagefolder", root)
    rng = np.random.default_rng(0)
    oof = noisy_probs(table.targets, rng, skill=0.8)
    oof = oof / oof.sum(1, keepdims=True)
    test = rng.random((len(table.test), len(table.classes)))
    test = test / test.sum(1, keepdims=True)
    runs = work / "runs" / "exp"
    for seed, name in enumerate(("m1", "m2")):
        write_run(runs / name, "imagefolder", table.classes, table.train["path"].tolist(), table.targets, np.roll(oof, seed, axis=0) * 0.5 + oof * 0.5,
                  np.arange(len(table.train)) % 2, table.test["path"].tolist(), test, data_dir=root, options=table.options)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert run_cli(capsys, "blend", runs / "m1", runs / "m2", "--method", "mean", "--out", runs / "blend")[0] == 0
        assert run_cli(capsys, "submission", runs / "blend", "--out", work / "submissions" / "s.csv")[0] == 0
        code, _, err = run_cli(capsys, "report", runs, "--out", work / "report.html")
        assert code == 0, err
    finally:
        os.chdir(cwd)
    page = (work / "report.html").read_text()
    for name in classes:
        assert html.escape(name, quote=False) in page or html.escape(name) in page, name
    assert "<script>" not in page


# ------------------------------------------------------------------------------------- class 7


@pytest.mark.parametrize("shape", [(1, 1000), (1000, 1), (1, 1)])
def test_a_one_pixel_wide_png_passes_check(shape, dataset_copy, capsys):
    root = dataset_copy("imagefolder")
    cv2.imwrite(str(root / "seg_train" / "sea" / "thin.png"), np.full((*shape, 3), 128, np.uint8))
    code, out, err = run_cli(capsys, "check", "--competition", "imagefolder", "--data-dir", root)
    assert code == 0 and "Traceback" not in err and "ok: dataset is valid" in out


def test_a_class_named_like_mathtext_draws_as_text(tmp_path, capsys):
    classes = ["$5_to_$10", "$10_up", "under_$5"]
    rng = np.random.default_rng(1)
    y = np.eye(3, dtype=int)[rng.integers(0, 3, 60)]
    p = noisy_probs(y, rng, skill=0.7)
    p = p / p.sum(1, keepdims=True)
    run = write_run(tmp_path / "run", "imagefolder", classes, [f"seg_train/{i}.jpg" for i in range(60)], y, p, np.arange(60) % 3,
                    [], np.zeros((0, 3)))
    code, _, err = run_cli(capsys, "report", run, "--out", tmp_path / "r.html")
    assert code == 0 and "Traceback" not in err, err
    assert "$5_to_$10" in (tmp_path / "r.html").read_text()


def test_device_mps_where_there_is_none_is_one_line(capsys, tmp_path):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    code, _, err = run_cli(capsys, "predict", tmp_path, "--device", "mps")
    assert code == 2 and "MPS" in one_error_line(err) and "--device cpu" in err


def test_a_300_character_experiment_name_is_refused_naming_the_bound(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"name": "n" * 300, "competition": "invasive", "data_dir": "d", "models": [{"backbone": "test_resnet"}]}))
    code, _, err = run_cli(capsys, "train", cfg, "--device", "cpu")
    line = one_error_line(err)
    assert code == 2 and "name" in line and str(MAX_NAME) in line


def test_folds_seed_out_of_range_is_one_line(dataset_copy, capsys, tmp_path):
    root = dataset_copy("invasive")
    code, _, err = run_cli(capsys, "folds", "--competition", "invasive", "--data-dir", root, "--seed", "-1",
                           "--folds-dir", tmp_path / "folds")
    assert code == 2 and "seed=-1" in one_error_line(err) and "4294967295" in err
    assert not (tmp_path / "folds").exists()


def test_the_file_system_saying_no_is_one_line(dataset_copy, capsys, tmp_path):
    """A folder that cannot be made (here: under a regular file; a read-only folder takes the same path, but
    root, who runs CI, may write anywhere) is one line naming the path, never a traceback."""
    root = dataset_copy("invasive")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    code, _, err = run_cli(capsys, "folds", "--competition", "invasive", "--data-dir", root, "--folds-dir", blocker / "folds")
    line = one_error_line(err)
    assert code == 2 and str(blocker) in line


# ------------------------------------------------------------------------------------- class 8


@pytest.mark.parametrize("override", ["name=2024", "models.0.name=7"])
def test_a_number_as_a_name_is_the_name(override):
    data = {"name": "x", "competition": "invasive", "data_dir": "d", "models": [{"backbone": "test_resnet"}]}
    cfg = config_from_dict(data, [override])
    assert cfg.name == "2024" if override.startswith("name") else cfg.model_names == ["7"]


def test_a_config_from_a_pipe_is_read(tmp_path):
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    text = yaml.safe_dump({"name": "piped", "competition": "invasive", "data_dir": "d", "models": [{"backbone": "test_resnet"}]})
    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    assert resolve_config(fifo) == fifo
    assert load_config(fifo).name == "piped"
    writer.join(timeout=10)


def test_two_test_images_for_one_id_are_refused_naming_both(dataset_copy, capsys):
    root = dataset_copy("invasive")
    first = sorted((root / "test").glob("*.jpg"))[0]
    cv2.imwrite(str(first.with_suffix(".png")), np.zeros((8, 8, 3), np.uint8))
    code, _, err = run_cli(capsys, "check", "--competition", "invasive", "--data-dir", root)
    line = one_error_line(err)
    assert code == 2 and f"{first.stem}.jpg" in line and f"{first.stem}.png" in line and "one id" in line


def test_download_data_dir_naming_a_file_is_refused_before_any_request(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-credentials"))  # a request would fail differently
    target = tmp_path / "planet.zip"
    target.write_bytes(b"not a folder")
    before = snapshot(tmp_path)
    code, _, err = run_cli(capsys, "download", "planet", "--data-dir", target)
    line = one_error_line(err)
    assert code == 2 and str(target) in line and "is a file, not a folder" in line
    assert snapshot(tmp_path) == before


PLANET_CANDIDATES = [*RESERVED, "$5_to_$10", "<script>", "naïve", "a/b", "slash_and_dash-", "ok_tag", "UPPER", "x" * 40]


@settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.sampled_from(PLANET_CANDIDATES) | st.text(st.characters(blacklist_characters=" ,\n\r\"\0", blacklist_categories=("Cs",)),
                                                                     min_size=1, max_size=10),
                      min_size=1, max_size=2, unique=True))
@example(names=["bare_ground_2", "my_tag"])  # valid tags: every later stage runs
@example(names=["labels"])  # a reserved word: refused in check
def test_any_planet_tags_work_through_every_stage_or_are_refused_in_check(names, demo_datasets, tmp_path_factory, capsys):
    """New tags given to some Planet images: check refuses them in one line (the tag format, a reserved word)
    or blend, thresholds, submission and the report all work and the report shows every tag as text."""
    if any(n.strip() != n for n in names):
        return  # a CSV cell is stripped of white space (str.strip: \x1c-\x1f too), so such a tag is not one
    work = tmp_path_factory.mktemp("tags")
    root = Path(shutil.copytree(demo_datasets["planet"], work / "data"))
    labels = root / "train_v2.csv"
    rows = labels.read_text().splitlines()
    for i, name in enumerate(names):  # each new tag on a third of the images, so every fold holds some
        rows = [rows[0]] + [f"{row} {name}" if (j + i) % 3 == 0 else row for j, row in enumerate(rows[1:])]
    labels.write_text("\n".join(rows) + "\n")
    code, _, err = run_cli(capsys, "check", "--competition", "planet", "--data-dir", root)
    if code != 0:
        line = one_error_line(err)
        assert code == 2 and "train_v2.csv" in line
        if any(n in reserved_columns() for n in names):
            assert "toolkit's own columns" in line or "not in the expected format" in line
        return
    table = load_dataset("planet", root)
    assert set(names) <= set(table.classes)
    rng = np.random.default_rng(0)
    runs = work / "runs" / "exp"
    for seed, name in enumerate(("m1", "m2")):
        oof = noisy_probs(table.targets, np.random.default_rng(seed), skill=0.8)
        write_run(runs / name, "planet", table.classes, table.train["image_name"].tolist(), table.targets, oof,
                  np.arange(len(table.train)) % 3, table.test["image_name"].tolist(), rng.random((len(table.test), len(table.classes))),
                  data_dir=root, options=table.options)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        for argv in (("blend", runs / "m1", runs / "m2", "--method", "mean", "--out", runs / "blend"),
                     ("thresholds", runs / "blend"),
                     ("submission", runs / "blend", "--out", work / "submissions" / "s.csv"),
                     ("report", runs, "--out", work / "report.html")):
            code, _, err = run_cli(capsys, *argv)
            assert code == 0, (argv[0], err)
    finally:
        os.chdir(cwd)
    page = (work / "report.html").read_text()
    assert all(html.escape(n) in page or html.escape(n, quote=False) in page for n in names)
