"""Retraining loop: decoder-only or hyper+decoder, offline or online, in rounds.

- ``part="decoder"``: only g_s learns, on MSE against the crops. Encoder,
  hyperprior and tables are untouched, so every bitstream stays byte-identical.
- ``part="hyper+decoder"``: h_a, h_s, the factorized prior and g_s learn on
  lambda * 255^2 * MSE + bpp of the *true* indices; g_a stays frozen, so files
  of the original encoder keep their meaning for the new hyper-decoder only if
  re-encoded (the hyperprior changed), which the export records.
- ``mode="offline"``: the paper's way: crops and their quantized latents are
  cached once per round (shards on disk). Decoder-only trains on the cached
  y_hat; hyper+decoder re-quantizes the cached y with the current hyperprior.
- ``mode="online"``: each batch is a fresh random crop, quantized inside the
  loop with the real quantizer (the vectorised Viterbi makes TCQ affordable).
- ``rounds``: repeat, regenerating the cache with the updated model.

The log (``log.jsonl``) gets a record every ``log_every`` steps and at the end of
each round, so a run shorter than ``log_every`` still logs its result. The
offline shards live in ``cache-roundN/`` of the run folder while the run needs
them; with ``keep_cache=False`` (``trellic retrain`` without ``--keep-cache``)
they are removed once the run has finished (an interrupted run keeps them, and
its rerun reuses the shards whose metadata match).

A loss, gradient norm or weight that is not finite stops retraining at once
(:mod:`trellic.train.divergence`); nothing is exported.

Under torchrun (a process group from :mod:`trellic.train.distributed`, joined by
``trellic retrain``) every rank retrains the same copy of the model: each draws its own
``batch_size`` crops (online: ``dataset.batch(..., rank)``; offline: the shared cache,
``LatentCache.batch(..., rank)``), the gradients of the trained parameters are averaged
over the ranks after each backward (one all-reduce, as DDP would), so every rank takes
the same Adam step and ends with the same weights. The offline shards are split between
the ranks, each written once (:func:`trellic.retrain.cache.build_cache`); rank 0 alone
writes the log, shows progress and removes the cache at the end. Rank 0 of a group draws
the batches a single process draws.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from trellic.eval.metrics import psnr_of_mse
from trellic.models.model import CodecModel
from trellic.rd import rd_cost
from trellic.retrain.cache import SHARD_GLOB, LatentCache, build_cache
from trellic.retrain.targets import encode, forward_quantized, quantized_latents
from trellic.train import distributed
from trellic.train.data import CropDataset
from trellic.train.divergence import Diverged, check_finite, check_finite_weights
from trellic.train.loss import rate_bits
from trellic.train.run_folder import LOG, make_run_folder

PARTS = ("decoder", "hyper+decoder")
MODES = ("offline", "online")


@dataclass
class RetrainConfig:
    quantizer: str = "usq"
    part: str = "decoder"
    mode: str = "offline"
    rounds: int = 1
    steps: int = 2000  # per round
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-5
    lmbda: float = 0.0067  # only for hyper+decoder (rate + distortion)
    lambda_t: float | None = None
    cache_crops: int = 512
    seed: int = 0
    log_every: int = 10

    def __post_init__(self):
        if self.part not in PARTS or self.mode not in MODES:
            raise ValueError(f"part must be one of {PARTS} and mode one of {MODES}")

    def to_dict(self) -> dict:
        return asdict(self)


def trainable_modules(model: CodecModel, part: str) -> list[torch.nn.Module]:
    """The parts a retraining learns, by role: the synthesis, or the latent codec too."""
    if part == "decoder":
        return [model.g_s]
    return [model.latent_codec, model.g_s]


def retrain(
    source: CodecModel,
    config: RetrainConfig,
    dataset: CropDataset,
    out_dir: Path,
    identity: str = "",
    progress: bool = True,
    keep_cache: bool = True,
    device: torch.device | str = "cpu",
) -> CodecModel:
    """Retrain a copy of ``source``; returns it, on the CPU, with rebuilt tables (source is
    untouched).

    ``keep_cache=False`` removes the offline shards this run used once it has finished.
    ``device``: where the networks run (the batches follow; the offline cache is stored
    from the CPU; the coding tables and the exact integer scales stay on the CPU).
    """
    where = distributed.topology("cpu")  # rank and world size (the device is given)
    progress = progress and where.is_main
    make_run_folder(out_dir)
    device = torch.device(device)
    model = copy.deepcopy(source).to(device)
    model.requires_grad_(False)
    modules = trainable_modules(model, config.part)
    # The aux parameters (the prior's medians and table bounds) stay fixed: z_hat keeps its grid.
    fixed = {id(p) for p in model.latent_codec.aux_parameters()}
    params = [p for m in modules for p in m.parameters() if id(p) not in fixed]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=config.lr)
    quantizer = model.quantizer(config.quantizer)
    began = time.time()
    caches: list[Path] = []
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(out_dir / LOG, "w")) if where.is_main else None
        for round_index in range(config.rounds):
            model.eval()
            cache = None
            if config.mode == "offline":
                caches.append(out_dir / f"cache-round{round_index}")
                cache = build_cache(
                    model,
                    quantizer,
                    config.lambda_t,
                    dataset,
                    out_dir / f"cache-round{round_index}",
                    config.cache_crops,
                    seed=config.seed + round_index,
                    progress=progress,
                    identity=f"{identity}/round{round_index}",
                    device=device,
                    rank=where.rank,
                    world_size=where.world_size,
                )
            for m in modules:
                m.train()
            bar = tqdm(
                range(config.steps),
                desc=f"retrain round {round_index + 1}",
                disable=not progress,
                unit="step",
            )
            for step in bar:
                terms = _step(
                    model, quantizer, config, dataset, cache, round_index * config.steps + step,
                    device, where.rank,
                )
                try:
                    _update(terms["loss"], params, optimizer)
                    if step + 1 == config.steps:
                        check_finite_weights(model)  # before the next round or the export
                except Diverged as error:
                    raise Diverged(f"retraining stopped at round {round_index + 1}, step "
                                   f"{step + 1}: {error}; no model written") from None
                if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
                    values = torch.stack([v.detach() for v in terms.values()])
                    values = distributed.mean_over_ranks(values).tolist()  # the step's mean
                    record = {
                        "round": round_index + 1,
                        "step": step + 1,
                        **dict(zip(terms, values, strict=True)),
                        "elapsed": time.time() - began,
                    }
                    record["psnr"] = psnr_of_mse(record["mse"])
                    if log is not None:
                        log.write(json.dumps(record) + "\n")
                        log.flush()
                    bar.set_postfix(psnr=f"{record['psnr']:.2f}")
    model.eval()
    model.cpu()  # the export and the tables are built on the CPU
    if config.part != "decoder":
        model.update()  # the factorized prior changed: rebuild the z tables
    distributed.barrier()  # every rank has read its last batch before the cache goes
    if not keep_cache and where.is_main:
        for folder in caches:
            remove_cache(folder)
    return model


def remove_cache(folder: Path) -> None:
    """Remove the shards of an offline cache, and its folder if nothing else is left in it."""
    for pattern in (SHARD_GLOB, f".{SHARD_GLOB}.*.tmp"):  # and temp files of killed writes
        for shard in folder.glob(pattern):
            shard.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # another file in it (the user's) or gone: left alone
        pass


def _update(loss: torch.Tensor, params: list[torch.Tensor], optimizer: torch.optim.Adam) -> None:
    """One optimizer step; raises Diverged (weights untouched) on a non-finite loss or gradient."""
    check_finite("loss", distributed.mean_over_ranks(loss.detach()))  # all ranks stop together
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(params)
    check_finite("gradient norm", torch.nn.utils.clip_grad_norm_(params, 1.0))
    optimizer.step()


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over the ranks, in one all-reduce (as DDP does).

    A no-op in a single process. The ranks run the same graph, so a parameter without a
    gradient lacks it on every rank and is left out everywhere.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _step(
    model,
    quantizer,
    config: RetrainConfig,
    dataset: CropDataset,
    cache: LatentCache | None,
    step: int,
    device: torch.device | None = None,
    rank: int = 0,
) -> dict:
    device = device or torch.device("cpu")
    if cache is not None:
        batch = cache.batch(config.batch_size, config.seed, step, rank)
        x, y, y_hat = (t.to(device) for t in batch)
    else:
        x = dataset.batch(config.batch_size, config.seed, step, rank).to(device)
        y = encode(model, x)
        y_hat = None
    if config.part == "decoder":
        if y_hat is None:
            y_hat = quantized_latents(model, quantizer, y, config.lambda_t)
        mse = torch.mean((model.g_s(y_hat) - x) ** 2)
        return {"loss": mse, "mse": mse}
    out = forward_quantized(model, quantizer, y, config.lambda_t)
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = rate_bits(out.likelihoods) / pixels
    mse = torch.mean((out.x_hat - x) ** 2)
    return {"loss": rd_cost(mse, bpp, config.lmbda), "mse": mse, "bpp": bpp}
