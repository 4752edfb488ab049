"""Images from disk to batches: a Dataset that decodes with OpenCV and augments with albumentations.

Images are read lazily in DataLoader workers, so memory does not grow with the dataset: the
Dataset holds only numpy arrays of paths and targets (numpy arrays rather than Python lists so
forked workers do not copy the pages by touching reference counts).

Augmentation is reproducible per sample: training datasets reseed their albumentations pipeline
from ``(seed, epoch, index)`` before each image (the sampler hands ``(index, epoch)`` pairs to
``__getitem__``). The draws therefore do not depend on the number of workers, on which worker
gets which batch, or on whether the run was resumed: a resumed epoch sees exactly the augmentations
an uninterrupted run would have seen.

Batches are made whole by the dataset (``__getitems__``: each image written straight into the batch). In
DataLoader workers made by :func:`make_loader` they are written into reusable shared-memory buffers
(:class:`BatchRing`), which the main process copies out of and hands back: fresh shared memory per batch,
as torch's default collate makes it, costs a page fault per 4 kB on its first write.
"""
from __future__ import annotations

import hashlib
import logging
import os
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from ..core.errors import KagglePlanetError
from .cache import cache_bytes, local_processes, refusal

log = logging.getLogger(__name__)

# OpenCV single-threaded, set in the parent before any worker is forked: the parallelism is the
# DataLoader workers (cv2's own threads would oversubscribe the cores), and a cv2 thread pool running
# in the parent when workers fork (e.g. after make-demo-data or check in the same process) deadlocks them.
cv2.setNumThreads(0)

Transform = Callable[..., dict[str, Any]]


# Decoded straight to RGB (libjpeg-turbo writes RGB as cheaply as BGR: no BGR->RGB pass afterwards); a JPEG
# at 1/2, 1/4 or 1/8 scale where that keeps enough pixels, for a fraction of the full decode's cost.
_RGB = cv2.IMREAD_COLOR_RGB
_REDUCED_JPEG = tuple((factor, (flag & ~cv2.IMREAD_COLOR) | _RGB) for factor, flag in (
    (8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)))


# start-of-frame markers (baseline, extended, progressive, lossless...): not DHT (C4), JPG (C8) or DAC (CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame segment, or None when ``data`` is not a JPEG or its
    header is damaged (the full decode then reports it). Walks the header's segments only: a few
    microseconds, against ~40 for PIL's header parse."""
    from .files import jpeg_segments

    if data[:3] != b"\xff\xd8\xff":
        return None
    for pos, marker in jpeg_segments(data):
        if marker in _SOF and pos + 9 <= len(data):
            height, width = int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 7:pos + 9], "big")
            return (width, height) if width and height else None
    return None


def decode_scale(width: int, height: int, min_side: int | None) -> int:
    """The largest JPEG reduction (1, 2, 4 or 8) that keeps both sides at least ``min_side`` pixels."""
    if min_side:
        for factor, _ in _REDUCED_JPEG:
            if -(-min(width, height) // factor) >= min_side:  # libjpeg rounds the scaled size up
                return factor
    return 1


def read_image(path: str | Path, min_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB image; raises KagglePlanetError naming the file when it cannot be decoded.

    min_side: the image is about to be shrunk so that its shorter side is ``min_side``: a JPEG is then
    decoded at the largest 1/2, 1/4 or 1/8 scale that keeps both sides at least ``min_side``.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        data = b""
    flag = _RGB
    size = _jpeg_size(data) if min_side and data else None
    if size is not None:
        factor = decode_scale(*size, min_side)
        flag = next((f for k, f in _REDUCED_JPEG if k == factor), _RGB)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag) if data else None
    if image is None:
        raise KagglePlanetError(f"{path}: cannot read image (missing or not a decodable image file)")
    return image


class ImageCache:
    """Base images (decoded and resized to ``side`` x ``side``) of a fixed set of files, in shared memory.

    Created in the main process before DataLoader workers start, it is shared by every worker of every
    loader (training and validation of every fold, predictions, TTA passes): each image is decoded once
    per process, whichever worker gets it first. Rows are written before their ``filled`` flag.
    """

    def __init__(self, files: Sequence[str], side: int):
        self.side = int(side)
        self.slot_of = {str(f): i for i, f in enumerate(files)}
        self.images = torch.empty((len(self.slot_of), self.side, self.side, 3), dtype=torch.uint8).share_memory_()
        self.filled = torch.zeros(len(self.slot_of), dtype=torch.bool).share_memory_()

    def slots(self, files: Sequence[str]) -> np.ndarray:
        """Row of each file (-1: not in the cache)."""
        return np.fromiter((self.slot_of.get(str(f), -1) for f in files), dtype=np.int64, count=len(files))


_caches: dict[tuple, ImageCache] = {}


def image_cache(files: Sequence[str], side: int | None, mode: str) -> ImageCache | None:
    """The process's shared cache of ``files``' base images at ``side`` (made on first use), or None when
    ``mode`` is none, the pipeline has no fixed base size (a pipeline file), or (auto) it would not fit.
    auto drops the caches made earlier (another size or dataset) when both would not fit."""
    if side is None or mode == "none":
        refusal(mode, 0, 0)  # still refuses an unknown mode
        return None
    files = [str(f) for f in files]
    key = (int(side), hashlib.sha1("\n".join(files).encode()).hexdigest())
    if key in _caches:
        return _caches[key]
    held = sum(cache_bytes(len(c.slot_of), c.side) for c in _caches.values())
    if mode == "auto" and held and refusal(mode, len(files), side, held):
        _caches.clear()
        held = 0
    reason = refusal(mode, len(files), side, held)
    if reason:
        log.info(reason)
        return None
    log.info("cache: %d base images at %d px in RAM (%.2f GB)", len(files), side, cache_bytes(len(files), side) / 1e9)
    _caches[key] = ImageCache(files, side)
    return _caches[key]


_SAMPLE_KEY = struct.Struct("<qqq").pack


def reseed_sample(rng: np.random.Generator, py_random: random.Random, seed: int, epoch: int, index: int) -> None:
    """Put ``rng`` (a PCG64 Generator) and ``py_random`` (shared by every step of a pipeline) in the state for
    one sample of one epoch: a 320-bit BLAKE2b digest of (seed, epoch, index) gives PCG64's 128-bit state and
    128-bit stream increment and Python's seed, so different (seed, epoch, index) draw from unrelated
    streams. A few microseconds (numpy's SeedSequence took ~20)."""
    digest = hashlib.blake2b(_SAMPLE_KEY(seed, epoch, index), digest_size=40).digest()
    rng.bit_generator.state = {"bit_generator": "PCG64", "has_uint32": 0, "uinteger": 0,
                               "state": {"state": int.from_bytes(digest[:16], "little"),
                                         "inc": int.from_bytes(digest[16:32], "little") | 1}}
    py_random.seed(int.from_bytes(digest[32:], "little"))


class RingBatch(NamedTuple):
    """A batch a loader worker wrote into one of its reusable shared-memory buffers (:class:`BatchRing`)."""

    images: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    slot: tuple[int, int]  # (worker id, buffer)


class BatchRing:
    """Reusable shared-memory batch buffers for the workers of one loader (:func:`make_loader`).

    A worker's batch reaches the main process in shared memory, and fresh shared memory costs a page
    fault per 4 kB page on its first write: measured on this project's 2-core machine, ~180 us per
    256 px uint8 image (a third of decoding it), against ~5 us to write into memory faulted in already.
    So each worker keeps ``slots`` buffers and reuses one as soon as the main process has released it:
    ``busy`` (shared, made before the workers start) is set by the worker that fills a buffer and
    cleared by the main process once it holds its own copy of the images, so no buffer is written while
    the main process reads it. With every buffer busy, a worker falls back to fresh shared memory.
    """

    def __init__(self, workers: int, slots: int):
        self.busy = torch.zeros((workers, slots), dtype=torch.uint8).share_memory_()
        self.worker: int | None = None  # set in each worker by make_loader's worker_init_fn
        self.buffers: dict[int, torch.Tensor] = {}  # a worker's own buffers, by slot
        self.off = False  # a worker whose shared memory ran out keeps no buffers

    def batch(self, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, tuple[int, int] | None]:
        """(worker side) an uninitialised batch in shared memory and its slot (None: fresh memory)."""
        free = [] if self.off else (self.busy[self.worker] == 0).nonzero()
        if not len(free):
            return torch.empty(shape, dtype=dtype).share_memory_(), None
        slot = int(free[0])
        buffer = self.buffers.get(slot)
        if buffer is None or buffer.dtype != dtype or buffer.shape[1:] != shape[1:] or len(buffer) < shape[0]:
            self.buffers.pop(slot, None)
            try:
                buffer = self.buffers[slot] = torch.empty(shape, dtype=dtype).share_memory_()
            except RuntimeError:  # /dev/shm full: hold none, one batch at a time as torch's default collate does
                self.off = True
                self.buffers.clear()
                return torch.empty(shape, dtype=dtype).share_memory_(), None
        self.busy[self.worker, slot] = 1
        return buffer[:shape[0]], (self.worker, slot)

    def release(self, batch: RingBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(main side) the batch with images the main process owns, and its buffer back to the worker."""
        images = batch.images if batch.images.is_pinned() else torch.from_numpy(batch.images.numpy().copy())
        self.busy[batch.slot] = 0
        return images, batch.targets, batch.indices


_worker_ring: BatchRing | None = None  # in a make_loader worker: its loader's ring


def _new_batch(shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """An uninitialised batch tensor and its ring slot: a worker's reusable shared buffer (see BatchRing),
    else, in the main process, numpy's memory (huge pages for large arrays where the kernel allows:
    fewer page faults than torch.empty)."""
    if _worker_ring is not None:
        return _worker_ring.batch(shape, dtype)
    if get_worker_info() is not None:  # a worker of some other DataLoader: shared memory, as default_collate does
        return torch.empty(shape, dtype=dtype).share_memory_(), None
    return torch.from_numpy(np.empty(shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype)), None


def batch_collate(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """make_loader's collate_fn: :meth:`ImageDataset.__getitems__` returns whole batches already."""
    return batch


class ImageDataset(Dataset):
    """``files[i]`` decoded, transformed; items are ``(image, target (C,) float32, i)``, the image a float32
    (3,S,S) tensor when the transform normalises, else a uint8 (S,S,3) tensor (batches then NHWC uint8).

    targets: (N, C) 0/1 array, or None for unlabelled (test) images, which get an empty target.
    transform: from the image to the tensor (float32 when it normalises, uint8 when normalisation is
    left to the device). base_side: when given, each image is first decoded (at a reduced JPEG scale
    where that keeps ``base_side`` pixels) and resized to base_side x base_side, and ``transform``
    starts from there (``augment.build_transform(..., base=False)``); ``cache`` then holds those base
    images. seed: None for deterministic transforms (evaluation); an int reseeds ``transform`` per
    sample (see the module docstring). Index with ``i`` or ``(i, epoch)``.
    """

    def __init__(self, files: Sequence[str], targets: np.ndarray | None, transform: Transform, seed: int | None = None,
                 *, base_side: int | None = None, cache: ImageCache | None = None):
        self.files = np.asarray([str(f) for f in files])
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        if self.targets is not None and len(self.targets) != len(self.files):
            raise ValueError(f"{len(self.files)} files but {len(self.targets)} target rows")
        self.transform = transform
        self.seed = seed
        self.base_side = base_side
        if cache is not None and (base_side is None or cache.side != base_side):
            raise ValueError(f"a cache of {cache.side} px base images for a pipeline starting at {base_side}")
        self.cache = cache
        self.slots = cache.slots(self.files) if cache is not None else None
        if seed is not None:
            # one generator pair shared by all steps, reseeded per sample (cheaper than set_random_seed,
            # which builds a generator per step)
            self._rng, self._py_random = np.random.default_rng(seed), random.Random(seed)
            transform.set_random_state(self._rng, self._py_random)

    def __len__(self) -> int:
        return len(self.files)

    def cached(self) -> bool:
        """Whether every image of the dataset is in the cache already."""
        return self.slots is not None and bool((self.slots >= 0).all()) and bool(self.cache.filled[torch.from_numpy(self.slots)].all())

    def base_image(self, index: int) -> np.ndarray:
        """The image the transform starts from: decoded (and resized to ``base_side``), from the cache if there."""
        from .augment import resize_to_base

        slot = -1 if self.slots is None else int(self.slots[index])
        if slot >= 0 and bool(self.cache.filled[slot]):
            return self.cache.images[slot].numpy().copy()
        if self.base_side is None:
            return read_image(self.files[index])
        image = resize_to_base(read_image(self.files[index], self.base_side), self.base_side)
        if slot >= 0:
            self.cache.images[slot].numpy()[...] = image
            self.cache.filled[slot] = True
        return image

    def _image(self, item: int | tuple[int, int]) -> tuple[int, np.ndarray | torch.Tensor]:
        """(index, transformed image) of one ``i`` or ``(i, epoch)``."""
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        index = int(index)
        if self.seed is not None:
            reseed_sample(self._rng, self._py_random, self.seed, int(epoch), index)
        return index, self.transform(image=self.base_image(index))["image"]

    def _targets(self, indices: Sequence[int] | int) -> torch.Tensor:
        if self.targets is None:
            return torch.zeros((len(indices), 0) if isinstance(indices, Sequence) else 0)
        return torch.from_numpy(self.targets[indices])

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, image = self._image(item)
        if isinstance(image, np.ndarray):  # a uint8 HWC image (normalised on the device): batched as NHWC
            image = torch.from_numpy(np.ascontiguousarray(image))
        return image, self._targets(index), index

    def __getitems__(self, items: Sequence[int | tuple[int, int]]) -> tuple[torch.Tensor, ...]:
        """One whole batch ``(images, targets (B, C), indices (B,))``, the same values as stacking
        ``self[item]`` for each item; each image is written straight into the batch (one copy, no per-image
        tensors to stack). DataLoader calls this instead of ``__getitem__``; :func:`make_loader` passes
        the batch through (:func:`batch_collate`). In a make_loader worker the batch is a
        :class:`RingBatch` in a reusable buffer, which the loader turns back into the three tensors."""
        indices: list[int] = []
        batch = rows = slot = None
        for k, item in enumerate(items):
            index, image = self._image(item)
            indices.append(index)
            if batch is None:
                dtype = image.dtype if isinstance(image, torch.Tensor) else torch.from_numpy(image[:0]).dtype
                batch, slot = _new_batch((len(items), *image.shape), dtype)
                rows = batch if isinstance(image, torch.Tensor) else batch.numpy()
            if tuple(image.shape) != tuple(batch.shape[1:]):
                raise KagglePlanetError(
                    f"{self.files[index]}: the augmentation pipeline gave an image of shape {tuple(image.shape)}, "
                    f"another image of the batch {tuple(batch.shape[1:])}; expected every image at one size")
            rows[k] = image
        out = (batch, self._targets(indices), torch.tensor(indices, dtype=torch.int64))
        return out if slot is None else RingBatch(*out, slot)


def image_dataset(files: Sequence[str], targets: np.ndarray | None, augment: str, image_size: int, *, train: bool,
                  seed: int | None = None, cache: str = "none", universe: Sequence[str] | None = None) -> ImageDataset:
    """The loader's dataset for one split: base images (reduced-scale decode, cached per ``cache`` mode)
    through the split's pipeline to uint8 tensors, normalised later on the device
    (:meth:`engine.Precision.to_device`). universe: every file the process will load at this size (e.g. a
    competition's training and test images), so that one cache serves every fold, split and pass."""
    from . import augment as aug

    side = aug.base_side(augment, image_size, train)
    transform = aug.build_transform(augment, image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), train=train,
                                    normalize=False, base=False)
    shared = image_cache(files if universe is None else universe, side, cache)
    seed = None if aug.is_deterministic(transform) else seed  # e.g. `none`: nothing to reseed per sample
    return ImageDataset(files, targets, transform, seed=seed, base_side=side, cache=shared)


class EpochSampler(Sampler):
    """Wraps a sampler and yields ``(index, epoch)`` so the dataset can seed per sample and epoch."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((int(i), self.epoch) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy/random seeded from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class _WorkerInit:
    """make_loader's worker_init_fn: :func:`seed_worker`, and the worker's place in its loader's ring
    (``ring``: set by :class:`Loader` each time it starts workers)."""

    def __init__(self) -> None:
        self.ring: BatchRing | None = None

    def __call__(self, worker_id: int) -> None:
        global _worker_ring
        seed_worker(worker_id)
        self.ring.worker = worker_id
        _worker_ring = self.ring


class Loader(DataLoader):
    """A DataLoader whose workers write batches into reusable shared memory (:class:`BatchRing`): it yields
    ``(images, targets, indices)`` and hands each buffer back to its worker as it goes."""

    def __iter__(self) -> Iterator[Any]:
        init = self.worker_init_fn
        if not isinstance(init, _WorkerInit):
            return super().__iter__()
        if self.persistent_workers and self._iterator is not None:
            # the same workers: idle, or about to have their unfinished batches of an abandoned pass
            # discarded by the iterator's reset, so none of their buffers will be read
            init.ring.busy.zero_()
        else:
            # new workers: a new ring, so that workers of an iterator still alive never share flags with them
            init.ring = BatchRing(self.num_workers, RING_SLOTS)
        return self._released(super().__iter__(), init.ring)

    @staticmethod
    def _released(batches: Iterator[Any], ring: BatchRing) -> Iterator[Any]:
        mapped: dict[tuple[int, int], torch.Tensor] = {}
        for batch in batches:
            if isinstance(batch, RingBatch):
                # holding this process's mapping of the buffer: the next batch in it maps nothing anew
                mapped[batch.slot] = batch.images
                batch = ring.release(batch)
            yield batch


MAX_AUTO_WORKERS = 8
RING_SLOTS = 4  # reusable batch buffers per worker (BatchRing): prefetch_factor (2) queued, one being made, one spare


def resolve_workers(num_workers: int | str) -> int:
    """DataLoader workers: an int as given; ``auto``: the cores this process may use, shared by the
    processes of a torchrun job on this host, at most 8."""
    if num_workers != "auto":
        return int(num_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cores // local_processes()))


def make_loader(
    dataset: ImageDataset,
    batch_size: int,
    *,
    train: bool,
    device: torch.device,
    num_workers: int,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    persistent: bool | None = None,
) -> DataLoader:
    """A DataLoader streaming ``dataset`` from disk.

    train: shuffled with ``seed`` + epoch (call ``loader.sampler.set_epoch(epoch)``), last partial batch
    dropped (BatchNorm cannot train on one image). Evaluation: in order. With ``world > 1`` each rank
    gets its ``1/world`` share (DistributedSampler; evaluation pads by repeating a few images, so
    gather by index). ``persistent`` workers (default: for training) avoid re-forking each epoch.
    """
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=train, seed=seed, drop_last=False)
    drop_last = train and len(dataset) // world > batch_size
    persistent = (train if persistent is None else persistent) and num_workers > 0
    generator = torch.Generator().manual_seed(seed)
    return Loader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(sampler),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=persistent,
        worker_init_fn=_WorkerInit() if num_workers > 0 else seed_worker,
        generator=generator,
        collate_fn=batch_collate,
    )
