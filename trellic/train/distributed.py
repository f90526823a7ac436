"""Data-parallel training under ``torchrun``: the process group and who does what.

    torchrun --nproc_per_node=K $(which trellic) train --out RUN ...

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE and MASTER_ADDR/PORT; ``init_from_env``
joins the group when WORLD_SIZE > 1 (nccl when training on CUDA, gloo on CPU).
Every rank builds the same model and loads the same checkpoint; DDP averages the
gradients, so all ranks take identical optimizer steps. Only rank 0 writes logs,
checkpoints and the exported model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from trellic.device import DEVICES, resolve_device  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Topology:
    """This process's place in the run: rank, number of ranks, device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str = "auto") -> bool:
    """Join the torchrun process group if WORLD_SIZE > 1; True if this call created it."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or dist.is_initialized():
        return False
    target = resolve_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return True


def topology(device: str = "auto") -> Topology:
    """The current process group (or a single process) and this rank's device."""
    if dist.is_initialized():
        return Topology(dist.get_rank(), dist.get_world_size(), resolve_device(device))
    return Topology(0, 1, resolve_device(device))


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average a tensor over all ranks (identity in a single process)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / dist.get_world_size()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
