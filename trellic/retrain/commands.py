"""``trellic retrain``: retrain decoder (and hyperprior) of a model on truly quantized latents."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trellic.errors import TrellicError
from trellic.paths import data_root
from trellic.quant.registry import quantizer_names


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "retrain",
        help="retrain decoder / hyperprior on truly quantized latents",
        description="Freeze the encoder, quantize with the real quantizer and retrain g_s "
        "(decoder) or h_a, h_s, prior and g_s (hyper+decoder). Writes "
        "OUT/model.safetensors (a variant of the source model) and OUT/log.jsonl.",
    )
    p.add_argument("--model", default="default", help="zoo model name or .safetensors path")
    p.add_argument("--quantizer", choices=quantizer_names(), default="usq")
    p.add_argument("--part", choices=["decoder", "hyper+decoder"], default="decoder")
    p.add_argument("--mode", choices=["offline", "online"], default="offline")
    p.add_argument("--rounds", type=int, default=1, help="re-quantize and retrain this often")
    p.add_argument("--steps", type=int, default=2000, help="steps per round")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument(
        "--lambda",
        dest="lmbda",
        type=float,
        default=None,
        help="rate weight for hyper+decoder (default: the model's training lambda)",
    )
    p.add_argument("--lambda-t", type=float, default=None, help="TCQ rate weight")
    p.add_argument("--cache-crops", type=int, default=512, help="crops per offline round")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="training folder (repeatable; default: $TRELLIC_DATA/train)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trellic.retrain.loop import RetrainConfig, retrain
    from trellic.train.data import CropDataset, list_images
    from trellic.zoo import load, save_model

    for name in ("rounds", "steps", "batch_size", "crop", "cache_crops"):
        if getattr(args, name) <= 0:
            raise TrellicError(f"--{name.replace('_', '-')} must be positive")
    if args.crop % 64:
        raise TrellicError("--crop must be a multiple of 64")
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load(args.model)
    lmbda = args.lmbda if args.lmbda is not None else loaded.info.get("training", {}).get("lmbda")
    if lmbda is None and args.part != "decoder":
        raise TrellicError("the model records no training lambda: pass --lambda")
    config = RetrainConfig(
        quantizer=args.quantizer,
        part=args.part,
        mode=args.mode,
        rounds=args.rounds,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        lmbda=lmbda or 0.0,
        lambda_t=args.lambda_t,
        cache_crops=args.cache_crops,
        seed=args.seed,
    )
    folders = args.data or [data_root() / "train"]
    dataset = CropDataset(list_images(folders), config.crop)
    model = retrain(loaded.model, config, dataset, args.out, identity=loaded.sha256)
    info = {
        **loaded.info,
        "retrained_from": {"model": loaded.model_id, "sha256": loaded.sha256},
        "retrain": config.to_dict(),
        "retrain_data": [str(f) for f in folders],
    }
    digest = save_model(model, args.out / "model.safetensors", info)
    print(f"retrained model written to {args.out / 'model.safetensors'} (sha256 {digest[:16]})")
    return 0
