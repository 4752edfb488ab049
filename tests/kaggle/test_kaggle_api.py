"""kaggle_api against the REAL kaggle client, talking to a fake Kaggle on 127.0.0.1 (tests/kaggle_server.py;
the fixtures ``fake``, ``clean_env`` and ``no_outside_network`` are in conftest.py)."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import py7zr
import pytest
from kaggle_server import KEY, USER

from kaggle_planet.cli import main
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.competitions import check_dataset
from kaggle_planet.kaggle import client as kaggle_api

PLANET = "planet-understanding-the-amazon-from-space"
JPEG_FILES = ["train_v2.csv", "sample_submission_v2.csv", "train-jpg.tar.7z", "test-jpg.tar.7z", "test-jpg-additional.tar.7z"]


# ------------------------------------------------------------------------- Planet archives


def tar_7z(folder: Path) -> bytes:
    """``<folder.name>.tar.7z`` bytes holding ``<folder.name>/<files>``, as Kaggle ships Planet's images."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(folder, arcname=folder.name)
    out = io.BytesIO()
    with py7zr.SevenZipFile(out, "w") as z:
        z.writestr(buf.getvalue(), f"{folder.name}.tar")
    return out.getvalue()


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(name, data)
    return out.getvalue()


@pytest.fixture(scope="module")
def planet_remote(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A demo Planet folder and the competition files Kaggle would list for it (plus a TIF archive)."""
    from kaggle_planet.data.synthetic import make_demo_data

    src = make_demo_data("planet", tmp_path_factory.mktemp("planet_src") / "planet", n_train=24, n_test=6, size=32)
    tif = tmp_path_factory.mktemp("tif") / "train-tif-v2"
    tif.mkdir()
    (tif / "train_0.tif").write_bytes(b"II*\x00 not really a tif")
    files = {
        "train_v2.csv": (src / "train_v2.csv").read_bytes(),
        "sample_submission_v2.csv": (src / "sample_submission_v2.csv").read_bytes(),
        "train-jpg.tar.7z": tar_7z(src / "train-jpg"),
        "test-jpg.tar.7z": tar_7z(src / "test-jpg"),
        "test-jpg-additional.tar.7z": tar_7z(src / "test-jpg-additional"),
        "train-tif-v2.tar.7z": tar_7z(tif),
    }
    return src, files


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def visible_tree(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(root).items() if not k.startswith(".kaggle-planet/")}


def assert_planet_copy(data_dir: Path, src: Path) -> None:
    report = check_dataset("planet", data_dir)
    assert report.problems == []
    assert len(report.table.train) == 24 and len(report.table.test) == 6
    for name, data in tree(src).items():
        assert (data_dir / name).read_bytes() == data, name


# --------------------------------------------------------------------------------- download


def test_resolve_slug():
    assert kaggle_api.resolve_slug("planet") == PLANET
    assert kaggle_api.resolve_slug("invasive") == "invasive-species-monitoring"
    assert kaggle_api.resolve_slug("dogs-vs-cats") == "dogs-vs-cats"
    with pytest.raises(KagglePlanetError, match="slug"):
        kaggle_api.resolve_slug("../etc")


def test_download_all_planet_zip_becomes_a_checked_dataset(fake, planet_remote, tmp_path):
    src, files = planet_remote
    # Kaggle's download-all zip: image archives as .tar.7z, the CSVs zipped inside it
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        for name, data in files.items():
            if name.endswith(".csv"):
                zf.writestr(f"{name}.zip", zipped(name, data))
            else:
                zf.writestr(name, data)
    fake.all_zip = outer.getvalue()
    data_dir = tmp_path / "data" / "planet"

    paths = kaggle_api.download("planet", data_dir, all_files=True)

    assert fake.bodies("DownloadDataFiles") == [{"competitionName": PLANET}]
    assert_planet_copy(data_dir, src)
    got = visible_tree(data_dir)
    assert got["train-tif-v2/train_0.tif"].startswith(b"II*")  # --all really is everything
    assert not [k for k in got if kaggle_api.archives.archive_kind(k) or k.startswith(".extracting")]
    assert sorted(p.name for p in paths) == sorted(
        ["train-jpg", "test-jpg", "test-jpg-additional", "train-tif-v2", "train_v2.csv", "sample_submission_v2.csv"])
    assert not (data_dir / ".kaggle-planet" / "downloads").exists() or not any((data_dir / ".kaggle-planet" / "downloads").iterdir())

    # a second run skips, --force downloads again
    kaggle_api.download("planet", data_dir, all_files=True)
    assert fake.methods().count("DownloadDataFiles") == 1
    kaggle_api.download("planet", data_dir, all_files=True, force=True)
    assert fake.methods().count("DownloadDataFiles") == 2
    assert_planet_copy(data_dir, src)


def test_default_planet_download_fetches_only_jpeg_files_one_by_one(fake, planet_remote, tmp_path):
    src, files = planet_remote
    fake.files = {**files, "train_v2.csv": zipped("train_v2.csv", files["train_v2.csv"])}
    fake.deliver_as = {"train_v2.csv": "train_v2.csv.zip"}  # large files arrive zipped
    data_dir = tmp_path / "planet"

    paths = kaggle_api.download("planet", data_dir)

    assert [b["fileName"] for b in fake.bodies("DownloadDataFile")] == JPEG_FILES
    assert all(b["competitionName"] == PLANET for b in fake.bodies("DownloadDataFile"))
    assert "train-tif-v2.tar.7z" not in str(fake.gets)
    assert_planet_copy(data_dir, src)
    assert not (data_dir / "train-tif-v2").exists()
    assert sorted(p.name for p in paths) == sorted(
        ["train_v2.csv", "sample_submission_v2.csv", "train-jpg", "test-jpg", "test-jpg-additional"])

    kaggle_api.download("planet", data_dir)  # everything there: nothing downloaded again
    assert len(fake.bodies("DownloadDataFile")) == 5


def test_single_file_download(fake, planet_remote, tmp_path):
    _, files = planet_remote
    fake.files = dict(files)
    data_dir = tmp_path / "planet"
    paths = kaggle_api.download("planet", data_dir, files=["train_v2.csv"])
    assert fake.bodies("DownloadDataFile") == [{"competitionName": PLANET, "fileName": "train_v2.csv"}]
    assert paths == [data_dir / "train_v2.csv"]
    assert visible_tree(data_dir) == {"train_v2.csv": files["train_v2.csv"]}

    # an archive asked for without its suffix
    paths = kaggle_api.download(PLANET, data_dir, files=["test-jpg"])
    assert fake.bodies("DownloadDataFile")[-1]["fileName"] == "test-jpg.tar.7z"
    assert paths == [data_dir / "test-jpg"]
    assert len(list((data_dir / "test-jpg").glob("*.jpg"))) == 4

    with pytest.raises(KagglePlanetError, match=r"no file 'nope.csv'; available: .*train-jpg\.tar\.7z"):
        kaggle_api.download("planet", data_dir, files=["nope.csv"])


def test_failed_extraction_leaves_nothing(fake, tmp_path):
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ok.csv", b"a,b\n")
        zf.writestr("../escape.csv", b"x")
    fake.files = {"data.zip": evil.getvalue()}
    data_dir = tmp_path / "d"
    with pytest.raises(KagglePlanetError, match="'../escape.csv'"):
        kaggle_api.download("some-competition", data_dir, files=["data.zip"])
    assert visible_tree(data_dir) == {}
    assert not (tmp_path / "escape.csv").exists()
    assert not [p for p in data_dir.rglob("*") if p.is_file()]


def test_download_403_says_accept_the_rules(fake, tmp_path, capfd):
    fake.forbidden = {"DownloadDataFiles"}
    with pytest.raises(KagglePlanetError) as err:
        kaggle_api.download("invasive", tmp_path / "inv")
    message = str(err.value)
    assert "403" in message and "https://www.kaggle.com/competitions/invasive-species-monitoring/rules" in message
    assert "\n" not in message
    assert not list((tmp_path / "inv").rglob("*.zip"))


# ------------------------------------------------------------------------------- submission


@pytest.fixture
def planet_submission(planet_remote, tmp_path) -> Path:
    src, _ = planet_remote
    path = tmp_path / "my submission.csv"
    path.write_bytes((src / "sample_submission_v2.csv").read_bytes().replace(b"\n", b"\r\n"))  # bytes must survive as-is
    return path


def test_submit_sends_exact_bytes_and_message(fake, planet_submission):
    result = kaggle_api.submit(planet_submission, "planet", "resnet18 d4 tta, tuned thresholds")
    start = fake.bodies("StartSubmissionUpload")
    assert len(start) == 1
    assert start[0]["competitionName"] == PLANET
    assert start[0]["fileName"] == planet_submission.name
    assert int(start[0]["contentLength"]) == planet_submission.stat().st_size
    assert list(fake.uploads.values()) == [planet_submission.read_bytes()]
    create = fake.bodies("CreateSubmission")
    assert create == [{"competitionName": PLANET, "blobFileTokens": list(fake.uploads)[0],
                       "submissionDescription": "resnet18 d4 tta, tuned thresholds"}]
    assert result == {"ref": fake.submissions[0]["ref"], "message": "Successfully submitted"}


def test_submit_validates_against_the_sample_submission_first(fake, planet_remote, planet_submission, tmp_path):
    src, _ = planet_remote
    result = kaggle_api.submit(planet_submission, "planet", "checked", data_dir=src)
    assert result["ref"] > 0 and len(fake.uploads) == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("image_name,tags\ntest_0,clear\n")  # most test ids missing
    with pytest.raises(KagglePlanetError, match="bad.csv"):
        kaggle_api.submit(bad, PLANET, "unchecked?", data_dir=src)
    assert len(fake.bodies("StartSubmissionUpload")) == 1  # nothing sent for the bad file


def test_silent_upload_failure_is_an_error(fake, planet_submission):
    fake.upload_status = 500
    with pytest.raises(KagglePlanetError, match="upload failed.*nothing was submitted"):
        kaggle_api.submit(planet_submission, "planet", "will fail")
    assert fake.bodies("CreateSubmission") == []


def test_submit_403_says_accept_the_rules(fake, planet_submission):
    fake.forbidden = {"StartSubmissionUpload"}
    with pytest.raises(KagglePlanetError, match=f"accept the competition rules at https://www.kaggle.com/competitions/{PLANET}/rules"):
        kaggle_api.submit(planet_submission, "planet", "x")


def test_submit_refuses_missing_file_and_empty_message(fake, planet_submission, tmp_path):
    with pytest.raises(KagglePlanetError, match="not found"):
        kaggle_api.submit(tmp_path / "missing.csv", "planet", "x")
    with pytest.raises(KagglePlanetError, match="message"):
        kaggle_api.submit(planet_submission, "planet", "  ")
    assert fake.calls == []


# ----------------------------------------------------------------------------------- scores


SUBMISSIONS = [
    {"ref": 3, "fileName": "c.csv", "date": "2026-11-20T10:00:00.123Z", "description": "blend", "status": "COMPLETE",
     "publicScore": "0.93012", "privateScore": "0.92875"},
    {"ref": 2, "fileName": "b.csv", "date": "2026-11-19T09:30:00Z", "description": "pending one", "status": "PENDING"},
    {"ref": 1, "fileName": "a.csv", "date": "2026-11-18T08:00:00.000Z", "description": "", "status": "ERROR",
     "errorDescription": "Submission has 10 rows, expected 61191", "publicScore": "", "privateScore": ""},
]


def test_scores_parse_into_numbers_across_pages(fake, monkeypatch):
    monkeypatch.setattr(kaggle_api, "PAGE_SIZE", 2)  # three rows -> two pages
    fake.submissions = [dict(s) for s in SUBMISSIONS]
    frame = kaggle_api.list_submissions("planet")
    assert [b.get("pageToken", "") for b in fake.bodies("ListSubmissions")] == ["", "2"]
    assert list(frame.columns) == kaggle_api.SUBMISSION_COLUMNS
    assert frame["ref"].tolist() == [3, 2, 1]
    assert frame["status"].tolist() == ["COMPLETE", "PENDING", "ERROR"]
    assert frame["public_score"].dtype == np.float64 and frame["private_score"].dtype == np.float64
    np.testing.assert_array_equal(frame["public_score"].to_numpy(), [0.93012, np.nan, np.nan])
    np.testing.assert_array_equal(frame["private_score"].to_numpy(), [0.92875, np.nan, np.nan])
    assert frame["date"].iloc[0].isoformat().startswith("2026-11-20T10:00:00")
    assert frame["error"].iloc[2] == "Submission has 10 rows, expected 61191"

    text = kaggle_api.format_submissions(frame)
    lines = text.splitlines()
    assert len(lines) == 4
    assert "0.93012" in lines[1] and "0.92875" in lines[1] and "COMPLETE" in lines[1]
    assert lines[2].split().count("-") >= 2  # unscored cells
    assert "expected 61191" in lines[3]
    assert kaggle_api.format_submissions(frame.iloc[:0]) == "no submissions yet"


def test_scores_command_prints_the_table(fake, capsys):
    fake.submissions = [dict(SUBMISSIONS[0])]
    assert main(["scores", "--competition", "planet"]) == 0
    out = capsys.readouterr().out
    assert "0.93012" in out and "c.csv" in out


# ------------------------------------------------------------------------------ credentials


def test_kaggle_json_in_config_dir_is_used(fake, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = tmp_path / "kcfg"
    config.mkdir()
    (config / "kaggle.json").write_text(f'{{"username": "{USER}", "key": "{KEY}"}}')
    (config / "kaggle.json").chmod(0o600)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    assert kaggle_api.list_submissions("planet").empty
    assert fake.methods() == ["ListSubmissions"]


def test_access_token_is_used_and_never_shown(fake, monkeypatch):
    token = "KGAT_0123456789abcdef0123456789"
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", token)
    fake.token = token
    assert kaggle_api.list_submissions("planet").empty
    assert fake.methods() == ["IntrospectToken", "ListSubmissions"]
    assert set(fake.auth_seen) == {f"Bearer {token}"}
    fake.forbidden = {"ListSubmissions"}
    with pytest.raises(KagglePlanetError, match="403") as err:
        kaggle_api.list_submissions("planet")
    assert token not in str(err.value)


def test_missing_credentials_give_one_clear_line(clean_env, capsys):
    with pytest.raises(KagglePlanetError) as err:
        kaggle_api.list_submissions("planet")
    message = str(err.value)
    assert "\n" not in message
    for hint in ("kaggle.json", "KAGGLE_CONFIG_DIR", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        assert hint in message
    assert capsys.readouterr().out == ""  # the client's help text stays out of our stdout


def test_cli_without_credentials_fresh_process(clean_env, tmp_path):
    """A fresh interpreter: the client's import-time noise stays off stdout, one error line on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env["HOME"] = str(clean_env)
    proc = subprocess.run(
        [sys.executable, "-m", "kaggle_planet.cli", "scores", "--competition", "planet"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "KAGGLE_USERNAME" in errors[0]
    assert "Authentication required" not in proc.stderr + proc.stdout


def test_wrong_key_is_reported_without_the_key(fake, monkeypatch):
    fake.key = "the-server-expects-another-key"
    with pytest.raises(KagglePlanetError, match="401") as err:
        kaggle_api.list_submissions("planet")
    assert KEY not in str(err.value)


def test_key_never_appears_in_any_output(fake, planet_submission, tmp_path, capfd, caplog, monkeypatch):
    caplog.set_level("DEBUG")
    messages = []
    fake.forbidden = {"DownloadDataFiles", "ListSubmissions"}
    for call in (
        lambda: kaggle_api.download("planet", tmp_path / "d", all_files=True),
        lambda: kaggle_api.list_submissions("planet"),
    ):
        with pytest.raises(KagglePlanetError) as err:
            call()
        messages.append(str(err.value))
    fake.forbidden = set()
    fake.upload_status = 503
    with pytest.raises(KagglePlanetError) as err:
        kaggle_api.submit(planet_submission, "planet", "x")
    messages.append(str(err.value))
    wrong_key = "wrong-" + KEY
    monkeypatch.setenv("KAGGLE_KEY", wrong_key)
    with pytest.raises(KagglePlanetError) as err:
        kaggle_api.list_submissions("planet")
    messages.append(str(err.value))
    out, errout = capfd.readouterr()
    everything = "\n".join(messages + [out, errout, caplog.text])
    assert len(messages) == 4
    assert KEY not in everything
    assert wrong_key not in everything


def test_api_calls_time_out(fake, monkeypatch):
    monkeypatch.setattr(kaggle_api, "HTTP_TIMEOUT", (2.0, 0.3))
    fake.delay = {"ListSubmissions": 1.5}
    with pytest.raises(KagglePlanetError, match="timed out"):
        kaggle_api.list_submissions("planet")


def test_cli_download_and_submit(fake, planet_remote, planet_submission, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the submissions log goes to ./submissions/log.csv
    src, files = planet_remote
    fake.files = dict(files)
    data_dir = tmp_path / "cli-data"
    assert main(["download", "planet", "--data-dir", str(data_dir), "--files", "train_v2.csv", "sample_submission_v2.csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"ready: {data_dir / 'train_v2.csv'}", f"ready: {data_dir / 'sample_submission_v2.csv'}"]

    assert main(["submit", str(planet_submission), "--competition", "planet", "-m", "from the cli", "--data-dir", str(src)]) == 0
    assert "ref 50000" in capsys.readouterr().out
    assert fake.bodies("CreateSubmission")[0]["submissionDescription"] == "from the cli"
    logged = pd.read_csv(tmp_path / "submissions" / "log.csv", dtype=str, keep_default_na=False)
    assert logged[["ref", "competition", "message", "file"]].values.tolist() == [["50000", "planet", "from the cli", str(planet_submission)]]
    assert logged["sha256"].iloc[0] == hashlib.sha256(planet_submission.read_bytes()).hexdigest()
    assert logged["run_dir"].iloc[0] == ""  # no sidecar next to this file

    fake.submissions[0].update(status="COMPLETE", publicScore="0.93012", privateScore="0.92875")
    assert main(["scores", "--competition", "planet"]) == 0
    out = capsys.readouterr().out
    assert "CV against the leaderboard" in out and "0.93012" in out.split("CV against")[1]
    assert pd.read_csv(tmp_path / "submissions" / "log.csv")["public_score"].tolist() == [0.93012]

    fake.upload_status = 500
    assert main(["submit", str(planet_submission), "--competition", "planet", "-m", "again"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1].startswith("error: kaggle: submit") and "upload failed" in captured.err
