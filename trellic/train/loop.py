"""End-to-end training of a model (any registered architecture) with a quantizer's proxy.

One step (:func:`train_step`): a batch of random crops -> ``model.forward`` with
the proxy -> lambda * 255^2 * MSE + bpp (or lambda * (1 - MS-SSIM) + bpp) plus
the factorized prior's aux loss, in one backward -> gradient clipping of the
model's parameters -> Adam for the model, a second Adam for the quantiles.

Around it: a JSONL log (``log.jsonl``), a checkpoint (``checkpoint.safetensors``)
every ``checkpoint_every`` steps and at the end, validation with the real codec
every ``val_every`` steps (see :mod:`trellic.train.validate`), and the final
model with its coding tables exported as ``model.safetensors``. ``resume``
continues from the checkpoint with the same optimizer state and the same future
batches and proxy noise (both are seeded by (seed, step, rank)).
A loss, gradient norm or weight that is not finite stops the run at once (see
:mod:`trellic.train.divergence`): no model is exported, and the checkpoint on
disk stays the last finite one. ``precision="bf16"`` runs the transforms in
bfloat16 (see :mod:`trellic.train.precision`), ``channels_last`` changes the
memory layout.

``warm_start`` initialises the model from another model's file: all of its
tensors, or, from another architecture, those the two share (see
:mod:`trellic.train.warm_start`). With ``train_params="new"`` only the tensors
it did not provide train; the others, aux parameters included, are left out of
both optimizers and stay bit-identical (the warm-started quantiles bound a
factorized prior that is frozen too, so their optimum does not move). The
checkpoint records the fixed set, and a resumed run keeps it.

Under torchrun (see :mod:`trellic.train.distributed`) the model is wrapped in
DistributedDataParallel, each rank draws its own ``batch_size`` crops, and rank 0
alone writes files. The aux loss joins the same backward, so DDP averages its
gradient too and the quantiles stay identical on every rank.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trellic.errors import TrellicError
from trellic.eval.metrics import psnr_of_mse
from trellic.files import refuse_torch_checkpoint
from trellic.models import CodecModel, ModelConfig
from trellic.quant import make_quantizer
from trellic.quant.base import ProxyKind, Quantizer
from trellic.train import distributed
from trellic.train.checkpoint import (
    load_model_weights,
    load_training_state,
    read_progress,
    save_training_state,
)
from trellic.train.data import CropDataset
from trellic.train.divergence import Diverged, check_finite, check_finite_weights
from trellic.train.loss import LossTerms, rate_distortion
from trellic.train.precision import precision_context
from trellic.train.run_folder import CHECKPOINT, EXPORT, LOG, make_run_folder, truncate_log
from trellic.train.validate import ValidationSet
from trellic.train.warm_start import (
    check_train_params,
    freeze,
    frozen_parameters,
    summary,
    with_prior_of,
)
from trellic.zoo import save_model


@dataclass
class TrainConfig:
    """Everything that defines a run (saved with the checkpoint and the exported model).

    ``batch_size`` is per process: under torchrun with K ranks a step sees K * batch_size crops.
    """

    lmbda: float = 0.0067
    architecture: str = "mbt2018-mean"
    train_params: str = "all"  # "new": only the tensors the warm start did not provide
    quantizer: str = "usq"
    proxy: str = "noise"
    distortion: str = "mse"
    N: int = 128
    M: int = 192
    steps: int = 100_000
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    aux_lr: float = 1e-3
    decay_at: tuple[float, ...] = (0.8, 0.95)
    clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    val: str | None = None
    val_every: int = 1000
    val_images: int = 8
    val_crop: int = 256
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    downscale_above: int = 800  # recorded for provenance; the dataset applies it
    data: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Step decay: x0.1 at each fraction of the run in ``decay_at``."""
    drops = sum(step >= fraction * config.steps for fraction in config.decay_at)
    return config.lr * 0.1**drops


def make_optimizers(model: CodecModel, config: TrainConfig) -> dict[str, torch.optim.Adam]:
    """Adam for the model ("main") and for the latent codec's aux parameters ("aux").

    Frozen parameters (requires_grad False) are left out; so is "aux" when every
    aux parameter is frozen.
    """
    aux = model.latent_codec.aux_parameters()
    main = [p for p in model.parameters() if p.requires_grad and all(p is not a for a in aux)]
    aux = [p for p in aux if p.requires_grad]
    optimizers = {"main": torch.optim.Adam(main, lr=config.lr)}
    if aux:
        optimizers["aux"] = torch.optim.Adam(aux, lr=config.aux_lr)
    return optimizers


def train_step(net: torch.nn.Module, model: CodecModel, x: Tensor, quantizer: Quantizer,
               optimizers: dict[str, torch.optim.Adam], config: TrainConfig,
               step: int) -> tuple[LossTerms, Tensor]:
    """One optimizer step on batch x; ``net`` is the model or its DDP wrapper.

    Raises:
        Diverged: the loss (averaged over the ranks) or the gradient norm is not
            finite; the weights are then left as they were before the step.
    """
    for group in optimizers["main"].param_groups:
        group["lr"] = learning_rate(config, step)
    proxy = ProxyKind[config.proxy.upper()]
    terms = rate_distortion(net(x, quantizer, proxy), x, config.lmbda, config.distortion)
    aux = model.aux_loss()  # reaches only the quantiles; the RD loss never does
    check_finite("loss", distributed.mean_over_ranks((terms.loss + aux).detach()))
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    (terms.loss + aux).backward()
    norm = torch.nn.utils.clip_grad_norm_(optimizers["main"].param_groups[0]["params"],
                                          config.clip)
    check_finite("gradient norm", norm)  # DDP: the same averaged gradient on every rank
    for optimizer in optimizers.values():
        optimizer.step()
    return terms, aux


def _noise_seed(config: TrainConfig, step: int, rank: int) -> int:
    """Seed of the proxy noise of one step on one rank (rank 0: the single-process seed)."""
    return config.seed * 1_000_003 + step + (rank << 40)


def _record(step: int, terms: LossTerms, aux: Tensor, config: TrainConfig, elapsed: float) -> dict:
    """The log line of a step, its losses averaged over the ranks."""
    values = [terms.loss, terms.mse, terms.bpp, aux]
    if terms.ms_ssim is not None:
        values.append(terms.ms_ssim)
    values = distributed.mean_over_ranks(torch.stack([v.detach() for v in values])).tolist()
    record = {"step": step, "loss": values[0], "mse": values[1], "psnr": psnr_of_mse(values[1]),
              "bpp": values[2], "aux": values[3], "lr": learning_rate(config, step - 1),
              "elapsed": elapsed}
    if terms.ms_ssim is not None:
        record["ms_ssim"] = values[4]
    return record


def _stopped(step: int, error: Diverged, out_dir: Path, saved_step: int | None) -> str:
    """The one line that ends a diverged run: where, why, and what is left on disk."""
    kept = ("no checkpoint was written" if saved_step is None else
            f"{out_dir / CHECKPOINT} keeps step {saved_step} (--resume from it with a lower --lr)")
    return f"training stopped at step {step}: {error}; no model written; {kept}"


def check_resume(checkpoint: Path, architecture: str, train_params: str, N: int,
                 M: int) -> list[str]:
    """Refuse to resume the run of ``checkpoint`` with another model; the parameters it keeps
    fixed (a resumed run needs the same --architecture, --train-params, --N and --M)."""
    saved = read_progress(checkpoint)
    config = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict):
        raise TrellicError(f"{checkpoint} is not a training checkpoint (no config)")
    for key, now in (("architecture", architecture), ("train_params", train_params)):
        was = config.get(key, getattr(TrainConfig, key))
        if was != now:
            option = "--" + key.replace("_", "-")
            raise TrellicError(f"--resume: the run of {checkpoint} trains {option} {was}, "
                               f"not {now}")
    was_n, was_m = config.get("N"), config.get("M")
    if (was_n, was_m) != (N, M):
        raise TrellicError(f"{checkpoint.parent} was trained with N={was_n}, M={was_m}, not "
                           f"N={N}, M={M}: resume it with --N {was_n} --M {was_m}")
    return list(saved.get("frozen", []))


def _saved_frozen(config: TrainConfig, checkpoint: Path) -> list[str]:
    """The parameters a resumed run keeps fixed: those it saved (same model required)."""
    return check_resume(checkpoint, config.architecture, config.train_params, config.N, config.M)


def _warm_start(config: TrainConfig, model: CodecModel, path: Path | None,
                main: bool) -> list[str]:
    """Load ``path`` into a new run's model (if given); the parameters the run keeps fixed."""
    check_train_params(config.train_params, path)
    if path is None:
        return []
    new = load_model_weights(path, model)
    if main:
        print(summary(model, new, str(path)))
    return frozen_parameters(model, new) if config.train_params == "new" else []


def train(config: TrainConfig, dataset: CropDataset, out_dir: Path, resume: bool = False,
          warm_start: Path | None = None, progress: bool = True) -> CodecModel:
    """Run (or continue) a training run in ``out_dir``; returns the trained model."""
    where = distributed.topology(config.device)
    make_run_folder(out_dir)
    torch.manual_seed(config.seed)
    quantizer = make_quantizer(config.quantizer)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    resuming = resume and (out_dir / CHECKPOINT).is_file()
    if warm_start is not None:
        refuse_torch_checkpoint(str(warm_start))
    source = out_dir / CHECKPOINT if resuming else warm_start  # its prior widths are the run's
    model = CodecModel(with_prior_of(
        ModelConfig(architecture=config.architecture, N=config.N, M=config.M), source))
    model.to(where.device, memory_format=layout)
    if resuming:
        frozen = _saved_frozen(config, out_dir / CHECKPOINT)
    else:
        frozen = _warm_start(config, model, warm_start, where.is_main)
    freeze(model, frozen)
    optimizers = make_optimizers(model, config)
    start, elapsed = 0, 0.0
    if resuming:
        saved = load_training_state(out_dir / CHECKPOINT, model, optimizers)
        start, elapsed = saved["step"], saved["elapsed"]
    saved_step = start if start else None  # the step the checkpoint on disk holds
    if where.is_main and start:  # a killed run logged steps past its checkpoint: they rerun
        truncate_log(out_dir, start)
    validation = None
    if config.val and where.is_main:
        validation = ValidationSet.from_folder(Path(config.val), config.val_images, config.val_crop)
    net = model
    if where.world_size > 1:
        device_ids = [where.device.index] if where.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=device_ids)

    model.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not (progress and where.is_main), desc="train", unit="step")
    began = time.time() - elapsed
    with contextlib.ExitStack() as stack:
        mode = "a" if start else "w"  # a new run starts a new log
        log = stack.enter_context(open(out_dir / LOG, mode)) if where.is_main else None
        stack.enter_context(precision_context(model, config.precision, where.device.type))
        for step in bar:
            x = dataset.batch(config.batch_size, config.seed, step, where.rank)
            x = x.to(where.device, memory_format=layout)
            torch.manual_seed(_noise_seed(config, step, where.rank))  # resumable proxy noise
            done = step + 1
            last = done == config.steps
            try:
                terms, aux = train_step(net, model, x, quantizer, optimizers, config, step)
                if done % config.checkpoint_every == 0 or last:
                    check_finite_weights(model)  # on every rank, before they are saved
            except Diverged as error:
                raise Diverged(_stopped(done, error, out_dir, saved_step)) from None
            if done % config.log_every == 0 or last:
                record = _record(done, terms, aux, config, time.time() - began)
                if log is not None:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                bar.set_postfix(loss=f"{record['loss']:.3f}", bpp=f"{record['bpp']:.3f}",
                                psnr=f"{record['psnr']:.2f}")
            if validation is not None and (done % config.val_every == 0 or last):
                record = {"step": done, **validation.evaluate(model, config.quantizer)}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.write(f"step {done}: val bpp {record['val_bpp']:.4f} "
                          f"psnr {record['val_psnr']:.2f} dB")
            if where.is_main and (done % config.checkpoint_every == 0 or last):
                save_training_state(out_dir / CHECKPOINT, model, optimizers,
                                    {"step": done, "elapsed": time.time() - began,
                                     "config": config.to_dict(), "frozen": frozen})
                saved_step = done
    model.cpu().eval()  # the coding tables are built on the CPU
    model.update()
    if where.is_main:
        save_model(model, out_dir / EXPORT, {
            "training": config.to_dict(), "wall_seconds": time.time() - began,
            "world_size": where.world_size, "device": str(where.device),
        })
    distributed.barrier()
    return model
