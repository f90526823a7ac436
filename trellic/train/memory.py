"""An up-front memory bound for ``train`` and ``retrain``: refuse a step that cannot fit.

A training step holds every activation of the transforms for its backward pass,
so its memory grows with batch x crop^2 x N. Measured on the CPU (fp32, the
worst case; bf16 needs less), one step of the mean-scale hyperprior took about
``22 * N + 40`` bytes per pixel of the batch (N=8: 215, N=64: 1,470, N=128:
2,860); :func:`step_bytes` uses ``24 * N + 64``. A batch far beyond the
machine (``--batch-size 100000``) would otherwise be killed by the kernel's
out-of-memory killer minutes later, with no message; it is refused before any
work with one line naming the largest batch (or crop) that fits.

The bound is the memory of the device the step runs on: the GPU's total memory
with CUDA, else the machine's physical memory (or the cgroup limit of the
container, if lower), shared by the processes torchrun starts on this machine.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from trellic.errors import TrellicError

BYTES_PER_PIXEL_PER_CHANNEL = 24
BYTES_PER_PIXEL_FIXED = 64
HOST_BYTES_PER_PIXEL = 16  # a batch drawn on the host: uint8 crops and their float copy
GIB = 2**30


def step_bytes(batch: int, crop: int, N: int) -> int:
    """The estimated memory of one training step of ``batch`` crops of ``crop`` pixels."""
    return batch * crop * crop * (BYTES_PER_PIXEL_PER_CHANNEL * N + BYTES_PER_PIXEL_FIXED)


def host_memory() -> int:
    """Physical memory (bytes), the cgroup limit if lower, shared by this machine's ranks."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        total = 0
    for limit_file in ("/sys/fs/cgroup/memory.max",
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(limit_file).read_text().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if 0 < limit and (total == 0 or limit < total):
            total = limit
    if total <= 0:
        return 0
    return total // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))


def device_memory(device: torch.device) -> tuple[int, str]:
    """The memory one step may use on ``device`` (0 when unknown) and how messages name it."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, "GPU memory"
    return host_memory(), "memory"


def check_step_fits(batch: int, crop: int, N: int, device: torch.device,
                    what: str = "one step") -> None:
    """Refuse (one line naming the bound) a step of ``batch`` x ``crop``^2 crops that cannot fit.

    Raises:
        TrellicError: the estimate exceeds the device's memory (or, on a GPU, the host's
            for drawing the batch).
    """
    limits = [device_memory(device)]
    if device.type == "cuda":
        limits.append((host_memory(), "memory"))
        per_pixel = [BYTES_PER_PIXEL_PER_CHANNEL * N + BYTES_PER_PIXEL_FIXED, HOST_BYTES_PER_PIXEL]
    else:
        per_pixel = [BYTES_PER_PIXEL_PER_CHANNEL * N + BYTES_PER_PIXEL_FIXED]
    for (memory, name), pixel_bytes in zip(limits, per_pixel, strict=True):
        needs = batch * crop * crop * pixel_bytes
        if memory <= 0 or needs <= memory:
            continue
        largest_batch = memory // (crop * crop * pixel_bytes)
        if largest_batch >= 1:
            bound = f"use --batch-size {largest_batch} or less"
        else:
            largest_crop = math.isqrt(memory // pixel_bytes) // 64 * 64
            bound = (f"use --crop {largest_crop} or less" if largest_crop >= 64 else
                     "not even one 64x64 crop fits")
        raise TrellicError(
            f"{what} of --batch-size {batch} x --crop {crop} (N={N}) needs about "
            f"{needs / GIB:.1f} GiB, more than the {memory / GIB:.1f} GiB of {name} here: {bound}")


def check_cache_fits(crops: int, crop: int, M: int, copies: int = 1) -> None:
    """Refuse an offline retraining cache (crops, y and y_hat in memory) that cannot fit.

    Each crop holds ``crop``^2 x 3 bytes and two float32 latents of M x (crop/16)^2, and the
    shards are joined into one tensor (twice that while they are). ``copies``: the processes
    on this machine that each hold the whole cache (torchrun's ranks on it).
    """
    per_crop = copies * 2 * crop * crop * (3 + 2 * 4 * M // 256 + 1)
    memory = host_memory()
    if memory <= 0 or crops * per_crop <= memory:
        return
    bound = (f"use --cache-crops {memory // per_crop} or less" if memory >= per_crop else
             "use a smaller --crop")
    ranks = f" in each of {copies} processes" if copies > 1 else ""
    raise TrellicError(
        f"an offline cache of --cache-crops {crops} x --crop {crop} (M={M}){ranks} needs about "
        f"{crops * per_crop / GIB:.1f} GiB, more than the {memory / GIB:.1f} GiB of memory "
        f"here: {bound}")
