"""archives.extract / unpack: every format round-trips, every unsafe member is refused, nothing leaks."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest
from archive_files import tar_bytes

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.kaggle.archives import archive_kind, extract, strip_archive_suffix, unpack

CONTENT = {"folder/a.txt": b"alpha\n", "folder/sub/b.bin": bytes(range(256)), "top.csv": b"id,x\n1,2\n"}


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative posix path -> bytes), hidden scratch folders included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def write_tar(path: Path, members: dict[str, bytes], links: list[tarfile.TarInfo] = (), mode: str = "w") -> Path:
    path.write_bytes(tar_bytes(members, mode, tuple(links)))
    return path


def write_7z(path: Path, members: dict[str, bytes]) -> Path:
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in members.items():
            # _writestr skips py7zr's own name check so that crafted (unsafe) archives can be built
            z._writestr(data, name)
    return path


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.fixture
def dest(tmp_path) -> Path:
    d = tmp_path / "sandbox" / "dest"
    d.mkdir(parents=True)
    (d / "existing.txt").write_bytes(b"keep me")
    return d


def outside_files(tmp_path: Path, dest: Path, archive: Path) -> set[Path]:
    """Files under tmp_path outside dest, other than the archive itself and its sources."""
    return {p for p in tmp_path.rglob("*") if p.is_file() and dest not in p.parents and p != archive}


# ----------------------------------------------------------------------------------- formats


def tar_7z(path: Path, members: dict[str, bytes]) -> Path:
    tar_path = path.with_suffix("")  # x.tar.7z -> x.tar
    write_tar(tar_path, members)
    with py7zr.SevenZipFile(path, "w") as z:
        z.write(tar_path, tar_path.name)
    tar_path.unlink()
    return path


BUILDERS = {
    "x.zip": write_zip,
    "x.7z": write_7z,
    "x.tar": write_tar,
    "x.tar.gz": lambda p, m: write_tar(p, m, mode="w:gz"),
    "x.tar.7z": tar_7z,
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_format_round_trips(tmp_path, dest, name):
    archive = BUILDERS[name](tmp_path / name, CONTENT)
    written = extract(archive, dest)
    assert tree(dest) == {**CONTENT, "existing.txt": b"keep me"}  # no scratch folder left behind
    assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(CONTENT)


def test_extract_merges_folders_and_replaces_files(tmp_path, dest):
    (dest / "folder").mkdir()
    (dest / "folder" / "old.txt").write_bytes(b"old")
    (dest / "top.csv").write_bytes(b"stale")
    extract(write_zip(tmp_path / "x.zip", CONTENT), dest)
    assert tree(dest) == {**CONTENT, "existing.txt": b"keep me", "folder/old.txt": b"old"}


def test_unpack_extracts_nested_archives_and_removes_them(tmp_path, dest):
    inner_tar7z = tar_7z(tmp_path / "train-jpg.tar.7z", {"train-jpg/train_0.jpg": b"jpg0", "train-jpg/train_1.jpg": b"jpg1"})
    inner_zip = write_zip(tmp_path / "train_v2.csv.zip", {"train_v2.csv": b"image_name,tags\n"})
    outer = write_zip(tmp_path / "all.zip", {p.name: p.read_bytes() for p in (inner_tar7z, inner_zip)})
    files = unpack(outer, dest)
    expected = {"train-jpg/train_0.jpg": b"jpg0", "train-jpg/train_1.jpg": b"jpg1", "train_v2.csv": b"image_name,tags\n"}
    assert tree(dest) == {**expected, "existing.txt": b"keep me"}
    assert sorted(p.relative_to(dest).as_posix() for p in files) == sorted(expected)


def test_names_and_kinds():
    assert [archive_kind(n) for n in ("a.tar.7z", "A.ZIP", "b.tar.gz", "c.7z", "d.tar", "e.csv")] == [
        ".tar.7z", ".zip", ".tar.gz", ".7z", ".tar", None]
    assert strip_archive_suffix("train-jpg.tar.7z") == "train-jpg"
    assert strip_archive_suffix("train_v2.csv.zip") == "train_v2.csv"
    assert strip_archive_suffix("train_v2.csv") == "train_v2.csv"


def test_corrupt_archive_is_reported_and_leaves_nothing(tmp_path, dest):
    good = write_zip(tmp_path / "good.zip", CONTENT).read_bytes()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(KagglePlanetError, match="bad.zip"):
        extract(bad, dest)
    assert tree(dest) == {"existing.txt": b"keep me"}


def test_unknown_kind_lists_supported(tmp_path, dest):
    f = tmp_path / "x.rar"
    f.write_bytes(b"rar")
    with pytest.raises(KagglePlanetError, match=r"\.tar\.7z.*\.zip"):
        extract(f, dest)


# ---------------------------------------------------------------------------------- safety

SAFE = {"ok/first.txt": b"first"}

UNSAFE = {
    "zip with ..": ("x.zip", lambda p: write_zip(p, {**SAFE, "../evil.txt": b"x"}), "../evil.txt"),
    "zip nested ..": ("x.zip", lambda p: write_zip(p, {**SAFE, "ok/../../evil.txt": b"x"}), "ok/../../evil.txt"),
    "zip absolute": ("x.zip", lambda p: write_zip(p, {**SAFE, "/tmp/evil.txt": b"x"}), "/tmp/evil.txt"),
    "tar with ..": ("x.tar", lambda p: write_tar(p, {**SAFE, "../evil.txt": b"x"}), "../evil.txt"),
    "tar absolute": ("x.tar", lambda p: write_tar(p, {**SAFE, "/tmp/evil.txt": b"x"}), "/tmp/evil.txt"),
    "tar symlink outward": (
        "x.tar", lambda p: write_tar(p, SAFE, [link("ok/out", "../../outside", tarfile.SYMTYPE)]), "ok/out"),
    "tar symlink absolute": (
        "x.tar", lambda p: write_tar(p, SAFE, [link("ok/etc", "/etc/passwd", tarfile.SYMTYPE)]), "ok/etc"),
    "tar hardlink outward": (
        "x.tar", lambda p: write_tar(p, SAFE, [link("ok/hard", "../outside.txt", tarfile.LNKTYPE)]), "ok/hard"),
    "7z with ..": ("x.7z", lambda p: write_7z(p, {**SAFE, "../evil.txt": b"x"}), "../evil.txt"),
    "7z absolute": ("x.7z", lambda p: write_7z(p, {**SAFE, "/tmp/evil.txt": b"x"}), "/tmp/evil.txt"),
    "tar.7z with ..": ("x.tar.7z", lambda p: tar_7z(p, {**SAFE, "../evil.txt": b"x"}), "../evil.txt"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_member_is_refused_by_name_and_nothing_is_written(tmp_path, dest, case):
    name, build, member = UNSAFE[case]
    archive = build(tmp_path / name)
    before_outside = outside_files(tmp_path, dest, archive)
    absolute_existed = Path("/tmp/evil.txt").exists()
    with pytest.raises(KagglePlanetError) as err:
        extract(archive, dest)
    assert repr(member) in str(err.value)
    assert "\n" not in str(err.value)
    assert tree(dest) == {"existing.txt": b"keep me"}  # not even the safe member, no scratch folder
    assert outside_files(tmp_path, dest, archive) == before_outside
    assert Path("/tmp/evil.txt").exists() == absolute_existed


def test_inward_links_are_allowed(tmp_path, dest):
    archive = write_tar(
        tmp_path / "x.tar", SAFE,
        [link("ok/alias.txt", "first.txt", tarfile.SYMTYPE), link("ok/hard.txt", "ok/first.txt", tarfile.LNKTYPE)],
    )
    extract(archive, dest)
    assert (dest / "ok" / "alias.txt").is_symlink()
    assert (dest / "ok" / "alias.txt").read_bytes() == b"first"
    assert (dest / "ok" / "hard.txt").read_bytes() == b"first"
