"""Submission files from run folders, and the validator that guards every upload."""
from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest
from runfactory import make_run

from kaggle_planet.core import artifacts, metrics
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import thresholds
from kaggle_planet.kaggle import submission

COMPETITIONS = ["planet", "invasive", "imagefolder"]


def expected_planet_tags(probs, classes, thr):
    """Independent reference: tags above their threshold, else the single most probable tag."""
    rows = []
    for p in probs:
        tags = [c for c, v, t in zip(classes, p, thr) if v > t]
        rows.append(" ".join(tags) if tags else classes[int(np.argmax(p))])
    return rows


@pytest.mark.parametrize("competition", COMPETITIONS)
def test_writes_the_expected_validated_submission(tmp_path, demo_datasets, competition, caplog):
    run, table, test = make_run(tmp_path, demo_datasets[competition], competition, shuffle_test=True)
    out = tmp_path / "submissions" / f"{competition}.csv"
    with caplog.at_level(logging.INFO, logger="kaggle_planet"):
        assert submission.write_run_submission(run, out) == out
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    test_ids = table.test[table.id_col].tolist()
    assert written[table.id_col].tolist() == test_ids  # sample-submission order despite the shuffled test.csv
    if competition == "planet":
        assert "fitting thresholds" in caplog.text  # thresholds.json was missing, so it was fitted and logged
        thr = np.array(artifacts.read_json(run / "thresholds.json")["thresholds"])
        assert written["tags"].tolist() == expected_planet_tags(test, table.classes, thr)
        assert list(written.columns) == list(table.sample_submission.columns)
    elif competition == "invasive":
        np.testing.assert_allclose(written["invasive"].astype(float), test[:, 0], rtol=1e-7)
    else:
        assert list(written.columns) == ["path", "label", *table.classes]
        assert written["label"].tolist() == [table.classes[k] for k in test.argmax(axis=1)]
        np.testing.assert_allclose(written[table.classes].astype(float).to_numpy(), test, rtol=1e-7)
    submission.validate_submission_file(out, competition, demo_datasets[competition])

    sidecar = json.loads(submission.sidecar_path(out).read_text())
    assert sidecar["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sidecar["files"]["test.csv"]["sha256"] == hashlib.sha256((run / "test.csv").read_bytes()).hexdigest()
    assert sidecar["config"] == {"model": "tiny", "seed": 0}
    loaded = artifacts.load_run(run)
    assert sidecar["oof_score"] == pytest.approx(metrics.score(sidecar["metric"], loaded.y_true, loaded.oof_probs))
    assert ("thresholds" in sidecar) == (competition == "planet")


def test_existing_thresholds_are_used(tmp_path, demo_datasets):
    run, table, test = make_run(tmp_path, demo_datasets["planet"], "planet")
    result = thresholds.fit_run_thresholds(run)
    result["thresholds"] = [0.99] * len(table.classes)  # nothing passes: every row falls back to its argmax
    artifacts.write_json(run / "thresholds.json", result)
    out = submission.write_run_submission(run, tmp_path / "sub.csv")
    tags = pd.read_csv(out)["tags"].tolist()
    assert tags == [table.classes[k] for k in test.argmax(axis=1)]


def test_run_for_another_test_set_is_refused(tmp_path, demo_datasets):
    run, table, test = make_run(tmp_path, demo_datasets["invasive"], "invasive")
    frame = pd.read_csv(run / "test.csv", dtype=str)
    artifacts.write_csv(run / "test.csv", frame.iloc[1:])
    with pytest.raises(KagglePlanetError, match=r"test\.csv and the test ids of .*ids differ") as err:
        submission.write_run_submission(run, tmp_path / "sub.csv")
    assert not (tmp_path / "sub.csv").exists() and "\n" not in str(err.value)


@pytest.fixture
def planet_file(tmp_path, demo_datasets):
    run, _, _ = make_run(tmp_path, demo_datasets["planet"], "planet")
    return submission.write_run_submission(run, tmp_path / "planet.csv")


def _edit(path, edit):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = edit(frame)
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda f: f.iloc[[1, 0, *range(2, len(f))]], r"line 2: image_name '\S+' where the sample submission has"),
        (lambda f: f.iloc[:-1], r"line \d+: missing row for image_name"),
        (lambda f: f.drop(index=4), r"line 6: image_name"),
        (lambda f: pd.concat([f, f.iloc[:1]]), r"line \d+: extra row"),
        (lambda f: f.assign(extra="1"), r"line 1: unexpected column 'extra'"),
        (lambda f: f[["tags", "image_name"]], r"line 1: columns in the wrong order"),
        (lambda f: f.assign(tags=[*f["tags"][:3], "clear jungle", *f["tags"][4:]]), r"line 5: unknown tag 'jungle'"),
        (lambda f: f.assign(tags=[""] + f["tags"][1:].tolist()), r"line 2: no tags"),
    ],
)
def test_bad_planet_files_are_refused_in_one_line(planet_file, demo_datasets, edit, pattern):
    _edit(planet_file, edit)
    with pytest.raises(KagglePlanetError, match=pattern) as err:
        submission.validate_submission_file(planet_file, "planet", demo_datasets["planet"])
    assert str(planet_file) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value, line", [("1.5", 3), ("", 3), ("nan", 3), ("-0.1", 3), ("abc", 3)])
def test_bad_probabilities_are_refused(tmp_path, demo_datasets, value, line):
    run, _, _ = make_run(tmp_path, demo_datasets["invasive"], "invasive")
    out = submission.write_run_submission(run, tmp_path / "inv.csv")
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    frame.loc[1, "invasive"] = value
    frame.to_csv(out, index=False)
    with pytest.raises(KagglePlanetError, match=rf"inv\.csv: line {line}: invasive .* not a probability"):
        submission.validate_submission_file(out, "invasive", demo_datasets["invasive"])


def test_imagefolder_label_and_order_checked(tmp_path, demo_datasets):
    run, _, _ = make_run(tmp_path, demo_datasets["imagefolder"], "imagefolder")
    out = submission.write_run_submission(run, tmp_path / "if.csv")
    _edit(out, lambda f: f.assign(label=["nope", *f["label"][1:]]))
    with pytest.raises(KagglePlanetError, match=r"line 2: label 'nope'"):
        submission.validate_submission_file(out, "imagefolder", demo_datasets["imagefolder"])


def test_refused_frame_is_never_written(tmp_path, demo_datasets, monkeypatch):
    run, _, _ = make_run(tmp_path, demo_datasets["invasive"], "invasive")
    out = tmp_path / "inv.csv"
    out.write_text("previous\n")
    # a broken formatter (rows reversed) must be caught by validation before the file is replaced
    monkeypatch.setattr(submission, "get_spec", lambda name, options=None: _ReversingSpec(name))
    with pytest.raises(KagglePlanetError, match="where the sample submission has"):
        submission.write_run_submission(run, out)
    assert out.read_text() == "previous\n"


class _ReversingSpec:
    def __init__(self, name):
        from kaggle_planet.data.competitions import get_spec

        self._spec = get_spec(name)

    def __getattr__(self, attr):
        return getattr(self._spec, attr)

    def format_submission(self, ids, probs, classes, thresholds=None, columns=None):
        return self._spec.format_submission(ids, probs, classes, thresholds, columns).iloc[::-1].reset_index(drop=True)
