"""``trellic retrain``: retrain decoder (and hyperprior) of a model on truly quantized latents."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trellic.argtypes import float_in, int_multiple_of, positive_float, positive_int, seed
from trellic.coding.bitstream import MAX_LAMBDA_T
from trellic.errors import TrellicError, warnings_as_lines
from trellic.paths import data_root
from trellic.quant.registry import quantizer_names
from trellic.train.commands import LEARNING_RATE
from trellic.train.run_folder import EXPORT, RETRAIN_OUTPUTS, check_run_folder, clear_run_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "retrain",
        help="retrain decoder / hyperprior on truly quantized latents",
        description="Freeze the encoder, quantize with the real quantizer and retrain g_s "
        "(decoder) or h_a, h_s, prior and g_s (hyper+decoder). Writes "
        "OUT/model.safetensors (a variant of the source model) and OUT/log.jsonl "
        "(an earlier run there is refused without --force).",
    )
    p.add_argument("--model", default="default", help="zoo model name or .safetensors path")
    p.add_argument("--quantizer", choices=quantizer_names(), default="usq")
    p.add_argument("--part", choices=["decoder", "hyper+decoder"], default="decoder")
    p.add_argument("--mode", choices=["offline", "online"], default="offline")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="re-quantize and retrain this often")
    p.add_argument("--steps", type=positive_int, default=2000, help="steps per round")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--crop", type=int_multiple_of(64, 64), default=256,
                   help="crop side (a multiple of 64: the model's grid)")
    p.add_argument("--lr", type=LEARNING_RATE, default=1e-5, help="Adam's learning rate")
    p.add_argument(
        "--lambda",
        dest="lmbda",
        type=positive_float,
        default=None,
        help="rate weight for hyper+decoder (default: the model's training lambda)",
    )
    p.add_argument("--lambda-t", type=float_in(0.0, MAX_LAMBDA_T, high_open=True), default=None,
                   help="TCQ rate weight")
    p.add_argument("--cache-crops", type=positive_int, default=512,
                   help="crops per offline round")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="training folder (repeatable; default: $TRELLIC_DATA/train)",
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--force", action="store_true",
                   help="start a new run in --out, removing an earlier run's log and model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trellic.io import list_images
    from trellic.retrain.loop import RetrainConfig, retrain
    from trellic.train.data import CropDataset
    from trellic.zoo import load, save_model

    check_run_folder(args.out, RETRAIN_OUTPUTS, args.force, inputs=[args.model])
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
    with warnings_as_lines():
        dataset = CropDataset(list_images(folders, recursive=True), config.crop)
    clear_run_folder(args.out, RETRAIN_OUTPUTS)
    model = retrain(loaded.model, config, dataset, args.out, identity=loaded.sha256)
    info = {
        **loaded.info,
        "retrained_from": {"model": loaded.model_id, "sha256": loaded.sha256},
        "retrain": config.to_dict(),
        "retrain_data": [str(f) for f in folders],
    }
    digest = save_model(model, args.out / EXPORT, info)
    print(f"retrained model written to {args.out / EXPORT} (sha256 {digest[:16]})")
    return 0
