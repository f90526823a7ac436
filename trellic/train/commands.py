"""``trellic train``: end-to-end training from folders of photos."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trellic.errors import TrellicError
from trellic.paths import data_root


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model end to end",
        description="Train the mean-scale hyperprior on random crops with a quantizer proxy. "
                    "Writes log.jsonl, checkpoint.safetensors and model.safetensors to --out.",
    )
    p.add_argument("--data", type=Path, action="append", default=None,
                   help="training folder (repeatable; default: $TRELLIC_DATA/train)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--lambda", dest="lmbda", type=float, default=0.0067,
                   help="rate-distortion weight (loss = lambda * 255^2 * MSE + bpp)")
    p.add_argument("--quantizer", choices=["usq", "tcq4", "tcq8"], default="usq")
    p.add_argument("--proxy", choices=["noise", "ste", "mixed"], default="noise")
    p.add_argument("--N", type=int, default=128, help="transform channels")
    p.add_argument("--M", type=int, default=192, help="latent channels")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.safetensors")
    p.add_argument("--warm-start", type=Path, default=None,
                   help="initialise the model from a checkpoint or weights file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trellic.train.data import CropDataset, list_images
    from trellic.train.loop import TrainConfig, train

    for name in ("steps", "batch_size", "crop", "N", "M", "checkpoint_every"):
        if getattr(args, name) <= 0:
            raise TrellicError(f"--{name.replace('_', '-')} must be positive")
    if args.crop % 64:
        raise TrellicError("--crop must be a multiple of 64")
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = args.data or [data_root() / "train"]
    config = TrainConfig(
        lmbda=args.lmbda, quantizer=args.quantizer, proxy=args.proxy, N=args.N, M=args.M,
        steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr, seed=args.seed,
        checkpoint_every=args.checkpoint_every, data=[str(f) for f in folders],
    )
    dataset = CropDataset(list_images(folders), config.crop)
    print(f"training on {len(dataset)} images from {', '.join(config.data)}")
    train(config, dataset, args.out, resume=args.resume, warm_start=args.warm_start)
    print(f"model written to {args.out / 'model.safetensors'}")
    return 0
