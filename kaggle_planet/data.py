"""Images from disk to batches: a Dataset that decodes with OpenCV and augments with albumentations.

Images are read lazily in DataLoader workers, so memory does not grow with the dataset: the
Dataset holds only numpy arrays of paths and targets (numpy arrays rather than Python lists so
forked workers do not copy the pages by touching reference counts).

Augmentation is reproducible per sample: training datasets reseed their albumentations pipeline
from ``(seed, epoch, index)`` before each image (the sampler hands ``(index, epoch)`` pairs to
``__getitem__``). The draws therefore do not depend on the number of workers, on which worker
gets which batch, or on whether the run was resumed: a resumed epoch sees exactly the augmentations
an uninterrupted run would have seen.
"""
from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .errors import KagglePlanetError

log = logging.getLogger(__name__)

# OpenCV single-threaded, set in the parent before any worker is forked: the parallelism is the
# DataLoader workers (cv2's own threads would oversubscribe the cores), and a cv2 thread pool running
# in the parent when workers fork (e.g. after make-demo-data or check in the same process) deadlocks them.
cv2.setNumThreads(0)

Transform = Callable[..., dict[str, Any]]


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB image; raises KagglePlanetError naming the file when it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise KagglePlanetError(f"{path}: cannot read image (missing or not a decodable image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def reseed_sample(rng: np.random.Generator, py_random: random.Random, seed: int, epoch: int, index: int) -> None:
    """Put ``rng`` and ``py_random`` (shared by every step of a pipeline) in the state for one sample of one
    epoch: independent streams for different (seed, epoch, index); about 0.1 ms."""
    seq = np.random.SeedSequence([seed, epoch, index])
    rng.bit_generator.state = np.random.PCG64(seq).state
    py_random.seed(int(seq.generate_state(1)[0]))


class ImageDataset(Dataset):
    """``files[i]`` decoded, transformed; items are ``(image (3,S,S) float32, target (C,) float32, i)``.

    targets: (N, C) 0/1 array, or None for unlabelled (test) images, which get an empty target.
    seed: None for deterministic transforms (evaluation); an int reseeds ``transform`` per sample
    (see the module docstring). Index with ``i`` or ``(i, epoch)``.
    """

    def __init__(self, files: Sequence[str], targets: np.ndarray | None, transform: Transform, seed: int | None = None):
        self.files = np.asarray([str(f) for f in files])
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)
        if self.targets is not None and len(self.targets) != len(self.files):
            raise ValueError(f"{len(self.files)} files but {len(self.targets)} target rows")
        self.transform = transform
        self.seed = seed
        if seed is not None:
            # one generator pair shared by all steps, reseeded per sample (cheaper than set_random_seed,
            # which builds a generator per step)
            self._rng, self._py_random = np.random.default_rng(seed), random.Random(seed)
            transform.set_random_state(self._rng, self._py_random)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        if self.seed is not None:
            reseed_sample(self._rng, self._py_random, self.seed, epoch, index)
        image = self.transform(image=read_image(self.files[index]))["image"]
        target = torch.from_numpy(self.targets[index]) if self.targets is not None else torch.zeros(0)
        return image, target, index


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
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(sampler),
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        drop_last=drop_last,
        persistent_workers=persistent,
        worker_init_fn=seed_worker,
        generator=generator,
    )
