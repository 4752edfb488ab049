"""Safe extraction of competition archives: zip, 7z, tar, tar.gz and Planet's tar.7z.

Every archive is first listed and checked: a member with an absolute path, a ``..`` component, or a
link pointing outside the target folder stops the extraction with a :class:`KagglePlanetError`
naming the member, before anything is written. Extraction then happens in a hidden temporary folder
inside ``dest`` and is moved into place only when complete, so a failure leaves nothing partial and
nothing is ever written outside ``dest``. Tar members additionally go through tarfile's ``"data"``
filter (no device files, no setuid bits, no links out).
"""
from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

_DRIVE_RE = re.compile(r"^[A-Za-z]:")


# ------------------------------------------------------------------------------- member checks


def _name_problem(name: str) -> str | None:
    """Why an archive member name would escape the target folder, or None when it is safe."""
    posix = name.replace("\\", "/")
    if not posix.strip("/"):
        return "empty name"
    if posix.startswith("/") or _DRIVE_RE.match(posix):
        return "absolute path"
    if ".." in posix.split("/"):
        return "'..' in its path"
    return None


def _escapes(path_in_archive: str) -> bool:
    """True when a normalised archive-relative path leaves the archive root."""
    norm = posixpath.normpath(path_in_archive)
    return norm == ".." or norm.startswith("../") or posixpath.isabs(norm)


def _refuse(archive: Path, member: str, reason: str) -> KagglePlanetError:
    return KagglePlanetError(f"{archive}: refusing member {member!r}: {reason} (it would write outside the target folder)")


def _check_names(archive: Path, names: list[str]) -> None:
    for name in names:
        problem = _name_problem(name)
        if problem:
            raise _refuse(archive, name, problem)


def _tar_link_problem(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        if member.linkname.startswith("/") or _DRIVE_RE.match(member.linkname):
            return f"symbolic link to the absolute path {member.linkname!r}"
        # a symlink's target is relative to the folder holding the link
        if _escapes(posixpath.join(posixpath.dirname(member.name), member.linkname)):
            return f"symbolic link to {member.linkname!r} points outside"
    if member.islnk():
        # a hard link's target is relative to the archive root
        if member.linkname.startswith("/") or _escapes(member.linkname):
            return f"hard link to {member.linkname!r} points outside"
    return None


# --------------------------------------------------------------------------------- extractors


def _progress(items, archive: Path, unit: str = "file"):
    """tqdm over ``items``; silent when stderr is not a terminal (logs, CI)."""
    return tqdm(items, desc=f"extract {archive.name}", unit=unit, disable=None, leave=False)


def _extract_zip(archive: Path, staging: Path, work: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        _check_names(archive, [i.filename for i in infos])
        # zipfile never creates symlinks (a link member becomes a small regular file), so names suffice
        for info in _progress(infos, archive):
            zf.extract(info, staging)


def _extract_7z(archive: Path, staging: Path, work: Path) -> None:
    import py7zr

    with py7zr.SevenZipFile(archive, mode="r") as z:
        members = list(z.files)
        _check_names(archive, [m.filename for m in members])
        for m in members:
            # Kaggle archives hold plain files; refusing every link is simpler than resolving targets
            if m.is_symlink or m.is_junction or m.is_socket:
                raise _refuse(archive, m.filename, "link or special file (not supported in 7z archives)")
        log.info("extracting %s (%d members)", archive.name, len(members))
        z.extractall(path=staging)


def _extract_tar(archive: Path, staging: Path, work: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            problem = _name_problem(m.name) or _tar_link_problem(m)
            if problem:
                raise _refuse(archive, m.name, problem)
        for m in _progress(members, archive):
            try:
                tf.extract(m, staging, filter="data")
            except tarfile.FilterError as exc:  # second barrier: tarfile's own checks
                raise _refuse(archive, m.name, str(exc)) from None


def _extract_tar_7z(archive: Path, staging: Path, work: Path) -> None:
    """7z holding tar file(s): 7z into a scratch folder, then each tar into ``staging``."""
    inner = work / "7z"
    inner.mkdir()
    _extract_7z(archive, inner, work)
    for path in sorted(p for p in inner.rglob("*") if p.is_file() and not p.is_symlink()):
        if archive_kind(path) in (".tar", ".tar.gz", ".tgz"):
            _extract_tar(path, staging, work)
            path.unlink()  # free the space before the next tar
        else:
            target = staging / path.relative_to(inner)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


EXTRACTORS: dict[str, Callable[[Path, Path, Path], None]] = {
    # longest suffix first: archive_kind takes the first match
    ".tar.7z": _extract_tar_7z,
    ".tar.gz": _extract_tar,
    ".tgz": _extract_tar,
    ".tar": _extract_tar,
    ".7z": _extract_7z,
    ".zip": _extract_zip,
}


def archive_kind(path: str | Path) -> str | None:
    """The archive suffix of ``path`` (a key of ``EXTRACTORS``), or None when it is no archive."""
    name = Path(path).name.lower()
    return next((suffix for suffix in EXTRACTORS if name.endswith(suffix)), None)


def strip_archive_suffix(name: str) -> str:
    """``train-jpg.tar.7z`` -> ``train-jpg``, ``train_v2.csv.zip`` -> ``train_v2.csv``."""
    kind = archive_kind(name)
    return name[: len(name) - len(kind)] if kind else name


# --------------------------------------------------------------------------------- public API


def _corrupt_errors() -> tuple[type[BaseException], ...]:
    import py7zr

    return (zipfile.BadZipFile, tarfile.TarError, py7zr.Bad7zFile, EOFError)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _merge_into(src: Path, dst: Path, out: list[Path]) -> None:
    """Move the tree ``src`` into ``dst``: folders are merged, files replace same-named ones."""
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir() and not target.is_symlink():
            _merge_into(entry, target, out)
            continue
        _remove(target)
        os.replace(entry, target)
        if target.is_dir() and not target.is_symlink():
            out.extend(p for p in target.rglob("*") if not p.is_dir() or p.is_symlink())
        else:
            out.append(target)


def extract(archive: str | Path, dest: str | Path) -> list[Path]:
    """Extract ``archive`` (.zip, .7z, .tar, .tar.gz/.tgz, .tar.7z) into ``dest``; returns the files written.

    Folders already in ``dest`` are merged, same-named files replaced. Unsafe members (absolute paths,
    ``..``, links pointing outside ``dest``) raise :class:`KagglePlanetError` naming the member and
    nothing is written; a corrupt archive raises too and leaves ``dest`` as it was.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    if kind is None:
        raise KagglePlanetError(f"{archive}: not a supported archive; expected a name ending in {', '.join(EXTRACTORS)}")
    if not archive.is_file():
        raise KagglePlanetError(f"{archive}: archive not found")
    dest.mkdir(parents=True, exist_ok=True)
    # scratch space inside dest: same filesystem, so the final move is a rename, and a crash leaves
    # only a hidden .extracting-* folder that the next run of extract() never reuses
    work = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest))
    try:
        staging = work / "out"
        staging.mkdir()
        try:
            EXTRACTORS[kind](archive, staging, work)
        except _corrupt_errors() as exc:
            raise KagglePlanetError(f"{archive}: corrupt or unreadable {kind} archive ({exc})") from None
        written: list[Path] = []
        _merge_into(staging, dest, written)
        log.info("extracted %s: %d files into %s", archive.name, len(written), dest)
        return sorted(written)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unpack(archive: str | Path, dest: str | Path, max_depth: int = 3) -> list[Path]:
    """Extract ``archive`` into ``dest``, then every archive it contained (Kaggle's download-all zip
    holds ``train-jpg.tar.7z`` and ``train_v2.csv.zip``), removing each inner archive once extracted.

    Returns the final files (inner archives replaced by their contents).
    """
    files = extract(archive, dest)
    result: list[Path] = []
    for path in files:
        if archive_kind(path) and max_depth > 1 and path.is_file() and not path.is_symlink():
            result.extend(unpack(path, path.parent, max_depth - 1))
            path.unlink()
        else:
            result.append(path)
    return sorted(result)
