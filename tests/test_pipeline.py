"""The main job end to end through the CLI: generated data -> validated submission, for every kind."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from trained_runs import experiment_name, tiny_experiment

from kaggle_planet.cli import main
from kaggle_planet.core.metrics import score
from kaggle_planet.data.competitions import load_dataset
from kaggle_planet.kaggle.submission import validate_submission_file


@pytest.mark.parametrize("competition", ["planet", "invasive", "imagefolder"])
def test_run_goes_from_data_to_a_validated_submission(tmp_path_factory, demo_datasets, competition):
    work = tiny_experiment(tmp_path_factory, competition, demo_datasets[competition])
    name = experiment_name(competition)
    exp = work / "runs" / name
    table = load_dataset(competition, demo_datasets[competition])

    assert (work / "folds" / f"{competition}_k2_s0.csv").is_file()
    sub_path = work / "submissions" / f"{name}.csv"
    validate_submission_file(sub_path, competition, demo_datasets[competition])  # independent re-check
    submission = pd.read_csv(sub_path, dtype={table.id_col: str})
    assert submission[table.id_col].tolist() == table.test[table.id_col].tolist()
    assert (exp / "submission.csv").read_bytes() == sub_path.read_bytes()
    sidecar = json.loads((work / "submissions" / f"{name}.csv.json").read_text())
    assert sidecar

    scores = json.loads((exp / "scores.json").read_text())
    assert set(scores["models"]) == {"test_resnet", "effnet"}
    # the blend's OOF score is what its own files say (recomputed here independently)
    oof = pd.read_csv(exp / "blend" / "oof.csv", dtype={table.id_col: str}).set_index(table.id_col)
    assert sorted(oof.index) == sorted(table.train[table.id_col])
    truth = table.train.set_index(table.id_col).loc[oof.index, table.classes].to_numpy()
    assert scores["blend"]["oof"] == pytest.approx(score(scores["metric"], truth, oof[table.classes].to_numpy()), abs=1e-12)
    for model, model_scores in scores["models"].items():
        model_oof = pd.read_csv(exp / model / "oof.csv", dtype={table.id_col: str}).set_index(table.id_col)
        truth = table.train.set_index(table.id_col).loc[model_oof.index, table.classes].to_numpy()
        assert model_scores["oof"] == pytest.approx(score(scores["metric"], truth, model_oof[table.classes].to_numpy()), abs=1e-12)

    if competition == "planet":
        assert scores["thresholds"]["f2_tuned"] >= scores["thresholds"]["f2_at_0.2"] - 1e-12
        thresholds = np.array(scores["thresholds"]["thresholds"])
        test = pd.read_csv(exp / "blend" / "test.csv", dtype={"image_name": str}).set_index("image_name")
        for _, row in submission.iterrows():  # tags are exactly the classes over their threshold (or the top one)
            p = test.loc[row["image_name"], table.classes].to_numpy()
            expected = {c for c, v, t in zip(table.classes, p, thresholds) if v > t} or {table.classes[int(p.argmax())]}
            assert set(row["tags"].split()) == expected
    if competition == "invasive":
        assert submission["invasive"].between(0, 1).all()
    if competition == "imagefolder":
        assert set(submission["label"]) <= set(table.classes)
        np.testing.assert_allclose(submission[table.classes].sum(axis=1), 1.0, atol=1e-6)


def test_rerun_skips_finished_work_and_gives_the_same_submission(tmp_path_factory, demo_datasets, monkeypatch, capsys):
    work = tiny_experiment(tmp_path_factory, "planet", demo_datasets["planet"])
    name = experiment_name("planet")
    exp = work / "runs" / name
    best = exp / "test_resnet" / "fold0" / "best.pt"
    stamps = (best.stat().st_mtime_ns, (exp / "test_resnet" / "oof.csv").stat().st_mtime_ns)
    before = (work / "submissions" / f"{name}.csv").read_bytes()
    monkeypatch.chdir(work)
    assert main(["run", f"{name}.yaml"]) == 0
    assert (best.stat().st_mtime_ns, (exp / "test_resnet" / "oof.csv").stat().st_mtime_ns) == stamps
    assert (work / "submissions" / f"{name}.csv").read_bytes() == before
    scores = json.loads((exp / "scores.json").read_text())
    out = capsys.readouterr().out
    assert f"{scores['blend']['oof']:.5f}" in out and f"submission: submissions/{name}.csv" in out


@pytest.mark.slow
def test_demo_makes_its_data_and_runs_the_demo_config(tmp_path, monkeypatch, capsys):
    """`kaggle-planet demo` wiring (data made when absent, the packaged config, pretrained lite0), kept short
    with overrides; the full demo is timed in the closing note, not here."""
    monkeypatch.chdir(tmp_path)
    overrides = ["--set", "epochs=1", "--set", "image_size=32", "--set", "folds.k=2", "--set", "tta=hflip",
                 "--set", "models.1.backbone=test_resnet", "--set", "models.1.pretrained=false", "--set", "models.1.name=small"]
    assert main(["demo", "--data-dir", "demo-data", *overrides]) == 0
    out = capsys.readouterr().out
    assert "tf_efficientnet_lite0" in out and "submission: submissions/demo.csv" in out
    validate_submission_file(tmp_path / "submissions" / "demo.csv", "planet", tmp_path / "demo-data")
    assert len(pd.read_csv(tmp_path / "demo-data" / "train_v2.csv")) == 600


def _scores(metric: str, models: dict[str, float], blend: dict) -> dict:
    return {"metric": metric, "models": {n: {"oof": v, "fold_std": 0.01} for n, v in models.items()},
            "blend": {"metric": metric, **blend}}


@pytest.mark.parametrize("metric, models, blend_oof, gain", [
    ("accuracy", {"a": 0.50, "b": 0.60}, 0.55, -0.05),  # below the best model (0.60): negative
    ("log_loss", {"a": 0.50, "b": 0.40}, 0.35, +0.05),  # a lower loss than the best model (0.40): positive
    ("log_loss", {"a": 0.50, "b": 0.40}, 0.45, -0.05),
])
def test_score_table_gain_is_positive_when_the_blend_is_better(metric, models, blend_oof, gain):
    from kaggle_planet.pipeline import format_score_table

    table = format_score_table(_scores(metric, models, {"method": "mean", "oof": blend_oof}))
    line = next(x for x in table.splitlines() if x.startswith("blend (mean)"))
    assert f"gain over best model {gain:+.5f}" in line
    assert ("log_loss is lower-is-better" in line) == (metric == "log_loss")


def test_score_table_says_what_auto_chose_and_signs_pseudo_rounds():
    from kaggle_planet.pipeline import format_score_table

    auto = {"chosen": "hillclimb", "candidates": {"mean": 0.52, "hillclimb": 0.41, "best": 0.43}}
    scores = _scores("log_loss", {"a": 0.45, "b": 0.43}, {"method": "hillclimb", "oof": 0.41, "auto": auto})
    scores["pseudo"] = [{"round": 1, "experiment": "x_pl1", "oof": 0.44, "previous_oof": 0.41, "images_per_fold": [3, 4]}]
    scores["submission"] = "submissions/x_pl1.csv"
    table = format_score_table(scores)
    assert "blend: auto chose hillclimb (OOF 0.41000) over mean 0.52000, best 0.43000" in table
    assert "gain over best model +0.02000" in table
    assert "(previous round 0.41000, -0.03000" in table  # a higher loss than the previous round: worse, negative
