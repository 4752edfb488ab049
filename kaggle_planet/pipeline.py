"""The main job: folds -> train every model over all folds -> TTA predictions -> blend -> thresholds
-> validated submission, each stage reading and writing the files of the previous one.

Re-running skips finished work: finished folds and predictions are kept by ``train``; the blend,
thresholds and submission take seconds and are recomputed from the files, so they always agree with
what is on disk.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config.schema import ExperimentConfig, load_config
from .core import artifacts
from .core.errors import KagglePlanetError
from .data.folds import fold_file_path
from .recipe.tracking import Tracking, summary_values

log = logging.getLogger(__name__)

BLEND_DIR = artifacts.BLEND_DIR
# The demo's synthetic Planet data: big enough to show real learning, small enough for 2 CPU cores.
DEMO_DATA = {"n_train": 600, "n_test": 150, "size": 64, "seed": 0}
DEMO_CONFIG = "demo"  # the shipped configs/demo.yaml (catalog.resolve_config)


@dataclass
class RunResult:
    experiment_dir: Path
    submission: Path | None  # None: the data folder has no test images (image folders' test folder is optional)
    scores: dict[str, Any]
    table: str


def run_experiment(cfg: ExperimentConfig, device, wait: bool = False) -> RunResult:
    """Run every stage for ``cfg``; returns where things went and the score table.

    Writes ``<runs_dir>/<name>/{<model>/, blend/, scores.json, submission.csv}`` and
    ``submissions/<name>.csv`` (+ ``.json`` sidecar), both relative to the working directory. With
    ``pseudo`` set, each pseudo-labelling round r is an experiment of its own, ``<name>_pl<r>``, trained with
    the confident test images of the previous round (:mod:`kaggle_planet.ensemble.pseudo`); the last round's
    submission is the result, and every round's blend OOF is reported beside the previous one's.
    """
    from .data.competitions import load_dataset

    if cfg.pseudo is not None:
        table = load_dataset(cfg.competition, cfg.data_dir, cfg.options)
        if table.test.empty:
            raise KagglePlanetError(f"config {cfg.name!r}: pseudo needs test images to label, and {cfg.data_dir} has none; remove pseudo")
    result = _run_round(cfg, device, wait=wait)
    if cfg.pseudo is None:
        return result
    from .ensemble.pseudo import PSEUDO, pseudo_labels

    test_files = table.test["file"].to_numpy()
    rounds, previous = [], result
    for r in range(1, cfg.pseudo.rounds + 1):
        cfg_r = cfg.model_copy(update={"name": f"{cfg.name}_pl{r}"})
        members = [previous.experiment_dir / name for name in previous.scores["models"]]
        labels = {fold: pseudo_labels(members, fold, table, cfg.pseudo.confidence) for fold in range(cfg.folds.k)}
        artifacts.write_json(cfg_r.experiment_dir / PSEUDO, {
            "round": r, "confidence": cfg.pseudo.confidence, "from": str(previous.experiment_dir),
            "folds": {str(f): {"images": int(len(p.rows)), "sources": p.sources} for f, p in labels.items()},
        })
        log.info("pseudo round %d: %s test images per fold", r, [len(p.rows) for p in labels.values()])
        current = _run_round(cfg_r, device, lambda fold: (test_files[labels[fold].rows], labels[fold].targets), wait=wait)
        rounds.append({"round": r, "experiment": cfg_r.name, "oof": current.scores["blend"]["oof"],
                       "previous_oof": previous.scores["blend"]["oof"],
                       "images_per_fold": [int(len(p.rows)) for p in labels.values()]})
        previous = current
    scores = {**result.scores, "pseudo": rounds, "submission": str(previous.submission)}
    artifacts.write_json(result.experiment_dir / artifacts.SCORES, scores)
    return RunResult(result.experiment_dir, previous.submission, scores, format_score_table(scores))


def _run_round(cfg: ExperimentConfig, device, extra=None, wait: bool = False) -> RunResult:
    """Train (with ``extra`` training images per fold), predict, blend, decide and submit one experiment."""
    tracking = Tracking.for_config(cfg)  # open across stages: the trackers' summaries get the final scores
    try:
        result = _train_and_submit(cfg, device, extra, tracking, wait)
        for name, model_scores in result.scores["models"].items():
            tracking.summary(name, summary_values(model_scores, result.scores["blend"], result.submission))
        return result
    finally:
        tracking.close()


def train_experiment(
    cfg: ExperimentConfig,
    device,
    models: list[str] | None = None,
    folds: list[int] | None = None,
    extra=None,
    tracking=None,
    wait: bool = False,
) -> list[Path]:
    """Train ``models`` (default all) on ``folds`` (default all), then write the TTA predictions of each model
    whose folds are all done (:func:`kaggle_planet.train.experiment.train_models` with the prediction step); the
    ``train`` command. Returns the model run folders."""
    from .predict.tta import predict_model
    from .train.experiment import train_models

    return train_models(cfg, device, models, folds, extra, tracking, wait, on_model_done=predict_model)


def _train_and_submit(cfg: ExperimentConfig, device, extra, tracking, wait: bool = False) -> RunResult:
    from .ensemble.blend import blend_runs
    from .ensemble.decision import fit_run_decisions, rules_for, target_for
    from .ensemble.thresholds import fbeta_for, fit_run_thresholds
    from .kaggle.submission import sidecar_path, write_run_submission

    # train reads the data folder and makes the folds file if it is missing
    model_dirs = train_experiment(cfg, device, extra=extra, tracking=tracking, wait=wait)
    folds_path = fold_file_path(cfg.competition, cfg.folds.k, cfg.folds.seed, data_dir=cfg.data_dir)
    exp_dir = cfg.experiment_dir
    blend_dir = exp_dir / BLEND_DIR
    blend_scores = blend_runs(model_dirs, cfg.blend_method, blend_dir)
    # thresholds for an F-beta metric decided by thresholds; the decision rules compared where the metric has several
    thresholds = fit_run_thresholds(blend_dir) if fbeta_for(cfg.metric, cfg.task) is not None else None
    decisions = fit_run_decisions(blend_dir) if len(rules_for(target_for(cfg.metric, cfg.task))) > 1 else None
    submission = None
    if len(artifacts.load_run(blend_dir).test):
        submission = write_run_submission(blend_dir, Path("submissions") / f"{cfg.name}.csv", cfg.decision)
        run_copy = exp_dir / artifacts.SUBMISSION_COPY
        artifacts.atomic_write(run_copy, lambda tmp: shutil.copyfile(submission, tmp))
    else:
        log.warning("%s: the data folder has no test images: OOF scores only, no submission written", cfg.name)

    scores = {
        "metric": cfg.metric,
        "folds": str(folds_path),
        "models": {d.name: artifacts.read_json(d / artifacts.SCORES) for d in model_dirs},
        "blend": blend_scores,
        "thresholds": thresholds,
        "submission": None if submission is None else str(submission),
    }
    if decisions is not None and submission is not None:
        used = artifacts.read_json(sidecar_path(submission)).get("decision")
        honest = {name: rule.get("honest_score", rule.get("honest_f2")) for name, rule in decisions["rules"].items()}
        scores["decision"] = {"asked": cfg.decision, "used": used, "honest": honest}
        if cfg.metric == "f2_samples":
            scores["decision"]["honest_f2"] = honest  # the key earlier runs' scores.json have
    artifacts.write_json(exp_dir / artifacts.SCORES, scores)
    return RunResult(exp_dir, submission, scores, format_score_table(scores))


def format_score_table(scores: dict[str, Any]) -> str:
    """Each model's OOF score, the blend's and its gain; tuned-threshold F2 for multilabel.

    "gain over best model" (and a pseudo round's change) is signed so that positive means better, whatever
    the metric's direction: for a loss it is the best model's loss minus the blend's, and the line says so.
    An ``auto`` blend adds a line saying what it chose over what."""
    from .core.metrics import get_metric
    from .ensemble.blend import format_auto_choice

    metric = scores["metric"]
    entry = get_metric(metric)
    rows = [(name, s["oof"], s.get("fold_std")) for name, s in scores["models"].items()]
    blend = scores["blend"]
    best = rows[entry.best_index(score for _, score, _ in rows)][1]
    loss_note = "" if entry.higher_is_better else f" (positive: better; {metric} is lower-is-better)"
    width = max(len("blend (" + blend.get("method", "") + ")"), *(len(n) for n, _, _ in rows))
    lines = [f"{'model':<{width}}  OOF {metric}   fold std", "-" * (width + 26)]
    lines += [f"{name:<{width}}  {score:12.5f}   {std if std is None else f'{std:.5f}'}" for name, score, std in rows]
    lines.append(f"{'blend (' + blend.get('method', '') + ')':<{width}}  {blend['oof']:12.5f}   "
                 f"gain over best model {entry.gain(blend['oof'], best):+.5f}{loss_note}")
    choice = format_auto_choice(blend)
    if choice:
        lines.append(choice)
    t = scores.get("thresholds")
    if t and "f2_tuned" in t:
        lines.append(
            f"F2 thresholds: 0.5 everywhere {t['f2_at_0.5']:.5f}, 0.2 everywhere {t['f2_at_0.2']:.5f}, "
            f"tuned per class {t['f2_tuned']:.5f} (honest held-out estimate {t['f2_heldout']:.5f})"
        )
    elif t:
        heldout = "n/a (one fold)" if t.get("score_heldout") is None else f"{t['score_heldout']:.5f}"
        lines.append(
            f"{t['metric']} thresholds: 0.5 everywhere {t['score_at_0.5']:.5f}, {t['default_threshold']:g} everywhere {t['score_default']:.5f}, "
            f"tuned per class {t['score_tuned']:.5f} (honest held-out estimate {heldout})"
        )
    refits = sorted({s.get("refit", "off") for s in scores["models"].values()} - {"off"})
    if refits:
        lines.append(f"test predictions: refit {', '.join(refits)} (each model retrained on every training image; the refit has "
                     f"no OOF score of its own: the OOF scores above, the blend weights and the decision are the fold models')")
    for r in scores.get("pseudo", []):
        lines.append(f"pseudo round {r['round']} ({r['experiment']}): blend OOF {r['oof']:.5f} (previous round {r['previous_oof']:.5f}, "
                     f"{entry.gain(r['oof'], r['previous_oof']):+.5f}{loss_note}); pseudo-labelled test images per fold {r['images_per_fold']}")
    if scores.get("pseudo"):
        lines.append(f"submission from the last round: {scores['submission']}")
    if "submission" in scores and scores["submission"] is None:
        lines.append("no submission written: the data folder has no test images")
    d = scores.get("decision")
    if d:
        values = d.get("honest", d.get("honest_f2", {}))
        honest = ", ".join(f"{name} {value:.5f}" for name, value in values.items())
        label = "F2" if metric == "f2_samples" else metric
        lines.append(f"decision: {d['used']}" + (f" (asked {d['asked']})" if d["asked"] != d["used"] else "") + f"; honest {label} of each rule: {honest}")
    return "\n".join(lines)


def run_demo(data_dir: Path, config: Path | str | None, overrides: list[str], device) -> RunResult:
    """Make Planet demo data in ``data_dir`` if absent, then run the demo config (a path or a shipped
    config's name; default the shipped demo) end to end."""
    from .config.catalog import resolve_config
    from .data.synthetic import make_demo_data

    config = resolve_config(config or DEMO_CONFIG)
    data_dir = Path(data_dir)
    if not (data_dir / "train_v2.csv").is_file():
        log.info("making Planet demo data in %s", data_dir)
        make_demo_data("planet", data_dir, overwrite=False, **DEMO_DATA)
    cfg = load_config(config, [f"data_dir={data_dir}", *overrides])
    return run_experiment(cfg, device)
