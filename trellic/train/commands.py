"""``trellic train``: end-to-end training from folders of photos (one process or torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from trellic.argtypes import (
    float_in,
    int_in,
    int_multiple_of,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    threads,
)
from trellic.device import add_device_option
from trellic.errors import TrellicError, warn, warnings_as_lines
from trellic.models.architectures import architecture_names
from trellic.models.config import MAX_CHANNELS, ModelConfig
from trellic.paths import data_root
from trellic.quant.registry import quantizer_names
from trellic.train.run_folder import (
    CHECKPOINT,
    TRAIN_OUTPUTS,
    check_run_folder,
    clear_run_folder,
    io_error_line,
)
from trellic.train.warm_start import check_train_params

DEFAULT_LAMBDA = {"mse": 0.0067, "ms-ssim": 16.64}  # CompressAI's quality 4 of each
# Adam moves every weight by about lr per step: above 1 no run learns, and far above it
# (1e300) torch's own update overflows float32 with a traceback.
LEARNING_RATE = float_in(0.0, 1.0, low_open=True)
# The validation options without --val do nothing: their defaults are filled in by _check(), so
# that one given without --val is told apart and warned about.
VALIDATION_DEFAULTS = {"val_every": 1000, "val_images": 8, "val_crop": 256}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a model end to end",
        description="Train a model (--architecture) on random crops with a quantizer proxy. "
                    "Writes log.jsonl, checkpoint.safetensors and model.safetensors to --out "
                    "(an earlier run there is refused without --force or --resume). "
                    "Runs data-parallel under torchrun --nproc_per_node=K (rank 0 writes).",
    )
    p.add_argument("--data", type=Path, action="append", default=None,
                   help="training folder (repeatable; default: $TRELLIC_DATA/train)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--architecture", choices=architecture_names(), default="mbt2018-mean",
                   help="the model's entropy model (docs/architecture.md)")
    p.add_argument("--distortion", choices=["mse", "ms-ssim"], default="mse",
                   help="mse: lambda * 255^2 * MSE + bpp; ms-ssim: lambda * (1 - MS-SSIM) + bpp")
    p.add_argument("--lambda", dest="lmbda", type=positive_float, default=None,
                   help="rate-distortion weight (default: 0.0067 for mse, 16.64 for ms-ssim)")
    p.add_argument("--quantizer", choices=quantizer_names(), default="usq")
    p.add_argument("--proxy", choices=["noise", "ste", "mixed"], default="noise")
    p.add_argument("--N", type=int_in(1, MAX_CHANNELS), default=128, help="transform channels")
    p.add_argument("--M", type=int_in(1, MAX_CHANNELS), default=192, help="latent channels")
    p.add_argument("--steps", type=positive_int, default=100_000)
    p.add_argument("--batch-size", type=positive_int, default=8, help="crops per step and process")
    p.add_argument("--crop", type=int_multiple_of(64, 64), default=256,
                   help="crop side (a multiple of 64: the model's grid)")
    p.add_argument("--downscale-above", type=non_negative_int, default=800,
                   help="halve images whose long side exceeds this first (0: never)")
    p.add_argument("--lr", type=LEARNING_RATE, default=1e-4, help="Adam's learning rate")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--log-every", type=positive_int, default=10, help="steps between log lines")
    p.add_argument("--checkpoint-every", type=positive_int, default=200,
                   help="steps between checkpoints")
    p.add_argument("--val", type=Path, default=None,
                   help="held-out folder: validate with the real codec (default: no validation)")
    p.add_argument("--val-every", type=positive_int, default=None,
                   help="steps between validations (default: 1000)")
    p.add_argument("--val-images", type=positive_int, default=None,
                   help="validation images (first, sorted; default: 8)")
    p.add_argument("--val-crop", type=positive_int, default=None,
                   help="center crop side of each image (default: 256)")
    add_device_option(p, "auto: this rank's GPU if CUDA is available, else the CPU")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: the transforms compute in bfloat16, the entropy models in float32")
    p.add_argument("--channels-last", action="store_true",
                   help="channels-last memory layout (faster with --precision bf16 on CPU)")
    p.add_argument("--threads", type=threads, default=None,
                   help="intra-op threads, at most the CPUs this process may use "
                        "(default: torch's)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out/checkpoint.safetensors")
    p.add_argument("--force", action="store_true",
                   help="start a new run in --out, removing an earlier run's files there")
    p.add_argument("--warm-start", type=Path, default=None,
                   help="initialise the model from a checkpoint or weights file; from another "
                        "architecture, the tensors whose names and shapes match")
    p.add_argument("--train-params", choices=["all", "new"], default="all",
                   help="new: train only the tensors --warm-start did not provide, the others "
                        "stay fixed (a new entropy model's networks first)")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    """What the option types cannot check alone (values are checked at parse time)."""
    from trellic.train.distributed import resolve_device
    from trellic.train.memory import check_step_fits

    try:
        ModelConfig(architecture=args.architecture, N=args.N, M=args.M)
    except ValueError as error:
        raise TrellicError(str(error)) from None
    starts_from = [] if args.resume else [args.warm_start]  # --force would remove it
    check_run_folder(args.out, TRAIN_OUTPUTS, args.force, args.resume, starts_from)
    if args.resume:  # a resumed run keeps the set its checkpoint saved
        _check_resume(args)
    else:
        check_train_params(args.train_params, args.warm_start)
        if args.warm_start is not None and not args.warm_start.is_file():
            raise TrellicError(f"warm-start file not found: {args.warm_start}")
    if args.distortion == "ms-ssim" and args.crop < 192:
        raise TrellicError("--distortion ms-ssim needs --crop of at least 192 (MS-SSIM: 161)")
    if args.val is not None and not args.val.is_dir():
        raise TrellicError(f"validation folder not found: {args.val}")
    check_step_fits(args.batch_size, args.crop, args.N, resolve_device(args.device))
    if args.val is None:
        given = [name for name in VALIDATION_DEFAULTS if getattr(args, name) is not None]
        if given:
            options = ", ".join("--" + name.replace("_", "-") for name in given)
            warn(f"{options} ignored: no validation without --val")
    for name, default in VALIDATION_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _check_resume(args: argparse.Namespace) -> None:
    """--resume: the same model as the run's checkpoint, and a --steps it has not passed."""
    from trellic.train.checkpoint import read_progress
    from trellic.train.loop import check_resume

    checkpoint = args.out / CHECKPOINT
    check_resume(checkpoint, args.architecture, args.train_params, args.N, args.M)
    step = read_progress(checkpoint).get("step")
    if isinstance(step, int) and args.steps < step:
        raise TrellicError(f"{args.out} has trained {step} steps already: --steps {args.steps} "
                           f"would end before its checkpoint (give --steps {step} or more)")
    if args.warm_start is not None:
        warn("--warm-start ignored with --resume: the run continues from its checkpoint")


def _check_held_out(val: Path | None, folders: list[Path]) -> None:
    """The validation folder must not overlap a training folder."""
    if val is None:
        return
    held_out = val.resolve()
    for folder in map(Path.resolve, folders):
        if held_out == folder or folder in held_out.parents or held_out in folder.parents:
            raise TrellicError(f"validation folder {val} overlaps training folder {folder}")


def run(args: argparse.Namespace) -> int:
    from trellic.io import list_images
    from trellic.train import distributed
    from trellic.train.data import CropDataset
    from trellic.train.loop import EXPORT, TrainConfig, train

    _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    folders = args.data or [data_root() / "train"]
    _check_held_out(args.val, folders)
    lmbda = DEFAULT_LAMBDA[args.distortion] if args.lmbda is None else args.lmbda
    config = TrainConfig(
        lmbda=lmbda, architecture=args.architecture, train_params=args.train_params,
        quantizer=args.quantizer, proxy=args.proxy, distortion=args.distortion,
        N=args.N, M=args.M, steps=args.steps, batch_size=args.batch_size, crop=args.crop,
        lr=args.lr, seed=args.seed, log_every=args.log_every,
        checkpoint_every=args.checkpoint_every, val=str(args.val) if args.val else None,
        val_every=args.val_every, val_images=args.val_images, val_crop=args.val_crop,
        device=args.device, precision=args.precision, channels_last=args.channels_last,
        downscale_above=args.downscale_above, data=[str(f) for f in folders],
    )
    created = distributed.init_from_env(args.device)
    try:
        main = distributed.topology(args.device).is_main
        with warnings_as_lines():
            dataset = CropDataset(list_images(folders, recursive=True), config.crop,
                                  args.downscale_above or None)
        if main and not args.resume:
            clear_run_folder(args.out, TRAIN_OUTPUTS)
        if main:
            print(f"training on {len(dataset)} images from {', '.join(config.data)}")
        try:
            train(config, dataset, args.out, resume=args.resume, warm_start=args.warm_start)
        except OSError as error:  # the log's disk full, say: one line, not a traceback
            raise TrellicError(io_error_line(error)) from None
        if main:
            print(f"model written to {args.out / EXPORT}")
    finally:
        if created:
            distributed.shutdown()
    return 0
