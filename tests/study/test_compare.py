"""compare: the leaderboard, drop-one ablations and correlation against numbers computed here with
numpy / scikit-learn from the members' files; the submissions log and its join to Kaggle's scores."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from runfactory import WEATHER, noisy_probs, planet_labels, write_run
from sklearn.metrics import accuracy_score, fbeta_score, roc_auc_score

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.ensemble import blend, thresholds
from kaggle_planet.kaggle import submission
from kaggle_planet.study import compare, report

N, T, K = 300, 20, 3


def sk_f2(y, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fbeta_score(y, np.asarray(pred).astype(int), beta=2, average="samples", zero_division=0)


def heldout_by_hand(y, p, folds):
    """Per fold: thresholds fitted on the other folds, F2 (scikit-learn) on the fold; the mean."""
    scores = []
    for k in np.unique(folds):
        held = folds == k
        thr, _ = thresholds.fit_thresholds(y[~held], p[~held])
        scores.append(sk_f2(y[held], p[held] > thr))
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def planet_study(tmp_path_factory):
    """Two experiments on one data set and folds: exp_a (two models, a mean blend), exp_b (one model)."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    y, classes = planet_labels(N + T, rng)
    weather = [classes.index(w) for w in WEATHER]
    ids, test_ids = [f"train_{i}" for i in range(N)], [f"test_{i}" for i in range(T)]
    folds = np.arange(N) % K
    shared = rng.standard_normal(y.shape) * 0.6
    probs = {}
    for exp, name, skill, size in [("exp_a", "resnet34", 0.7, 256), ("exp_a", "effnet", 0.6, 224), ("exp_b", "convnext", 0.8, 384)]:
        p = noisy_probs(y, rng, skill=skill, shared=shared, exclusive=weather)
        order = rng.permutation(N)  # rows matched by id, not by order
        extra = {"backbone": name, "image_size": size, "tta": "d4",
                 "config": {"epochs": 10, "models": [{"backbone": name, "epochs": 7 if name == "effnet" else 10}]}}
        run = write_run(root / exp / name, "planet", classes, [ids[i] for i in order], y[:N][order], p[:N][order], folds[order],
                        test_ids, p[N:], extra=extra)
        for k in range(K):
            artifacts.write_csv(run / f"fold{k}" / artifacts.HISTORY, pd.DataFrame({c: [1.0, 2.0] for c in artifacts.HISTORY_COLUMNS}
                                                                                   | {"seconds": [10.0 + k, 20.0]}))
        probs[f"{exp}/{name}"] = p[:N]
    blend.blend_runs([root / "exp_a" / "resnet34", root / "exp_a" / "effnet"], "mean", root / "exp_a" / "blend")
    return root, y[:N], folds, probs


def test_leaderboard_rows_scores_and_order(planet_study):
    root, y, folds, probs = planet_study
    result = compare.compare_runs([root / "exp_a", root / "exp_b" / "convnext"])
    board = result.leaderboard.set_index("run")
    assert set(board.index) == {"exp_a/resnet34", "exp_a/effnet", "exp_a/blend", "exp_b/convnext"}
    mean = (probs["exp_a/resnet34"] + probs["exp_a/effnet"]) / 2
    expected = {**probs, "exp_a/blend": mean}
    for name, p in expected.items():
        assert board.loc[name, "oof"] == pytest.approx(sk_f2(y, p > 0.2), abs=1e-9)
        assert board.loc[name, "honest"] == pytest.approx(heldout_by_hand(y, p, folds), abs=1e-9)
    assert list(result.leaderboard["honest"]) == sorted(result.leaderboard["honest"], reverse=True)
    assert board.loc["exp_a/effnet", "epochs"] == 7 and board.loc["exp_b/convnext", "image_size"] == 384
    assert board.loc["exp_a/resnet34", "seconds"] == pytest.approx(sum(10.0 + k + 20.0 for k in range(K)))
    assert board.loc["exp_a/blend", "model"] == "mean of 2" and board.loc["exp_a/blend", "kind"] == "blend"
    assert result.honest_meaning.startswith("F2 with per-class thresholds fitted on K-1 folds")


def test_drop_one_ablation_of_a_mean_blend(planet_study):
    root, y, folds, probs = planet_study
    table = compare.compare_runs([root / "exp_a"]).ablations["exp_a/blend"].set_index("without")
    full = (probs["exp_a/resnet34"] + probs["exp_a/effnet"]) / 2
    assert table.loc["(none: all members)", "oof"] == pytest.approx(sk_f2(y, full > 0.2), abs=1e-9)
    for dropped, kept in (("exp_a/resnet34", "exp_a/effnet"), ("exp_a/effnet", "exp_a/resnet34")):
        assert table.loc[dropped, "oof"] == pytest.approx(sk_f2(y, probs[kept] > 0.2), abs=1e-9)
        assert table.loc[dropped, "honest"] == pytest.approx(heldout_by_hand(y, probs[kept], folds), abs=1e-9)
        assert table.loc[dropped, "oof_change"] == pytest.approx(table.loc[dropped, "oof"] - sk_f2(y, full > 0.2))


def test_correlation_of_the_models(planet_study):
    root, _, _, probs = planet_study
    result = compare.compare_runs([root / "exp_a", root / "exp_b"])
    names = ["exp_a/effnet", "exp_a/resnet34", "exp_b/convnext"]
    assert sorted(result.correlation.index) == names
    for a in names:
        for b in names:
            assert result.correlation.loc[a, b] == pytest.approx(np.corrcoef(probs[a].ravel(), probs[b].ravel())[0, 1])


def test_other_folds_or_competition_are_one_line_errors(planet_study, tmp_path):
    root, y, folds, probs = planet_study
    run = artifacts.load_run(root / "exp_b" / "convnext")
    other = write_run(tmp_path / "exp_c" / "m", "planet", run.info.classes, run.oof["image_name"].tolist(), run.y_true,
                      run.oof_probs, (run.folds + 1) % K, run.test["image_name"].tolist(), run.test_probs)
    with pytest.raises(KagglePlanetError, match=r"oof\.csv and .*oof\.csv: folds differ \(first difference: 'train_\d+'") as err:
        compare.compare_runs([root / "exp_b", other])
    assert "\n" not in str(err.value)
    inv = write_run(tmp_path / "inv", "invasive", ["invasive"], ["1", "2", "3"], np.array([[0], [1], [1]]),
                    np.array([[0.2], [0.7], [0.6]]), np.array([0, 1, 2]), ["9"], np.array([[0.5]]))
    with pytest.raises(KagglePlanetError, match="competition differs"):
        compare.compare_runs([root / "exp_b", inv])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(KagglePlanetError, match="empty: no run.json here nor in its subfolders"):
        compare.compare_runs([empty])


def test_missing_member_is_a_note_not_a_failure(planet_study, tmp_path):
    root, _, _, _ = planet_study
    info = artifacts.read_run_info(root / "exp_a" / "blend")
    copy = tmp_path / "lonely"
    for name in ("run.json", "oof.csv", "test.csv", "labels.csv", "scores.json"):
        (copy / name).parent.mkdir(exist_ok=True)
        (copy / name).write_bytes((root / "exp_a" / "blend" / name).read_bytes())
    info.members = [str(tmp_path / "gone"), *info.members[1:]]
    artifacts.write_run_info(copy, info)
    result = compare.compare_runs([copy])
    assert result.ablations == {} and "no drop-one ablation" in result.notes[0] and "gone not found" in result.notes[0]


def test_auc_honest_estimate_is_the_oof_auc(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random((90, 1)) < 0.4).astype(int)
    dirs = []
    for m in range(2):
        p = np.clip(0.4 * y + rng.random((90, 1)) * 0.6, 0, 1)
        dirs.append(write_run(tmp_path / "e" / f"m{m}", "invasive", ["invasive"], [str(i) for i in range(90)], y, p,
                              np.arange(90) % 3, ["x"], np.array([[0.5]])))
    board = compare.compare_runs([tmp_path / "e"]).leaderboard.set_index("run")
    for d in dirs:
        run = artifacts.load_run(d)
        auc = roc_auc_score(run.y_true[:, 0], run.oof_probs[:, 0])
        assert board.loc[f"e/{d.name}", "oof"] == pytest.approx(auc) == board.loc[f"e/{d.name}", "honest"]


def test_cli_compare(planet_study, capsys):
    root, _, _, _ = planet_study
    assert main(["compare", str(root / "exp_a"), str(root / "exp_b")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("leaderboard: planet, OOF f2_samples")
    assert "drop-one ablation of exp_a/blend" in out and "OOF correlation" in out and "exp_b/convnext" in out
    assert main(["compare", str(root / "exp_a"), "--no-ablation"]) == 0
    assert "drop-one" not in capsys.readouterr().out


def test_report_shows_the_leaderboard_and_cv_against_public_lb(planet_study, tmp_path):
    root, _, _, _ = planet_study
    log_path = tmp_path / "log.csv"
    rows = [{**{c: "" for c in submission.LOG_COLUMNS}, "ref": str(r), "competition": "planet", "file": f"submissions/s{r}.csv",
             "honest_score": str(h), "oof_score": "0.9", "public_score": str(lb)} for r, h, lb in ((1, 0.91, 0.905), (2, 0.92, 0.917))]
    rows.append({**rows[0], "ref": "3", "public_score": ""})  # not scored yet: not plotted
    rows.append({**rows[0], "ref": "4", "competition": "invasive"})  # another competition
    pd.DataFrame(rows, columns=submission.LOG_COLUMNS).to_csv(log_path, index=False)
    out = report.write_report(root / "exp_a", tmp_path / "r.html", submissions_log=log_path)
    text = out.read_text(encoding="utf-8")
    assert 'id="leaderboard"' in text and 'id="ablation-blend"' in text and 'id="submissions"' in text
    from htmlpage import Page, decode_png

    page = Page(text)
    assert all(decode_png(uri).ndim == 3 for uri in page.images)
    table = page.table("submissions")
    assert list(table.index) == ["1", "2"] and list(table["public LB"]) == ["0.90500", "0.91700"]
    board = page.table("leaderboard")
    leaderboard = compare.compare_runs([root / "exp_a"]).leaderboard.set_index("run")
    for name in ("resnet34", "effnet", "blend"):
        assert board.loc[name, "honest"] == f"{leaderboard.loc[f'exp_a/{name}', 'honest']:.5f}"


# ----------------------------------------------------------------------------------- submissions log


def _submission_with_sidecar(tmp_path, demo_datasets):
    from runfactory import make_run

    run, _, _ = make_run(tmp_path, demo_datasets["planet"], "planet")
    return submission.write_run_submission(run, tmp_path / "submissions" / "a.csv")


def test_log_records_the_sidecar_and_scores_join_by_ref(tmp_path, demo_datasets):
    out = _submission_with_sidecar(tmp_path, demo_datasets)
    sidecar = json.loads(submission.sidecar_path(out).read_text())
    log_path = tmp_path / "submissions" / "log.csv"
    submission.log_submission(log_path, out, "planet-understanding-the-amazon-from-space", "first try", 50001)
    submission.log_submission(log_path, out, "planet", "second", 50002)
    frame = pd.read_csv(log_path, dtype=str, keep_default_na=False)
    assert list(frame.columns) == submission.LOG_COLUMNS and frame["ref"].tolist() == ["50001", "50002"]
    first = frame.iloc[0]
    assert first["competition"] == "planet" and first["message"] == "first try" and first["file"] == str(out)
    assert first["sha256"] == sidecar["sha256"] and first["run_dir"] == sidecar["run_dir"]
    assert float(first["oof_score"]) == pytest.approx(sidecar["oof_score"])
    assert float(first["honest_score"]) == pytest.approx(sidecar["honest_score"]) and first["decision"] == "thresholds"
    assert first["public_score"] == ""

    kaggle = pd.DataFrame({"ref": [50002, 7], "status": ["COMPLETE", "COMPLETE"], "public_score": [0.91, 0.5], "private_score": [0.9, 0.4]})
    joined = submission.update_log_scores(log_path, kaggle)
    assert joined["public_score"].tolist()[1] == 0.91 and np.isnan(joined["public_score"].tolist()[0])
    again = submission.read_submission_log(log_path)  # written back
    assert again["private_score"].tolist()[1] == 0.9 and again["status"].tolist() == ["", "COMPLETE"]
    text = submission.format_submission_log(again, "planet")
    assert "0.91000" in text and "a.csv" in text


def test_a_sidecar_of_other_bytes_is_not_trusted(tmp_path, demo_datasets, caplog):
    out = _submission_with_sidecar(tmp_path, demo_datasets)
    out.write_text(out.read_text().replace("clear", "haze", 1))
    row = submission.log_submission(tmp_path / "log.csv", out, "planet", "edited by hand", 3)
    assert row["run_dir"] == "" and np.isnan(row["honest_score"]) and "sha256 differs" in caplog.text


@pytest.mark.parametrize("edit, pattern", [
    (lambda f: f.drop(columns=["sha256"]), r"log\.csv: line 1: missing column 'sha256'"),
    (lambda f: f.assign(public_score=["0.9", "high"]), r"log\.csv: line 3: public_score 'high' is not a number"),
])
def test_bad_log_is_a_one_line_error(tmp_path, edit, pattern):
    rows = [{c: "" for c in submission.LOG_COLUMNS} | {"ref": str(i)} for i in range(2)]
    edit(pd.DataFrame(rows)).to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(KagglePlanetError, match=pattern) as err:
        submission.read_submission_log(tmp_path / "log.csv")
    assert "\n" not in str(err.value)


def test_log_of_missing_file_is_empty(tmp_path):
    frame = submission.read_submission_log(Path(tmp_path / "nothing.csv"))
    assert frame.empty and list(frame.columns) == submission.LOG_COLUMNS


# --------------------------------------------------------------------- a metric to minimise: log loss


def kaggle_log_loss(y, p):
    """Kaggle's multiclass log loss written out: clip, renormalise rows, mean -log p(true class)."""
    q = np.clip(p, 1e-15, 1 - 1e-15)
    q = q / q.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(q[np.arange(len(y)), y.argmax(axis=1)])))


def accuracy_by_hand(y, p):
    return float(accuracy_score(y.argmax(axis=1), p.argmax(axis=1)))


def multiclass_study(root: Path, metric: str) -> tuple[Path, np.ndarray, dict[str, np.ndarray]]:
    """A csv-layout multiclass experiment scored by ``metric`` (from the run's options): an overconfident
    model (best accuracy, worst log loss), a calibrated one (best log loss) and a flat one, plus their mean."""
    rng = np.random.default_rng(0)
    n, classes = 150, ["a", "b", "c"]
    labels = rng.integers(0, 3, n + T)
    y = np.eye(3, dtype=int)[labels]
    ids, tids = [f"i{i}" for i in range(n)], [f"t{i}" for i in range(T)]
    exp, probs = root / "exp", {}
    for name, (sharp, skill) in {"sharp": (12.0, 1.2), "calibrated": (1.0, 1.0), "flat": (0.3, 0.8)}.items():
        logits = sharp * (skill * y + rng.standard_normal(y.shape) * 0.8)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        write_run(exp / name, "csv", classes, ids, y[:n], p[:n], np.arange(n) % K, tids, p[n:],
                  options={"target": "label", "metric": metric})
        probs[f"exp/{name}"] = p[:n]
    blend.blend_runs([exp / "sharp", exp / "calibrated", exp / "flat"], "mean", exp / "blend")
    probs["exp/blend"] = (probs["exp/sharp"] + probs["exp/calibrated"] + probs["exp/flat"]) / 3
    return exp, y[:n], probs


def test_leaderboard_order_follows_the_metrics_direction(tmp_path):
    orders = {}
    for metric, by_hand, reverse in (("log_loss", kaggle_log_loss, False), ("accuracy", accuracy_by_hand, True)):
        exp, y, probs = multiclass_study(tmp_path / metric, metric)
        result = compare.compare_runs([exp])
        assert result.metric == metric
        board = result.leaderboard.set_index("run")
        expected = {name: by_hand(y, p) for name, p in probs.items()}
        for name, value in expected.items():
            assert board.loc[name, "oof"] == pytest.approx(value, abs=1e-6) == pytest.approx(board.loc[name, "honest"], abs=1e-12)
        orders[metric] = list(result.leaderboard["run"])
        assert orders[metric] == sorted(expected, key=expected.get, reverse=reverse)
    models = {metric: [r for r in order if r != "exp/blend"] for metric, order in orders.items()}
    assert models["log_loss"][0] == "exp/calibrated" and models["accuracy"][0] == "exp/sharp"
    assert models["log_loss"] != models["accuracy"]
    assert "lower is better" in compare.format_comparison(compare.compare_runs([tmp_path / "log_loss" / "exp"]))


def test_ablation_and_report_gains_of_a_loss_are_positive_when_better(tmp_path):
    exp, y, probs = multiclass_study(tmp_path, "log_loss")
    full = kaggle_log_loss(y, probs["exp/blend"])
    table = compare.compare_runs([exp]).ablations["exp/blend"].set_index("without")
    assert table.loc["(none: all members)", "oof"] == pytest.approx(full, abs=1e-6)
    names = ["exp/sharp", "exp/calibrated", "exp/flat"]
    for dropped in names:
        kept = [probs[n] for n in names if n != dropped]
        without = kaggle_log_loss(y, np.mean(kept, axis=0))
        assert table.loc[dropped, "oof"] == pytest.approx(without, abs=1e-6)
        assert table.loc[dropped, "oof_change"] == pytest.approx(full - without, abs=1e-6)  # a lower loss: positive
    dropped_rows = table.drop(index="(none: all members)")
    assert ((dropped_rows["oof_change"] > 0) == (dropped_rows["oof"] < full)).all()  # positive exactly when the loss is lower

    data = report.build_report(exp, ablation=False)
    gains = data.blend_gains.set_index("blend").loc["blend"]
    losses = {n: kaggle_log_loss(y, probs[n]) for n in names}
    best = min(losses, key=losses.get)
    assert gains["best_member"] == best.split("/")[1] and gains["best_member_oof"] == pytest.approx(losses[best], abs=1e-6)
    assert gains["gain"] == pytest.approx(losses[best] - full, abs=1e-6)
    assert gains["stored_gain"] == pytest.approx(gains["gain"], abs=1e-6)
    focus = report.pick_focus(data.models, [])  # no blend: the best model, by the lowest log loss
    assert focus.name == best.split("/")[1]


def test_an_auto_blend_shows_its_choice_and_is_ablated_with_it(tmp_path):
    exp, y, _ = multiclass_study(tmp_path, "log_loss")
    scores = blend.blend_runs([exp / "sharp", exp / "calibrated", exp / "flat"], "auto", exp / "auto")
    chosen = scores["auto"]["chosen"]
    assert scores["auto"]["candidates"][chosen] == min(scores["auto"]["candidates"].values())
    result = compare.compare_runs([exp])
    board = result.leaderboard.set_index("run")
    assert board.loc["exp/auto", "model"] == f"{chosen} (auto) of 3"
    out = artifacts.load_run(exp / "auto")
    assert board.loc["exp/auto", "oof"] == pytest.approx(kaggle_log_loss(y, out.oof_probs), abs=1e-9)
    full = result.ablations["exp/auto"].set_index("without").loc["(none: all members)", "oof"]
    assert full == pytest.approx(scores["oof"], abs=1e-6)  # the chosen method re-run on all members
