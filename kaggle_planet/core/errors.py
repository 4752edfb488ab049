"""The one exception type the CLI turns into a one-line message, and what keeps every such line safe to show:
secrets scrubbed (:func:`scrub`) and its length bounded (:func:`bounded`).

Secrets: the Kaggle client registers the credentials it uses (:func:`add_secret`); :func:`scrub` then replaces
each of them, and their base64 forms (``base64(user:key)`` as HTTP Basic sends it, ``base64(key)``), with
``***``. Whatever is registered, it also blanks the values of ``Authorization:`` headers, ``Basic`` / ``Bearer``
credentials, ``access_token`` / ``api_key`` style fields and the signatures of signed URLs.
:func:`scrub_record` applies :func:`scrub` to a log record; :func:`scrub_log_records` does so for every record
the process makes, through the log-record factory.
"""
from __future__ import annotations

import base64
import logging
import re
import threading
from urllib.parse import quote

#: At most this many characters in one line of an error message (longer lines keep their start and end).
MAX_LINE = 2000
#: At most this many characters in a whole message (several lines only when torch re-raises a worker's error
#: with its traceback; the last line, the original message, is kept).
MAX_MESSAGE = 20000
_PRECUT = 1_000_000  # longer texts are cut to their ends before scrubbing, so no input makes scrubbing slow

_MASK = "***"
_SECRETS: tuple[str, ...] = ()  # every form of every registered secret, longest first
_LOCK = threading.Lock()

# header and field values that are credentials whoever sent them
_PATTERNS = [
    # Authorization: Basic xxx / "authorization": "Bearer xxx" / Proxy-Authorization=... / cookies
    (re.compile(r"""(?i)\b((?:proxy-)?authorization|x-kaggle-authorization|cookie|set-cookie|x-[a-z]+-token)(["']?\s*[:=]\s*["']?)"""
                r"""((?:basic|bearer|token|digest)\s+)?[^\s"',;}\]]+"""), r"\1\2\3" + _MASK),
    # a credential after its scheme anywhere (a header printed without its name)
    (re.compile(r"\b(Basic|Bearer|BASIC|BEARER)(\s+)(?=[A-Za-z0-9+/=._~-]*[0-9+/=_])[A-Za-z0-9+/=._~-]{12,}"), r"\1\2" + _MASK),
    # token and key fields: JSON, query strings, environment dumps
    (re.compile(r"""(?i)\b((?:access|refresh|id|api|auth|kaggle_api)[_-]?token|api[_-]?key|kaggle_key|client_secret|password"""
                r"""|x-goog-signature|x-amz-signature|signature|sig)(["']?\s*[:=]\s*["']?)[^\s"'&,;}\]]+"""), r"\1\2" + _MASK),
    # a "key" field of a JSON object (kaggle.json's own shape)
    (re.compile(r"""(["']key["']\s*:\s*["'])[^"']+"""), r"\1" + _MASK),
]


def _forms(value: str) -> set[str]:
    """``value`` and the encodings a client or server may print it in (base64 with and without padding,
    URL-safe base64, percent-encoded)."""
    raw = value.encode()
    out = {value, quote(value, safe="")}
    for encoded in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        out |= {encoded, encoded.rstrip("=")}
    return {f for f in out if len(f) >= 6}


def add_secret(value: str | None, username: str | None = None) -> None:
    """Never show ``value`` (a key or token), nor its base64 forms, nor ``base64(username:value)``."""
    if not isinstance(value, str) or len(value.strip()) < 6:
        return  # too short to scrub without mangling ordinary text
    forms = _forms(value)
    if isinstance(username, str) and username:
        forms |= _forms(f"{username}:{value}")
    global _SECRETS
    with _LOCK:
        _SECRETS = tuple(sorted(forms | set(_SECRETS), key=len, reverse=True))  # base64(user:key) before key


def secrets_known() -> bool:
    return bool(_SECRETS)


def _scrub(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(text: str) -> str:
    """``text`` with every registered secret (and its base64 forms) and every credential-looking value
    (``Authorization:`` headers, ``Basic``/``Bearer`` values, ``access_token`` fields, URL signatures) masked."""
    if len(text) <= _PRECUT:
        return _scrub(text)
    # keep the two ends; drop a margin at each inner edge so a secret the cut split leaves no fragment
    keep = _PRECUT // 2
    margin = max([256, *map(len, _SECRETS)])
    head, tail = _scrub(text[:keep])[:-margin], _scrub(text[-keep:])[margin:]
    return f"{head}{_marker(len(text) - 2 * keep + 2 * margin)}{tail}"


def _marker(n: int) -> str:
    return f" ... [{n} characters cut] ... "


def cap(text: str, limit: int = MAX_LINE) -> str:
    """``text`` if it has at most ``limit`` characters, else its first three quarters and its end around a
    marker saying how many characters were cut (at most ``limit`` characters in all)."""
    if len(text) <= limit:
        return text
    n = len(text)
    room = max(0, limit - len(_marker(n)))  # the marker of any cut is no longer than this one
    head = room * 3 // 4
    tail = room - head
    return f"{text[:head]}{_marker(n - head - tail)}{text[n - tail:]}"


def bounded(text: str) -> str:
    """``text`` scrubbed, each line cut to ``MAX_LINE`` characters, the whole to ``MAX_MESSAGE``."""
    text = scrub(text)
    if len(text) <= MAX_LINE:
        return text
    text = "\n".join(cap(line) for line in text.split("\n"))
    return cap(text, MAX_MESSAGE)


class KagglePlanetError(Exception):
    """Bad input or a failed step, worded for the user.

    The message is a single line naming the file, row or key at fault and what was expected;
    `kaggle-planet` prints it as ``error: <message>`` and exits with status 2. It is scrubbed of secrets and
    bounded in length when the error is made (:func:`bounded`), so no input can make a giant error line.
    """

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (bounded(args[0]), *args[1:])
        super().__init__(*args)


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a malformed record: logging reports it itself when it formats
        return record
    clean = scrub(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


_INSTALLED = False


def scrub_log_records() -> None:
    """From now on every log record this process makes, of any logger, is scrubbed when it is made
    (a filter on one logger would miss the records of its children and of other libraries). Idempotent."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        make = logging.getLogRecordFactory()

        def scrubbed_record(*args, **kwargs):
            return scrub_record(make(*args, **kwargs))

        logging.setLogRecordFactory(scrubbed_record)
        _INSTALLED = True
