"""Each named preset on a stand-in in exactly its competition's file names and columns (tests/standins.py):
``check``, ``folds``, a 1-epoch ``run`` through the real CLI, and the submission validated against the sample;
plus the generic ``csv`` layout through ``init`` (guessed) and the bad inputs a layout must refuse in one line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_cases import one_error_line, run_cli
from standins import STANDINS, make_standin

from kaggle_planet.cli import main
from kaggle_planet.data.competitions import COMPETITIONS, load_dataset
from kaggle_planet.kaggle.submission import validate_submission_file

RUN = {"folds": {"k": 2, "seed": 0}, "image_size": 32, "augment": "none", "tta": "none", "device": "cpu", "epochs": 1,
       "batch_size": 8, "num_workers": 0, "warmup_epochs": 0, "log": ["csv"], "refit": "off", "models": [{"backbone": "test_resnet", "lr": 0.01}]}


def test_every_preset_has_a_standin():
    presets = {name for name, spec in COMPETITIONS.items() if spec.is_layout and name != "csv"}
    assert presets == set(STANDINS)
    assert all(COMPETITIONS[name].slug == name for name in presets)  # `download <slug>` then `init <slug>`


@pytest.mark.parametrize("name", sorted(STANDINS))
def test_preset_check_folds_run_and_submission(name, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    facts = make_standin(name, data)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "-c", name, "-d", str(data)]) == 0
    out = capsys.readouterr().out
    assert "ok: dataset is valid" in out and f"metric {COMPETITIONS[name].metric}" in out
    assert main(["folds", "-c", name, "-d", str(data), "--k", "2", "--seed", "0"]) == 0
    folds = pd.read_csv(tmp_path / "folds" / f"{name}_k2_s0.csv", dtype=str)
    table = load_dataset(name, data)
    assert table.classes == facts["classes"]
    assert sorted(folds[table.id_col]) == sorted(table.train[table.id_col])
    if facts.get("groups"):  # SIIM: no patient in two folds
        merged = folds.merge(pd.read_csv(data / "train.csv", dtype=str), on=table.id_col)
        assert merged.groupby(facts["groups"])["fold"].nunique().max() == 1

    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"name": "exp", "competition": name, "data_dir": str(data), **RUN}))
    capsys.readouterr()
    assert main(["run", "exp.yaml"]) == 0
    submission = tmp_path / "submissions" / "exp.csv"
    validate_submission_file(submission, name, data)  # the toolkit's own check against the sample ...
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    written = pd.read_csv(submission, dtype=str)
    # ... and an independent one: the sample's header, ids and order; values of the competition's kind
    assert list(written.columns) == facts["columns"] == list(sample.columns)
    assert written.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    values = written.iloc[:, 1:]
    if name in ("cassava-leaf-disease-classification",):
        assert set(values.iloc[:, 0]) <= set(facts["classes"])
    elif name == "plant-pathology-2021-fgvc8":
        assert all(tags and set(tags.split(" ")) <= set(facts["classes"]) for tags in values.iloc[:, 0])
    else:
        probs = values.astype(float).to_numpy()
        assert ((probs >= 0) & (probs <= 1)).all()
        if probs.shape[1] > 1:
            np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    scores = json.loads((tmp_path / "runs" / "exp" / "scores.json").read_text())
    assert scores["metric"] == COMPETITIONS[name].metric


def test_csv_layout_guessed_by_init_and_run(tmp_path, monkeypatch, capsys):
    """An unknown folder (a plain Aerial-Cactus-shaped one under another name): init csv guesses the layout and says so."""
    data = tmp_path / "mystery"
    make_standin("aerial-cactus-identification", data)
    monkeypatch.chdir(tmp_path)
    assert main(["init", "csv", "-d", str(data), "--out", "guessed.yaml"]) == 0
    out = capsys.readouterr().out
    config = yaml.safe_load((tmp_path / "guessed.yaml").read_text())
    assert config["layout"] == {"labels": "train.csv", "id_column": "id", "train_images": "train", "test_images": "test",
                                "file_pattern": "{id}", "label_column": "has_cactus", "target": "label", "task": "binary"}
    assert "file pattern '{id}'" in out and "binary" in out
    config.update({k: v for k, v in RUN.items() if k != "models"}, models=RUN["models"])
    (tmp_path / "guessed.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "guessed.yaml"]) == 0
    assert [p.name for p in (tmp_path / "folds").iterdir()] == ["csv-mystery_k2_s0.csv"]  # named by the data set: csv layouts never share one
    written = pd.read_csv(tmp_path / "submissions" / f"{config['name']}.csv")
    assert list(written.columns) == ["id", "has_cactus"]


def test_csv_layout_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "d"
    make_standin("histopathologic-cancer-detection", data)
    args = ["check", "-c", "csv", "-d", data, "--layout", "labels=train_labels.csv", "--layout", "file_pattern={id}.tif",
            "--layout", "task=binary", "--layout", "class_name=cancer"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "task binary" in out


def _cactus(tmp_path):
    data = tmp_path / "data"
    make_standin("aerial-cactus-identification", data)
    return data


def _edit_csv(path, edit):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("case, expected", [
    ("missing id column", "missing column 'id'"),
    ("id without image", "no image for id 'nope.jpg'"),
    ("label does not parse", "does not parse as a binary label"),
    ("two rows for one id", "duplicate id"),
    ("unknown sample format", "match no known submission format"),
])
def test_layout_bad_input_is_one_line(case, expected, tmp_path, capsys):
    data = _cactus(tmp_path)
    labels, sample = data / "train.csv", data / "sample_submission.csv"
    if case == "missing id column":
        _edit_csv(labels, lambda f: f.rename(columns={"id": "image"}, inplace=True))
    elif case == "id without image":
        _edit_csv(labels, lambda f: f.loc.__setitem__((3, "id"), "nope.jpg"))
    elif case == "label does not parse":
        _edit_csv(labels, lambda f: f.loc.__setitem__((5, "has_cactus"), "yes"))
    elif case == "two rows for one id":
        _edit_csv(labels, lambda f: f.loc.__setitem__((5, "id"), f.loc[2, "id"]))
    elif case == "unknown sample format":
        _edit_csv(sample, lambda f: f.insert(2, "score", "0"))
    code, _, err = run_cli(capsys, "check", "-c", "aerial-cactus-identification", "-d", data)
    line = one_error_line(err)
    assert code != 0 and expected in line, line
    if case in ("id without image", "label does not parse", "two rows for one id"):
        assert "train.csv: line " in line  # the file and its line
    if case == "unknown sample format":
        assert "id,has_cactus,score" in line and "expected id and one column" in line


def test_multiclass_label_that_does_not_parse_and_empty_group(tmp_path, capsys):
    data = tmp_path / "c"
    make_standin("cassava-leaf-disease-classification", data)
    _edit_csv(data / "train.csv", lambda f: f.loc.__setitem__((7, "label"), "four"))
    code, _, err = run_cli(capsys, "check", "-c", "cassava-leaf-disease-classification", "-d", data)
    assert code == 2 and "train.csv: line 9: label 'four' does not parse; expected an integer class" in one_error_line(err)

    data = tmp_path / "s"
    make_standin("siim-isic-melanoma-classification", data)
    _edit_csv(data / "train.csv", lambda f: f.loc.__setitem__((4, "patient_id"), ""))
    code, _, err = run_cli(capsys, "check", "-c", "siim-isic-melanoma-classification", "-d", data)
    assert code == 2 and "train.csv: line 6 (image_name 'ISIC_0020004'): empty patient_id" in one_error_line(err)


def test_config_layout_keys_are_validated(tmp_path, capsys):
    data = _cactus(tmp_path)
    base = {"name": "x", "competition": "csv", "data_dir": str(data), **RUN}
    for layout, expected in [({"taks": "binary"}, "layout.taks"), ({"target": "label", "task": "multilabel"}, "does not go with target"),
                             ({"file_pattern": "{name}.jpg"}, "holding {id} once"), ({"metric": "f2_nonsense"}, "layout.metric")]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, "layout": layout}))
        code, _, err = run_cli(capsys, "run", path)
        assert code == 2 and expected in one_error_line(err), (layout, err)
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump({**base, "competition": "invasive", "layout": {"id_column": "name"}}))
    code, _, err = run_cli(capsys, "run", path)
    assert code == 2 and "only valid for csv-layout competitions" in one_error_line(err)


def test_preset_key_overridden_by_the_layout_block(tmp_path):
    """Where a preset's detail is uncertain it stays a key: Plant Pathology 2021's F1 averaging."""
    from kaggle_planet.config.schema import config_from_dict

    data = tmp_path / "pp"
    make_standin("plant-pathology-2021-fgvc8", data)
    cfg = config_from_dict({"name": "x", "competition": "plant-pathology-2021-fgvc8", "data_dir": str(data), **RUN,
                            "layout": {"metric": "f1_macro"}})
    assert cfg.metric == "f1_macro" and COMPETITIONS["plant-pathology-2021-fgvc8"].metric == "f1_samples"
    shutil.rmtree(data)


def test_csv_layout_path_column_multibinary_and_a_test_csv(tmp_path, monkeypatch):
    """The layout keys the presets do not use: images by a path column, several 0/1 columns with several 1s per row
    (multilabel), test ids from a test CSV with no sample submission (the default header: id + one column per class)."""
    from standins import _image, _write_csv

    rng = np.random.default_rng(0)
    data = tmp_path / "xray"
    rows = []
    for i in range(40):
        y = [int(i % 2 == 0), int(i % 3 == 0), int(i % 5 == 0)]
        path = f"images_{i % 2}/{i:05d}.png"
        _image(data / path, sum(y) / 3, rng)
        rows.append([f"{i:05d}.png", path, *y])
    _write_csv(data / "Data_Entry.csv", ["Image Index", "path", "Effusion", "Mass", "Nodule"], rows)
    for i in range(10):
        _image(data / "test" / f"t{i}.png", rng.random(), rng)
    _write_csv(data / "test_list.csv", ["Image Index"], [[f"t{i}.png"] for i in range(10)])
    layout = {"labels": "Data_Entry.csv", "id_column": "Image Index", "path_column": "path", "target": "columns",
              "target_columns": ["Effusion", "Mass", "Nodule"], "task": "multilabel", "test_images": "test", "file_pattern": "{id}",
              "sample_submission": None, "test_csv": "test_list.csv", "submission": "probabilities", "metric": "mean_column_auc"}
    table = load_dataset("csv", data, layout)
    assert table.task == "multilabel" and table.classes == ["Effusion", "Mass", "Nodule"]
    assert table.targets.sum(axis=1).max() > 1 and table.train["file"].iloc[3] == str(data / "images_1" / "00003.png")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"name": "x", "competition": "csv", "data_dir": str(data), **RUN, "layout": layout}))
    assert main(["run", "x.yaml"]) == 0
    written = pd.read_csv(tmp_path / "submissions" / "x.csv")
    assert list(written.columns) == ["Image Index", "Effusion", "Mass", "Nodule"]
    assert written["Image Index"].tolist() == [f"t{i}.png" for i in range(10)]
    assert written.iloc[:, 1:].to_numpy().min() >= 0 and written.iloc[:, 1:].to_numpy().max() <= 1


def test_layout_paths_from_data_stay_inside_the_data_folder(tmp_path, capsys):
    """Strings from the data are data: a path column pointing outside the data folder, or an id that is not a plain
    file name, is refused in one line (never opened)."""
    data = _cactus(tmp_path)
    _edit_csv(data / "train.csv", lambda f: f.insert(1, "path", ["train/" + i for i in f["id"]]))
    base = ["check", "-c", "csv", "-d", data, "--layout", "label_column=has_cactus", "--layout", "task=binary"]
    code, _, _ = run_cli(capsys, *base, "--layout", "path_column=path", "--layout", "file_pattern={id}")
    assert code == 0
    _edit_csv(data / "train.csv", lambda f: f.loc.__setitem__((2, "path"), "../../../etc/passwd"))
    code, _, err = run_cli(capsys, *base, "--layout", "path_column=path", "--layout", "file_pattern={id}")
    assert code != 0 and "train.csv: line 4: path '../../../etc/passwd' lies outside the data folder" in one_error_line(err)
    _edit_csv(data / "train.csv", lambda f: f.loc.__setitem__((2, "id"), "../train/x.jpg"))
    code, _, err = run_cli(capsys, *base, "--layout", "file_pattern={id}")
    assert code != 0 and "cannot name a file" in one_error_line(err)


def test_a_macro_f1_tag_submission_gives_an_empty_row_its_most_probable_tag(tmp_path):
    """Micro / macro thresholds may choose no tag for an image; the tag submission then names its most probable tag
    (the argmax of its probabilities, not of its empty 0/1 row, which would be the first class)."""
    from runfactory import write_run

    from kaggle_planet.kaggle.submission import write_run_submission

    data = tmp_path / "pp"
    facts = make_standin("plant-pathology-2021-fgvc8", data)
    options = {"metric": "f1_macro"}
    table = load_dataset("plant-pathology-2021-fgvc8", data, options)
    y = table.targets
    oof = np.where(y == 1, 0.9, 0.1)  # separable: every fitted threshold lies between 0.1 and 0.9
    test = np.full((len(table.test), len(table.classes)), 0.05)
    test[0, 3] = 0.08  # row 0: no tag passes; its most probable one is the fourth class
    test[1:, 1] = 0.95
    run = write_run(tmp_path / "run", "plant-pathology-2021-fgvc8", table.classes, table.train["image"].tolist(), y, oof,
                    np.arange(len(y)) % 3, table.test["image"].tolist(), test, data_dir=data, options=options)
    out = write_run_submission(run, tmp_path / "sub.csv")
    written = pd.read_csv(out, dtype=str)
    assert written["labels"].iloc[0] == facts["classes"][3]
    assert (written["labels"].iloc[1:] == facts["classes"][1]).all()
    assert json.loads((tmp_path / "sub.csv.json").read_text())["rows_given_their_top_tag"] == 1


def test_a_grade_competition_scored_by_qwk_as_a_classifier(tmp_path, monkeypatch):
    """Integer classes are grades in numeric order: a layout scored by qwk (APTOS as a 5-class classifier) runs end to
    end, and its scores are scikit-learn's quadratic kappa of the files the run wrote."""
    from sklearn.metrics import cohen_kappa_score

    data = tmp_path / "grades"
    make_standin("cassava-leaf-disease-classification", data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({"name": "g", "competition": "cassava-leaf-disease-classification",
                                                       "data_dir": str(data), **RUN, "layout": {"metric": "qwk"}}))
    assert main(["run", "g.yaml"]) == 0
    scores = json.loads((tmp_path / "runs" / "g" / "scores.json").read_text())
    oof = pd.read_csv(tmp_path / "runs" / "g" / "blend" / "oof.csv", dtype={"image_id": str}).set_index("image_id")
    labels = pd.read_csv(data / "train.csv", dtype={"image_id": str}).set_index("image_id").loc[oof.index, "label"]
    predicted = oof[["0", "1", "2", "3", "4"]].to_numpy().argmax(axis=1)
    assert scores["metric"] == "qwk"
    assert scores["blend"]["oof"] == pytest.approx(cohen_kappa_score(labels, predicted, weights="quadratic", labels=range(5)), abs=1e-9)
