"""Offline shards: training crops encoded once with the frozen encoder and the real quantizer.

Each shard ``shard-NNNNN.safetensors`` holds ``x`` (n, 3, H, W) uint8 crops,
``y`` (n, M, h, w) float32 encoder outputs and ``y_hat`` (n, M, h, w) float32
truly quantized latents, with metadata naming the model hash, quantizer,
lambda_t, crop seed and the training images (their fingerprint). Building is
resumable: a shard that exists with matching metadata is kept, anything else
is rebuilt. Shards of one round go
stale once the hyperprior changes; the next round writes its own.

Under torchrun (``rank``/``world_size``) the shards are split between the ranks:
rank r encodes and writes shards r, r + K, ..., so each shard is written once, by
one process, and the encoding runs K times faster. After a barrier every rank loads
all shards (the same cache in every process); the batches each rank draws from it
differ by rank (:meth:`LatentCache.batch`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor
from tqdm import tqdm

from trellic.models.model import CodecModel
from trellic.quant.base import Quantizer
from trellic.retrain.targets import encode, quantized_latents
from trellic.safetensors_io import save_safetensors_atomic
from trellic.train import distributed
from trellic.train.data import CropDataset

SHARD_GLOB = "shard-*.safetensors"  # the files of a cache


@dataclass
class LatentCache:
    """All shards of one cache in memory: crops x (float, [0, 1]), y and y_hat."""

    x: Tensor
    y: Tensor
    y_hat: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, size: int, seed: int, step: int,
              rank: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """``size`` random cached crops, a pure function of (seed, step, rank); rank 0 draws
        what a single process draws."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step + (rank << 40))
        index = torch.randint(len(self), (size,), generator=generator)
        return self.x[index].float() / 255.0, self.y[index], self.y_hat[index]


def build_cache(
    model: CodecModel,
    quantizer: Quantizer,
    lambda_t: float | None,
    dataset: CropDataset,
    folder: Path,
    crops: int,
    shard_size: int = 64,
    seed: int = 0,
    identity: str = "",
    progress: bool = True,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> LatentCache:
    """Encode ``crops`` random crops into shards under ``folder`` (resumable) and load them.

    With ``world_size`` > 1 (a torchrun process group) this rank writes only the shards
    ``rank, rank + world_size, ...``, waits for the other ranks, then loads all of them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shards = -(-crops // shard_size)
    meta = {
        "identity": identity,
        "quantizer": quantizer.kind,
        "delta": quantizer.delta,
        "lambda_t": lambda_t,
        "seed": seed,
        "crop": dataset.crop,
        "data": dataset.fingerprint(),  # other images: other crops
    }
    mine = range(rank, shards, world_size)
    for shard in tqdm(mine, desc="cache", disable=not progress, unit="shard"):
        path = folder / f"shard-{shard:05d}.safetensors"
        count = min(shard_size, crops - shard * shard_size)
        wanted = {**meta, "shard": shard, "count": count}
        if not _matches(path, wanted):
            x = dataset.batch(count, seed, shard, rank=7919)  # rank: crops apart from training's
            y = encode(model, x.to(device))
            y_hat = quantized_latents(model, quantizer, y, lambda_t)
            y, y_hat = y.cpu(), y_hat.cpu()  # stored from the CPU, whatever the device
            save_safetensors_atomic(
                path,
                {"x": (x * 255).round().to(torch.uint8), "y": y, "y_hat": y_hat},
                {"meta": json.dumps(wanted)},
            )
    if world_size > 1:
        distributed.barrier()  # every shard written (by its rank) before anyone reads
    xs, ys, y_hats = [], [], []
    for shard in range(shards):
        tensors = load_file(str(folder / f"shard-{shard:05d}.safetensors"))
        xs.append(tensors["x"])
        ys.append(tensors["y"])
        y_hats.append(tensors["y_hat"])
    return LatentCache(torch.cat(xs), torch.cat(ys), torch.cat(y_hats))


def _matches(path: Path, wanted: dict) -> bool:
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads(handle.metadata()["meta"]) == wanted
    except Exception:  # an unreadable or foreign shard is simply rebuilt
        return False
