"""A run folder knows what it was made from (hardening issue 20, class 1).

One tiny real experiment (two test_resnet models, k=2, one epoch at 32 px on the 60-image demo data, through
``kaggle-planet run``) is trained once; each test copies it, edits one input after the stage ran -- the
labels (a target flipped), the class list (a tag added, a tag renamed), the folds file (a row's fold
changed), a result-changing config key, the blend method -- and runs the next command. It either recomputes
what is stale (and says so) or stops with one ``error:`` line naming what changed; never old and new mixed:
a refusal leaves every file of the workspace as it was, a recomputation leaves files that all describe the
new state.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from cli_cases import one_error_line, run_cli

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts, fingerprints
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import blend, thresholds

CONFIG = {
    "name": "e", "competition": "planet", "data_dir": "data/planet", "folds": {"k": 2, "seed": 0},
    "image_size": 32, "augment": "none", "tta": "none", "device": "cpu", "epochs": 1, "batch_size": 16,
    "num_workers": 0, "warmup_epochs": 0,
    "models": [{"backbone": "test_resnet", "name": "a", "lr": 0.01}, {"backbone": "test_resnet", "name": "b", "lr": 0.003}],
}
LABELS = Path("data/planet/train_v2.csv")
FOLDS = Path("folds/planet_k2_s0.csv")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_datasets) -> Path:
    """A finished ``kaggle-planet run e.yaml`` (runs/e/{a,b,blend}, folds/, submissions/e.csv); read-only."""
    work = tmp_path_factory.mktemp("stale")
    shutil.copytree(demo_datasets["planet"], work / "data" / "planet")
    (work / "e.yaml").write_text(yaml.safe_dump(CONFIG))
    cwd = os.getcwd()
    os.chdir(work)  # every path relative: a copy of the folder is a workspace of its own
    try:
        assert main(["run", "e.yaml"]) == 0
    finally:
        os.chdir(cwd)
    return work


@pytest.fixture
def work(trained, tmp_path, monkeypatch) -> Path:
    """A writable copy of the trained workspace, as the working directory."""
    copy = Path(shutil.copytree(trained, tmp_path / "w", symlinks=True))
    monkeypatch.chdir(copy)
    return copy


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "data" not in p.relative_to(root).parts[:1]}


# ------------------------------------------------------------------------------------------- edits


def _edit_tags(edit) -> None:
    frame = pd.read_csv(LABELS, dtype=str)
    frame["tags"] = [edit(name, tags) for name, tags in zip(frame["image_name"], frame["tags"])]
    frame.to_csv(LABELS, index=False)


def flip_target() -> None:  # train_3 loses its water tag
    _edit_tags(lambda name, tags: " ".join(t for t in tags.split() if t != "water") if name == "train_3" else tags)


def add_tag() -> None:
    _edit_tags(lambda name, tags: f"{tags} new_tag" if name in ("train_0", "train_1", "train_2") else tags)


def rename_tag() -> None:  # every class column after it shifts by one in sorted order
    _edit_tags(lambda name, tags: " ".join("farming" if t == "agriculture" else t for t in tags.split()))


def move_fold() -> None:
    frame = pd.read_csv(FOLDS, dtype={"image_name": str})
    frame.loc[0, "fold"] = 1 - frame.loc[0, "fold"]
    frame.to_csv(FOLDS, index=False, lineterminator="\n")


EDITS = {
    "labels": (flip_target, "trained on other labels than the data folder holds now (first difference: image_name 'train_3': water 1 -> 0)"),
    "tag-added": (add_tag, "trained on 17 classes, the data now has 18 (tag 'new_tag' added)"),
    "tag-renamed": (rename_tag, "trained on 17 classes ('agriculture' renamed to 'farming', or replaced by it)"),
    "folds": (move_fold, f"trained on another fold assignment than {FOLDS} holds now (it was edited or made again)"),
}


# ------------------------------------------------------------------------------------- train / run


@pytest.mark.parametrize("command", ["run", "train"])
@pytest.mark.parametrize("case", list(EDITS))
def test_training_on_refuses_a_model_folder_trained_on_other_inputs(work, capsys, case, command):
    edit, expected = EDITS[case]
    edit()
    before = snapshot(work)
    code, _, err = run_cli(capsys, command, "e.yaml")
    assert code == 2
    line = one_error_line(err)
    # the first model folder is named, before any fold is reused and before labels.csv is rewritten
    assert line == f"error: runs/e/a: {expected}; use another experiment name (or model name) or delete runs/e/a"
    assert snapshot(work) == before  # nothing written: no labels.csv, no new blend, no submission


def test_the_same_labels_in_another_row_order_are_the_same_inputs(work, capsys, caplog):
    frame = pd.read_csv(LABELS, dtype=str)
    frame.iloc[::-1].to_csv(LABELS, index=False)
    kept = {name: Path("runs/e/a", name).read_bytes() for name in ("labels.csv", "oof.csv", "run.json", "fingerprints.json")}
    with caplog.at_level(logging.INFO, logger="kaggle_planet.predict.tta"):
        assert run_cli(capsys, "run", "e.yaml")[0] == 0
    assert "a: predictions are up to date" in caplog.text and "predicting again" not in caplog.text  # nothing redone
    assert {name: Path("runs/e/a", name).read_bytes() for name in kept} == kept
    artifacts.load_run("runs/e/a")


def test_training_on_refuses_a_changed_result_key(work, capsys):
    before = snapshot(work)
    code, _, err = run_cli(capsys, "run", "e.yaml", "--set", "models.1.lr=0.1")
    assert code == 2
    # checked for every model before any trains: model b's folder is named, model a was not retrained either
    assert one_error_line(err) == ("error: runs/e/b/config.yaml: this model folder was trained with lr=0.003, the config now "
                                   "says 0.1; use another experiment name (or model name) or delete runs/e/b")
    assert snapshot(work) == before


def test_a_new_model_in_an_old_experiment_is_refused_before_it_trains(work, capsys):
    """Labels edited, a third model added to the config: nothing trains on the new labels beside models
    trained on the old ones (the refusal comes before the new model's folder exists)."""
    flip_target()
    config = yaml.safe_load(Path("e.yaml").read_text())
    config["models"].insert(0, {"backbone": "test_resnet", "name": "c"})
    Path("e.yaml").write_text(yaml.safe_dump(config))
    before = snapshot(work)
    code, _, err = run_cli(capsys, "run", "e.yaml")
    assert code == 2 and "runs/e/a: trained on other labels" in one_error_line(err)
    assert snapshot(work) == before and not Path("runs/e/c").exists()


def test_a_folder_trained_before_fingerprints_were_kept_is_checked_on_its_labels_csv(trained, work, capsys, caplog):
    for name in ("a", "b"):
        Path(f"runs/e/{name}/fingerprints.json").unlink()
    flip_target()
    before = snapshot(work)
    code, _, err = run_cli(capsys, "train", "e.yaml")
    assert code == 2 and one_error_line(err).startswith(f"error: runs/e/a: {EDITS['labels'][1]}")
    assert snapshot(work) == before
    shutil.copyfile(trained / LABELS, LABELS)  # the labels it was trained on: accepted, and recorded from now on
    with caplog.at_level(logging.INFO, logger="kaggle_planet.train.experiment"):
        assert run_cli(capsys, "train", "e.yaml")[0] == 0
    assert "runs/e/a: trained before its inputs were recorded; recording today's labels, classes and folds" in caplog.text
    assert fingerprints.read_record("runs/e/a") == fingerprints.read_record(trained / "runs/e/a")


def test_a_record_of_other_inputs_is_kept_while_another_fold_trains_on_it(work):
    """The check again under the fold's lock: a process that finds no trained fold but another fold being
    trained on other labels does not overwrite that fold's record; with no fold bound it may."""
    from kaggle_planet.config.schema import load_config
    from kaggle_planet.data.competitions import load_dataset
    from kaggle_planet.data.folds import load_or_make_folds
    from kaggle_planet.train.experiment import record_model_inputs

    cfg = load_config("e.yaml")
    flip_target()
    table = load_dataset("planet", "data/planet")
    folds = load_or_make_folds(table, 2, 0)
    for fold in (0, 1):
        shutil.rmtree(f"runs/e/a/fold{fold}")
    Path("runs/e/a/fold1").mkdir()
    Path("runs/e/a/fold1/train.lock").write_text("{}")
    old = fingerprints.read_record("runs/e/a")
    with pytest.raises(KagglePlanetError, match=r"^runs/e/a: trained on other labels .*train_3"):
        record_model_inputs(cfg, "a", table, folds, fold=0)
    assert fingerprints.read_record("runs/e/a") == old
    Path("runs/e/a/fold1/train.lock").unlink()
    record_model_inputs(cfg, "a", table, folds, fold=0)  # nothing was trained on the old record
    assert fingerprints.read_record("runs/e/a")["labels"] != old["labels"]


def test_the_record_is_written_when_the_first_fold_starts(trained):
    record = fingerprints.read_record(trained / "runs/e/a")
    assert record["classes"] == artifacts.read_run_info(trained / "runs/e/a").classes
    assert record["folds_file"] == str(FOLDS) and record["k"] == 2 and record["n_train"] == 60
    info = artifacts.read_run_info(trained / "runs/e/a")
    # the predictions record what they came from: the fold models' inputs, their best.pt, the TTA
    assert {k: info.fingerprints[k] for k in record} == record
    # (and the full-data refit's best.pt: the default refit with_folds made test.csv with it)
    assert set(info.fingerprints["models"]) == {"0", "1", "refit"} and info.fingerprints["tta"] == "none"
    assert set(info.files) == {"labels.csv", "oof.csv", "test.csv"}


# ----------------------------------------------------------------------------------------- predict


@pytest.mark.parametrize("case", list(EDITS))
def test_predict_refuses_fold_models_trained_on_other_inputs(work, capsys, case):
    edit, expected = EDITS[case]
    edit()
    before = snapshot(work)
    code, _, err = run_cli(capsys, "predict", "runs/e/a")
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"error: runs/e/a: its fold models were {expected}; restore what changed, or delete runs/e/a")
    assert "kaggle-planet train runs/e/a/config.yaml" in line
    assert snapshot(work) == before


def test_predict_refuses_a_config_naming_other_folds(work, capsys):
    config = yaml.safe_load(Path("runs/e/a/config.yaml").read_text())
    config["folds"]["seed"] = 1  # a result-changing key edited in the model folder's own config
    Path("runs/e/a/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    before = snapshot(work)
    code, _, err = run_cli(capsys, "predict", "runs/e/a")
    assert code == 2
    assert one_error_line(err).startswith(
        f"error: runs/e/a: its fold models were trained on the folds of {FOLDS}, its config now names folds/planet_k2_s1.csv")
    assert snapshot(work) == before and not Path("folds/planet_k2_s1.csv").exists()


@pytest.mark.parametrize("case", ["tag-added", "tag-renamed"])
def test_predict_refuses_a_folder_trained_before_fingerprints_were_kept(work, capsys, case):
    """No fingerprints.json (a folder from before): its labels.csv, else each best.pt's class list, decides."""
    Path("runs/e/a/fingerprints.json").unlink()
    edit, expected = EDITS[case]
    edit()
    code, _, err = run_cli(capsys, "predict", "runs/e/a")
    assert code == 2 and f"error: runs/e/a: its fold models were {expected}" in one_error_line(err)
    Path("runs/e/a/labels.csv").unlink()
    before = snapshot(work)
    code, _, err = run_cli(capsys, "predict", "runs/e/a")
    assert code == 2
    assert one_error_line(err).startswith(f"error: runs/e/a/fold0/best.pt: {expected}")  # never a shape traceback, never shifted columns
    assert snapshot(work) == before


def test_a_free_key_changed_recomputes_the_predictions_and_says_so(work, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="kaggle_planet.predict.tta"):
        code, _, _ = run_cli(capsys, "train", "e.yaml", "--models", "a", "--set", "tta=hflip")
    assert code == 0
    assert "runs/e/a: the predictions there were made with tta none, the config says hflip; predicting again" in caplog.text
    info = artifacts.read_run_info("runs/e/a")
    assert info.extra["tta"] == info.fingerprints["tta"] == "hflip"
    assert artifacts.read_json("runs/e/a/scores.json")["tta"] == "hflip"
    assert fingerprints.stale_files("runs/e/a", info.files) == []  # every file describes the new predictions
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kaggle_planet.predict.tta"):
        assert run_cli(capsys, "train", "e.yaml", "--models", "a", "--set", "tta=hflip")[0] == 0
    assert "predictions are up to date" in caplog.text and "predicting again" not in caplog.text


def test_a_half_rewritten_model_folder_is_predicted_again(work, capsys, caplog):
    """oof.csv replaced but not run.json (a predict stopped half-way, a hand edit): the next ``train`` predicts
    again instead of keeping files that do not belong together."""
    frame = pd.read_csv("runs/e/a/oof.csv", dtype={"image_name": str})
    frame.loc[0, "clear"] = 0.5
    artifacts.write_csv("runs/e/a/oof.csv", frame)
    code, _, err = run_cli(capsys, "blend", "runs/e/a", "runs/e/b", "--out", "runs/e/blend2")
    assert code == 2 and one_error_line(err).startswith("error: runs/e/a/oof.csv: not the file run.json describes")
    assert not Path("runs/e/blend2").exists()
    with caplog.at_level(logging.INFO, logger="kaggle_planet.predict.tta"):
        assert run_cli(capsys, "train", "e.yaml", "--models", "a")[0] == 0
    assert "oof.csv changed" in caplog.text and "predicting again" in caplog.text
    artifacts.load_run("runs/e/a")  # consistent again


# -------------------------------------------------------------------------------------------- blend


def test_reblending_with_another_method_refits_thresholds_and_decisions(work, capsys, caplog):
    old_thresholds = artifacts.read_json("runs/e/blend/thresholds.json")
    assert Path("runs/e/blend/decision.json").is_file()
    with caplog.at_level(logging.INFO, logger="kaggle_planet.ensemble.blend"):
        code, _, _ = run_cli(capsys, "blend", "runs/e/a", "runs/e/b", "--method", "ridge", "--out", "runs/e/blend")
    assert code == 0
    # the mean blend's fits are gone with it, and the log says so
    assert "runs/e/blend: removed thresholds.json, fitted on blend (mean)" in caplog.text
    assert not Path("runs/e/blend/thresholds.json").exists() and not Path("runs/e/blend/decision.json").exists()
    info = artifacts.read_run_info("runs/e/blend")
    assert info.fingerprints["method"] == "ridge" and set(info.fingerprints["members"]) == {"runs/e/a", "runs/e/b"}
    code, _, _ = run_cli(capsys, "submission", "runs/e/blend", "--out", "submissions/ridge.csv")
    assert code == 0
    new_thresholds = artifacts.read_json("runs/e/blend/thresholds.json")
    sidecar = artifacts.read_json("submissions/ridge.csv.json")
    # the sidecar's honest F2 and thresholds are the ridge blend's, not the mean blend's
    assert sidecar["honest_score"] == new_thresholds["f2_heldout"] and sidecar["fitted_on"] == "blend (ridge)"
    assert list(sidecar["thresholds"].values()) == new_thresholds["thresholds"] != old_thresholds["thresholds"]
    assert sidecar["inputs_sha256"] == fingerprints.run_inputs_digest("runs/e/blend")


def test_a_stale_thresholds_json_is_refit_by_submission_and_refused_elsewhere(work, capsys, caplog):
    """thresholds.json / decision.json of the mean blend put back beside a ridge blend (copied over, restored
    from a backup): the submission fits them again (saying so), predict-image's reader refuses them."""
    saved = {name: Path("runs/e/blend", name).read_bytes() for name in ("thresholds.json", "decision.json", "fitted_on.json")}
    assert run_cli(capsys, "blend", "runs/e/a", "runs/e/b", "--method", "ridge", "--out", "runs/e/blend")[0] == 0
    for name, data in saved.items():
        Path("runs/e/blend", name).write_bytes(data)
    with pytest.raises(KagglePlanetError) as err:
        thresholds.read_run_thresholds(Path("runs/e/blend"))
    assert str(err.value) == ("runs/e/blend/thresholds.json: fitted on blend (mean), but runs/e/blend's oof.csv/labels.csv changed "
                              "since (now blend (ridge)); fit them again: kaggle-planet thresholds runs/e/blend")
    with caplog.at_level(logging.INFO):
        code, _, _ = run_cli(capsys, "submission", "runs/e/blend", "--out", "submissions/r.csv", "--decision", "auto")
    assert code == 0
    assert "runs/e/blend/decision.json: fitted on blend (mean)" in caplog.text and "fitting the decision rules again" in caplog.text
    decision = artifacts.read_json("runs/e/blend/decision.json")
    assert decision["inputs_sha256"] == fingerprints.run_inputs_digest("runs/e/blend")
    sidecar = artifacts.read_json("submissions/r.csv.json")
    assert sidecar["decision_honest_f2"] == {n: r["honest_f2"] for n, r in decision["rules"].items()}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_cli(capsys, "submission", "runs/e/blend", "--out", "submissions/t.csv")[0] == 0
    assert "runs/e/blend/thresholds.json: fitted on blend (mean)" in caplog.text and "fitting thresholds on the current" in caplog.text
    assert artifacts.read_json("submissions/t.csv.json")["fitted_on"] == "blend (ridge)"
    assert thresholds.read_run_thresholds(Path("runs/e/blend")) is not None  # fresh now


def test_the_same_blend_again_keeps_its_fits(work, capsys):
    stamp = Path("runs/e/blend/thresholds.json").stat().st_mtime_ns
    assert run_cli(capsys, "blend", "runs/e/a", "runs/e/b", "--method", "mean", "--out", "runs/e/blend")[0] == 0
    assert Path("runs/e/blend/thresholds.json").stat().st_mtime_ns == stamp  # fitted on these very OOF rows


def test_a_blend_stopped_half_way_is_refused_until_it_is_written_again(work, capsys, monkeypatch):
    def killed(out_dir):
        raise KeyboardInterrupt  # after the new labels.csv and oof.csv, before test.csv and run.json

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(blend, "_remove_stale_fits", killed)
        blend.blend_runs([Path("runs/e/a"), Path("runs/e/b")], "ridge", Path("runs/e/blend"))
    before = snapshot(work)
    for argv in (["submission", "runs/e/blend", "--out", "submissions/x.csv"], ["thresholds", "runs/e/blend"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2
        assert one_error_line(err) == (
            "error: runs/e/blend/oof.csv: not the file run.json describes (changed since it was written, or the stage that "
            "rewrites the folder stopped half-way); old and new are not mixed: write the folder again with "
            "kaggle-planet blend runs/e/a runs/e/b --method mean --out runs/e/blend")
    assert snapshot(work) == before
    assert run_cli(capsys, "blend", "runs/e/a", "runs/e/b", "--method", "ridge", "--out", "runs/e/blend")[0] == 0
    assert run_cli(capsys, "submission", "runs/e/blend", "--out", "submissions/x.csv")[0] == 0


def test_a_blend_is_not_applied_to_members_predicted_again(work, capsys):
    assert run_cli(capsys, "predict", "runs/e/a", "--tta", "hflip")[0] == 0  # the member changed after the blend
    code, _, err = run_cli(capsys, "predict-image", "runs/e/blend", "data/planet/test-jpg/test_0.jpg")
    assert code == 2
    assert one_error_line(err) == (
        "error: runs/e/a/oof.csv: changed since the blend runs/e/blend was fitted on it (the member was predicted or "
        "trained again), so the blend's state is for other predictions; blend again: "
        "kaggle-planet blend runs/e/a runs/e/b --method mean --out runs/e/blend")


def test_a_saved_state_edited_after_the_blend_is_refused(work, capsys):
    assert run_cli(capsys, "blend", "runs/e/a", "runs/e/b", "--method", "weighted", "--out", "runs/e/blend")[0] == 0
    saved = artifacts.read_json("runs/e/blend/blend.json")
    saved["state"]["weights"] = [0.5, 0.5]
    artifacts.write_json("runs/e/blend/blend.json", saved)
    code, _, err = run_cli(capsys, "predict-image", "runs/e/blend", "data/planet/test-jpg/test_0.jpg")
    assert code == 2
    assert one_error_line(err).startswith("error: runs/e/blend/blend.json: not the state run.json describes")


# --------------------------------------------------------------------------------------- submission


def test_submission_of_a_run_made_from_old_labels_says_so(work, capsys, caplog):
    flip_target()
    with caplog.at_level(logging.WARNING, logger="kaggle_planet.kaggle.submission"):
        code, _, _ = run_cli(capsys, "submission", "runs/e/blend", "--out", "submissions/old.csv")
    assert code == 0  # the run folder is consistent in itself: its submission and scores are that run's
    assert "runs/e/blend was made from other training labels than data/planet holds now" in caplog.text
