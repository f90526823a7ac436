"""Quantizers x encoders x decoders on Kodak, over the zoo's four rate points (real files).

    python experiments/kodak_study.py --json docs/data/quant_kodak.json \
        [--decoders base retrained searched] [--quantizers usq rdoq tcq4 tcq8] \
        [--encoders plain linear cheap full] [--images 24]
    python experiments/kodak_study.py --json docs/data/quant_kodak.json \
        --decoders base retrained --sweep-steps 0.8 0.9 1.0 1.1 1.25 1.4

Every (decoders, quantizer, encoder) row codes the Kodak images with each of
the four rate points' models through the real codec, each model at its
measured operating point (the manifest's, as ``trellic compress`` does), and
records per rate point the mean bpp (file bytes), PSNR-RGB, MSE and encode
seconds per image. Decoder sets: ``base`` (the zoo's end-to-end models),
``retrained`` (each quantizer's retrained variant: ``-usqdec`` for USQ and
RDOQ, ``-tcq4hyper`` for TCQ), ``proxy`` (``-tcq4``: fine-tuned end to end
with TCQ's noise proxy; TCQ rows only), ``searched`` (``-tcq4ste``: fine-tuned
end to end with the true TCQ-4 search in the forward pass; TCQ rows only).
``scripts/doc_tables.py`` turns the JSON into docs/quantization.md's table.

``--sweep-steps S ...`` (then no rows run) codes each decoder set's USQ model
with plain USQ at the steps S (``usq_delta``: the same weights, the USQ tables
rebuilt for the step, real files): the anchor that shows whether a method only
trades rate for distortion as a coarser step would.

The JSON is rewritten after every point and a rerun skips the points it holds,
so a long run resumes (runs of other rows may share the file).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from trellic.codec import Codec
from trellic.eval.metrics import mse, psnr
from trellic.eval.runner import round_trip
from trellic.io import read_image, write_atomic
from trellic.models.model import CodecModel
from trellic.models.refine import refine_config
from trellic.paths import kodak_dir
from trellic.zoo import LoadedModel, load

RATE_POINTS = ("l0018", "l0035", "l0067", "l013")
ENCODERS = ("plain", "linear", "cheap", "full")


def decoder_model(decoders: str, quantizer: str, rate: str) -> str | None:
    """The zoo model of one rate point in a decoder set; None where the set has no model."""
    base = f"mbt-mean-n64-{rate}"
    tcq = quantizer.startswith("tcq")
    if decoders == "base":
        return base
    if decoders == "retrained":
        return f"{base}-tcq4hyper" if tcq else f"{base}-usqdec"
    if decoders == "proxy":
        return f"{base}-tcq4" if tcq else None
    if decoders == "searched":
        return f"{base}-tcq4ste" if tcq else None
    raise ValueError(f"unknown decoder set {decoders!r}")


def with_usq_step(loaded: LoadedModel, step: float) -> LoadedModel:
    """The same weights coding USQ at ``step`` (every coding table rebuilt from the weights)."""
    model = CodecModel(dataclasses.replace(loaded.model.config, usq_delta=step))
    model.load_state_dict(loaded.model.state_dict())
    model.update()
    return dataclasses.replace(loaded, model=model.eval())


def measure(model: str, quantizer: str, encoder: str, images: list[np.ndarray],
            usq_step: float | None = None) -> dict:
    """Mean bpp, PSNR-RGB, MSE ([0, 1] pixels) and encode seconds of one model on the images
    (``usq_step``: with its USQ tables rebuilt for that step)."""
    loaded = load(model)
    if usq_step is not None:
        loaded = with_usq_step(loaded, usq_step)
    refine = None if encoder == "plain" else refine_config(encoder)
    codec = Codec.load_from(loaded, quantizer, None, refine)
    rows = []
    for image in images:
        result = round_trip(codec, image)
        rows.append({"bpp": 8 * len(result.data) / (image.shape[0] * image.shape[1]),
                     "psnr": psnr(image, result.reconstruction),
                     "mse": mse(image, result.reconstruction) / 255**2,
                     "encode_s": result.encode_seconds})
    point = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return point | {"model": model, "sha256": loaded.sha256, "lambda_t": codec.lambda_t,
                    "linear_weight": codec.quantizer.linear_weight, "images": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--decoders", nargs="+", default=["base", "retrained", "searched"])
    parser.add_argument("--quantizers", nargs="+", default=["usq", "rdoq", "tcq4", "tcq8"])
    parser.add_argument("--encoders", nargs="+", default=["plain", "linear"], choices=ENCODERS)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--sweep-steps", nargs="*", type=float, default=[],
                        help="only sweep: code each decoder set's USQ models at these steps")
    args = parser.parse_args()
    files = sorted(kodak_dir().glob("*.png"))[: args.images]
    images = [read_image(f) for f in files]
    sweep_models = sorted({model for decoders in args.decoders for rate in RATE_POINTS
                           if (model := decoder_model(decoders, "usq", rate))})
    for model in sweep_models:
        for step in args.sweep_steps:
            if str(step) in read(args.json)["sweeps"].get(model, {}):
                continue
            point = measure(model, "usq", "plain", images, usq_step=step)
            print(f"sweep {model} usq step {step}: bpp {point['bpp']:.4f} "
                  f"psnr {point['psnr']:.3f}", flush=True)
            store(args.json, len(files), ("sweeps", model, str(step)), point)
    if args.sweep_steps:
        return
    for decoders in args.decoders:
        for quantizer in args.quantizers:
            for encoder in args.encoders:
                label = f"{decoders} {quantizer} {encoder}"
                for rate in RATE_POINTS:
                    model = decoder_model(decoders, quantizer, rate)
                    if model is None or rate in read(args.json)["rows"].get(label, {}):
                        continue
                    point = measure(model, quantizer, encoder, images)
                    print(f"{decoders:9s} {quantizer:4s} {encoder:6s} {rate}: "
                          f"bpp {point['bpp']:.4f} psnr {point['psnr']:.3f} "
                          f"enc {point['encode_s']:.2f}s", flush=True)
                    store(args.json, len(files), ("rows", label, rate), point)


def store(path: Path, images: int, where: tuple[str, str, str], point: dict) -> None:
    """Write one point at ``study[section][group][key]``, re-reading the file first: another
    run may have added points meanwhile."""
    section, group, key = where
    study = read(path)
    study["images"] = images
    study[section].setdefault(group, {})[key] = point
    write_atomic(path, (json.dumps(study, indent=1) + "\n").encode(), force=True)


def read(path: Path) -> dict:
    """The study so far (an empty one if the file does not exist yet)."""
    study = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    study.setdefault("sweeps", {})
    return study


if __name__ == "__main__":
    main()
