"""Property tests (issue 11): random byte edits to the files a user hands the data side -- the
competitions' label CSVs and sample submissions, a submission to validate, the submissions log, and
image files -- end in a valid result or a one-line KagglePlanetError, never in another exception.

Hypothesis runs derandomized (the same examples every run, so CI is reproducible) and small.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import find_image_problems, image_file_problem, load_dataset
from kaggle_planet.data.loader import read_image
from kaggle_planet.data.synthetic import make_demo_data
from kaggle_planet.kaggle.submission import read_submission_log, validate_submission_file

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# bytes that matter to a CSV or image parser, besides random ones
SPECIAL = [b"\x00", b",", b'"', b"\n", b"\r\n", b"\r", b" ", b"\t", b";", b"\xef\xbb\xbf", b"\xff\xfe", b"\xff", b"\xff\xd9",
           b"\xff\xd8", b"\xc3", b"\x80", b"nan", b"NA", b"-1", b"2", b"1e400", b"#", b"'", b"\\"]
chunk = st.one_of(st.sampled_from(SPECIAL), st.binary(min_size=1, max_size=12))
edit = st.tuples(st.sampled_from(["replace", "insert", "delete", "truncate", "duplicate"]), st.integers(0, 1 << 30), chunk)
edits = st.lists(edit, min_size=1, max_size=5)


def apply_edits(data: bytes, ops) -> bytes:
    """Each op at a position taken modulo the current length: overwrite, insert, delete len(chunk)
    bytes, cut the file there, or repeat the bytes around it."""
    for op, pos, piece in ops:
        i = pos % (len(data) + 1)
        if op == "replace":
            data = data[:i] + piece + data[i + len(piece):]
        elif op == "insert":
            data = data[:i] + piece + data[i:]
        elif op == "delete":
            data = data[:i] + data[i + len(piece):]
        elif op == "truncate":
            data = data[:i]
        else:
            data = data[:i] + data[max(0, i - 40):i] + data[i:]
    return data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    return {c: make_demo_data(c, root / c, n_train=12, n_test=3, size=16, seed=3) for c in ("planet", "invasive", "imagefolder")}


def _valid_table(table) -> None:
    """What any successfully read table must satisfy."""
    assert len(table.train) > 0 and table.train[table.id_col].is_unique
    assert set(np.unique(table.targets)) <= {0, 1}
    assert table.classes == sorted(table.classes)
    assert table.test[table.id_col].is_unique


CSV_FILES = [("planet", "train_v2.csv"), ("planet", "sample_submission_v2.csv"),
             ("invasive", "train_labels.csv"), ("invasive", "sample_submission.csv")]


@pytest.mark.parametrize("competition, name", CSV_FILES, ids=[f"{c}-{n}" for c, n in CSV_FILES])
def test_edited_competition_csv_reads_or_is_one_line(tiny, tmp_path, competition, name):
    root = Path(shutil.copytree(tiny[competition], tmp_path / competition))
    original = (root / name).read_bytes()

    @FUZZ
    @given(ops=edits)
    def check(ops):
        (root / name).write_bytes(apply_edits(original, ops))
        try:
            table = load_dataset(competition, root, check_images=False)
        except KagglePlanetError as exc:
            assert "\n" not in str(exc)
        else:
            _valid_table(table)

    check()


@pytest.mark.parametrize("competition", ["planet", "invasive"])
def test_edited_submission_validates_or_is_one_line(tiny, tmp_path, competition):
    root = tiny[competition]
    sample = root / ("sample_submission_v2.csv" if competition == "planet" else "sample_submission.csv")
    original = sample.read_bytes()  # the sample submission is itself a valid submission
    validate_submission_file(sample, competition, root)
    path = tmp_path / "submission.csv"

    @FUZZ
    @given(ops=edits)
    def check(ops):
        path.write_bytes(apply_edits(original, ops))
        try:
            validate_submission_file(path, competition, root)
        except KagglePlanetError as exc:
            assert "\n" not in str(exc)

    check()


def test_edited_submissions_log_reads_or_is_one_line(tmp_path):
    path = tmp_path / "log.csv"
    from kaggle_planet.kaggle.submission import log_submission

    sub = tmp_path / "s.csv"
    sub.write_text("name,invasive\n1,0.5\n")
    log_submission(path, sub, "invasive", "first try", 123)
    original = path.read_bytes()

    @FUZZ
    @given(ops=edits)
    def check(ops):
        path.write_bytes(apply_edits(original, ops))
        try:
            read_submission_log(path)
        except KagglePlanetError as exc:
            assert "\n" not in str(exc)

    check()


IMAGES = [("invasive", "train/1.jpg"), ("imagefolder", "png")]


@pytest.mark.parametrize("competition, image", IMAGES, ids=["jpeg", "png"])
def test_edited_image_reads_or_is_one_line(tiny, tmp_path, competition, image):
    import cv2

    if image == "png":  # a PNG made from a demo JPEG
        src = tmp_path / "x.png"
        cv2.imwrite(str(src), cv2.imread(str(next((tiny[competition] / "seg_train").rglob("*.jpg")))))
    else:
        src = tiny[competition] / image
    original = src.read_bytes()
    path = tmp_path / f"edited{src.suffix}"

    @FUZZ
    @given(ops=edits)
    def check(ops):
        path.write_bytes(apply_edits(original, ops))
        problem = image_file_problem(str(path))
        assert problem is None or (isinstance(problem, str) and "\n" not in problem)
        try:
            image = read_image(path)
        except KagglePlanetError as exc:
            assert "\n" not in str(exc)
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3

    check()


def test_edited_image_in_a_dataset_is_listed_by_check(tiny, tmp_path):
    """find_image_problems (what `check` runs, with a full decode) over a dataset with one edited image:
    a list of one-line problems, never an exception."""
    root = Path(shutil.copytree(tiny["invasive"], tmp_path / "invasive"))
    table = load_dataset("invasive", root)
    target = root / "train" / "2.jpg"
    original = target.read_bytes()

    @FUZZ
    @given(ops=edits)
    def check(ops):
        target.write_bytes(apply_edits(original, ops))
        problems = find_image_problems(table, decode=True)
        assert all("\n" not in p and str(target) in p for p in problems)
        assert len(problems) <= 1

    check()
