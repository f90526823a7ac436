"""Ship a trained run as a zoo model: weights file, Kodak results, manifest entry.

    python scripts/ship_model.py RUN_DIR NAME [--default] [--images 24] [--warm-start MODEL]
        [--weights-dir weights]
    python scripts/ship_model.py RETRAIN_DIR/model.safetensors NAME   # a retrained variant

Reads RUN_DIR/checkpoint.safetensors (model tensors) and the run's config, or
a weights file (a retrained variant, or a shipped model to re-ship), writes
weights/NAME.safetensors in the compact shipped form (fp16 parameters, tables
rebuilt after rounding; a retrained variant stores only what differs from its
base), measures Kodak bpp (real file size) and PSNR for usq, tcq4 and tcq8 with
the real codec on the file as written, and records everything in
weights/manifest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

from trellic import paths
from trellic.codec import Codec
from trellic.errors import TrellicError
from trellic.eval.runner import rate_point
from trellic.io import read_image, write_atomic
from trellic.models import CodecModel
from trellic.paths import data_root, kodak_dir
from trellic.quant.registry import quantizer_names
from trellic.train.checkpoint import model_from_checkpoint
from trellic.zoo import (
    MANIFEST,
    LoadedModel,
    load_model_file,
    load_named,
    save_model,
    sha256_of,
)


def _data_name(folder: str) -> str:
    """A training folder as a path under the shared data root (no machine paths)."""
    try:
        return "shared/data/" + str(Path(folder).resolve().relative_to(data_root().resolve()))
    except ValueError:
        return Path(folder).name


def kodak_results(loaded: LoadedModel, count: int, quantizers: list[str] | None = None) -> dict:
    """Kodak bpp (real files) and PSNR per quantizer at the model's default settings."""
    images = [read_image(path) for path in sorted(kodak_dir().glob("kodim*.png"))[:count]]
    results = {}
    for kind in quantizers or quantizer_names():
        codec = Codec.load_from(loaded, kind)
        point = rate_point(codec, images)
        results[kind] = {
            "images": point.images,
            "bpp": point.bpp,
            "psnr_rgb": point.psnr_rgb,
            "lambda_t": codec.lambda_t,
            "seconds_per_image": point.seconds_per_image,
        }
        print(f"{kind}: {results[kind]}", file=sys.stderr)
    return results


def _from_checkpoint(checkpoint: Path) -> tuple[CodecModel, dict]:
    model, progress = model_from_checkpoint(checkpoint)
    config = progress["config"]
    return model, {
        "training": config,
        "steps": progress["step"],
        "wall_seconds": progress["elapsed"],
        "hardware": f"{platform.processor() or platform.machine()}, 1 CPU thread",
        "torch": torch.__version__,
    }


def _stage(info: dict) -> dict:
    """One training run of a model: its length, cost and recipe (for the manifest)."""
    config = info["training"]
    return {
        "steps": info["steps"],
        "wall_seconds": round(info["wall_seconds"]),
        "hardware": info["hardware"],
        **{k: config.get(k) for k in ("quantizer", "proxy", "lr", "batch_size", "crop")},
        "precision": config.get("precision", "fp32"),
        **({"train_params": config["train_params"]} if "train_params" in config else {}),
    }


def _first_stage(entry: dict, weights_dir: Path) -> dict:
    """The stage of a shipped model recorded before stages existed, from its file's recipe."""
    _, info = load_model_file(weights_dir / entry["file"], weights_dir)
    info = {**info, "steps": entry["steps"], "wall_seconds": entry["wall_seconds"],
            "hardware": entry["hardware"]}
    return {"from": entry.get("warm_start", "scratch"), **_stage(info)}


def _read(manifest_path: Path, name: str) -> dict:
    if manifest_path.is_file():
        return json.loads(manifest_path.read_text())
    return {"schema": 1, "default": name, "models": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("name")
    parser.add_argument("--default", action="store_true", help="make it the default model")
    parser.add_argument("--images", type=int, default=24, help="Kodak images to measure")
    parser.add_argument("--warm-start", default=None, metavar="MODEL",
                        help="the shipped model the run was warm-started from (recorded)")
    parser.add_argument("--earlier-run", type=Path, action="append", default=[],
                        metavar="RUN_DIR", help="a run this one continued (repeatable, in order): "
                        "recorded as the stages before it (e.g. phase 1 of a new entropy model)")
    parser.add_argument("--weights-dir", type=Path, default=paths.weights_dir(),
                        help="the zoo to ship into (default: $TRELLIC_WEIGHTS, else the "
                        "checkout's weights/)")
    args = parser.parse_args()

    weights_dir = args.weights_dir
    manifest_path = weights_dir / MANIFEST
    manifest = _read(manifest_path, args.name)
    if args.run.is_file():  # a weights file: a retrained variant, or a shipped model
        model, info = load_model_file(args.run, weights_dir)
    else:
        model, info = _from_checkpoint(args.run / "checkpoint.safetensors")
    source = info.get("retrained_from")
    base = None
    if source:
        base = load_named(source["model"], weights_dir)
        if source["sha256"] not in base.identities:
            raise TrellicError(f"{args.run} was retrained from another version of {base.model_id}")
        entry = {
            **manifest["models"][base.model_id],
            "variant_of": base.model_id,
            "retrain": info["retrain"],
        }
    else:
        config = info["training"]
        stage = {"from": "scratch", **_stage(info)}
        stages, previous = [], manifest["models"].get(args.name, {})
        if args.warm_start and args.warm_start not in manifest["models"]:
            raise TrellicError(f"--warm-start: no model '{args.warm_start}' in {manifest_path}")
        if args.warm_start == args.name:  # continues the shipped model of the same name
            stages = previous.get("stages") or [_first_stage(previous, weights_dir)]
            stage["from"] = f"{args.name} as shipped before (sha256 {previous['sha256'][:12]})"
        elif args.warm_start:
            source = manifest["models"][args.warm_start]
            stage["from"] = (f"{args.warm_start} (sha256 {source['sha256'][:12]}, "
                             f"{source['steps']:,} steps)")
            previous = {}
        warm_started_from = stage["from"]
        for earlier in args.earlier_run:  # the warm start began the first of them
            earlier_info = _from_checkpoint(earlier / "checkpoint.safetensors")[1]
            stages.append({"from": stage["from"], **_stage(earlier_info)})
            stage["from"] = f"the run before ({earlier.name})"
        entry = {
            **{k: v for k, v in previous.items() if k in ("warm_start", "warm_start_model")},
            "architecture": model.config.architecture,
            "N": config["N"],
            "M": config["M"],
            "tcq_delta": model.config.tcq_delta,
            "usq_delta": model.config.usq_delta,
            "lambda": config["lmbda"],
            "quantizer_trained": config["quantizer"],
            "proxy": config["proxy"],
            "data": [_data_name(d) for d in config["data"]],
            "steps": sum(s["steps"] for s in stages) + stage["steps"],
            "wall_seconds": sum(s["wall_seconds"] for s in stages) + stage["wall_seconds"],
            "hardware": info["hardware"],
            "stages": stages + [stage],
        }
        if args.warm_start and args.warm_start != args.name:
            entry["warm_start"] = (
                f"{warm_started_from}; steps and wall_seconds here count this model's own "
                "training"
            )
            entry["warm_start_model"] = args.warm_start
    info = {k: v for k, v in info.items() if k != "base"}
    path = weights_dir / f"{args.name}.safetensors"
    points = entry.get("operating_points", {})  # a variant starts from its base's
    identity = save_model(model, path, info, half=True, base=base, operating_points=points)
    shipped, shipped_info = load_model_file(path, weights_dir)
    loaded = LoadedModel(shipped, args.name, identity, shipped_info, points)
    entry.update(
        file=path.name,
        storage="fp16" if base is None else f"fp16, tensors that differ from {base.model_id}",
        sha256=sha256_of(path),
        weights_sha256=identity,
        kodak=kodak_results(loaded, args.images),  # at the operating points compress uses
    )
    manifest = _read(manifest_path, args.name)  # again: another ship may have finished meanwhile
    manifest["models"][args.name] = entry
    if args.default:
        manifest["default"] = args.name
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode(), force=True)
    print(json.dumps(entry, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TrellicError as error:
        sys.exit(f"ship_model: {error}")
