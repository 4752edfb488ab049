"""One trainer per fold folder: a lock file naming its holder (pid, host, start time, command).

Training a fold takes ``<model>/fold<k>/train.lock`` (created with ``O_CREAT | O_EXCL``, so of two
processes exactly one gets it) and removes it when the fold ends, also on an error or Ctrl-C. The lock
is per fold, not per model folder, because separate processes or machines may train different folds of
one model (``train --folds``); two of them on the same fold would overwrite each other's checkpoints.

A second process finding the lock refuses with one line naming the holder, or with ``wait`` polls
until it is gone. A lock whose holder is a dead process on this host (``kill -9``, a crash, a reboot)
is stale: it is taken over with a warning, so a killed run resumes by running the same command again.
A lock from another host cannot be checked from here: the message says to delete it if that machine's
process is gone. Under torchrun only rank 0 takes the lock (the ranks are one job); the others learn
the outcome from it, so that every rank stops together.

Takeover of a stale lock re-reads it just before removing it; two processes taking over the same stale
lock in the same millisecond could still both proceed (the window is the time between that read and
the unlink), which needs a kill -9 and two restarts at once.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .artifacts import command_line
from .errors import KagglePlanetError

log = logging.getLogger(__name__)

LOCK = "train.lock"
POLL_SECONDS = 2.0
# a lock file still empty or half-written after this long belongs to a process that died writing it
_UNREADABLE_GRACE_SECONDS = 2.0


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
    }


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The lock's holder record; None when the file is gone, empty or not (yet) a record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def describe_holder(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} ({holder.get('command')})"


def _stale(path: Path, holder: dict[str, Any] | None) -> str | None:
    """Why the lock at ``path`` may be taken over (None: it is held)."""
    if holder is None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return "gone"
        return "unreadable and old" if age > _UNREADABLE_GRACE_SECONDS else None
    if holder.get("host") != socket.gethostname():
        return None  # another machine's process: cannot be checked from here
    if holder["pid"] == os.getpid():
        return "left by this process"
    return None if pid_alive(holder["pid"]) else f"its process {holder['pid']} is gone"


def held_by_another(path: Path) -> dict[str, Any] | None:
    """The record of the live process (not this one) holding the lock at ``path``; None when free or stale."""
    if not path.exists():
        return None
    holder = _read_holder(path)
    return holder if holder is not None and _stale(path, holder) is None else None


def try_acquire(path: Path) -> dict[str, Any] | None:
    """Take the lock at ``path``: None when taken, else the holder record of whoever has it
    (stale locks are taken over on the way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):  # each pass either takes the lock, returns its holder or removes a stale one
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_holder(path)
            why = _stale(path, holder)
            if why is None:
                if holder is None:  # being written right now
                    time.sleep(0.05)
                    continue
                return holder
            if why != "gone":
                if _read_holder(path) != holder:
                    continue  # changed under us: judge it again
                log.warning("%s: taking over a stale lock (%s; %s)", path, why, describe_holder(holder) if holder else "no holder record")
                path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(_holder_record(), handle)
        return None
    raise KagglePlanetError(f"{path}: could not take the lock (it keeps changing); is another process restarting in a loop?")


def release(path: Path) -> None:
    """Remove the lock if this process holds it (never someone else's)."""
    holder = _read_holder(path)
    if holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def acquire(path: Path, what: str, wait: bool = False, poll: float = POLL_SECONDS) -> None:
    """Take the lock or raise :class:`KagglePlanetError` naming its holder; ``wait``: poll until free."""
    announced = False
    while True:
        holder = try_acquire(path)
        if holder is None:
            return
        if not wait:
            raise KagglePlanetError(
                f"{path}: {what} is being trained by {describe_holder(holder)}; wait for it (--wait), train other folds "
                f"(--folds), or delete {path.name} if that process is gone"
            )
        if not announced:
            log.info("%s: waiting for %s (held by %s)", path, what, describe_holder(holder))
            announced = True
        time.sleep(poll)


@contextmanager
def holding(path: Path, what: str, wait: bool = False) -> Iterator[None]:
    """``with holding(lock_path, "model x fold 0"):`` the lock is held inside the block."""
    acquire(path, what, wait)
    try:
        yield
    finally:
        release(path)
