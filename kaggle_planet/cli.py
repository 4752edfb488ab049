"""The `kaggle-planet` command line: parses flags, picks the device, calls the library.

Each subcommand is a pair ``add_<name>_args(parser)`` / ``cmd_<name>(args) -> int`` registered in
``COMMANDS``. Library errors (:class:`KagglePlanetError`) become one line on stderr and exit status 2.
Heavy modules (torch, timm, the kaggle client) are imported inside the commands that need them.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from . import __version__
from .core.errors import KagglePlanetError

log = logging.getLogger("kaggle_planet")


def _options(args: argparse.Namespace) -> dict:
    """Competition options given on the command line: image folders' train/test folder names, a csv layout's
    ``--layout KEY=VALUE`` keys (``none`` for no value, a comma-separated list for target_columns)."""
    options = {k: v for k, v in (("train_dir", getattr(args, "train_dir", None)), ("test_dir", getattr(args, "test_dir", None))) if v}
    for item in getattr(args, "layout", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KagglePlanetError(f"--layout {item!r}: expected KEY=VALUE, e.g. --layout id_column=image_id")
        from .data.layout import LAYOUT_KEYS

        entry = LAYOUT_KEYS.get(key.strip())
        options[key.strip()] = None if value == "none" and entry is not None and entry.kind in ("name", "list") else (
            [v.strip() for v in value.split(",")] if entry is not None and entry.kind == "list" else value)
    return options


def _competition_names() -> str:
    from .data.competitions import COMPETITIONS

    return " | ".join(COMPETITIONS)


def _add_layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train-dir", help="imagefolder only: training folder inside the data folder (default seg_train)")
    p.add_argument("--test-dir", help="imagefolder only: test folder, flat or with class subfolders (default seg_test)")
    p.add_argument("--layout", action="append", metavar="KEY=VALUE",
                   help="csv-layout competitions (csv and the presets): a layout key, e.g. --layout id_column=image_id (repeatable; docs/competitions.md)")


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--competition", "-c", required=True, help=_competition_names())
    p.add_argument("--data-dir", "-d", required=True, type=Path, help="the competition's data folder")
    _add_layout_args(p)


def resolve_device(name: str | None = "auto"):
    """``auto`` -> cuda when available else cpu; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    import torch

    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KagglePlanetError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise KagglePlanetError("device 'mps' asked for, but MPS (Apple-silicon GPU, macOS only) is not available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise KagglePlanetError(f"device {name!r} is not valid; expected auto, cpu, cuda or cuda:N") from None


def _device_for(args: argparse.Namespace, config_device: str | None = None):
    return resolve_device(getattr(args, "device", None) or config_device or "auto")


def _parse_folds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise KagglePlanetError(f"--folds {text!r}: expected comma-separated fold numbers such as 0,1") from None


# -------------------------------------------------------------------------------- dataset commands


def add_check_args(p: argparse.ArgumentParser) -> None:
    _add_dataset_args(p)


def cmd_check(args: argparse.Namespace) -> int:
    from .data.competitions import check_dataset

    from .data.folds import group_hint

    report = check_dataset(args.competition, args.data_dir, _options(args))
    print(report.summary())
    hint = group_hint(report.table)
    if hint:
        print(f"note: {hint}")
    if report.problems:
        raise KagglePlanetError(f"{args.data_dir}: {len(report.problems)} image(s) missing or unreadable (listed above); first: {report.problems[0]}")
    print("ok: dataset is valid")
    return 0


def add_folds_args(p: argparse.ArgumentParser) -> None:
    _add_dataset_args(p)
    p.add_argument("--k", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=42, help="shuffle seed, 0 to 2^32-1 (default 42)")
    p.add_argument("--folds-dir", type=Path, default=Path("folds"), help="where fold files go (default ./folds)")


def cmd_folds(args: argparse.Namespace) -> int:
    from .data.competitions import load_dataset
    from .data.folds import fold_file_path, fold_summary, make_folds, write_folds

    table = load_dataset(args.competition, args.data_dir, _options(args), check_images=False)
    frame = make_folds(table, args.k, args.seed)
    path = write_folds(frame, fold_file_path(table.competition, args.k, args.seed, args.folds_dir, table.data_dir))
    print(fold_summary(table, frame["fold"].to_numpy()))
    print(f"wrote {path}")
    return 0


def add_make_demo_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--competition", "-c", required=True, help="planet | invasive | imagefolder")
    p.add_argument("--out", "-o", required=True, type=Path, help="folder to create")
    p.add_argument("--n-train", type=int, default=600, help="training images (default 600)")
    p.add_argument("--n-test", type=int, default=150, help="test images (default 150)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")


def cmd_make_demo_data(args: argparse.Namespace) -> int:
    from .data.synthetic import make_demo_data

    out = make_demo_data(args.competition, args.out, args.n_train, args.n_test, args.size, args.seed, args.overwrite)
    print(f"wrote {args.competition} demo data to {out}")
    print(f"next: kaggle-planet check --competition {args.competition} --data-dir {out}")
    return 0


# ------------------------------------------------------------------------------- training commands


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="experiment config: a YAML file, or a shipped config's name (kaggle-planet configs)")
    p.add_argument("--config", dest="config_flag", metavar="CONFIG", help="the same, as a flag (instead of the positional)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set models.0.epochs=2 (repeatable)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the config's device)")


def _config_path(args: argparse.Namespace) -> Path:
    """The config file of a command: the positional or ``--config``, a path or a shipped config's name."""
    from .config.catalog import resolve_config

    given = [c for c in (args.config, args.config_flag) if c]
    if len(given) != 1:
        raise KagglePlanetError(f"{args.command}: give one config, as a path or a shipped name (kaggle-planet configs), either positionally or with --config"
                                + (f"; got both {given[0]!r} and {given[1]!r}" if given else ""))
    return resolve_config(given[0])
def _add_wait_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true",
                   help="when another process is training a fold, wait for it instead of stopping (a lock left by a killed process is taken over either way)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    _add_config_args(p)
    _add_wait_arg(p)
    p.add_argument("--models", nargs="+", help="train only these model names")
    p.add_argument("--folds", help="train only these folds, e.g. 0,1")


def cmd_train(args: argparse.Namespace) -> int:
    from .config.schema import load_config
    from .pipeline import train_experiment

    cfg = load_config(_config_path(args), args.overrides)
    dirs = train_experiment(cfg, _device_for(args, cfg.device), models=args.models, folds=_parse_folds(args.folds), wait=args.wait)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        from .predict.tta import scores_line

        for d in dirs:
            print(f"model run: {d} ({scores_line(d)})")
    return 0


def add_lr_find_args(p: argparse.ArgumentParser) -> None:
    _add_config_args(p)
    p.add_argument("--model", help="the model name to test (default: the config's first)")
    p.add_argument("--start-lr", type=float, default=1e-7, help="first lr of the sweep (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=10.0, help="last lr of the sweep (default 10)")
    p.add_argument("--steps", type=int, default=200, help="updates in the sweep (default 200)")
    p.add_argument("--out", type=Path, help="the plot (default lr-find-<experiment>-<model>.png here)")


def cmd_lr_find(args: argparse.Namespace) -> int:
    from .config.schema import load_config
    from .train.lr_find import lr_find

    cfg = load_config(_config_path(args), args.overrides)
    result, png = lr_find(cfg, args.model, _device_for(args, cfg.device), args.start_lr, args.end_lr, args.steps, args.out)
    print(result.summary())
    print(f"suggested lr: {result.suggestion:.2e}  (set lr: {result.suggestion:.1e})")
    print(f"plot: {png}")
    return 0


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a model's run folder (runs/planet/resnet18) or an experiment folder (runs/planet): every model in it")
    p.add_argument("--tta", choices=["none", "hflip", "d4"], help="test-time augmentation (default: the config's)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict.tta import predict_runs, scores_line

    done, skipped = predict_runs(args.run_dir, _device_for(args), tta=args.tta)
    for out in done:
        print(f"wrote predictions in {out}: {scores_line(out)}")
    for line in skipped:
        print(line)
    if len(done) > 1 or skipped:
        print(f"blends are not refitted: re-run kaggle-planet blend on the model runs of {args.run_dir}")
    return 0


# ------------------------------------------------------------------------------ post-processing


def add_thresholds_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a run or blend folder scored by an F-beta metric decided by thresholds (Planet's F2, F1, ...)")


def cmd_thresholds(args: argparse.Namespace) -> int:
    from .ensemble.decision import fit_run_decisions, format_decisions_summary
    from .ensemble.thresholds import fit_run_thresholds, format_thresholds_summary

    result = fit_run_thresholds(args.run_dir)
    print(format_thresholds_summary(result))
    if result["score_heldout"] is not None:  # the rules compare on held-out folds: at least two needed
        print(format_decisions_summary(fit_run_decisions(args.run_dir)))
    return 0


def add_blend_args(p: argparse.ArgumentParser) -> None:
    from .ensemble.blend import AUTO_HELP, CHOICES  # torch-free

    p.add_argument("run_dirs", nargs="+", type=Path, help="model (or blend) run folders")
    p.add_argument("--method", "-m", default="mean",
                   help=f"{' | '.join(CHOICES)} (default mean; auto: {AUTO_HELP}; see docs/ensembles.md)")
    p.add_argument("--out", "-o", required=True, type=Path, help="folder for the blend (a run folder)")


def cmd_blend(args: argparse.Namespace) -> int:
    from .ensemble.blend import blend_runs, format_blend_table

    print(format_blend_table(blend_runs(args.run_dirs, args.method, args.out)))
    print(f"wrote blend in {args.out}")
    return 0


def add_submission_args(p: argparse.ArgumentParser) -> None:
    from .ensemble.decision import CHOICES  # torch-free

    p.add_argument("run_dir", type=Path, help="a run or blend folder")
    p.add_argument("--out", "-o", required=True, help="submission CSV, e.g. submissions/planet.csv (a folder: <experiment>_<run>.csv inside)")
    p.add_argument("--decision", default="thresholds", choices=CHOICES,
                   help="multilabel only: how tags are picked (default thresholds; auto: best honest OOF F2, see decision.json)")


def cmd_submission(args: argparse.Namespace) -> int:
    from .core.artifacts import read_json
    from .kaggle.submission import sidecar_path, write_run_submission

    path = write_run_submission(args.run_dir, args.out, args.decision)
    sidecar = read_json(sidecar_path(path))
    if "decision" in sidecar:
        honest = sidecar.get("honest_score")
        print(f"decision: {sidecar['decision']}" + (f" (asked {sidecar['decision_asked']})" if sidecar["decision_asked"] != sidecar["decision"] else "")
              + (f", honest OOF F2 {honest:.5f}" if honest is not None else ""))
    print(f"wrote {path} (validated; sidecar {sidecar_path(path)})")
    return 0


# ------------------------------------------------------------------------------------ main job


def add_run_args(p: argparse.ArgumentParser) -> None:
    _add_config_args(p)
    _add_wait_arg(p)


def cmd_run(args: argparse.Namespace) -> int:
    from .config.schema import load_config
    from .pipeline import run_experiment

    cfg = load_config(_config_path(args), args.overrides)
    result = run_experiment(cfg, _device_for(args, cfg.device), wait=args.wait)
    print(result.table)
    print(f"submission: {result.submission or 'none (no test images in ' + str(cfg.data_dir) + ')'}")
    return 0


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=Path("data/demo-planet"), help="demo data folder (default data/demo-planet)")
    p.add_argument("--config", help="demo config: a YAML file or a shipped config's name (default: the shipped demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")


def cmd_demo(args: argparse.Namespace) -> int:
    from .pipeline import run_demo

    result = run_demo(args.data_dir, args.config, args.overrides, device=_device_for(args))
    print(result.table)
    print(f"submission: {result.submission}")
    return 0


def add_init_args(p: argparse.ArgumentParser) -> None:
    from .data.competitions import COMPETITIONS

    p.add_argument("competition", choices=list(COMPETITIONS), metavar="competition",
                   help="the data layout: " + " | ".join(COMPETITIONS) + " (csv without --layout: the layout is guessed from the folder)")
    p.add_argument("--data-dir", "-d", required=True, type=Path, help="the competition's data folder")
    p.add_argument("--out", "-o", type=Path, help="the config to write (default <competition>.yaml here; never overwritten)")
    _add_layout_args(p)


def cmd_init(args: argparse.Namespace) -> int:
    from .config.starter import write_starter_config

    out = write_starter_config(args.competition, args.data_dir, args.out, _options(args))
    print(out.read_text(), end="")
    print(f"wrote {out}; next: kaggle-planet run {out}")
    return 0


def add_configs_args(p: argparse.ArgumentParser) -> None:
    pass


def cmd_configs(args: argparse.Namespace) -> int:
    from .config.catalog import format_configs

    print(format_configs())
    return 0


# ------------------------------------------------------------------------------------- kaggle


def add_download_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("competition", help="planet | invasive | any Kaggle competition slug")
    p.add_argument("--data-dir", "-d", required=True, type=Path, help="where the extracted data goes")
    p.add_argument("--files", nargs="+", help="only these competition files")
    p.add_argument("--all", dest="all_files", action="store_true", help="everything (Planet: includes the 32 GB of TIFs)")
    p.add_argument("--force", action="store_true", help="download and extract again even if present")
    p.add_argument("--max-expansion", type=float, metavar="RATIO",
                   help="refuse an archive that would expand to more than RATIO times the downloaded bytes, nested "
                        "archives included (default 100; image archives are near 1, a zip bomb 1000)")
    p.add_argument("--max-extract-gb", type=float, metavar="GB",
                   help="refuse an archive that would extract more than GB gigabytes, nested archives included (default 200)")


def cmd_download(args: argparse.Namespace) -> int:
    from .kaggle.archives import Limits
    from .kaggle.client import download

    limits = Limits.from_flags(args.max_expansion, args.max_extract_gb)
    paths = download(args.competition, args.data_dir, files=args.files, all_files=args.all_files, force=args.force,
                     limits=limits)
    for path in paths:
        print(f"ready: {path}")
    return 0


def _add_log_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log", type=Path, default=Path("submissions/log.csv"),
                   help="the submissions log (default submissions/log.csv in the working directory)")


def add_submit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="submission CSV")
    p.add_argument("--competition", "-c", required=True, help="planet | invasive | any Kaggle competition slug")
    p.add_argument("-m", "--message", required=True, help="submission description")
    p.add_argument("--data-dir", "-d", type=Path, help="data folder: validate against its sample submission first")
    _add_log_arg(p)


def cmd_submit(args: argparse.Namespace) -> int:
    from .kaggle.client import submit
    from .kaggle.submission import log_submission

    result = submit(args.file, args.competition, args.message, data_dir=args.data_dir, log_path=args.log)  # the log checked before the upload
    print(f"submitted {args.file} (ref {result['ref']}): {result['message']}")
    log_submission(args.log, args.file, args.competition, args.message, result["ref"])
    print(f"logged in {args.log}")
    return 0


def add_scores_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--competition", "-c", required=True, help="planet | invasive | any Kaggle competition slug")
    _add_log_arg(p)


def cmd_scores(args: argparse.Namespace) -> int:
    from .kaggle.client import format_submissions, list_submissions
    from .kaggle.submission import format_submission_log, update_log_scores

    frame = list_submissions(args.competition)
    print(format_submissions(frame))
    if args.log.is_file():
        print(f"\nCV against the leaderboard ({args.log}, scores updated):")
        print(format_submission_log(update_log_scores(args.log, frame), args.competition))
    return 0


# ------------------------------------------------------------------------------------- study


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="an experiment, model or blend run folder")
    p.add_argument("--out", "-o", help="HTML file (default <run_dir>/report.html; a folder: report.html inside)")
    p.add_argument("--log", type=Path, default=Path("submissions/log.csv"),
                   help="submissions log whose scored uploads are plotted, CV against public LB (default submissions/log.csv, if present)")
    p.add_argument("--no-ablation", action="store_true", help="skip the blends' drop-one ablation (it re-fits each blend M times; slow for lgbm)")


def cmd_report(args: argparse.Namespace) -> int:
    from .study.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out, submissions_log=args.log, ablation=not args.no_ablation)}")
    return 0


def add_compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, help="run folders and/or experiment folders (runs/<exp>/) of one competition and folds")
    p.add_argument("--no-ablation", action="store_true", help="skip the drop-one ablation of the blends (it re-fits each blend M times)")


def cmd_compare(args: argparse.Namespace) -> int:
    from .study.compare import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.paths, ablation=not args.no_ablation)))
    return 0


def add_predict_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="a model or blend run folder")
    p.add_argument("images", nargs="+", type=Path, help="image files and/or folders of images")
    p.add_argument("--tta", choices=["none", "hflip", "d4"], help="test-time augmentation (default: the run's)")
    p.add_argument("--fold", type=int, help="use only this fold's model (default: mean over folds)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the model's training batch size)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default: the model's num_workers)")
    p.add_argument("--out", "-o", type=Path, help="write a CSV (file, one probability per class, labels) instead of printing each image")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")


def cmd_predict_image(args: argparse.Namespace) -> int:
    from .core.artifacts import write_csv
    from .predict.images import check_predictions_out, format_image_predictions, image_predictions_frame, predict_images

    if args.out:
        check_predictions_out(args.out)  # before any prediction: never onto a data, run or other file
    result = predict_images(args.run_dir, args.images, _device_for(args), tta=args.tta, fold=args.fold,
                            batch_size=args.batch_size, num_workers=args.workers)
    if args.out:
        write_csv(args.out, image_predictions_frame(result), index=False)
        print(f"wrote {args.out}: {len(result.files)} image(s), {len(result.models)} fold model(s), TTA {result.tta}")
    else:
        print(format_image_predictions(result))
    return 0


Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str, str]

COMMANDS: dict[str, Command] = {
    "check": (add_check_args, cmd_check, "validate a dataset and print a summary",
              "kaggle-planet check --competition planet --data-dir data/planet"),
    "folds": (add_folds_args, cmd_folds, "write reproducible stratified folds",
              "kaggle-planet folds --competition planet --data-dir data/planet --k 5 --seed 42"),
    "make-demo-data": (add_make_demo_data_args, cmd_make_demo_data, "generate a synthetic dataset in a real layout",
                       "kaggle-planet make-demo-data --competition planet --out data/demo-planet --n-train 600"),
    "train": (add_train_args, cmd_train, "K-fold training of the config's backbones (+ predictions)",
              "kaggle-planet train configs/planet.yaml --models resnet34 --folds 0,1 --set models.0.epochs=2"),
    "predict": (add_predict_args, cmd_predict, "OOF and test predictions with TTA for a model run or every model of an experiment",
                "kaggle-planet predict runs/planet --tta d4"),
    "thresholds": (add_thresholds_args, cmd_thresholds, "fit per-class F2 thresholds on OOF predictions",
                   "kaggle-planet thresholds runs/planet/blend"),
    "blend": (add_blend_args, cmd_blend, "combine model runs into a blend run",
              "kaggle-planet blend runs/planet/resnet34 runs/planet/effnet --method ridge --out runs/planet/ridge"),
    "lr-find": (add_lr_find_args, cmd_lr_find, "learning-rate range test on fold 0, with a suggested lr and a plot",
                "kaggle-planet lr-find configs/planet.yaml --model tf_efficientnet_lite0"),
    "submission": (add_submission_args, cmd_submission, "write a validated submission CSV",
                   "kaggle-planet submission runs/planet/blend --out submissions/planet.csv"),
    "run": (add_run_args, cmd_run, "the main job: folds, train, predict, blend, thresholds, submission",
            "kaggle-planet run configs/planet.yaml --set models.0.epochs=10"),
    "demo": (add_demo_args, cmd_demo, "generate Planet demo data and run the demo config end to end",
             "kaggle-planet demo"),
    "init": (add_init_args, cmd_init, "write a starter experiment config for a competition's data (image size, recipe, offline backbones)",
             "kaggle-planet init planet --data-dir data/planet --out configs/my-planet.yaml"),
    "configs": (add_configs_args, cmd_configs, "list the shipped experiment configs (name, competition, models)",
                "kaggle-planet configs"),
    "download": (add_download_args, cmd_download, "download and extract competition data via the kaggle client",
                 "kaggle-planet download planet --data-dir data/planet"),
    "submit": (add_submit_args, cmd_submit, "validate and submit a file to Kaggle, logged in submissions/log.csv",
               "kaggle-planet submit submissions/planet.csv --competition planet -m 'ridge blend' --data-dir data/planet"),
    "scores": (add_scores_args, cmd_scores, "list past submissions with their scores (joined to the submissions log)",
               "kaggle-planet scores --competition planet"),
    "report": (add_report_args, cmd_report, "a self-contained HTML report of a run or blend",
               "kaggle-planet report runs/planet --out report.html"),
    "compare": (add_compare_args, cmd_compare, "leaderboard, drop-one ablation and correlation across experiments",
                "kaggle-planet compare runs/planet runs/planet-384 runs/planet-ridge/blend"),
    "predict-image": (add_predict_image_args, cmd_predict_image, "predict tags/labels for image files or folders, in batches",
                      "kaggle-planet predict-image runs/planet/blend photo.jpg more_photos/ --out predictions.csv"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaggle-planet",
        description="Kaggle image competitions from raw data to a leaderboard submission.",
        epilog="Start with: kaggle-planet demo",
    )
    parser.add_argument("--version", action="version", version=f"kaggle-planet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_args, run, summary, example) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_args(p)
        p.set_defaults(run=run)
    return parser


def one_line(exc: KagglePlanetError) -> str:
    """The error's own message. An error raised in a DataLoader worker comes back re-raised by torch
    with the worker's whole traceback as its message; the original message is its last line."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
        text = text[len(prefix):] if text.startswith(prefix) else text
    return text


class Terminated(KeyboardInterrupt):
    """SIGTERM (what a scheduler, ``kill`` or torchrun sends) raised as an interrupt, so that it unwinds like
    Ctrl-C: temporary files are removed, locks released, finished work kept."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (main thread only; the previous handler comes back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # model hubs are never contacted at run time
    try:
        with sigterm_as_interrupt():
            return args.run(args)
    except KagglePlanetError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no (a read-only folder, a full disk, a name too long): one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}; nothing after this step was written", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated (SIGTERM): finished work is kept; re-run the same command to resume", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
