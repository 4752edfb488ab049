"""The HTML report: every section present, numbers equal to the run files' and to scikit-learn's, images decode.

Most tests use hand-made run folders (written with the artifacts API, one model's oof.csv shuffled so
rows must be matched by id); ``test_report_of_a_trained_run`` uses a tiny really-trained run.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from htmlpage import Page, decode_png
from matplotlib import image as mpimg
from sklearn.metrics import confusion_matrix, fbeta_score, precision_score, recall_score, roc_auc_score

from kaggle_planet.cli import main
from kaggle_planet.core import artifacts, metrics
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import get_spec
from kaggle_planet.study import report

CLASSES = {
    "planet": ["agriculture", "clear", "cloudy", "haze", "primary", "road", "water"],
    "invasive": ["invasive"],
    "imagefolder": ["buildings", "forest", "glacier", "sea"],
}
MODELS = ["resnet<u>", "effnet"]  # a name that must be escaped
EVIL_COMMAND = "kaggle-planet train cfg.yaml --set name='<script>alert(1)</script>'"


def f4(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.4f}"


# -------------------------------------------------------------------------- hand-made experiments


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _labels(competition: str, n: int, rng) -> np.ndarray:
    c = len(CLASSES[competition])
    if competition == "planet":
        return (rng.random((n, c)) < [0.3, 0.6, 0.1, 0.1, 0.9, 0.2, 0.2]).astype(int)
    if competition == "invasive":
        return (rng.random((n, 1)) < 0.4).astype(int)
    return np.eye(c, dtype=int)[rng.integers(0, c, n)]


def _probs(competition: str, y: np.ndarray, shared: np.ndarray, rng) -> np.ndarray:
    logits = 1.5 * (2 * y - 1) + shared + rng.standard_normal(y.shape)
    if competition == "imagefolder":
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)
    return _sigmoid(logits)


def _history(k: int) -> pd.DataFrame:
    epochs = np.arange(1, 4)
    return pd.DataFrame({"epoch": epochs, "lr": 1e-3, "train_loss": 1 / epochs + 0.1 * k, "valid_loss": 1.2 / epochs,
                         "train_metric": 1 - 1 / (epochs + 1), "valid_metric": 0.8 - 0.1 / epochs - 0.01 * k,
                         "seconds": 2.0 + k})


def make_experiment(root: Path, competition: str = "planet", n: int = 90, seed: int = 0, methods=("mean", "rank")) -> Path:
    """runs/<exp>/ with two model runs (histories, scores.json) and one blend folder per method."""
    rng = np.random.default_rng(seed)
    spec = get_spec(competition)
    classes = CLASSES[competition]
    y = _labels(competition, n, rng)
    ids = [f"img_{i}" for i in range(n)]
    folds = np.arange(n) % 3
    shared = rng.standard_normal(y.shape)
    member_dirs, member_probs = [], []
    for i, name in enumerate(MODELS):
        p = _probs(competition, y, shared, rng)
        run_dir = root / name
        extra = {"config": {"backbone": name, "epochs": 3}, "commands": [EVIL_COMMAND], "tta": "hflip"}
        artifacts.write_run_info(run_dir, artifacts.RunInfo(competition, spec.task, spec.id_col, classes, "data", extra=extra))
        artifacts.write_labels(run_dir, ids, y, spec.id_col, classes)
        order = rng.permutation(n) if i == 0 else np.arange(n)  # rows must be matched by id
        artifacts.write_predictions(run_dir / artifacts.OOF, [ids[j] for j in order], p[order], spec.id_col, classes, folds[order])
        artifacts.write_predictions(run_dir / artifacts.TEST, ["t0", "t1"], p[:2], spec.id_col, classes)
        artifacts.write_json(run_dir / artifacts.SCORES, metrics.summarize_scores(spec.metric, y, p, folds))
        for k in range(3):
            artifacts.write_csv(run_dir / f"fold{k}" / report.HISTORY, _history(k))
        member_dirs.append(run_dir)
        member_probs.append(p)
    for method in methods:
        blend_dir = root / ("blend" if method == methods[0] else f"blend_{method}")
        weights = np.array([0.5, 0.5]) if method == "mean" else np.array([0.3, 0.7])
        p = np.tensordot(weights, np.stack(member_probs), axes=1)
        info = artifacts.RunInfo(competition, spec.task, spec.id_col, classes, "data", kind="blend",
                                 members=[str(d) for d in member_dirs], extra={"method": method, "commands": ["kaggle-planet blend"]})
        artifacts.write_run_info(blend_dir, info)
        artifacts.write_labels(blend_dir, ids, y, spec.id_col, classes)
        artifacts.write_predictions(blend_dir / artifacts.OOF, ids, p, spec.id_col, classes, folds)
        artifacts.write_predictions(blend_dir / artifacts.TEST, ["t0", "t1"], p[:2], spec.id_col, classes)
        scores = metrics.summarize_scores(spec.metric, y, p, folds)
        members = {str(d): metrics.score(spec.metric, y, q) for d, q in zip(member_dirs, member_probs)}
        scores.update(method=method, members=members, gain_over_best=scores["oof"] - max(members.values()))
        artifacts.write_json(blend_dir / artifacts.SCORES, scores)
        if spec.task == "multilabel":
            thr = rng.uniform(0.1, 0.4, len(classes))
            artifacts.write_json(blend_dir / report.THRESHOLDS, {
                "classes": classes, "thresholds": thr.tolist(), "f2_at_0.5": metrics.f2_at(y, p, 0.5),
                "f2_at_0.2": metrics.f2_at(y, p, 0.2), "f2_tuned": metrics.f2_at(y, p, thr), "f2_heldout": 0.5,
                "heldout_per_fold": {}, "passes": 1})
    artifacts.write_json(root / artifacts.SCORES, {"experiment": root.name, "note": "<pipeline summary>"})
    return root


@pytest.fixture(scope="module")
def planet_page(tmp_path_factory):
    root = make_experiment(tmp_path_factory.mktemp("report") / "exp")
    out = report.write_report(root)
    return root, out, Page(out.read_text(encoding="utf-8"))


def _labels_and_oof(run_dir: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Independent reading of a run folder: labels and OOF aligned by id with pandas."""
    info = artifacts.read_run_info(run_dir)
    labels = pd.read_csv(run_dir / "labels.csv", dtype={info.id_col: str}).set_index(info.id_col).sort_index()
    oof = pd.read_csv(run_dir / "oof.csv", dtype={info.id_col: str}).set_index(info.id_col).loc[labels.index]
    return labels[info.classes].to_numpy(), oof[info.classes].to_numpy(), oof


# ---------------------------------------------------------------------------------------- tests


def test_report_is_written_to_run_dir_by_default_with_every_section(planet_page):
    root, out, page = planet_page
    assert out == root / "report.html"
    assert page.sections == ["summary", "learning-curves", "per-class", "models", "leaderboard", "provenance"]


def test_scores_table_matches_scores_json(planet_page):
    root, _, page = planet_page
    table = page.table("scores")
    assert set(table.index) == {*MODELS, "blend", "blend_rank"}
    for name in table.index:
        stored = artifacts.read_json(root / name / "scores.json")
        row = table.loc[name]
        assert row["OOF f2_samples"] == f4(stored["oof"]) == row["scores.json OOF"]
        assert row["fold mean"] == f4(stored["fold_mean"])
        assert row["fold std"] == f4(stored["fold_std"])
        assert row["per fold"] == "  ".join(f"{k}: {v:.4f}" for k, v in stored["per_fold"].items())
        extra = page.table("extra-scores").loc[name]
        assert extra["f2@0.5"] == f4(stored["extra"]["f2@0.5"])
    blend_thr = artifacts.read_json(root / "blend" / "thresholds.json")
    assert table.loc["blend", "F2 tuned (thresholds.json)"] == f4(blend_thr["f2_tuned"])
    assert table.loc["effnet", "F2 tuned (thresholds.json)"] == "n/a"
    assert 'class="warn"' not in (root / "report.html").read_text(encoding="utf-8")  # nothing disagrees


def test_per_class_table_matches_sklearn_and_thresholds_json(planet_page):
    root, _, page = planet_page
    thr_file = artifacts.read_json(root / "blend" / "thresholds.json")
    y, p, _ = _labels_and_oof(root / "blend")
    thr = np.asarray(thr_file["thresholds"])
    table = page.table("per-class")
    assert list(table.index) == CLASSES["planet"]
    pred = (p > thr).astype(int)
    for j, name in enumerate(CLASSES["planet"]):
        row = table.loc[name]
        assert row["support"] == str(int(y[:, j].sum()))
        assert row["threshold"] == f4(thr[j])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert row["F2"] == f4(fbeta_score(y[:, j], pred[:, j], beta=2, zero_division=0))
            assert row["precision"] == f4(precision_score(y[:, j], pred[:, j], zero_division=0))
            assert row["recall"] == f4(recall_score(y[:, j], pred[:, j], zero_division=0))
        assert row["AUC"] == f4(roc_auc_score(y[:, j], p[:, j]))
        assert row["accuracy"] == f4(np.mean(pred[:, j] == y[:, j]))
    assert page.ids["focus-f2"] == f4(thr_file["f2_tuned"])
    by_run = page.table("per-class-by-run")
    assert list(by_run.columns) == [*sorted(MODELS), "blend", "blend_rank"]
    assert list(by_run["blend"]) == list(table["F2"])


def test_blend_gain_and_correlation_match_the_files(planet_page):
    root, _, page = planet_page
    gains = page.table("blend-gain")
    for blend in ("blend", "blend_rank"):
        stored = artifacts.read_json(root / blend / "scores.json")
        best = max(stored["members"], key=stored["members"].get)
        assert gains.loc[blend, "method"] == stored["method"]
        assert gains.loc[blend, "gain"] == f4(stored["gain_over_best"]) == gains.loc[blend, "scores.json gain_over_best"]
        assert gains.loc[blend, "best member"] == Path(best).name
        assert gains.loc[blend, "best member OOF"] == f4(stored["members"][best])
    names = sorted(MODELS)
    flat = [_labels_and_oof(root / n)[1].ravel() for n in names]
    corr = page.table("correlation")
    for a, fa in zip(names, flat):
        for b, fb in zip(names, flat):
            assert corr.loc[a, b] == f4(np.corrcoef(fa, fb)[0, 1])
    assert float(corr.loc[names[0], names[1]]) < 0.99  # not trivially 1: rows were shuffled, alignment matters


def test_learning_curve_tables_match_history_files(planet_page):
    root, _, page = planet_page
    for name in MODELS:
        table = page.table(f"history-{name}")
        assert list(table.index) == ["0", "1", "2"]
        for k in range(3):
            hist = pd.read_csv(root / name / f"fold{k}" / "history.csv")
            row = table.loc[str(k)]
            assert row["epochs"] == str(int(hist["epoch"].iloc[-1]))
            assert row["valid loss"] == f4(hist["valid_loss"].iloc[-1])
            assert row["best valid f2_samples"] == f4(hist["valid_metric"].max())


def test_every_image_decodes_and_page_is_self_contained(planet_page):
    _, out, page = planet_page
    # scores bar chart, 2 learning-curve figures, threshold curves, correlation heatmap
    assert len(page.images) == 5
    for uri in page.images:
        pixels = decode_png(uri)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels[..., :3].std() > 0.01  # not a blank canvas
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # nothing fetched from elsewhere
    assert "<script" not in text and "<link" not in text


def test_text_is_escaped_and_commands_and_config_are_shown(planet_page):
    _, out, page = planet_page
    text = out.read_text(encoding="utf-8")
    assert "resnet<u>" not in text and "resnet&lt;u&gt;" in text
    assert "u" not in page.tags  # the model name did not become markup
    assert html.escape(EVIL_COMMAND, quote=True) in text
    provenance = text.split('id="provenance"')[1]
    assert "backbone: effnet" in provenance and "epochs: 3" in provenance
    assert provenance.count("kaggle-planet blend") == 2


@pytest.mark.parametrize("chunk", [16, report.CURVE_ROWS])  # 70 rows: in ragged chunks, and in one
def test_f2_threshold_curves_equal_rescoring_with_one_threshold_moved(chunk, monkeypatch):
    monkeypatch.setattr(report, "CURVE_ROWS", chunk)
    rng = np.random.default_rng(3)
    y = (rng.random((70, 5)) < 0.3).astype(int)
    p = rng.random((70, 5))
    thr = rng.uniform(0.1, 0.5, 5)
    grid = np.array([0.0, 0.05, 0.33, 0.5, 0.9, 1.0])
    curves = report.f2_threshold_curves(y, p, thr, grid)
    for j in range(5):
        for g, t in enumerate(grid):
            moved = thr.copy()
            moved[j] = t
            assert curves[j, g] == pytest.approx(metrics.f2_at(y, p, moved), abs=1e-12)


def test_multiclass_report_has_confusion_matrix_and_per_class_precision_recall(tmp_path):
    root = make_experiment(tmp_path / "exp", "imagefolder", methods=("mean",))
    page = Page(report.write_report(root).read_text(encoding="utf-8"))
    assert "confusion" in page.sections
    y, p, _ = _labels_and_oof(root / "blend")
    true, pred = y.argmax(axis=1), p.argmax(axis=1)
    cm = page.table("confusion").astype(int).to_numpy()
    np.testing.assert_array_equal(cm, confusion_matrix(true, pred))
    table = page.table("per-class")
    expected_p = precision_score(true, pred, average=None, zero_division=0)
    expected_r = recall_score(true, pred, average=None, zero_division=0)
    assert list(table["precision"]) == [f4(v) for v in expected_p]
    assert list(table["recall"]) == [f4(v) for v in expected_r]
    assert set(table["threshold"]) == {"argmax"}
    stored = artifacts.read_json(root / "blend" / "scores.json")
    assert page.table("scores").loc["blend", "OOF accuracy"] == f4(stored["oof"])
    assert len(page.images) == 5  # scores, 2 learning curves, confusion, correlation (no threshold curves)
    for uri in page.images:
        decode_png(uri)


def test_binary_report_auc_matches_scores_json(tmp_path):
    root = make_experiment(tmp_path / "exp", "invasive", methods=("mean",))
    page = Page(report.write_report(root / "blend").read_text(encoding="utf-8"))  # a blend folder alone
    stored = artifacts.read_json(root / "blend" / "scores.json")
    per_class = page.table("per-class")
    assert per_class.loc["invasive", "AUC"] == f4(stored["oof"])  # the primary metric is that column's AUC
    assert per_class.loc["invasive", "threshold"] == f4(0.5)
    # the blend's members were found beside it: curves and correlation for both models
    assert {f"history-{m}" for m in MODELS} <= set(page.tables)
    assert "correlation" in page.tables
    for uri in page.images:
        decode_png(uri)


def test_single_model_folder_report(tmp_path):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    out = report.write_report(root / "effnet", tmp_path / "out" / "effnet.html")
    page = Page(out.read_text(encoding="utf-8"))
    assert list(page.table("scores").index) == ["effnet"]
    # no thresholds.json in a model folder: the default 0.2 is used and said so
    assert set(page.table("per-class")["threshold"]) == {f4(0.2)}
    assert "no thresholds.json" in out.read_text(encoding="utf-8")
    assert "blend-gain" not in page.tables and "correlation" not in page.tables


def test_disagreeing_scores_json_is_flagged(tmp_path):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    scores = artifacts.read_json(root / "effnet" / "scores.json")
    artifacts.write_json(root / "effnet" / "scores.json", {**scores, "oof": scores["oof"] + 0.01})
    text = report.write_report(root / "effnet").read_text(encoding="utf-8")
    assert re.search(r'<div class="warn">[^<]*effnet[/\\]scores\.json: oof [0-9.]+ differs', text)


def test_unfinished_model_folder_is_flagged(tmp_path):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    artifacts.write_csv(root / "late" / "fold0" / report.HISTORY, _history(0))
    data = report.build_report(root)
    assert [v.name for v in data.models] == sorted(MODELS)
    assert any("late: fold folders but no run.json" in w for w in data.warnings)


def test_fold_without_a_finished_epoch_is_left_out_of_the_curves(tmp_path):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    (root / "effnet" / "fold2" / "history.csv").write_text(",".join(report.HISTORY_COLUMNS) + "\n")
    page = Page(report.write_report(root / "effnet").read_text(encoding="utf-8"))
    assert list(page.table("history-effnet").index) == ["0", "1"]


def test_folder_without_runs_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KagglePlanetError, match=r"empty: no run\.json here nor in its subfolders") as err:
        report.write_report(tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_bad_history_file_is_a_one_line_error(tmp_path):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    (root / "effnet" / "fold1" / "history.csv").write_text("epoch,lr\n1,0.1\n")
    with pytest.raises(KagglePlanetError, match=r"fold1[/\\]history\.csv: missing column"):
        report.write_report(root)


def test_cli_report(tmp_path, capsys):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    assert main(["report", str(root / "effnet"), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_no_ablation_skips_only_the_blends_drop_one_refits(tmp_path):
    root = make_experiment(tmp_path / "exp", "planet", methods=("mean",))
    full, quick = report.build_report(root), report.build_report(root, ablation=False)
    assert list(full.comparison.ablations) == ["blend"] and quick.comparison.ablations == {}
    pd.testing.assert_frame_equal(full.comparison.leaderboard, quick.comparison.leaderboard)
    assert main(["report", str(root), "--no-ablation", "--out", str(tmp_path / "r.html")]) == 0


# ------------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="session")
def trained_experiment(tmp_path_factory, demo_datasets) -> Path:
    from trained_runs import tiny_planet_experiment

    return tiny_planet_experiment(tmp_path_factory, demo_datasets["planet"])


def test_report_of_a_trained_run(trained_experiment, tmp_path):
    exp = trained_experiment
    out = report.write_report(exp, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == ["summary", "learning-curves", "per-class", "models", "leaderboard", "provenance"]
    assert 'class="warn"' not in text
    scores = page.table("scores")
    assert set(scores.index) == {"test_resnet", "effnet", "blend"}
    for name in scores.index:
        stored = artifacts.read_json(exp / name / "scores.json")
        assert scores.loc[name, "OOF f2_samples"] == f4(stored["oof"])
        assert scores.loc[name, "fold std"] == f4(stored["fold_std"])
    summary = artifacts.read_json(exp / "scores.json")  # the pipeline's own summary agrees too
    assert scores.loc["blend", "OOF f2_samples"] == f4(summary["blend"]["oof"])
    thr = artifacts.read_json(exp / "blend" / "thresholds.json")
    assert list(page.table("per-class")["threshold"]) == [f4(t) for t in thr["thresholds"]]
    assert page.ids["focus-f2"] == f4(thr["f2_tuned"]) == scores.loc["blend", "F2 tuned (thresholds.json)"]
    gain = page.table("blend-gain").loc["blend"]
    assert gain["gain"] == f4(artifacts.read_json(exp / "blend" / "scores.json")["gain_over_best"])
    for name in ("test_resnet", "effnet"):
        history = page.table(f"history-{name}")
        for k in ("0", "1"):
            hist = pd.read_csv(exp / name / f"fold{k}" / "history.csv")
            assert history.loc[k, "valid loss"] == f4(hist["valid_loss"].iloc[-1])
    assert len(page.images) == 5
    for uri in page.images:
        decode_png(uri)
    provenance = text.split('id="provenance"')[1]
    for name in ("test_resnet", "effnet", "blend"):
        commands = artifacts.read_run_info(exp / name).extra["commands"]
        assert commands and all(html.escape(c, quote=True) in provenance for c in commands)
    assert "backbone: tf_efficientnet_lite0" in provenance


# ---------------------------------------------------------------------------- headless browser


def _chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)


def screenshot(html_file: Path, png: Path, profile: Path, width: int = 1200, height: int = 2400) -> Path:
    """Render ``html_file`` in headless Chromium (no network, throwaway profile) to ``png``."""
    browser = _chromium()
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={width},{height}",
           html_file.resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return png


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium chromium-driver)")
def test_report_renders_in_headless_chromium(planet_page, tmp_path):
    _, out, _ = planet_page
    png = screenshot(out, tmp_path / "shot.png", tmp_path / "profile")
    pixels = mpimg.imread(png)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    ink = (pixels < 0.9).any(axis=2)  # anything but white / near-white background
    assert ink.mean() > 0.02, "the page rendered (nearly) blank"
    # the embedded figures were drawn: a good share of rows carries colour, not only black text
    colour = pixels.max(axis=2) - pixels.min(axis=2) > 0.2
    assert colour.any(axis=1).mean() > 0.1
