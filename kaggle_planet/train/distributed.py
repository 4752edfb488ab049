"""This process's place in a torchrun job: rank, world size and device (rank 0 of 1 when run alone).

Under ``torchrun --nproc_per_node=N`` the model is wrapped in DistributedDataParallel (NCCL on CUDA, gloo on
CPU); only rank 0 writes files, the others wait at barriers.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 when run alone) and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # generous timeout: rank 0 alone writes checkpoints and prediction files while the others wait
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
    rank = dist.get_rank()
    if rank != 0:
        logging.getLogger("kaggle_planet").setLevel(logging.WARNING)
    return Dist(rank, world, device)
