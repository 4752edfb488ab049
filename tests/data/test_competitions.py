"""Competition specs on generated data in the real layouts, and every bad input named in issue 2."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import COMPETITIONS, check_dataset, get_spec, load_dataset
from kaggle_planet.data.synthetic import PLANET_TAGS


def test_planet_spec_reads_real_layout(demo_datasets):
    table = load_dataset("planet", demo_datasets["planet"])
    labels = pd.read_csv(demo_datasets["planet"] / "train_v2.csv")
    assert table.task == "multilabel" and table.id_col == "image_name"
    assert table.classes == sorted(PLANET_TAGS)
    assert table.train["image_name"].tolist() == labels["image_name"].tolist()
    # targets agree with the tag strings, row by row
    for row, tags in zip(table.targets, labels["tags"]):
        assert {c for c, v in zip(table.classes, row) if v} == set(tags.split())
    sample = pd.read_csv(demo_datasets["planet"] / "sample_submission_v2.csv")
    assert table.test["image_name"].tolist() == sample["image_name"].tolist()
    # test images come from whichever folder holds them
    folders = {Path(f).parent.name for f in table.test["file"]}
    assert folders == {"test-jpg", "test-jpg-additional"}
    assert all(Path(f).stem == n for f, n in zip(table.test["file"], table.test["image_name"]))


def test_planet_classes_come_from_the_data(dataset_copy):
    root = dataset_copy("planet")
    labels = pd.read_csv(root / "train_v2.csv")
    labels["tags"] = ["alpha beta" if i % 2 else "gamma" for i in range(len(labels))]
    labels.to_csv(root / "train_v2.csv", index=False)
    assert load_dataset("planet", root).classes == ["alpha", "beta", "gamma"]


def test_invasive_spec(demo_datasets):
    table = load_dataset("invasive", demo_datasets["invasive"])
    labels = pd.read_csv(demo_datasets["invasive"] / "train_labels.csv")
    assert table.task == "binary" and table.classes == ["invasive"]
    assert table.targets[:, 0].tolist() == labels["invasive"].tolist()
    assert all(Path(f).name == f"{n}.jpg" and Path(f).parent.name == "train" for f, n in zip(table.train["file"], table.train["name"]))
    sample = pd.read_csv(demo_datasets["invasive"] / "sample_submission.csv")
    assert table.test["name"].tolist() == sample["name"].astype(str).tolist()


def test_imagefolder_spec_with_labelled_test(demo_datasets):
    root = demo_datasets["imagefolder"]
    table = load_dataset("imagefolder", root)
    assert table.task == "multiclass" and table.id_col == "path"
    assert table.classes == sorted(p.name for p in (root / "seg_train").iterdir())
    for path, row in zip(table.train["path"], table.targets):
        assert row.sum() == 1 and path.split("/")[1] == table.classes[row.argmax()]
    assert table.test_labelled and len(table.test) == sum(1 for _ in (root / "seg_test").rglob("*.jpg"))


def test_imagefolder_flat_test_nested_train_and_custom_names(dataset_copy):
    root = dataset_copy("imagefolder")
    # Kaggle's Intel zip nests seg_train/seg_train/<class>; custom names for both folders
    (root / "train").mkdir()
    shutil.move(root / "seg_train", root / "train" / "train")
    flat = root / "pred"
    flat.mkdir()
    for i, f in enumerate(sorted((root / "seg_test").rglob("*.jpg"))):
        shutil.copy(f, flat / f"{i:03d}.jpg")
    table = load_dataset("imagefolder", root, {"train_dir": "train", "test_dir": "pred"})
    assert not table.test_labelled
    assert table.train["path"].iloc[0].startswith("train/train/")
    assert table.test["path"].tolist() == sorted(f"pred/{p.name}" for p in flat.iterdir())
    with pytest.raises(KagglePlanetError, match="unknown option"):
        load_dataset("imagefolder", root, {"train_folder": "train"})


def test_submission_formats(demo_datasets):
    probs = np.array([[0.9, 0.1, 0.3], [0.1, 0.15, 0.05]])
    planet = get_spec("planet").format_submission(["a", "b"], probs, ["x", "y", "z"], np.array([0.5, 0.5, 0.2]))
    assert planet.to_dict("list") == {"image_name": ["a", "b"], "tags": ["x z", "y"]}  # b: argmax when none passes
    inv = get_spec("invasive").format_submission(["1"], np.array([[0.7]]), ["invasive"])
    assert list(inv.columns) == ["name", "invasive"] and inv["invasive"].iloc[0] == 0.7
    folder = get_spec("imagefolder").format_submission(["a.jpg"], np.array([[0.2, 0.8]]), ["cat", "dog"])
    assert list(folder.columns) == ["path", "label", "cat", "dog"] and folder["label"].iloc[0] == "dog"


def test_each_spec_names_its_metric():
    # the metrics of ../shared/COMPETITIONS.md, written out here
    assert {n: s.metric for n, s in COMPETITIONS.items()} == {
        "planet": "f2_samples", "invasive": "roc_auc", "imagefolder": "accuracy", "csv": "accuracy",
        "cassava-leaf-disease-classification": "accuracy", "plant-pathology-2020-fgvc7": "mean_column_auc",
        "plant-pathology-2021-fgvc8": "f1_samples", "dog-breed-identification": "log_loss", "aerial-cactus-identification": "roc_auc",
        "histopathologic-cancer-detection": "roc_auc", "dogs-vs-cats-redux-kernels-edition": "log_loss",
        "siim-isic-melanoma-classification": "roc_auc"}


def test_check_summary_counts(demo_datasets):
    report = check_dataset("planet", demo_datasets["planet"])
    text = report.summary()
    counts = pd.read_csv(demo_datasets["planet"] / "train_v2.csv")["tags"].str.split().explode().value_counts()
    assert "agriculture" in text and not report.problems
    line = next(l for l in text.splitlines() if l.strip().startswith("water "))
    assert int(line.split()[1]) == counts["water"]


def test_check_lists_every_bad_image_across_chunks_in_order(dataset_copy, monkeypatch):
    from kaggle_planet.data import competitions

    monkeypatch.setattr(competitions, "CHECK_CHUNK", 4)  # the 60 + 12 images span many chunks
    root = dataset_copy("planet")
    bad = ["train_3", "train_4", "train_9", "train_41"]
    for name in bad:
        (root / "train-jpg" / f"{name}.jpg").write_bytes(b"broken")
    problems = check_dataset("planet", root).problems
    assert [p.split("'")[1] for p in problems] == bad and all("not an image file" in p for p in problems)
    table = load_dataset("planet", root, check_images=False)
    assert len(competitions.find_image_problems(table, decode=True, limit=3)) == 3


# ------------------------------------------------------------------------------------ bad input


def _edit_csv(path: Path, edit) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(path, index=False)


BAD_PLANET = {
    "missing csv": (lambda r: (r / "train_v2.csv").unlink(), r"train_v2.csv: Planet training labels not found"),
    "missing column": (lambda r: _edit_csv(r / "train_v2.csv", lambda f: f.rename(columns={"tags": "labels"}, inplace=True)),
                       r"train_v2.csv: missing column 'tags'"),
    "empty tags": (lambda r: _edit_csv(r / "train_v2.csv", lambda f: f.loc.__setitem__((3, "tags"), "")),
                   r"train_v2.csv: line 5 \(train_3\): empty tags"),
    "comma tags": (lambda r: _edit_csv(r / "train_v2.csv", lambda f: f.loc.__setitem__((4, "tags"), "clear,primary")),
                   r"train_v2.csv: line 6 \(train_4\): tags 'clear,primary' not in the expected format"),
    "duplicate id": (lambda r: _edit_csv(r / "train_v2.csv", lambda f: f.loc.__setitem__((7, "image_name"), "train_2")),
                     r"train_v2.csv: line 9: duplicate image_name 'train_2' \(first on line 4\)"),
    "absent image": (lambda r: (r / "train-jpg" / "train_5.jpg").unlink(), r"train_5.jpg: train image for image_name 'train_5' not found"),
    "sample id without image": (lambda r: (r / "test-jpg-additional" / "file_1.jpg").unlink(),
                                r"sample_submission_v2.csv: line \d+: no image for image_name 'file_1'"),
    "missing sample submission": (lambda r: (r / "sample_submission_v2.csv").unlink(), r"sample_submission_v2.csv: sample submission not found"),
}


BAD_INVASIVE = {
    "label outside 0/1": (lambda r: _edit_csv(r / "train_labels.csv", lambda f: f.loc.__setitem__((2, "invasive"), "2")),
                          r"train_labels.csv: line 4 \(name 3\): invasive is '2'; expected 0 or 1"),
    "non-integer name": (lambda r: _edit_csv(r / "train_labels.csv", lambda f: f.loc.__setitem__((0, "name"), "abc")),
                         r"train_labels.csv: line 2: name 'abc' is not an integer"),
    "duplicate id": (lambda r: _edit_csv(r / "train_labels.csv", lambda f: f.loc.__setitem__((5, "name"), "1")),
                     r"duplicate name '1'"),
    "empty test folder": (lambda r: [p.unlink() for p in (r / "test").iterdir()], r"test: test folder holds no images"),
    "missing column": (lambda r: _edit_csv(r / "sample_submission.csv", lambda f: f.drop(columns="invasive", inplace=True)),
                       r"sample_submission.csv: missing column 'invasive'"),
}


BAD_INPUT = [("planet", case, *v) for case, v in BAD_PLANET.items()] + [("invasive", case, *v) for case, v in BAD_INVASIVE.items()]


@pytest.mark.parametrize("competition, case, corrupt, pattern", BAD_INPUT, ids=[f"{c}-{case}" for c, case, *_ in BAD_INPUT])
def test_bad_input_is_one_line(dataset_copy, competition, case, corrupt, pattern):
    root = dataset_copy(competition)
    corrupt(root)
    with pytest.raises(KagglePlanetError, match=pattern) as info:
        load_dataset(competition, root)
    assert "\n" not in str(info.value)


def test_imagefolder_empty_test_folder(dataset_copy):
    root = dataset_copy("imagefolder")
    shutil.rmtree(root / "seg_test")
    (root / "seg_test" / "forest").mkdir(parents=True)
    with pytest.raises(KagglePlanetError, match=r"seg_test: test folder holds no images"):
        load_dataset("imagefolder", root)


def test_imagefolder_missing_train_folder(dataset_copy):
    root = dataset_copy("imagefolder")
    with pytest.raises(KagglePlanetError, match=r"train_x: train_dir 'train_x' not found; expected a folder inside the data folder"):
        load_dataset("imagefolder", root, {"train_dir": "train_x"})


def test_unreadable_image_is_reported_by_check(dataset_copy):
    root = dataset_copy("invasive")
    (root / "train" / "4.jpg").write_bytes(b"this is not a jpeg")
    (root / "test" / "2.jpg").write_bytes(b"")
    report = check_dataset("invasive", root)
    assert len(report.problems) == 2
    assert "4.jpg: train image for name '4' is not an image file (it starts with b'this is '; expected JPEG" in report.problems[0]
    assert "2.jpg: test image for name '2' empty file" in report.problems[1]
    assert "images missing or unreadable: 2" in report.summary()


def test_unknown_competition():
    with pytest.raises(KagglePlanetError, match="unknown competition 'kaggle'; valid: planet, invasive, imagefolder"):
        get_spec("kaggle")
