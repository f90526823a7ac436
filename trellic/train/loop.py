"""End-to-end training of the hyperprior with a quantizer's proxy.

One step: a batch of random crops -> ``model.forward`` with the proxy ->
lambda * 255^2 * MSE + bpp -> Adam with gradient clipping; a second Adam fits
the factorized prior's quantiles (aux loss). Progress goes to a JSONL log, a
checkpoint (``checkpoint.safetensors``) is written every ``checkpoint_every``
steps and at the end, and ``resume`` continues from it with the same optimizer
state and the same future batches and
proxy noise (both are seeded by (seed, step)). The final model, with its coding tables,
is exported as ``model.safetensors``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from trellic.models import MeanScaleHyperprior, ModelConfig
from trellic.quant import make_quantizer
from trellic.quant.base import ProxyKind
from trellic.train.checkpoint import load_model_weights, load_training_state, save_training_state
from trellic.train.data import CropDataset
from trellic.train.loss import psnr, rate_distortion
from trellic.zoo import save_model

CHECKPOINT = "checkpoint.safetensors"
EXPORT = "model.safetensors"
LOG = "log.jsonl"


@dataclass
class TrainConfig:
    """Everything that defines a run (saved with the checkpoint and the exported model)."""

    lmbda: float = 0.0067
    quantizer: str = "usq"
    proxy: str = "noise"
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
    data: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Step decay: x0.1 at each fraction of the run in ``decay_at``."""
    drops = sum(step >= fraction * config.steps for fraction in config.decay_at)
    return config.lr * 0.1**drops


def train(config: TrainConfig, dataset: CropDataset, out_dir: Path, resume: bool = False,
          warm_start: Path | None = None, progress: bool = True) -> MeanScaleHyperprior:
    """Run (or continue) a training run in ``out_dir``; returns the trained model."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    quantizer = make_quantizer(config.quantizer)
    model = MeanScaleHyperprior(ModelConfig(N=config.N, M=config.M))
    aux_params = [model.entropy_bottleneck.quantiles]
    main_params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizers = {
        "main": torch.optim.Adam(main_params, lr=config.lr),
        "aux": torch.optim.Adam(aux_params, lr=config.aux_lr),
    }
    start, elapsed = 0, 0.0
    if resume and (out_dir / CHECKPOINT).is_file():
        saved = load_training_state(out_dir / CHECKPOINT, model, optimizers)
        start, elapsed = saved["step"], saved["elapsed"]
    elif warm_start is not None:
        load_model_weights(warm_start, model)

    proxy = ProxyKind[config.proxy.upper()]
    model.train()
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not progress, desc="train", unit="step")
    began = time.time() - elapsed
    with open(out_dir / LOG, "a") as log:
        for step in bar:
            for group in optimizers["main"].param_groups:
                group["lr"] = learning_rate(config, step)
            x = dataset.batch(config.batch_size, config.seed, step)
            torch.manual_seed(config.seed * 1_000_003 + step)  # proxy noise: resumable too
            terms = rate_distortion(model(x, quantizer, proxy), x, config.lmbda)
            optimizers["main"].zero_grad(set_to_none=True)
            terms.loss.backward()
            torch.nn.utils.clip_grad_norm_(main_params, config.clip)
            optimizers["main"].step()
            aux = model.aux_loss()
            optimizers["aux"].zero_grad(set_to_none=True)
            aux.backward()
            optimizers["aux"].step()

            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                record = {"step": done, "loss": terms.loss.item(), "mse": terms.mse.item(),
                          "psnr": psnr(terms.mse.item()), "bpp": terms.bpp.item(),
                          "aux": aux.item(), "lr": learning_rate(config, step),
                          "elapsed": time.time() - began}
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{record['loss']:.3f}", bpp=f"{record['bpp']:.3f}",
                                psnr=f"{record['psnr']:.2f}")
            if done % config.checkpoint_every == 0 or done == config.steps:
                save_training_state(out_dir / CHECKPOINT, model, optimizers,
                                    {"step": done, "elapsed": time.time() - began,
                                     "config": config.to_dict()})
    model.eval()
    model.update()
    save_model(model, out_dir / EXPORT, {"training": config.to_dict(),
                                         "wall_seconds": time.time() - began})
    return model
