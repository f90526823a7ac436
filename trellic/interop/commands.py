"""``trellic import-compressai`` and ``trellic export-compressai``: CompressAI checkpoints
in and out (docs/compressai.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trellic.argtypes import float_in, positive_float
from trellic.errors import TrellicError, warn


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_import(subparsers)
    _register_export(subparsers)


def _register_import(subparsers: argparse._SubParsersAction) -> None:
    from trellic.interop.compressai_layouts import LAYOUTS
    from trellic.models.config import MAX_DELTA, MIN_DELTA

    p = subparsers.add_parser(
        "import-compressai",
        help="convert a CompressAI checkpoint into a trellic weights file",
        description="Read a CompressAI .pth.tar (bare state_dict or under 'state_dict', "
        "'model', 'network' or 'model_state_dict'; 'module.', '_orig_mod.', 'model.' "
        "prefixes; float32, float16 or bfloat16; before or after update(); never unpickles "
        "objects), infer or check its architecture, convert it exactly, build trellic's "
        "coding tables and write a weights file usable with --model PATH everywhere "
        "(docs/compressai.md).",
    )
    p.add_argument("checkpoint", type=Path, help="CompressAI checkpoint (.pth.tar, .pth, .pt)")
    p.add_argument("--arch", default=None, choices=tuple(LAYOUTS),
                   help="the CompressAI architecture (zoo name) the checkpoint was trained as; "
                   "default: inferred from its keys and shapes")
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
    p.set_defaults(func=run_import)


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-compressai",
        help="write a trellic model of a CompressAI architecture as a CompressAI checkpoint",
        description="Write MODEL (an imported CompressAI architecture, retrained or not) as "
        "{'state_dict': ...} with exactly the keys and shapes of CompressAI 1.2.8's model "
        "after update(), coding tables included, so that load_state_dict(strict=True) "
        "accepts it (docs/compressai.md).",
    )
    p.add_argument("model", metavar="MODEL",
                   help="zoo name or weights path of the model to export")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="CompressAI checkpoint to write (.pth.tar, .pth, .pt)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run_export)


def run_import(args: argparse.Namespace) -> int:
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
    fidelity = None  # the exact scales against the float model's: measured for the
    if hasattr(model.latent_codec, "exact_scales"):  # (mean-)scale hyperprior codecs only
        fidelity = probe_fidelity(model)
    message = None if fidelity is None else warning_message(fidelity)
    if message is not None:
        warn(message)
    sizes = {"N": config.N, "M": config.M, **({"groups": list(config.groups)}
                                              if config.groups else {})}
    print(json.dumps({"output": str(args.output), "sha256": digest,
                      "architecture": config.architecture, **sizes, "source": info["source"],
                      "scale_fidelity": None if fidelity is None else {
                          "mean_relative_error": round(fidelity.mean_relative_error, 6),
                          "rows_changed": round(fidelity.rows_changed, 6),
                          "rate_loss": round(fidelity.rate_loss, 6)}}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from trellic.interop.compressai_export import (
        check_checkpoint_name,
        export_state,
        tcq_retrained,
        write_checkpoint,
    )
    from trellic.io import check_output
    from trellic.zoo import load

    check_checkpoint_name(args.output)
    check_output(args.output, args.force)
    loaded = load(args.model)
    state = export_state(loaded.model)
    quantizer = tcq_retrained(loaded.info)
    if quantizer is not None:
        warn(f"{args.model} was trained for {quantizer}, but CompressAI codes y by rounding: "
             "its decoder will see other reconstructions than it was trained on")
    write_checkpoint(state, args.output, args.force)
    config = loaded.model.config
    print(json.dumps({"output": str(args.output), "architecture": config.architecture,
                      "N": config.N, "M": config.M, "model": loaded.model_id,
                      "sha256": loaded.sha256, "keys": len(state),
                      "tables": "computed as CompressAI's update() does; "
                                "net.update(force=True) rebuilds them"}))
    return 0
