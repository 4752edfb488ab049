"""When the loader keeps decoded images in RAM: the ``cache`` modes (one table) and the memory rule.

Torch-free so that the config loader can read the table; :class:`kaggle_planet.data.loader.ImageCache` holds
the images themselves.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..core.errors import KagglePlanetError

log = logging.getLogger(__name__)

CACHE_MODES = {
    "auto": "cache when the images fit in a quarter of the available memory and half of /dev/shm",
    "ram": "always cache (refused when /dev/shm cannot hold the images)",
    "none": "decode every image each time it is used",
}
MEMORY_SHARE = 0.25  # of the available memory, shared by the processes of a torchrun job on this host
SHM_SHARE = 0.5  # of /dev/shm's free space (the cache lives in shared memory so that workers share it)


def cache_bytes(n: int, side: int) -> int:
    """Bytes of ``n`` RGB uint8 images of ``side`` x ``side``."""
    return int(n) * int(side) * int(side) * 3


def local_processes() -> int:
    """Processes of this job on this host (torchrun's LOCAL_WORLD_SIZE; 1 when run alone): they share the
    host's memory and cores."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def available_bytes() -> tuple[int, int]:
    """(available memory, free space of /dev/shm) in bytes."""
    avail = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        shm = shutil.disk_usage("/dev/shm").free
    except OSError:
        shm = avail
    return avail, shm


def refusal(mode: str, n: int, side: int, held: int = 0) -> str | None:
    """Why ``n`` images at ``side`` px do not go in RAM under ``mode`` with ``held`` bytes already cached,
    or None when they do. auto: when they fit; ram: always, unless /dev/shm cannot hold them (one-line
    error); none: never."""
    if mode not in CACHE_MODES:
        raise KagglePlanetError(f"cache: {mode!r} is not valid; expected one of {', '.join(CACHE_MODES)}")
    if mode == "none":
        return "cache: none"
    need = cache_bytes(n, side)
    avail, shm = available_bytes()
    local = local_processes()
    if mode == "ram":
        if need + held > shm / local:
            raise KagglePlanetError(
                f"cache: ram: {n} images at {side} px need {need / 1e9:.1f} GB of shared memory and /dev/shm has "
                f"{shm / 1e9:.1f} GB free; use cache: auto or none, a smaller image_size, or a larger /dev/shm"
            )
        return None
    budget = min(MEMORY_SHARE * avail, SHM_SHARE * shm) / local
    if need + held > budget:
        return (f"cache auto: {n} images at {side} px need {need / 1e9:.2f} GB, over the {budget / 1e9:.2f} GB budget "
                f"({100 * MEMORY_SHARE:.0f} % of available memory, {100 * SHM_SHARE:.0f} % of /dev/shm); decoding on each pass")
    return None
