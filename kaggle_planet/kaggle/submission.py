"""Submission files: formatted from a run folder's test predictions, validated, written atomically.

Planet: space-separated tags chosen by a decision rule (:mod:`kaggle_planet.ensemble.decision`): by default
the run's ``thresholds.json`` (fitted first when missing; ``prob > threshold``, at least one tag per
image: the most probable one when none passes); ``expected_f2`` picks each image's tag set with the
highest expected F2; ``auto`` takes the rule with the best honest OOF F2 in ``decision.json``.
Invasive: the probability column. Image folders: ``path,label,<class probabilities>``.

Before anything is written the frame is checked against what the competition expects: the sample
submission's ids in the same order (image folders: the test folder's ids in reading order), exactly the
expected columns, valid tags / probabilities in [0, 1], no missing values. A sidecar
``<out>.json`` (e.g. ``submissions/planet.csv.json``) records the inputs with their sha256, the config,
the OOF score, the honest score and the decision rule, so a leaderboard number can be traced back to
its run. The thresholds and decision rules used are the ones fitted on the run's current OOF rows: a
``thresholds.json`` / ``decision.json`` fitted on other predictions (the folder re-blended with another
method) is fitted again first, saying so, never used. ``kaggle-planet submit`` appends each upload to
``submissions/log.csv`` (:func:`log_submission`) and ``kaggle-planet scores`` fills in its public /
private scores (:func:`update_log_scores`).
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import artifacts, fingerprints, metrics
from ..core.errors import KagglePlanetError
from ..core.fingerprints import file_sha256
from ..data.competitions import DatasetTable, csv_line, get_spec, load_dataset, read_string_csv
from ..data.layout import top_tag_when_none
from ..ensemble import decision
from ..ensemble.thresholds import FITS, THRESHOLDS

log = logging.getLogger(__name__)


def sidecar_path(out_path: str | Path) -> Path:
    """``submissions/x.csv`` -> ``submissions/x.csv.json``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".json")


# ------------------------------------------------------------------------------------- validation


def expected_frame(competition: str, table: DatasetTable) -> tuple[list[str], list[str]]:
    """(columns, ids in order) a submission for ``table`` must have: the sample submission's header and ids,
    else (image folders, a csv layout listing its test ids in a test CSV) the entry's own format in test order."""
    spec = get_spec(competition, table.options)
    return spec.submission_columns(table), table.test[spec.id_col].astype(str).tolist()


def _where(source: str, frame: pd.DataFrame, row: int) -> str:
    return f"{source}: line {csv_line(frame, row)}"  # the file's own line numbers when read from a file


def _check_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    got = [str(c) for c in frame.columns]
    if got == columns:
        return
    missing = [c for c in columns if c not in got]
    extra = [c for c in got if c not in columns]
    what = (
        f"missing column {missing[0]!r}" if missing
        else f"unexpected column {extra[0]!r}" if extra
        else "columns in the wrong order"
    )
    raise KagglePlanetError(f"{source}: line 1: {what}; expected columns {','.join(columns)}, found {','.join(got)}")


def _check_ids(frame: pd.DataFrame, id_col: str, ids: list[str], source: str) -> None:
    got = frame[id_col].astype(str).str.strip().tolist()
    for i, (g, e) in enumerate(zip(got, ids)):
        if g != e:
            raise KagglePlanetError(
                f"{_where(source, frame, i)}: {id_col} {g!r} where the sample submission has {e!r}; "
                "a submission keeps the sample submission's ids in the same order"
            )
    if len(got) < len(ids):
        raise KagglePlanetError(f"{_where(source, frame, len(got))}: missing row for {id_col} {ids[len(got)]!r} ({len(got)} rows, expected {len(ids)})")
    if len(got) > len(ids):
        raise KagglePlanetError(f"{_where(source, frame, len(ids))}: extra row {id_col} {got[len(ids)]!r} ({len(got)} rows, expected {len(ids)})")


def validate_submission(frame: pd.DataFrame, competition: str, table: DatasetTable, source: str) -> None:
    """Raise a one-line :class:`KagglePlanetError` naming ``source`` and the first bad line, if any.

    Checks the columns, the ids (same as the sample submission, same order, no missing or extra row)
    and the values (Planet tags from the class list, probabilities in [0, 1], no missing values).
    """
    spec = get_spec(competition, table.options)
    columns, ids = expected_frame(competition, table)
    if not ids:
        raise KagglePlanetError(f"{source}: the dataset in {table.data_dir} has no test images to submit")
    _check_columns(frame, columns, source)
    _check_ids(frame, spec.id_col, ids, source)
    spec.validator(frame, table, source)


def validate_submission_file(path: Path, competition: str, data_dir: Path, options: dict | None = None) -> None:
    """Validate a submission CSV against the competition's data folder (sample submission, test ids)."""
    frame = read_string_csv(path, "submission file")
    table = load_dataset(competition, data_dir, options, check_images=False)
    validate_submission(frame, competition, table, str(path))


# -------------------------------------------------------------------------------------- writing


def _aligned_test_probs(run: artifacts.Run, ids: list[str], table: DatasetTable) -> np.ndarray:
    id_col = run.info.id_col
    by_id = run.test.set_index(id_col)
    missing = [i for i in ids if i not in by_id.index]
    extra = sorted(set(by_id.index) - set(ids))
    if missing or extra:
        what = f"{missing[0]!r} is missing from test.csv" if missing else f"{extra[0]!r} is not a test id of the dataset"
        raise KagglePlanetError(
            f"{run.path / artifacts.TEST} and the test ids of {table.data_dir}: ids differ (first difference: {what}); "
            "predict the test set of this data folder again"
        )
    return by_id.loc[ids, run.info.classes].to_numpy(dtype=np.float64)


def resolve_submission_out(out: str | Path, run_dir: Path, data_dir: Path) -> Path:
    """Where ``--out`` puts the submission CSV: a folder (existing, or written with a trailing ``/``) gets
    ``<experiment>_<run>.csv`` inside; refused inside a model or blend run folder (its files would be
    overwritten), onto a data folder's file, and for a name that does not end in .csv."""
    if artifacts.wants_folder(out):
        folder = Path(out)
        if artifacts.run_kind(folder) in ("model", "blend", "experiment"):
            raise KagglePlanetError(f"{out}: is a run folder; --out names the submission CSV, e.g. submissions/<name>.csv")
        resolved = run_dir.resolve()
        out = folder / f"{resolved.parent.name}_{resolved.name}.csv"
        log.info("--out is a folder: writing %s", out)
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise KagglePlanetError(f"{out}: a submission is a .csv file; give a path ending in .csv, e.g. submissions/<name>.csv")
    inside = artifacts.enclosing_run(out.parent)
    if inside is not None:
        raise KagglePlanetError(f"{out}: lies inside the run folder {inside}, whose files it could overwrite; write submissions elsewhere, e.g. submissions/")
    in_data = Path(data_dir).resolve() in [out.resolve().parent, *out.resolve().parent.parents]
    if in_data and out.exists() and not sidecar_path(out).is_file():  # a data file, not an earlier submission
        raise KagglePlanetError(f"{out}: is a file of the data folder {data_dir}; write submissions elsewhere, e.g. submissions/")
    managed = _managed_csv(out)
    if managed:
        raise KagglePlanetError(f"{out}: is {managed}, which the toolkit reads; write the submission elsewhere, e.g. submissions/<name>.csv")
    return out


def _managed_csv(path: Path) -> str | None:
    """What an existing CSV the toolkit reads is, by its header: a folds file or the submissions log."""
    if not path.is_file():
        return None
    header = artifacts.first_line(path).split(",")
    if len(header) == 2 and header[1] == artifacts.FOLD_COL:
        return "a folds file"
    if header[: len(LOG_COLUMNS)] == LOG_COLUMNS:
        return "the submissions log"
    return None


def write_run_submission(run_dir: Path, out_path: str | Path, decision_rule: str = "thresholds") -> Path:
    """Write the validated submission for a run (or blend) folder to ``out_path``, plus its JSON sidecar.

    ``decision_rule``: one of ``decision.CHOICES``, served by the run's metric (:func:`kaggle_planet.ensemble.decision.decide_run`):
    F-beta tags by thresholds or expected F2, the probabilities (AUC; log loss clipped with ``clip``, its default),
    the most probable class; ``thresholds`` (the default) means the metric's default rule on runs with nothing to threshold.
    """
    run_dir = Path(run_dir)
    if decision_rule not in decision.CHOICES:
        raise KagglePlanetError(f"unknown decision rule {decision_rule!r}; valid: {', '.join(decision.CHOICES)}")
    run = artifacts.load_run(run_dir)
    info = run.info
    spec = get_spec(info.competition, info.options)
    table = load_dataset(info.competition, info.data_dir, info.options, check_images=False)
    out_path = resolve_submission_out(out_path, run_dir, table.data_dir)
    if list(table.classes) != list(info.classes):
        raise KagglePlanetError(
            f"{run_dir / artifacts.RUN_INFO}: classes {info.classes} differ from the data folder {table.data_dir}'s {table.classes}"
        )
    if table.test.empty:
        raise KagglePlanetError(f"{table.data_dir}: no test images (the test folder is optional for {info.competition}); nothing to submit")
    made_from = info.fingerprints.get("labels")
    if made_from is not None and made_from != fingerprints.labels_digest(table.train[table.id_col].tolist(), table.targets):
        log.warning("%s was made from other training labels than %s holds now: the submission and its sidecar's scores "
                    "are that run's (trained and scored on the old labels)", run_dir, table.data_dir)
    columns, ids = expected_frame(info.competition, table)
    probs = _aligned_test_probs(run, ids, table)
    values, record = decision.decide_run(run, probs, decision_rule)
    # thresholded tags arrive as 0/1 (at least one per row over samples), so the formatter's 0.5 reproduces them exactly
    decided = decision.run_target(run.path, info).kind == "thresholds"
    if decided and info.task == "multilabel":
        # a tag submission names at least one tag per image: a row a micro / macro rule left empty gets its most
        # probable tag (from the probabilities, not the 0/1 row, whose argmax would be the first class)
        chosen = values > 0.5
        empty = int((~chosen.any(axis=1)).sum())
        values = top_tag_when_none(probs, chosen).astype(np.float64)
        if empty:
            record["rows_given_their_top_tag"] = empty
    frame = spec.format_submission(ids, values, info.classes, np.full(len(info.classes), 0.5) if decided else None, columns)
    validate_submission(frame, info.competition, table, str(out_path))
    artifacts.write_csv(out_path, frame, float_format="%.8g")
    artifacts.write_json(sidecar_path(out_path), _sidecar(run, out_path, record))
    log.info("wrote %s (%d rows) from %s%s", out_path, len(frame), run_dir, f" (decision {record['decision']})" if record else "")
    return out_path


def _sidecar(run: artifacts.Run, out_path: Path, record: dict[str, Any]) -> dict[str, Any]:
    names = [artifacts.RUN_INFO, artifacts.LABELS, artifacts.OOF, artifacts.TEST, artifacts.SCORES, THRESHOLDS, decision.DECISION, FITS]
    files = {name: {"path": str(run.path / name), "sha256": file_sha256(run.path / name)} for name in names if (run.path / name).is_file()}
    metric = get_spec(run.info.competition, run.info.options).metric
    scores_path = run.path / artifacts.SCORES
    scores = artifacts.read_json(scores_path) if scores_path.is_file() else {}
    oof_score = metrics.score(metric, run.y_true, run.oof_probs)
    sidecar: dict[str, Any] = {
        "submission": str(out_path),
        "sha256": file_sha256(out_path),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "competition": run.info.competition,
        "run_dir": str(run.path),
        "kind": run.info.kind,
        "members": run.info.members,
        "files": files,
        "config": run.info.extra.get("config"),
        "commands": run.info.extra.get("commands", []),
        "metric": metric,
        "oof_score": oof_score,
        "oof_scores_json": scores.get("oof"),
        "fingerprints": run.info.fingerprints,
        "inputs_sha256": fingerprints.run_inputs_digest(run.path),
        # models' and blends' OOF predictions are out of fold, so their score is the honest one; F2
        # replaces it with the honest F2 of the decision rule used (fitted on K-1 folds)
        "honest_score": oof_score,
    }
    sidecar.update(record)
    return sidecar


# ------------------------------------------------------------------------------ submissions log

LOG = Path("submissions") / "log.csv"  # relative to the working directory, like submissions/<name>.csv
LOG_COLUMNS = ["submitted_utc", "ref", "competition", "file", "sha256", "message", "run_dir", "decision",
               "metric", "oof_score", "honest_score", "status", "public_score", "private_score"]
_LOG_NUMBERS = ["oof_score", "honest_score", "public_score", "private_score"]


def competition_name(name: str) -> str:
    """``planet`` for ``planet`` or its Kaggle slug; any other name unchanged."""
    from ..data.competitions import COMPETITIONS

    return next((spec.name for spec in COMPETITIONS.values() if name in (spec.name, spec.slug)), name)


def read_submission_log(path: str | Path) -> pd.DataFrame:
    """The submissions log (``LOG_COLUMNS``, scores as floats, NaN when empty); empty when absent."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=LOG_COLUMNS).astype({c: float for c in _LOG_NUMBERS})
    frame = read_string_csv(path, "submissions log")
    missing = [c for c in LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise KagglePlanetError(f"{path}: line 1: missing column {missing[0]!r}; expected columns {','.join(LOG_COLUMNS)}")
    frame = frame[LOG_COLUMNS].copy()
    for col in _LOG_NUMBERS:
        text = frame[col].fillna("").astype(str).str.strip()
        values = pd.to_numeric(text.where(text != "", None), errors="coerce")
        bad = values.isna() & (text != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise KagglePlanetError(f"{_where(str(path), frame, row)}: {col} {text.iloc[row]!r} is not a number (or empty)")
        frame[col] = values.astype(float)
    return frame


def _write_log(path: Path, frame: pd.DataFrame) -> None:
    artifacts.write_csv(path, frame[LOG_COLUMNS], float_format="%.10g")


def log_submission(log_path: str | Path, file: str | Path, competition: str, message: str, ref: int) -> dict[str, Any]:
    """Append one upload to the submissions log: file, sha256, message, run, decision, OOF and honest
    score (from the file's sidecar when it describes these exact bytes). Returns the row."""
    log_path, file = Path(log_path), Path(file)
    sha = file_sha256(file)
    side_path = sidecar_path(file)
    sidecar = artifacts.read_json(side_path) if side_path.is_file() else {}
    if sidecar and sidecar.get("sha256") != sha:
        log.warning("%s describes another version of %s (sha256 differs); run, OOF and honest score left empty", side_path, file)
        sidecar = {}
    row = {
        "submitted_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "ref": str(ref),
        "competition": competition_name(sidecar.get("competition") or competition),
        "file": str(file),
        "sha256": sha,
        "message": message,
        "run_dir": sidecar.get("run_dir", ""),
        "decision": sidecar.get("decision", ""),
        "metric": sidecar.get("metric", ""),
        "oof_score": sidecar.get("oof_score", np.nan),
        "honest_score": np.nan if sidecar.get("honest_score") is None else sidecar["honest_score"],
        "status": "",
        "public_score": np.nan,
        "private_score": np.nan,
    }
    frame = read_submission_log(log_path)
    new = pd.DataFrame([row], columns=LOG_COLUMNS)
    _write_log(log_path, new if frame.empty else pd.concat([frame, new], ignore_index=True))
    return row


def update_log_scores(log_path: str | Path, kaggle: pd.DataFrame) -> pd.DataFrame:
    """Copy status and public / private scores of ``kaggle`` (kaggle_api.list_submissions: ``ref``,
    ``status``, ``public_score``, ``private_score``) into the log rows with the same ref; returns the log."""
    log_path = Path(log_path)
    frame = read_submission_log(log_path)
    if frame.empty:
        return frame
    by_ref = kaggle.assign(ref=kaggle["ref"].astype(str)).set_index("ref")
    known = frame["ref"].isin(by_ref.index)
    for col in ("status", "public_score", "private_score"):
        frame.loc[known, col] = by_ref.loc[frame.loc[known, "ref"], col].to_numpy()
    if known.any():
        _write_log(log_path, frame)
    return frame


def format_submission_log(frame: pd.DataFrame, competition: str | None = None) -> str:
    """CV next to the leaderboard: one line per logged upload (of ``competition`` when given)."""
    if competition is not None:
        frame = frame[frame["competition"] == competition_name(competition)]
    if frame.empty:
        return "no logged submissions"
    shown = pd.DataFrame({
        "ref": frame["ref"],
        "file": frame["file"].map(lambda f: Path(f).name),
        "run": frame["run_dir"].replace("", "-"),
        "decision": frame["decision"].fillna("").replace("", "-"),
        "OOF": frame["oof_score"].map(lambda v: "-" if pd.isna(v) else f"{v:.5f}"),
        "honest CV": frame["honest_score"].map(lambda v: "-" if pd.isna(v) else f"{v:.5f}"),
        "public": frame["public_score"].map(lambda v: "-" if pd.isna(v) else f"{v:.5f}"),
        "private": frame["private_score"].map(lambda v: "-" if pd.isna(v) else f"{v:.5f}"),
    })
    return shown.to_string(index=False)
