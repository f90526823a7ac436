"""``trellic retrain``: retrain decoder (and hyperprior) of a model on truly quantized latents."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from trellic.argtypes import (
    float_in,
    int_multiple_of,
    positive_float,
    positive_int,
    seed,
    threads,
)
from trellic.coding.bitstream import MAX_LAMBDA_T
from trellic.device import add_device_option, resolve_device
from trellic.errors import TrellicError, warn, warnings_as_lines
from trellic.paths import data_root
from trellic.quant.registry import quantizer_names
from trellic.train import distributed
from trellic.train.commands import LEARNING_RATE
from trellic.train.run_folder import (
    EXPORT,
    RETRAIN_OUTPUTS,
    check_run_folder,
    clear_run_folder,
    io_error_line,
)

DEFAULT_CACHE_CROPS = 512


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "retrain",
        help="retrain decoder / hyperprior on truly quantized latents",
        description="Freeze the encoder, quantize with the real quantizer and retrain g_s "
        "(decoder) or h_a, h_s, prior and g_s (hyper+decoder). Writes "
        "OUT/model.safetensors (a variant of the source model) and OUT/log.jsonl "
        "(an earlier run there is refused without --force). Offline mode caches its crops "
        "in OUT/cache-roundN/, removed at the end unless --keep-cache.",
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
        help="rate weight for hyper+decoder, unused by --part decoder "
             "(default: the model's training lambda)",
    )
    p.add_argument("--lambda-t", type=float_in(0.0, MAX_LAMBDA_T, high_open=True), default=None,
                   help="the quantizer's rate weight (default: the model's measured operating "
                   "point for the quantizer, else the quantizer's own: 0 for usq)")
    p.add_argument("--cache-crops", type=positive_int, default=None,
                   help=f"crops per offline round (default: {DEFAULT_CACHE_CROPS})")
    p.add_argument("--keep-cache", action="store_true",
                   help="keep the offline shards (OUT/cache-roundN/) after the run: a rerun "
                        "with the same model, data and options reuses them")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        default=None,
        help="training folder (repeatable; default: $TRELLIC_DATA/train)",
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--log-every", type=positive_int, default=10,
                   help="steps between log lines (and one at the end of each round)")
    p.add_argument("--threads", type=threads, default=None,
                   help="intra-op threads, at most the CPUs this process may use "
                        "(default: torch's)")
    add_device_option(p, "where the networks run: auto (the GPU if CUDA is available, else the "
                      "CPU), cpu or cuda; the coding tables and the exact integer scales stay "
                      "on the CPU (default: auto)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--force", action="store_true",
                   help="start a new run in --out, removing an earlier run's log and model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Under torchrun (WORLD_SIZE > 1) every rank runs this; see docs/retraining.md."""
    device = resolve_device(args.device)
    check_run_folder(args.out, RETRAIN_OUTPUTS, args.force, inputs=[args.model])
    created = distributed.init_from_env(args.device)  # under torchrun: join the group
    try:
        return _run(args, device, distributed.topology(args.device).is_main)
    finally:
        if created:
            distributed.shutdown()


def _run(args: argparse.Namespace, device: torch.device, main: bool) -> int:
    """The run itself, in every rank of a torchrun group (``main``: rank 0, the one writer)."""
    from trellic.io import list_images
    from trellic.retrain.loop import RetrainConfig, retrain
    from trellic.train.data import CropDataset
    from trellic.train.memory import check_cache_fits, check_step_fits
    from trellic.zoo import load, save_model

    say = warn if main else (lambda message: None)  # one writer: rank 0 warns and prints
    if args.part == "decoder" and args.lmbda is not None:
        say("--lambda ignored with --part decoder (it trains on distortion only)")
    if args.mode == "online" and args.cache_crops is not None:
        say("--cache-crops ignored with --mode online (no cache)")
    if args.mode == "online" and args.keep_cache:
        say("--keep-cache ignored with --mode online (no cache)")
    cache_crops = DEFAULT_CACHE_CROPS if args.cache_crops is None else args.cache_crops
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load(args.model)
    check_step_fits(args.batch_size, args.crop, loaded.model.config.N, device)
    if args.mode == "offline":
        grouped = distributed.topology(args.device).world_size > 1
        copies = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if grouped else 1  # each: the cache
        check_cache_fits(cache_crops, args.crop, loaded.model.config.M, copies)
    trained = loaded.info.get("training")
    lmbda = trained.get("lmbda") if isinstance(trained, dict) else None
    if args.lmbda is not None and args.part != "decoder":  # decoder: warned about above
        lmbda = args.lmbda
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
        lambda_t=(args.lambda_t if args.lambda_t is not None
                  else loaded.operating_points.get(args.quantizer, {}).get("lambda_t")),
        cache_crops=cache_crops,
        seed=args.seed,
        log_every=args.log_every,
    )
    folders = args.data or [data_root() / "train"]
    with warnings_as_lines():
        dataset = CropDataset(list_images(folders, recursive=True), config.crop)
    distributed.barrier()  # every rank has checked the run folder before rank 0 clears it
    if main:
        clear_run_folder(args.out, RETRAIN_OUTPUTS)
    try:
        model = retrain(loaded.model, config, dataset, args.out, identity=loaded.sha256,
                        keep_cache=args.keep_cache, device=device)
    except OSError as error:  # the log's disk full, say: one line, not a traceback
        raise TrellicError(io_error_line(error)) from None
    info = {
        **{k: v for k, v in loaded.info.items() if k != "base"},  # the export is a full model
        "retrained_from": {"model": loaded.model_id, "sha256": loaded.sha256,
                           "aliases": list(loaded.aliases)},
        "retrain": config.to_dict(),
        "retrain_data": [str(f) for f in folders],
    }
    # a decoder-only variant codes the same files as its source: same encoder defaults
    points = loaded.operating_points if config.part == "decoder" else None
    world_size = distributed.topology(args.device).world_size
    if world_size > 1:
        info["world_size"] = world_size
    if main:
        digest = save_model(model, args.out / EXPORT, info, operating_points=points)
        print(f"retrained model written to {args.out / EXPORT} (sha256 {digest[:16]})")
    distributed.barrier()  # the model is on disk when any rank returns
    return 0
