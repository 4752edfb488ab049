"""Safe extraction of competition archives: zip, 7z, tar, tar.gz and Planet's tar.7z, nested ones included.

Every archive is first listed and checked: a member with an absolute path, a ``..`` component, or a
link pointing outside the target folder stops the extraction with a :class:`KagglePlanetError`
naming the member, before anything is written. So does an archive whose declared sizes would expand the
download past its :class:`Limits` (a zip bomb): at most ``max_ratio`` times the downloaded bytes (above
``RATIO_FLOOR`` bytes) and at most ``max_bytes``, counting every level of nested archives, and never more than
the free disk space. The same bound is enforced on the bytes really written, as they are written.

Extraction, of the archive and of every archive inside it, happens in a hidden temporary folder inside
``dest`` and is moved into place only when all of it is complete: a refusal or a failure at any depth leaves
nothing behind and ``dest`` as it was, and nothing is ever written outside ``dest``. Tar members
additionally go through tarfile's ``"data"`` filter (no device files, no setuid bits, no links out).
"""
from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------- size limits

#: Bytes of expansion never refused for the ratio alone (a small CSV zip can compress 100:1 and harm nothing).
RATIO_FLOOR = 10**7


@dataclass(frozen=True)
class Limits:
    """How far one download may expand, all its nested archives together.

    ``max_ratio``: extracted bytes per downloaded byte (JPEG and PNG archives are close to 1:1, CSVs about
    10:1; a zip of zeros 1000:1). ``max_bytes``: extracted bytes in all (Planet's everything is about 100 GB,
    its TIFs included). Bytes of inner archives count while they are on disk, the way they take space.
    """

    max_ratio: float = 100.0
    max_bytes: int = 200 * 10**9

    def __post_init__(self) -> None:
        if not (isinstance(self.max_ratio, (int, float)) and math.isfinite(self.max_ratio) and self.max_ratio >= 1):
            raise KagglePlanetError(f"--max-expansion {self.max_ratio!r}: expected a number >= 1 (extracted bytes per downloaded byte)")
        if not (isinstance(self.max_bytes, int) and self.max_bytes > 0):
            raise KagglePlanetError(f"--max-extract-gb: expected a positive number of GB, got {self.max_bytes / 1e9:g}")

    @classmethod
    def from_flags(cls, max_expansion: float | None = None, max_extract_gb: float | None = None) -> Limits:
        """Limits from the ``download`` flags (None: the default)."""
        if max_extract_gb is not None and not (math.isfinite(max_extract_gb) and max_extract_gb > 0):
            raise KagglePlanetError(f"--max-extract-gb {max_extract_gb:g}: expected a positive number of GB")
        return cls(
            max_ratio=cls.max_ratio if max_expansion is None else float(max_expansion),
            max_bytes=cls.max_bytes if max_extract_gb is None else max(1, int(max_extract_gb * 1e9)),
        )


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


class _Budget:
    """The bytes one download has put on disk so far, against its :class:`Limits`."""

    def __init__(self, source: Path, limits: Limits):
        self.limits = limits
        self.source_size = source.stat().st_size
        self.ratio_bound = max(limits.max_ratio * self.source_size, RATIO_FLOOR)
        self.bound = min(limits.max_bytes, self.ratio_bound)
        self.on_disk = 0

    def _over(self, total: float, what: str) -> KagglePlanetError:
        if total > self.limits.max_bytes:
            return KagglePlanetError(
                f"{what} {_size(total)}, more than the limit of {_size(self.limits.max_bytes)}; nothing was extracted "
                f"(if you trust it and have the space, raise --max-extract-gb)")
        return KagglePlanetError(
            f"{what} {_size(total)} from a {_size(self.source_size)} download ({total / max(self.source_size, 1):.0f}:1), "
            f"more than the limit of {self.limits.max_ratio:g}:1 (a zip bomb?); nothing was extracted "
            f"(if you trust it, raise --max-expansion)")

    def plan(self, label: str, declared: int, members: int, target: Path) -> None:
        """Before writing: refuse when the declared sizes would pass the bound or the free space; else say so."""
        total = self.on_disk + declared
        if total > self.bound:
            raise self._over(total, f"{label}: refusing to extract: by its declared sizes the download would expand to")
        free = shutil.disk_usage(target).free
        if declared > free:
            raise KagglePlanetError(
                f"{label}: refusing to extract: it needs {_size(declared)} and {target.anchor or target} has {_size(free)} free; "
                "free some space or use another --data-dir (nothing was extracted)")
        log.info("extracting %s: %d members, %s (this download may expand to %s: %g:1 of its %s, at most %s; "
                 "--max-expansion / --max-extract-gb)", label, members, _size(declared), _size(self.bound),
                 self.limits.max_ratio, _size(self.source_size), _size(self.limits.max_bytes))

    def charge(self, label: str, member: str, n: int) -> None:
        """While writing: count ``n`` more bytes; refuse once past the bound (declared sizes can lie)."""
        self.on_disk += n
        if self.on_disk > self.bound:
            raise self._over(self.on_disk, f"{label}: stopped at member {member!r}: writing it expanded the download past")

    def remaining(self) -> int:
        return max(0, int(self.bound - self.on_disk))

    def refund(self, n: int) -> None:
        self.on_disk -= n


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


def _refuse(label: str, member: str, reason: str) -> KagglePlanetError:
    return KagglePlanetError(f"{label}: refusing member {member!r}: {reason} (it would write outside the target folder); nothing was extracted")


def _check_names(label: str, names: list[str]) -> None:
    for name in names:
        problem = _name_problem(name)
        if problem:
            raise _refuse(label, name, problem)


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

# what a zip member may be compressed with: zipfile decompresses bzip2 without an output bound (a few kB
# of input can take gigabytes of memory), and deflate64 or others it cannot read at all
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_LZMA: "lzma"}


@dataclass
class _Job:
    """One archive being extracted: where it is, what to call it in messages, where its files go."""

    archive: Path
    label: str  # the download's path, then ": inner/path" for archives inside it
    staging: Path
    work: Path
    budget: _Budget


def _progress(items, job: _Job, unit: str = "file"):
    """tqdm over ``items``; silent when stderr is not a terminal (logs, CI)."""
    return tqdm(items, desc=f"extract {job.archive.name}", unit=unit, disable=None, leave=False)


def _extract_zip(job: _Job) -> None:
    with zipfile.ZipFile(job.archive) as zf:
        infos = zf.infolist()
        _check_names(job.label, [i.filename for i in infos])
        for info in infos:
            if info.flag_bits & 0x1:
                raise KagglePlanetError(f"{job.label}: member {info.filename!r} is encrypted; expected an archive without a password")
            if info.compress_type not in _ZIP_METHODS:
                raise KagglePlanetError(
                    f"{job.label}: member {info.filename!r} uses zip compression method {info.compress_type}, which is not "
                    f"supported; expected {', '.join(_ZIP_METHODS.values())} (re-pack it, e.g. with zip or 7z)")
        job.budget.plan(job.label, sum(i.file_size for i in infos if not i.is_dir()), len(infos), job.staging)
        # zipfile never creates symlinks (a link member becomes a small regular file), so names suffice
        for info in _progress(infos, job):
            target = job.staging.joinpath(*info.filename.split("/"))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    job.budget.charge(job.label, info.filename, len(chunk))
                    dst.write(chunk)


def _7z_size(member) -> int:
    try:
        return 0 if member.is_directory else int(member.uncompressed or 0)
    except (KeyError, TypeError, ValueError):
        return 0


def _extract_7z(job: _Job) -> None:
    import py7zr

    with py7zr.SevenZipFile(job.archive, mode="r") as z:
        members = list(z.files)
        _check_names(job.label, [m.filename for m in members])
        for m in members:
            # Kaggle archives hold plain files; refusing every link is simpler than resolving targets
            if m.is_symlink or m.is_junction or m.is_socket:
                raise _refuse(job.label, m.filename, "link or special file (not supported in 7z archives)")
        declared = sum(_7z_size(m) for m in members)
        job.budget.plan(job.label, declared, len(members), job.staging)
    # py7zr writes at most the declared size of each member; its own bound catches any other excess
    with py7zr.SevenZipFile(job.archive, mode="r", max_extract_size=job.budget.remaining()) as z:
        try:
            z.extractall(path=job.staging)
        except py7zr.DecompressionBombError:
            job.budget.charge(job.label, "(7z stream)", job.budget.remaining() + 1)
    job.budget.charge(job.label, "(7z stream)", declared)


def _extract_tar(job: _Job) -> None:
    with tarfile.open(job.archive) as tf:
        members: list[tarfile.TarInfo] = []
        declared = 0
        for m in tf:  # headers one by one: a compressed bomb is refused before it is read through
            problem = _name_problem(m.name) or _tar_link_problem(m)
            if problem:
                raise _refuse(job.label, m.name, problem)
            members.append(m)
            declared += m.size if m.isreg() else 0
            if job.budget.on_disk + declared > job.budget.bound:
                break  # plan() says so
        job.budget.plan(job.label, declared, len(members), job.staging)
        for m in _progress(members, job):
            if m.isreg():  # tarfile writes exactly the header's size (sparse members: their full size, at most)
                job.budget.charge(job.label, m.name, m.size)
            try:
                tf.extract(m, job.staging, filter="data")
            except tarfile.FilterError as exc:  # second barrier: tarfile's own checks
                raise _refuse(job.label, m.name, str(exc)) from None


def _extract_tar_7z(job: _Job) -> None:
    """7z holding tar file(s): 7z into a scratch folder, then each tar into ``staging``."""
    inner = job.work / "7z"
    inner.mkdir()
    _extract_7z(_Job(job.archive, job.label, inner, job.work, job.budget))
    for path in sorted(p for p in inner.rglob("*") if p.is_file() and not p.is_symlink()):
        if archive_kind(path) in (".tar", ".tar.gz", ".tgz"):
            label = f"{job.label}: {path.relative_to(inner).as_posix()}"
            _extract_tar(_Job(path, label, job.staging, job.work, job.budget))
            job.budget.refund(path.stat().st_size)
            path.unlink()  # free the space before the next tar
        else:
            target = job.staging / path.relative_to(inner)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


EXTRACTORS: dict[str, Callable[[_Job], None]] = {
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

    return (zipfile.BadZipFile, tarfile.TarError, py7zr.exceptions.ArchiveError, py7zr.exceptions.PasswordRequired,
            py7zr.exceptions.AbsolutePathError, EOFError)


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


def _unpack_level(archive: Path, label: str, into: Path, work: Path, budget: _Budget, depth: int, remove: bool) -> None:
    """Extract ``archive`` into the staged folder ``into``, then (``depth`` > 1) every archive it held,
    each removed once extracted (``remove``: ``archive`` itself, an inner archive, too)."""
    kind = archive_kind(archive)
    level = Path(tempfile.mkdtemp(prefix="level-", dir=work))
    out = level / "out"
    out.mkdir()
    try:
        EXTRACTORS[kind](_Job(archive, label, out, level, budget))
    except _corrupt_errors() as exc:
        raise KagglePlanetError(f"{label}: corrupt or unreadable {kind} archive ({exc}); nothing was extracted") from None
    except OSError as exc:
        raise KagglePlanetError(f"{label}: cannot extract it ({exc.strerror or exc}); nothing was extracted") from None
    if remove:
        budget.refund(archive.stat().st_size)
        archive.unlink()
    written: list[Path] = []
    _merge_into(out, into, written)
    shutil.rmtree(level, ignore_errors=True)
    if depth <= 1:
        return
    for path in sorted(written):
        if archive_kind(path) and path.is_file() and not path.is_symlink():
            inner = f"{label}: {path.relative_to(_staging_root(work)).as_posix()}"
            _unpack_level(path, inner, path.parent, work, budget, depth - 1, remove=True)


def _staging_root(work: Path) -> Path:
    return work / "out"


def _checked(archive: Path) -> str:
    kind = archive_kind(archive)
    if kind is None:
        raise KagglePlanetError(f"{archive}: not a supported archive; expected a name ending in {', '.join(EXTRACTORS)}")
    if not archive.is_file():
        raise KagglePlanetError(f"{archive}: archive not found")
    return kind


def unpack(archive: str | Path, dest: str | Path, max_depth: int = 3, limits: Limits | None = None, label: str | None = None) -> list[Path]:
    """Extract ``archive`` (.zip, .7z, .tar, .tar.gz/.tgz, .tar.7z) into ``dest``, then every archive it
    contained down to ``max_depth`` levels (Kaggle's download-all zip holds ``train-jpg.tar.7z`` and
    ``train_v2.csv.zip``), each inner archive replaced by its contents; returns the files written.

    All or nothing: the whole tree is extracted in a hidden folder inside ``dest`` and merged into ``dest``
    (folders merged, same-named files replaced) only once every level succeeded. An unsafe member (absolute
    path, ``..``, a link pointing outside) at any depth, a corrupt archive, or an expansion past ``limits``
    raises :class:`KagglePlanetError` naming the archive (``label``, by default its path; inner archives as
    ``label: inner/path``) and member, and leaves ``dest`` as it was.
    """
    archive, dest = Path(archive), Path(dest)
    _checked(archive)
    label = label or str(archive)
    budget = _Budget(archive, limits or Limits())
    dest.mkdir(parents=True, exist_ok=True)
    # scratch space inside dest: same filesystem, so the final move is a rename, and a crash leaves
    # only a hidden .extracting-* folder that the next run never reuses
    work = Path(tempfile.mkdtemp(prefix=".extracting-", dir=dest))
    try:
        staging = _staging_root(work)
        staging.mkdir()
        _unpack_level(archive, label, staging, work, budget, max_depth, remove=False)
        written: list[Path] = []
        _merge_into(staging, dest, written)
        log.info("extracted %s: %d files into %s", archive.name, len(written), dest)
        return sorted(written)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def extract(archive: str | Path, dest: str | Path, limits: Limits | None = None, label: str | None = None) -> list[Path]:
    """Extract ``archive`` into ``dest`` (archives inside it stay archives); returns the files written.

    The same checks and all-or-nothing guarantee as :func:`unpack`.
    """
    return unpack(archive, dest, max_depth=1, limits=limits, label=label)
