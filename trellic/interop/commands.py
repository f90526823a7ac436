"""``trellic import-compressai``: a CompressAI checkpoint -> a trellic weights file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trellic.argtypes import float_in, positive_float
from trellic.errors import TrellicError, warn


def register(subparsers: argparse._SubParsersAction) -> None:
    from trellic.interop.compressai import ARCHITECTURES
    from trellic.models.config import MAX_DELTA, MIN_DELTA

    p = subparsers.add_parser(
        "import-compressai",
        help="convert a CompressAI checkpoint into a trellic weights file",
        description="Read a CompressAI .pth.tar (bare state_dict or {'state_dict'|'model': ...}, "
        "'module.' prefixes, before or after update(); never unpickles objects), check it "
        "against the architecture, convert it exactly, build trellic's coding tables and write "
        "a weights file usable with --model PATH everywhere (docs/compressai.md).",
    )
    p.add_argument("checkpoint", type=Path, help="CompressAI checkpoint (.pth.tar, .pth, .pt)")
    p.add_argument("--arch", required=True, choices=ARCHITECTURES,
                   help="the CompressAI architecture (zoo name) the checkpoint was trained as")
    p.add_argument("-o", "--output", type=Path, required=True, help="weights file to write")
    p.add_argument(
        "--tcq-delta",
        type=float_in(MIN_DELTA, MAX_DELTA, high_open=True),
        default=0.6,
        help=f"TCQ step size the TCQ tables are built for, in [{MIN_DELTA:g}, {MAX_DELTA:g}) "
        "(default 0.6)",
    )
    p.add_argument(
        "--lambda",
        dest="lmbda",
        type=positive_float,
        default=None,
        help="the checkpoint's training lambda, recorded for retraining (CompressAI stores none)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trellic.interop.compressai import import_checkpoint
    from trellic.io import check_output
    from trellic.latent.scale_fidelity import probe_fidelity, warning_message
    from trellic.zoo import save_model

    if args.output.suffix != ".safetensors":
        raise TrellicError(f"output must end in .safetensors (--model needs it): {args.output}")
    check_output(args.output, args.force, (args.checkpoint,))
    model, info = import_checkpoint(args.checkpoint, args.arch, args.tcq_delta, args.lmbda)
    digest = save_model(model, args.output, info)
    config = model.config
    fidelity = probe_fidelity(model)  # the exact scales against the float model's
    message = warning_message(fidelity)
    if message is not None:
        warn(message)
    print(json.dumps({"output": str(args.output), "sha256": digest, "architecture": args.arch,
                      "N": config.N, "M": config.M, "source": info["source"],
                      "scale_fidelity": {
                          "mean_relative_error": round(fidelity.mean_relative_error, 6),
                          "rows_changed": round(fidelity.rows_changed, 6),
                          "rate_loss": round(fidelity.rate_loss, 6)}}))
    return 0
