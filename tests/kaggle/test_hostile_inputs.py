"""The bad-input matrix, Kaggle side (issue 20, classes 3 to 5): hostile or huge archives, secrets in what the
server answers, and output paths checked before the upload.

Each case runs the real command line in-process against the stand-in Kaggle (tests/kaggle_server.py, the REAL
client talking to it) and asserts: the exit status; exactly one ``error:`` line on stderr (never a traceback)
naming the file and the problem; and that nothing in the workspace (the data folder with files already in it,
the home folder, the working directory) was created, changed or removed, folders included. The archives are a
few kB that declare or expand to tens of MB; bounds are lowered with the flags where a case needs more.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import struct
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import py7zr
import pytest
from archive_files import tar_bytes
from kaggle_server import KEY, USER, secret_forms

from kaggle_planet.cli import main
from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.kaggle import archives
from kaggle_planet.kaggle import client as kaggle_api

SLUG = "some-competition"
ZEROS = bytes(20 * 10**6)  # 20 MB: deflate makes ~20 kB of it (1000:1), LZMA ~3 kB


# -------------------------------------------------------------------------------------- archives


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def sevenz_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with py7zr.SevenZipFile(out, "w") as z:
        for name, data in members.items():
            z._writestr(data, name)  # skips py7zr's own name check, so that unsafe archives can be built
    return out.getvalue()


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def lying_zip(real: bytes, declared: int) -> bytes:
    """A zip of one member whose directory entry declares ``declared`` bytes for ``real`` bytes of data."""
    data = bytearray(zip_bytes({"small.bin": real}))
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", declared)  # uncompressed size in the central directory
    return bytes(data)


def encrypted_zip() -> bytes:
    """A zip whose member carries the "encrypted" flag (zipfile cannot encrypt; the flag is what readers see)."""
    data = bytearray(zip_bytes({"secret.csv": b"a,b\n"}))
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 0x1  # general purpose flags, bit 0
    return bytes(data)


# -------------------------------------------------------------------------------------- workspace

OLD = {"existing.txt": b"keep me\n", "train_v2.csv": b"image_name,tags\nold,clear\n"}


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> content hash (folders: "dir", links: their target) of everything under ``root``."""
    def state(p: Path) -> str:
        if p.is_symlink():
            return f"link to {os.readlink(p)}"
        return "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()

    return {p.relative_to(root).as_posix(): state(p) for p in root.rglob("*")}


@pytest.fixture
def ws(fake, tmp_path, monkeypatch) -> Path:
    """The working directory: a data folder already holding files; home and the fake server around it."""
    root = tmp_path / "ws"
    (root / "data").mkdir(parents=True)
    for name, data in OLD.items():
        (root / "data" / name).write_bytes(data)
    monkeypatch.chdir(root)
    kaggle_api._api_class()  # the client makes its config folder (~/.config/kaggle) when first imported: before the snapshots
    return root


def run_cli(argv: list[str], capfd) -> tuple[int, str, str]:
    capfd.readouterr()
    rc = main(argv)
    out, err = capfd.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def error_line(rc: int, err: str) -> str:
    assert rc == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.count("\n") == 1, err
    return errors[0]


@dataclass
class Case:
    id: str
    files: dict[str, bytes]  # served by the fake Kaggle, downloaded with --files
    expect: tuple[str, ...]  # substrings of the error line
    flags: tuple[str, ...] = ()
    calls: bool = True  # False: refused before any request
    data_dir: str = "data"  # the --data-dir (a new folder: it must not be left behind)


inner_escape = zip_bytes({"fine.txt": b"fine", "../evil.txt": b"x"})
CASES = [
    # (a) refusals at any depth leave nothing: not the outer archive's files, not the hostile inner archive
    Case("nested-zip-escape", {"all.zip": zip_bytes({"new.csv": b"a\n", "train_v2.csv": b"new", "inner.zip": inner_escape})},
         ("some-competition: all.zip: inner.zip: refusing member '../evil.txt'", "'..' in its path", "nothing was extracted")),
    Case("three-deep-symlink-escape",
         {"all.zip": zip_bytes({"top.txt": b"t", "mid.zip": zip_bytes({"m.txt": b"m", "inner.tar": tar_bytes({"ok": b"1"}, links=(symlink("ok2", "../../../etc"),))})})},
         ("some-competition: all.zip: mid.zip: inner.tar: refusing member 'ok2'", "points outside")),
    Case("tar7z-in-zip-escape",
         {"all.zip": zip_bytes({"a.csv": b"a", "train-jpg.tar.7z": sevenz_bytes({"train-jpg.tar": tar_bytes({"train-jpg/../../x.jpg": b"j"})})})},
         ("train-jpg.tar.7z", "'train-jpg/../../x.jpg'")),
    Case("escape-into-a-new-data-folder", {"all.zip": zip_bytes({"a.csv": b"a", "inner.zip": inner_escape})},
         ("some-competition: all.zip: inner.zip: refusing member '../evil.txt'",), data_dir="new/data"),
    Case("corrupt-inner-archive", {"all.zip": zip_bytes({"a.csv": b"a", "inner.zip": b"PK\x03\x04 not a zip"})},
         ("some-competition: all.zip: inner.zip: corrupt or unreadable .zip archive",)),
    # (b) expansion: the ratio (default 100:1), the total (lowered with --max-extract-gb), at any depth
    Case("zip-bomb", {"bomb.zip": zip_bytes({"zeros.bin": ZEROS})},
         ("some-competition: bomb.zip: refusing to extract", "20.0 MB from a 19.6 kB download (1022:1), more than the limit of 100:1", "--max-expansion")),
    Case("nested-zip-bomb", {"all.zip": zip_bytes({"a.csv": b"a", "inner.zip": zip_bytes({"zeros.bin": ZEROS})}, zipfile.ZIP_STORED)},
         ("some-competition: all.zip: inner.zip: refusing to extract", "more than the limit of 100:1", "--max-expansion")),
    Case("tar-gz-bomb", {"bomb.tar.gz": tar_bytes({"zeros.bin": ZEROS}, "w:gz")}, ("some-competition: bomb.tar.gz: refusing to extract", "--max-expansion")),
    Case("7z-bomb", {"bomb.7z": sevenz_bytes({"zeros.bin": ZEROS})}, ("some-competition: bomb.7z: refusing to extract", "--max-expansion")),
    Case("tar7z-bomb", {"bomb.tar.7z": sevenz_bytes({"bomb.tar": tar_bytes({"zeros.bin": ZEROS})})}, ("bomb.tar.7z", "--max-expansion")),
    Case("total-size", {"data.zip": zip_bytes({"zeros.bin": bytes(2 * 10**6)})},
         ("some-competition: data.zip: refusing to extract", "2.0 MB, more than the limit of 1.0 MB", "--max-extract-gb"), ("--max-extract-gb", "0.001")),
    Case("total-size-over-two-inner-archives",
         {"all.zip": zip_bytes({"a.zip": zip_bytes({"a.bin": bytes(10**6)}), "b.zip": zip_bytes({"b.bin": bytes(10**6)})}, zipfile.ZIP_STORED)},
         ("some-competition: all.zip: b.zip: refusing to extract", "more than the limit of 1.5 MB"), ("--max-extract-gb", "0.0015")),
    Case("encrypted-member", {"data.zip": encrypted_zip()}, ("some-competition: data.zip: member 'secret.csv' is encrypted",)),
    Case("bzip2-member", {"data.zip": zip_bytes({"a.csv": b"a,b\n"}, zipfile.ZIP_BZIP2)},
         ("some-competition: data.zip: member 'a.csv' uses zip compression method 12, which is not supported",)),
    Case("lying-declared-size", {"data.zip": lying_zip(bytes(10**6), 100)}, ("some-competition: data.zip: corrupt or unreadable .zip archive", "CRC")),
    # the flags themselves
    Case("max-expansion-below-1", {"data.zip": zip_bytes({"a": b"a"})}, ("--max-expansion 0.5: expected a number >= 1",),
         ("--max-expansion", "0.5"), calls=False),
    Case("max-expansion-nan", {"data.zip": zip_bytes({"a": b"a"})}, ("--max-expansion nan",), ("--max-expansion", "nan"), calls=False),
    Case("max-extract-gb-zero", {"data.zip": zip_bytes({"a": b"a"})}, ("--max-extract-gb 0: expected a positive number",),
         ("--max-extract-gb", "0"), calls=False),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_archive_is_refused_and_leaves_everything_as_it_was(case: Case, ws: Path, fake, capfd):
    fake.files = dict(case.files)
    before = snapshot(ws.parent)
    rc, out, err = run_cli(["download", SLUG, "--data-dir", case.data_dir, "--files", *case.files, *case.flags], capfd)
    line = error_line(rc, err)
    for text in case.expect:
        assert text in line, f"{text!r} not in {line!r}"
    assert out == ""
    assert len(line) < 1000
    assert snapshot(ws.parent) == before  # nothing left behind, nothing changed, not even an empty folder
    assert bool(fake.calls) == case.calls


def test_the_flags_raise_the_bounds(ws: Path, fake, capfd, caplog):
    """The same zip bomb passes with --max-expansion above its ratio, and says so before writing."""
    caplog.set_level(logging.INFO, logger="kaggle_planet")
    fake.files = {"bomb.zip": zip_bytes({"zeros.bin": ZEROS})}
    rc, out, err = run_cli(["download", SLUG, "--data-dir", "data", "--files", "bomb.zip", "--max-expansion", "5000"], capfd)
    assert rc == 0, err
    assert out.splitlines() == [f"ready: {Path('data') / 'zeros.bin'}"]
    assert (ws / "data" / "zeros.bin").stat().st_size == len(ZEROS)
    planned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("extracting ")]
    assert len(planned) == 1 and "bomb.zip: 1 members, 20.0 MB" in planned[0] and "5000:1" in planned[0]


def test_a_nested_planet_style_download_still_unpacks(ws: Path, fake, capfd):
    """The all-or-nothing staging keeps what worked: a zip of a .tar.7z and a zipped CSV, each replaced by its files."""
    images = sevenz_bytes({"train-jpg.tar": tar_bytes({"train-jpg/train_0.jpg": b"\xff\xd8jpg\xff\xd9"})})
    fake.files = {"all.zip": zip_bytes({"train-jpg.tar.7z": images, "train_v2.csv.zip": zip_bytes({"train_v2.csv": b"image_name,tags\nnew,haze\n"})})}
    rc, _, err = run_cli(["download", SLUG, "--data-dir", "data", "--files", "all.zip"], capfd)
    assert rc == 0, err
    files = {k: v for k, v in snapshot(ws / "data").items() if not k.startswith(".kaggle-planet") and v != "dir"}
    assert sorted(files) == ["existing.txt", "train-jpg/train_0.jpg", "train_v2.csv"]
    assert (ws / "data" / "train_v2.csv").read_bytes() == b"image_name,tags\nnew,haze\n"


# ------------------------------------------------------------------- archives: the second barrier


BOMBS = {
    "x.zip": lambda: zip_bytes({"zeros.bin": ZEROS}),
    "x.tar.gz": lambda: tar_bytes({"zeros.bin": ZEROS}, "w:gz"),
    "x.7z": lambda: sevenz_bytes({"zeros.bin": ZEROS}),
    "x.tar.7z": lambda: sevenz_bytes({"x.tar": tar_bytes({"zeros.bin": ZEROS})}),
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_writing_is_bounded_even_when_the_declared_sizes_pass(tmp_path, monkeypatch, name):
    """Declared sizes can lie: with the check of the declared sizes switched off, the bytes really written
    are still counted and the extraction stops at the bound, leaving nothing."""
    monkeypatch.setattr(archives._Budget, "plan", lambda self, *a: None)
    archive = tmp_path / name
    archive.write_bytes(BOMBS[name]())
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "existing.txt").write_bytes(b"keep")
    with pytest.raises(KagglePlanetError, match=r"stopped at member .* more than the limit of 100:1") as err:
        archives.unpack(archive, dest, limits=archives.Limits(max_ratio=100))
    assert name in str(err.value)
    assert snapshot(dest) == {"existing.txt": hashlib.sha256(b"keep").hexdigest()}


def test_archive_larger_than_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 1000})())
    archive = tmp_path / "x.zip"
    archive.write_bytes(zip_bytes({"a.bin": bytes(5000)}))
    dest = tmp_path / "dest"
    with pytest.raises(KagglePlanetError, match=r"x.zip: refusing to extract: it needs 5.0 kB and .* has 1.0 kB free"):
        archives.unpack(archive, dest)
    assert not [p for p in dest.rglob("*")]


def test_inner_archive_refused_at_depth_three_leaves_dest_as_it_was(tmp_path):
    deep = zip_bytes({"l1.txt": b"1", "l2.zip": zip_bytes({"l2.txt": b"2", "l3.tar": tar_bytes({"l3.txt": b"3", "../out.txt": b"x"})})})
    archive = tmp_path / "all.zip"
    archive.write_bytes(deep)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "l1.txt").write_bytes(b"old")
    with pytest.raises(KagglePlanetError, match=r"all.zip: l2.zip: l3.tar: refusing member '../out.txt'"):
        archives.unpack(archive, dest)
    assert snapshot(dest) == {"l1.txt": hashlib.sha256(b"old").hexdigest()}
    assert not (tmp_path / "out.txt").exists()


# --------------------------------------------------------------------------- secrets (class 4)


@dataclass
class Leak:
    id: str
    argv: list[str]
    echo: set[str]
    expect: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


SUBMISSION = "sub.csv"
LEAKS = [
    Leak("download-file", ["download", SLUG, "-d", "data", "--files", "a.csv"], {"DownloadDataFile"},
         ("kaggle: download a.csv of some-competition: HTTP 500", "internal error handling POST")),
    Leak("download-blob", ["download", SLUG, "-d", "data", "--files", "a.csv"], {"blob"},
         ("kaggle: download a.csv of some-competition: HTTP 500", "internal error handling GET /blobs/")),
    Leak("download-all", ["download", SLUG, "-d", "data", "--all"], {"DownloadDataFiles"}, ("download all files of some-competition: HTTP 500",)),
    Leak("list-files", ["download", SLUG, "-d", "data", "--files", "a.csv"], {"ListDataFiles"}, ("list the files of some-competition: HTTP 500",)),
    Leak("submit-start", ["submit", SUBMISSION, "-c", SLUG, "-m", "x"], {"StartSubmissionUpload"}, ("kaggle: submit sub.csv to some-competition: HTTP 500",)),
    Leak("submit-create", ["submit", SUBMISSION, "-c", SLUG, "-m", "x"], {"CreateSubmission"}, ("submit sub.csv to some-competition: HTTP 500",)),
    Leak("submit-upload", ["submit", SUBMISSION, "-c", SLUG, "-m", "x"], {"upload"}, ("submit sub.csv to some-competition: the upload failed",)),
    Leak("scores", ["scores", "-c", SLUG], {"ListSubmissions"}, ("kaggle: list submissions to some-competition: HTTP 500",)),
    Leak("scores-with-a-token", ["scores", "-c", SLUG], {"ListSubmissions"}, ("list submissions to some-competition: HTTP 500",),
         env={"KAGGLE_API_TOKEN": "KGAT_0123456789abcdef0123456789"}),
    Leak("scores-bad-request", ["scores", "-c", SLUG], {"ListSubmissions"}, ("list submissions to some-competition: HTTP 400",),
         env={"status": "400"}),
]


def shown(seen: str, secrets: dict[str, str]) -> list[str]:
    """The secrets of which ``seen`` holds any 12 characters in a row (a cut-off base64 still tells)."""
    return [name for name, secret in secrets.items()
            if any(secret[i : i + 12] in seen for i in range(max(1, len(secret) - 11)))]


def forbidden_texts(env: dict[str, str]) -> dict[str, str]:
    texts = secret_forms()
    if "KAGGLE_API_TOKEN" in env:
        token = env["KAGGLE_API_TOKEN"]
        texts |= {"token": token, "Bearer value": f"Bearer {token}", "base64(token)": base64.b64encode(token.encode()).decode().rstrip("=")}
    return texts


@pytest.mark.parametrize("leak", LEAKS, ids=[c.id for c in LEAKS])
def test_server_echoing_the_request_shows_no_secret(leak: Leak, ws: Path, fake, capfd, caplog, monkeypatch):
    """The server's error repeats the request, Authorization header included: the error line still says what
    failed, and no form of the key or token reaches stdout, stderr or a log record."""
    caplog.set_level(logging.DEBUG)
    token = leak.env.get("KAGGLE_API_TOKEN")
    if token:
        monkeypatch.delenv("KAGGLE_USERNAME")
        monkeypatch.delenv("KAGGLE_KEY")
        monkeypatch.setenv("KAGGLE_API_TOKEN", token)
        fake.token = token
    fake.echo_status = int(leak.env.get("status", 500))
    fake.files = {"a.csv": b"a,b\n"}
    fake.echo = set(leak.echo)
    (ws / SUBMISSION).write_text("id,label\n1,0\n")
    before = snapshot(ws.parent)
    rc, out, err = run_cli(leak.argv, capfd)
    line = error_line(rc, err)
    for text in leak.expect:
        assert text in line, f"{text!r} not in {line!r}"
    seen = "\n".join([out, err, caplog.text, *(r.getMessage() for r in caplog.records)])
    assert shown(seen, forbidden_texts(leak.env)) == []
    assert fake.auth_seen and all(a.startswith(("Basic ", "Bearer ")) for a in fake.auth_seen)  # the echo did carry them
    assert snapshot(ws.parent) == before


def test_submission_texts_from_the_server_are_scrubbed(fake, capfd):
    """What ``scores`` prints of the server's own words (descriptions, error messages) is scrubbed too."""
    basic = secret_forms()["base64(user:key)"]
    fake.submissions = [{"ref": 1, "fileName": "a.csv", "date": "2026-11-18T08:00:00Z", "status": "ERROR",
                         "description": f"key {KEY}", "errorDescription": f"bad: {basic}"}]
    rc, out, err = run_cli(["scores", "-c", SLUG], capfd)
    assert rc == 0, err
    assert "bad: ***" in out and "key ***" in out and "ERROR" in out
    assert shown(out + err, secret_forms()) == []


def test_every_log_record_and_the_clients_stderr_are_scrubbed(fake, caplog, capfd):
    """After sign-in, a record of any logger (a library's, a child of ours) and whatever the client prints to
    stderr lose the key, base64(user:key) and Authorization values."""
    caplog.set_level(logging.DEBUG)
    kaggle_api.authenticated_api()
    basic = secret_forms()["base64(user:key)"]
    logging.getLogger("urllib3.connectionpool").debug("sent Authorization: Basic %s", basic)
    logging.getLogger("kaggle_planet.kaggle.client.sub").warning("key was %s", KEY)
    try:
        raise ValueError(f"server said {KEY}")
    except ValueError:
        logging.getLogger("kagglesdk").exception("failed")
    capfd.readouterr()
    with kaggle_api._captured_stdout():
        print(f"Request failed: 500 for {basic}. Will retry", file=sys.stderr)
        print(f"printed {KEY}")
    out, err = capfd.readouterr()
    assert "Request failed: 500" in err
    assert shown(f"{out}\n{err}\n{caplog.text}", secret_forms()) == []
    assert "server said ***" in caplog.text


def test_kaggle_json_key_is_scrubbed_too(fake, ws, capfd, monkeypatch):
    """Credentials from kaggle.json (not the environment) are registered before the first request."""
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = ws.parent / "home" / ".kaggle"
    config.mkdir(parents=True, exist_ok=True)
    (config / "kaggle.json").write_text(f'{{"username": "{USER}", "key": "{KEY}"}}')
    (config / "kaggle.json").chmod(0o600)
    fake.echo = {"ListSubmissions"}
    rc, out, err = run_cli(["scores", "-c", SLUG], capfd)
    assert "HTTP 500" in error_line(rc, err)
    assert shown(out + err, secret_forms()) == []


# ------------------------------------------------------------------ output paths first (class 5)


@pytest.fixture
def submission_file(ws: Path) -> Path:
    path = ws / SUBMISSION
    path.write_text("id,label\n1,0\n")
    return path


LOG_CASES = {
    "log-is-a-folder": (lambda ws: (ws / "logdir").mkdir(), "logdir", "the submissions log is a folder"),
    "log-under-a-file": (lambda ws: (ws / "plain").write_text("x"), "plain/log.csv", "plain is a file, not a folder"),
    "log-dangling-link": (lambda ws: (ws / "gone.csv").symlink_to(ws / "nowhere.csv"), "gone.csv", "dangling symbolic link"),
    "log-not-a-log": (lambda ws: (ws / "log.csv").write_text("a,b\n1,2\n"), "log.csv", "missing column"),
}


@pytest.mark.parametrize("case", list(LOG_CASES))
def test_submit_checks_the_log_before_uploading(case, ws: Path, fake, submission_file):
    setup, log, expect = LOG_CASES[case]
    setup(ws)
    before = snapshot(ws.parent)
    with pytest.raises(KagglePlanetError) as err:
        kaggle_api.submit(submission_file, SLUG, "x", log_path=log)
    assert log in str(err.value) and expect in str(err.value) and "\n" not in str(err.value)
    assert fake.calls == [] and fake.uploads == {}  # nothing sent: not even the sign-in
    assert snapshot(ws.parent) == before


def test_submit_command_with_a_folder_as_log_uploads_nothing(ws: Path, fake, submission_file, capfd):
    (ws / "logdir").mkdir()
    before = snapshot(ws.parent)
    rc, _, err = run_cli(["submit", SUBMISSION, "-c", SLUG, "-m", "x", "--log", "logdir"], capfd)
    assert "logdir: the submissions log is a folder" in error_line(rc, err)
    assert fake.uploads == {} and fake.bodies("CreateSubmission") == []
    assert snapshot(ws.parent) == before
