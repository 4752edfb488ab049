"""Is a path what it should be, and is an image file complete: torch-free, without decoding.

``path_problem`` says what a path is instead of a regular file (or folder), worded to follow the path;
``image_file_problem`` recognises the formats OpenCV reads from their first bytes and tells a complete
JPEG/PNG/BMP/WebP from a cut-short one from its last bytes, so a truncated download is named before training.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


def path_problem(path: str | Path, kind: str = "file") -> str | None:
    """None when ``path`` is a ``kind`` ("file": a regular file; "folder") after following links, else
    what it is instead, worded to follow the path: "not found", "is a dangling symbolic link (to x)"..."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if os.path.islink(path):
            if exc.errno == errno.ELOOP:
                return "is a symbolic link loop"
            return f"is a dangling symbolic link (to {os.readlink(path)!r}, which does not exist)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "not found"
        if exc.errno == errno.ELOOP:
            return "lies under a symbolic link loop"
        return f"cannot be read ({exc.strerror})"
    if kind == "folder":
        return None if stat.S_ISDIR(mode) else "is a file, not a folder"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return "is not a regular file (a pipe, socket or device)"
    return None


TRUNCATED = "truncated: the file was cut short ({detail}); re-download or re-extract it"
TAIL_BYTES = 64  # read from the end of each image: the end marker plus any zero padding


def _jpeg_problem(path: str, tail: bytes, size: int) -> str | None:
    # The end-of-image marker ends every complete JPEG; OpenCV decodes a cut-short file without an
    # error (grey below the cut). Padding after it is common; so are trailers (some phones append
    # metadata after the marker): then look for the marker after the first scan starts.
    if tail.rstrip(b"\x00\xff\r\n ").endswith(b"\xff\xd9"):
        return None
    with open(path, "rb") as f:
        data = f.read()
    scan = _jpeg_scan_start(data)
    if scan is not None and data.find(b"\xff\xd9", scan) >= 0:
        return None
    return TRUNCATED.format(detail="no JPEG end-of-image marker FFD9")


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """``(offset, marker)`` of each marker of a JPEG header, walking segment lengths from SOI up to and
    including the start of scan (FFDA); stops early at anything that is not a marker. Walking by lengths
    skips an EXIF thumbnail, which holds markers of its own."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        yield pos, marker
        if marker == 0xDA:
            return
        pos += 2 if (0xD0 <= marker <= 0xD7 or marker == 0x01) else 2 + int.from_bytes(data[pos + 2:pos + 4], "big")


def _jpeg_scan_start(data: bytes) -> int | None:
    """Offset of the first start-of-scan marker (FFDA); None if absent."""
    return next((pos for pos, marker in jpeg_segments(data) if marker == 0xDA), None)


_PNG_END = b"IEND\xaeB`\x82"


def _png_problem(path: str, tail: bytes, size: int) -> str | None:
    if tail.rstrip(b"\x00").endswith(_PNG_END):
        return None
    with open(path, "rb") as f:
        if f.read().rfind(_PNG_END) >= 0:  # data appended after the end chunk
            return None
    return TRUNCATED.format(detail="no PNG IEND chunk")


def _declared_size_problem(offset: int, extra: int, fmt: str) -> Callable[[str, bytes, int, bytes], str | None]:
    """BMP and WebP headers state the file size: a shorter file was cut."""
    def check(path: str, tail: bytes, size: int, head: bytes) -> str | None:
        declared = int.from_bytes(head[offset:offset + 4], "little") + extra
        if declared > size:
            return TRUNCATED.format(detail=f"its {fmt} header says {declared} bytes, the file has {size}")
        return None
    return check


@dataclass(frozen=True)
class ImageFormat:
    """An image file format OpenCV reads: how to recognise its first bytes, and (optionally) how to tell
    a complete file from a cut-short one from its last bytes (+ its head)."""

    name: str
    magic: Callable[[bytes], bool]
    complete: Callable[[str, bytes, int, bytes], str | None] | None = None


IMAGE_FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat("JPEG", lambda h: h[:3] == b"\xff\xd8\xff", lambda p, t, n, h: _jpeg_problem(p, t, n)),
    ImageFormat("PNG", lambda h: h[:8] == b"\x89PNG\r\n\x1a\n", lambda p, t, n, h: _png_problem(p, t, n)),
    ImageFormat("BMP", lambda h: h[:2] == b"BM", _declared_size_problem(2, 0, "BMP")),
    ImageFormat("WebP", lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", _declared_size_problem(4, 8, "WebP")),
    ImageFormat("TIFF", lambda h: h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),
)


def image_file_problem(path: str) -> str | None:
    """Why ``path`` is not a complete image file, or None. Reads the first 16 and last 64 bytes (the
    whole file only for a JPEG/PNG with bytes after its end marker); never decodes."""
    problem = path_problem(path)
    if problem:
        return problem
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
        if size == 0:
            return "empty file"
        fmt = next((f for f in IMAGE_FORMATS if f.magic(head)), None)
        if fmt is None:
            names = ", ".join(f.name for f in IMAGE_FORMATS)
            return f"is not an image file (it starts with {head[:8]!r}; expected {names} content)"
        return fmt.complete(path, tail, size, head) if fmt.complete else None
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
