"""Choose the TCQ step delta (lambda_t = 0.3 delta^2) by measurement on training photos.

    python experiments/tcq_operating_point.py --checkpoint RUN/checkpoint.safetensors \
        [--images 12] [--deltas 0.5,0.55,0.6,0.65,0.7] [--json out.json]

For each delta, codes BSDS500 ``val`` images (training photos; never Kodak:
it is the reporting set) with USQ and with TCQ-4/TCQ-8 through the real codec and
reports mean bpp (real file size), PSNR and the RD cost lambda*255^2*MSE + bpp
at the model's training lambda (results: docs/codec.md).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from trellic.codec import Codec
from trellic.eval.runner import rate_point
from trellic.io import read_image
from trellic.paths import data_root
from trellic.train.checkpoint import model_from_checkpoint
from trellic.zoo import LoadedModel


def measure(loaded: LoadedModel, kind: str, images: list[np.ndarray], lmbda: float) -> dict:
    codec = Codec.load_from(loaded, kind)
    point = rate_point(codec, images)
    return {
        "bpp": point.bpp,
        "psnr": point.psnr_rgb,
        "rd_cost": point.rd_cost(lmbda),
        "lambda_t": codec.lambda_t,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--deltas", default="0.5,0.55,0.6,0.65,0.7")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    progress = model_from_checkpoint(args.checkpoint)[1]
    lmbda = progress["config"]["lmbda"]
    files = sorted((data_root() / "train" / "bsds500" / "val").glob("*.jpg"))[: args.images]
    images = [read_image(f) for f in files]
    rows = []
    for delta in [float(d) for d in args.deltas.split(",")]:
        model, _ = model_from_checkpoint(args.checkpoint, tcq_delta=delta)
        loaded = LoadedModel(model, "experiment", "0" * 64, {})
        kinds = ("usq", "tcq4", "tcq8") if not rows else ("tcq4", "tcq8")
        for kind in kinds:
            row = {
                "delta": delta if kind != "usq" else 1.0,
                "quantizer": kind,
                **measure(loaded, kind, images, lmbda),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "checkpoint_step": progress["step"],
        "lambda": lmbda,
        "images": len(images),
        "dataset": "bsds500/val",
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    print(f"\n{'quantizer':<10}{'delta':>7}{'bpp':>9}{'PSNR':>8}{'RD cost':>10}")
    for row in rows:
        print(
            f"{row['quantizer']:<10}{row['delta']:>7.2f}{row['bpp']:>9.4f}{row['psnr']:>8.2f}"
            f"{row['rd_cost']:>10.4f}"
        )


if __name__ == "__main__":
    main()
