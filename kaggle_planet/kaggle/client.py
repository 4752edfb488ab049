"""Competition data and submissions through the official ``kaggle`` client (2.2.x with ``kagglesdk``).

``download`` fetches competition files and extracts them (see :mod:`kaggle_planet.kaggle.archives`) into the
layout ``kaggle-planet check`` reads; ``submit`` validates then submits a file; ``list_submissions``
reads past submissions with their scores as numbers.

The client's traps, and what this module does about each (shared/KAGGLE_CLIENT.md):

- ``import kaggle`` authenticates at import time and prints help text to stdout when it finds no
  credentials: the import runs with stdout captured and its text goes to the debug log.
- ``authenticate()`` without credentials raises ``SystemExit(1)``: turned into one
  :class:`KagglePlanetError` line saying how to provide credentials.
- ``competition_submit`` does not raise when the upload fails; it returns
  ``COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE``: raised as an error here.
- HTTP errors (403 when the competition rules were not accepted) become one line each.
- The client sets no timeouts on its API calls: every API session gets ``HTTP_TIMEOUT``. The
  submission upload (a PUT on the client's own private session) and the client's own download
  retries (300 s) are out of reach and keep the client's behaviour.
- Keys and tokens never appear in our errors, logs or output: the credentials in use are registered with
  :func:`kaggle_planet.core.errors.add_secret` before the first request, and every text that can carry client
  or server words is scrubbed (:func:`scrub`: the key, ``base64(user:key)`` as HTTP Basic sends it, tokens,
  ``Authorization`` header values): error lines (every :class:`KagglePlanetError` scrubs its message), every log
  record of the process (:func:`kaggle_planet.core.errors.scrub_log_records`), what the client prints to stdout
  (sent to the debug log) and stderr (passed through), and the server's texts in the submissions table.

State kept in the data folder: ``<data_dir>/.kaggle-planet/done/<file>.json`` marks a competition
file as extracted (so a second ``download`` skips it); downloads land in
``<data_dir>/.kaggle-planet/downloads/`` and are removed once extracted or when a step fails.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import KagglePlanetError, add_secret, scrub, scrub_log_records
from ..data.competitions import COMPETITIONS, get_spec
from ..data.files import path_problem
from . import archives

log = logging.getLogger(__name__)

#: (connect, read) seconds for every Kaggle API request; the read timeout bounds each wait for data,
#: not a whole download.
HTTP_TIMEOUT: tuple[float, float] = (30.0, 300.0)
KAGGLE_WEB = "https://www.kaggle.com"
STATE_DIR = ".kaggle-planet"
PAGE_SIZE = 100  # rows per ListSubmissions / ListDataFiles request
MAX_PAGES = 100

#: What a JPEG pipeline needs, by slug; names match a listed file exactly or without its archive
#: suffix (``train-jpg`` matches ``train-jpg.tar.7z``). Other competitions download everything.
DEFAULT_FILES: dict[str, tuple[str, ...]] = {
    "planet-understanding-the-amazon-from-space": (
        "train_v2.csv", "sample_submission_v2.csv", "train-jpg", "test-jpg", "test-jpg-additional",
    ),
}

CREDENTIALS_HELP = (
    "kaggle: no credentials found; provide one of: kaggle.json (Kaggle > Settings > API > Create New Token) "
    "in ~/.kaggle/ or in the folder named by KAGGLE_CONFIG_DIR; the environment variables KAGGLE_USERNAME "
    "and KAGGLE_KEY; or an access token in KAGGLE_API_TOKEN or ~/.kaggle/access_token"
)

_SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


# ------------------------------------------------------------------------------------ names


def resolve_slug(competition: str) -> str:
    """``planet`` / ``invasive`` -> their Kaggle slugs; any other name is taken as a slug."""
    slug = get_spec(competition).slug if competition in COMPETITIONS else competition
    slug = slug or competition
    if not _SLUG_RE.fullmatch(slug or ""):
        raise KagglePlanetError(
            f"competition {competition!r}: not a Kaggle competition slug (letters, digits and '-', "
            f"as in kaggle.com/competitions/<slug>); shortcuts: planet, invasive"
        )
    return slug


def rules_url(slug: str) -> str:
    return f"{KAGGLE_WEB}/competitions/{slug}/rules"


def _spec_name(competition: str, slug: str) -> str:
    """The competition spec that validates submissions for ``competition`` (a name or a slug)."""
    if competition in COMPETITIONS:
        return competition
    for name, spec in COMPETITIONS.items():
        if spec.slug == slug:
            return name
    raise KagglePlanetError(
        f"submit: cannot validate a submission for {slug!r} (known: "
        f"{', '.join(n for n, s in COMPETITIONS.items() if s.slug)}); leave out --data-dir to submit without checking"
    )


# ---------------------------------------------------------------------------- the client


def _remember_credentials(config_dir: str, config: str, values: dict | None = None) -> None:
    """Register every key and token the client may send (environment, kaggle.json, access_token file, the
    client's own config values) so that no message or log record shows them, in any encoding; and from
    now on scrub every log record."""
    scrub_log_records()
    user = os.environ.get("KAGGLE_USERNAME")
    add_secret(os.environ.get("KAGGLE_KEY"), user)
    add_secret(os.environ.get("KAGGLE_API_TOKEN"))
    token_file = os.path.join(config_dir, "access_token")
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if os.path.isfile(token_file) and os.path.getsize(token_file) < 65536:
            add_secret(Path(token_file).read_text().strip())
    if os.path.isfile(config) and kaggle_json_problem(config) is None:
        data = json.loads(Path(config).read_bytes().decode("utf-8-sig"))
        add_secret(data["key"], data["username"])
    values = values or {}
    for name in ("key", "token", "api_token", "access_token"):
        add_secret(values.get(name) if isinstance(values.get(name), str) else None, values.get("username"))


class _ScrubbedStream(io.TextIOBase):
    """A text stream passing writes on to ``stream`` with secrets masked (the client prints its retries'
    errors to stderr); a terminal stays a terminal for progress bars."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(scrub(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def _quiet() -> bool:
    """The client's own tqdm bars (bytes down/up) only on a terminal, like ours in archives.py."""
    return not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def _log_client_output(text: str) -> None:
    for line in scrub(text).splitlines():
        if line.strip():
            (log.warning if line.lstrip().lower().startswith("warning") else log.debug)("kaggle client: %s", line)


@contextlib.contextmanager
def _captured_stdout() -> Iterator[None]:
    """Run client code with its prints sent to our log instead of our stdout, and its stderr (tqdm bars,
    retry messages) scrubbed of secrets."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(_ScrubbedStream(sys.stderr)):
            yield
    finally:
        _log_client_output(buf.getvalue())


@functools.lru_cache(maxsize=1)
def _api_class() -> type:
    """``KaggleApi`` with timeouts on its API sessions; imports the client quietly (once)."""
    try:
        with _captured_stdout():
            from kaggle.api import kaggle_api_extended as ext  # authenticates and may print at import
        from requests.adapters import HTTPAdapter
    except ImportError as exc:
        raise KagglePlanetError(
            f"the kaggle client could not be imported ({exc}); install it with: pip install 'kaggle>=2.2,<2.3' six"
        ) from None

    class TimeoutAdapter(HTTPAdapter):
        def send(self, request, timeout=None, **kwargs):  # type: ignore[override]
            return super().send(request, timeout=HTTP_TIMEOUT if timeout is None else timeout, **kwargs)

    class KaggleApiWithTimeouts(ext.KaggleApi):
        def build_kaggle_client(self):  # type: ignore[override]
            client = super().build_kaggle_client()
            http = client.http_client()
            # kagglesdk has no timeout setting; its session is private, so mount on it if it is there
            http._init_session()
            session = getattr(http, "_session", None)
            if session is not None:
                adapter = TimeoutAdapter()
                session.mount("http://", adapter)
                session.mount("https://", adapter)
            return client

    return KaggleApiWithTimeouts


def _config_location() -> tuple[str, str]:
    """The client's config folder and kaggle.json, computed now (the client fixes them at import)."""
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR") or ""
    if not config_dir:
        home = os.path.expanduser("~")
        config_dir = os.path.join(home, ".kaggle")
        if sys.platform.startswith("linux") and not os.path.exists(config_dir):
            config_dir = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "kaggle")
    return config_dir, os.path.join(config_dir, "kaggle.json")


KAGGLE_JSON_FIELDS = ("username", "key")


def kaggle_json_problem(path: str | Path) -> str | None:
    """What is wrong with a kaggle.json (None: nothing), worded without any of the file's values.

    The client ignores a file it cannot parse (and fails on some that parse), which leaves the user with
    "no credentials found" while the file is right there; this names the file's actual problem.
    """
    path = Path(path)
    if path.is_dir():
        return "is a folder; expected the kaggle.json file"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "is not UTF-8 text; expected the JSON file Kaggle > Settings > API > Create New Token downloads"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # the message names the position, never the content
        return f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(type(data), "null")
        return f'holds {kind}, expected a JSON object {{"username": ..., "key": ...}}'
    for name in KAGGLE_JSON_FIELDS:
        if name not in data:
            return f"has no field {name!r}; expected an object with fields {', '.join(KAGGLE_JSON_FIELDS)}"
        if not isinstance(data[name], str) or not data[name].strip():
            return f"field {name!r} is not a non-empty string"
    return None


def _check_kaggle_json(config_dir: str, config: str) -> None:
    """Refuse a broken kaggle.json the client would read; only warn when other credentials stand in for it
    (KAGGLE_USERNAME + KAGGLE_KEY, or an access token)."""
    if not os.path.lexists(config):
        return
    problem = kaggle_json_problem(config)
    if problem is None:
        return
    others = (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")) or os.environ.get("KAGGLE_API_TOKEN") \
        or os.path.isfile(os.path.join(config_dir, "access_token"))
    if others:
        log.warning("%s %s; using the credentials from the environment or the access token instead", config, problem)
        return
    raise KagglePlanetError(f"{config}: {problem}; fix it or download a new token (Kaggle > Settings > API > Create New Token)")


def authenticated_api() -> Any:
    """An authenticated ``KaggleApi``; raises :class:`KagglePlanetError` when no credentials are found."""
    api = _api_class()()
    api.config_dir, api.config = _config_location()
    _check_kaggle_json(api.config_dir, api.config)
    _remember_credentials(api.config_dir, api.config)
    try:
        with _client_errors("sign in"), _captured_stdout():
            api.authenticate()
    except SystemExit:
        raise KagglePlanetError(CREDENTIALS_HELP) from None
    _remember_credentials(api.config_dir, api.config, getattr(api, "config_values", None))
    return api


def _server_message(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return scrub(text)[:200]


_STATUS_MESSAGES = {
    401: "kaggle: {what}: credentials rejected (HTTP 401); check KAGGLE_USERNAME/KAGGLE_KEY, kaggle.json or the access token",
    403: "kaggle: {what}: access refused (HTTP 403); accept the competition rules at {rules} with the account "
         "whose credentials you use, then retry",
    404: "kaggle: {what}: not found (HTTP 404); check the competition slug (kaggle.com/competitions/<slug>) and file names",
    429: "kaggle: {what}: rate limited (HTTP 429); wait a minute and retry",
}


@contextlib.contextmanager
def _client_errors(what: str, slug: str | None = None) -> Iterator[None]:
    """Turn the client's exceptions into one-line :class:`KagglePlanetError` messages (keys scrubbed)."""
    import requests

    try:
        yield
    except requests.HTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        template = _STATUS_MESSAGES.get(status, "kaggle: {what}: HTTP {status} ({server})")
        raise KagglePlanetError(
            template.format(what=what, status=status, server=_server_message(exc), rules=rules_url(slug or "<slug>"))
        ) from None
    except requests.Timeout:
        raise KagglePlanetError(
            f"kaggle: {what}: timed out after {HTTP_TIMEOUT[1]:g} s without an answer; retry later"
        ) from None
    except requests.RequestException as exc:
        raise KagglePlanetError(
            f"kaggle: {what}: cannot reach the Kaggle API ({type(exc).__name__}); check the network or proxy"
        ) from None
    except ValueError as exc:  # the client's download size check
        raise KagglePlanetError(f"kaggle: {what}: {_server_message(exc)}") from None


# ------------------------------------------------------------------------------- download


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def list_files(slug: str, api: Any | None = None) -> list[str]:
    """Names of the competition's data files as Kaggle lists them."""
    api = api or authenticated_api()
    names: list[str] = []
    token: str | None = None
    with _client_errors(f"list the files of {slug}", slug), _captured_stdout():
        for _ in range(MAX_PAGES):
            response = api.competition_list_files(slug, page_token=token, page_size=PAGE_SIZE)
            names += [f.name for f in response.files]
            token = response.next_page_token
            if not token:
                break
    return names


def _match_files(wanted: Sequence[str], available: Sequence[str], slug: str) -> list[str]:
    """Map each wanted name to a listed file: exact, or equal once archive suffixes are stripped."""
    chosen: list[str] = []
    for want in wanted:
        stem = archives.strip_archive_suffix(want)
        hits = [a for a in available if a == want] or [a for a in available if archives.strip_archive_suffix(a) == stem]
        if not hits:
            listing = ", ".join(available) or "(none)"
            raise KagglePlanetError(f"download: {slug} has no file {want!r}; available: {listing}")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def _marker(data_dir: Path, key: str) -> Path:
    return data_dir / STATE_DIR / "done" / f"{_safe_name(key)}.json"


def _already_there(data_dir: Path, key: str, name: str | None) -> list[Path] | None:
    """Top-level paths a previous download of ``key`` produced, or None when it must run."""
    marker = _marker(data_dir, key)
    if marker.is_file():
        try:
            entries = [data_dir / e for e in json.loads(marker.read_text())["entries"]]
        except (ValueError, KeyError, TypeError):
            entries = []
        if entries and all(p.exists() for p in entries):
            return entries
    if name is not None:
        # extracted before (by hand, or by an older run): train-jpg.tar.7z -> train-jpg/
        target = data_dir / archives.strip_archive_suffix(Path(name).name)
        if target.is_file() or (target.is_dir() and any(target.iterdir())):
            return [target]
    return None


def _install(path: Path, data_dir: Path, limits: archives.Limits | None = None, slug: str = "") -> list[Path]:
    """Put one delivered file into ``data_dir``: archives are extracted (nested ones too), all or nothing;
    messages name it ``<slug>: <file>`` (the download folder it sat in is gone by the time they are read)."""
    if archives.archive_kind(path):
        return archives.unpack(path, data_dir, limits=limits, label=f"{slug}: {path.name}" if slug else None)
    target = data_dir / path.name
    os.replace(path, target)
    return [target]


def _fetch(api: Any, slug: str, data_dir: Path, name: str | None, force: bool, limits: archives.Limits | None = None) -> list[Path]:
    """Download one competition file (``name``) or all of them (None) and extract into ``data_dir``."""
    key = name or f"{slug}.all"
    if not force:
        present = _already_there(data_dir, key, name)
        if present is not None:
            log.info("%s: already in %s; skipping (use --force to download again)", name or "all files", data_dir)
            return present
    work = data_dir / STATE_DIR / "downloads" / _safe_name(key)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    what = f"download {name or 'all files'} of {slug}"
    log.info("downloading %s of %s", name or "all files", slug)
    try:
        with _client_errors(what, slug), _captured_stdout():
            if name is None:
                api.competition_download_files(slug, path=str(work), force=True, quiet=_quiet())
            else:
                api.competition_download_file(slug, name, path=str(work), force=True, quiet=_quiet())
        delivered = sorted(p for p in work.iterdir() if p.is_file() and not p.name.endswith(".kaggle-partial"))
        if not delivered:
            raise KagglePlanetError(f"kaggle: {what}: the client reported success but wrote no file")
        produced: list[Path] = []
        for path in delivered:
            produced += _install(path, data_dir, limits, slug)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a failed download leaves no partial file behind
        _remove_empty(work.parent, data_dir / STATE_DIR)
    top = sorted({data_dir / p.relative_to(data_dir).parts[0] for p in produced})
    marker = _marker(data_dir, key)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"file": name, "slug": slug, "entries": [p.name for p in top]}, indent=1))
    return top


def _remove_empty(*folders: Path) -> None:
    """Remove each folder that is empty, in order (scratch folders a failed step leaves)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def download(
    competition: str,
    data_dir: str | Path,
    files: Sequence[str] | None = None,
    all_files: bool = False,
    force: bool = False,
    limits: archives.Limits | None = None,
) -> list[Path]:
    """Download competition data into ``data_dir`` and extract it; returns the top-level paths provided.

    Which files: ``files`` when given (names as Kaggle lists them, archive suffix optional); else with
    ``all_files`` the download-all zip, every archive inside it extracted (for Planet that includes the
    32 GB of TIF archives); else Planet's JPEG files (``DEFAULT_FILES``), one request per file, or
    everything for other competitions. A file already extracted (marker, or its folder / file present)
    is skipped unless ``force``.

    Each competition file is installed all or nothing (see :func:`archives.unpack`), its archives expanding
    at most as far as ``limits`` allow; when one fails, the files installed before it stay (and are skipped
    by the next run), and folders this call created and left empty are removed.
    """
    slug = resolve_slug(competition)
    data_dir = Path(data_dir)
    if files and all_files:
        raise KagglePlanetError("download: pass either --files or --all, not both")
    limits = limits or archives.Limits()
    problem = path_problem(data_dir, "folder")
    if problem and problem != "not found":  # before any request: a file (or a link loop) where the folder goes
        raise KagglePlanetError(f"{data_dir}: --data-dir {problem}; expected a folder (new or existing) for the competition's files")
    wanted = list(files) if files else (None if all_files else DEFAULT_FILES.get(slug))
    api = authenticated_api()
    created = [p for p in (data_dir, *data_dir.parents) if not p.exists()]  # deepest first
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if wanted is None:
            return _fetch(api, slug, data_dir, None, force, limits)
        paths: list[Path] = []
        for name in _match_files(wanted, list_files(slug, api), slug):
            paths += [p for p in _fetch(api, slug, data_dir, name, force, limits) if p not in paths]
        return paths
    except BaseException:
        _remove_empty(data_dir / STATE_DIR / "downloads", data_dir / STATE_DIR, *created)
        raise


# ------------------------------------------------------------------------------ submission


def check_log_path(log: str | Path) -> None:
    """Refuse a submissions log that could not be appended to after an upload: a folder, a path under a
    file, a dangling link, a file or folder without write permission, or a log that does not read back."""
    from .submission import read_submission_log

    log = Path(log)
    if log.is_dir():
        raise KagglePlanetError(f"{log}: the submissions log is a folder; expected a CSV file path (--log PATH/log.csv); nothing was submitted")
    if os.path.lexists(log) and not log.exists():
        raise KagglePlanetError(f"{log}: the submissions log is a dangling symbolic link or a link loop; nothing was submitted")
    folder = log.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise KagglePlanetError(f"{log}: cannot write the submissions log there: {folder} is a file, not a folder; nothing was submitted")
    if log.exists() and not os.access(log, os.W_OK):
        raise KagglePlanetError(f"{log}: the submissions log is not writable; nothing was submitted")
    if not log.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise KagglePlanetError(f"{log}: cannot create the submissions log: {folder} is not writable; nothing was submitted")
    read_submission_log(log)  # a log that does not parse is refused now, not after the upload


def submit(
    file: str | Path,
    competition: str,
    message: str,
    data_dir: str | Path | None = None,
    options: dict | None = None,
    log_path: str | Path | None = None,
) -> dict:
    """Submit ``file`` to ``competition``; returns ``{"ref": int, "message": str}``.

    With ``data_dir`` the file is first validated against the competition's sample submission
    (:func:`kaggle_planet.kaggle.submission.validate_submission_file`); nothing is uploaded if it fails.
    With ``log_path`` (the submissions log the caller appends to afterwards) that path is checked first
    (:func:`check_log_path`), so an upload never happens when its log row could not be written.
    A failed upload, which the client reports only through its return value, raises.
    """
    file = Path(file)
    if not file.is_file():
        raise KagglePlanetError(f"{file}: submission file not found")
    if not message or not message.strip():
        raise KagglePlanetError("submit: the message (-m) is empty; describe what this submission is")
    if log_path is not None:
        check_log_path(log_path)
    slug = resolve_slug(competition)
    if data_dir is not None:
        from .submission import validate_submission_file

        validate_submission_file(file, _spec_name(competition, slug), Path(data_dir), options)
    api = authenticated_api()
    log.info("submitting %s to %s", file, slug)
    with _client_errors(f"submit {file.name} to {slug}", slug), _captured_stdout():
        result = api.competition_submit(str(file), message, slug, quiet=_quiet())
    if result.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise KagglePlanetError(
            f"kaggle: submit {file.name} to {slug}: the upload failed ({result.message!r}); "
            "nothing was submitted, retry later"
        )
    log.info("kaggle: %s (ref %s)", scrub(result.message), result.ref)
    return {"ref": int(result.ref), "message": scrub(result.message)}


SUBMISSION_COLUMNS = ["ref", "date", "file_name", "description", "status", "public_score", "private_score", "error"]


def _submission_pages(api: Any, slug: str) -> list[Any]:
    """Every submission, following the page tokens (the client's own helper returns one page)."""
    from kagglesdk.competitions.types.competition_api_service import ApiListSubmissionsRequest

    rows: list[Any] = []
    token = ""
    with api.build_kaggle_client() as kaggle:
        for _ in range(MAX_PAGES):
            request = ApiListSubmissionsRequest()
            request.competition_name = slug
            request.page_size = PAGE_SIZE
            request.page_token = token
            response = kaggle.competitions.competition_api_client.list_submissions(request)
            rows += [s for s in response.submissions if s is not None]
            token = response.next_page_token
            if not token:
                break
    return rows


def _score(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else np.nan
    except ValueError:
        return np.nan


def submissions_frame(submissions: Sequence[Any]) -> pd.DataFrame:
    """Client submission objects -> a frame with ``SUBMISSION_COLUMNS`` (scores float, NaN when unscored)."""
    frame = pd.DataFrame(
        {
            "ref": [int(s.ref) for s in submissions],
            "date": pd.to_datetime([s.date for s in submissions], utc=True),
            "file_name": [scrub(s.file_name or "") for s in submissions],
            "description": [scrub(s.description or "") for s in submissions],
            "status": [getattr(s.status, "name", str(s.status)) for s in submissions],
            "public_score": [_score(s.public_score) for s in submissions],
            "private_score": [_score(s.private_score) for s in submissions],
            "error": [scrub(s.error_description or "") for s in submissions],  # the server's words
        },
        columns=SUBMISSION_COLUMNS,
    )
    return frame.astype({"public_score": float, "private_score": float})


def list_submissions(competition: str) -> pd.DataFrame:
    """Past submissions to ``competition``, newest first as Kaggle returns them (see :func:`submissions_frame`)."""
    slug = resolve_slug(competition)
    api = authenticated_api()
    with _client_errors(f"list submissions to {slug}", slug), _captured_stdout():
        rows = _submission_pages(api, slug)
    return submissions_frame(rows)


def format_submissions(frame: pd.DataFrame) -> str:
    """A terminal table of :func:`list_submissions` output; unscored cells show ``-``."""
    if frame.empty:
        return "no submissions yet"

    def score(x: float) -> str:
        return "-" if pd.isna(x) else f"{x:.5f}"

    def clip(text: str, width: int = 40) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    table = pd.DataFrame(
        {
            "ref": frame["ref"].astype(str),
            "date (UTC)": [("-" if pd.isna(d) else d.strftime("%Y-%m-%d %H:%M")) for d in frame["date"]],
            "status": frame["status"],
            "public": frame["public_score"].map(score),
            "private": frame["private_score"].map(score),
            "file": frame["file_name"].map(clip),
            "description": frame["description"].map(clip),
        }
    )
    if frame["error"].astype(bool).any():
        table["error"] = frame["error"].map(lambda e: clip(e, 60))
    return table.to_string(index=False)
