"""What TCQ costs on a serial context model: a search on first-pass parameters, coded exactly.

    python bench/serial_trellis.py MODEL [--images 4] [--searches 1 2 3] [--data DIR] [--json OUT]

A trellis needs every position's parameters before it searches, but a serial
context's parameters depend on the reconstructions along the path itself
(``trellic.latent.serial_context.SerialContext.decide``). The encoder searches
with first-pass parameters (every residual rounded on the quantizer's grid)
and codes the path with the exact sequential ones. For each quantizer (tcq4,
tcq8) this measures, on the first ``--images`` images (default Kodak):

- searches = 1, 2, 3: each further search is given the parameters the previous
  path produced, so it approaches "the same search given the true parameters";
  bpp (the tables' code length of every symbol, header aside), PSNR of g_s's
  8-bit image, and the latent RD cost ``||y - y_hat||^2 + lambda_t * bits`` per
  latent element;
- the mismatch the search did not see: mean |means moved| and the fraction of
  positions whose table row changed between the first-pass and the exact
  parameters;
- USQ on the same model, for reference.

Prints one JSON object (also written to ``--json``), then a table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from trellic.argtypes import positive_int
from trellic.entropy.gaussian import scale_levels
from trellic.eval.metrics import psnr
from trellic.io import (
    image_to_tensor,
    list_images,
    pad_to_multiple,
    read_image,
    tensor_to_image,
    write_atomic,
)
from trellic.paths import kodak_dir
from trellic.zoo import load


def mismatch(codec, y, quantizer, z_hat) -> dict:
    """First-pass against exact parameters of the one-search path."""
    r1, s1 = codec.first_pass(z_hat, y, quantizer)
    path = quantizer.search(r1, s1, None, codec.y_coding(quantizer).rate)
    _, r2, s2, _ = codec.follow(z_hat, y, quantizer, path)
    table = codec.scale_table
    moved = (r1 - r2).abs().mean().item()  # |means moved|: y - r1 against y - r2
    rows = (scale_levels(s1, table) != scale_levels(s2, table)).float().mean().item()
    return {"mean_abs_means_moved": moved, "rows_changed": rows}


def measure(model, image, kind: str, searches: int) -> dict:
    codec, quantizer = model.latent_codec, model.quantizer(kind)
    height, width = image.shape[:2]
    x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
    with torch.no_grad():
        y = model.g_a(x)
        decision = (codec.decide(y, quantizer, searches=searches) if kind != "usq"
                    else codec.decide(y, quantizer))
        x_hat = model.synthesize(decision.result.y_hat)[..., :height, :width]
    bits = decision.result.estimated_bits
    lambda_t = quantizer.default_lambda_t
    distortion = (y - decision.result.y_hat).square().sum().item()
    return {"bpp": bits / (height * width),
            "psnr": psnr(image, tensor_to_image(x_hat)),
            "latent_rd_cost": (distortion + lambda_t * bits) / y.numel()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a serial context model: zoo name or weights path")
    parser.add_argument("--images", type=positive_int, default=4)
    parser.add_argument("--searches", type=positive_int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--data", default=None, help="image folder (default: Kodak)")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model = load(args.model).model
    paths = list_images(args.data or kodak_dir())[: args.images]
    images = [read_image(path) for path in paths]
    rows = []
    for kind, searches in [("usq", 1)] + [(k, s) for k in ("tcq4", "tcq8")
                                          for s in args.searches]:
        runs = [measure(model, image, kind, searches) for image in images]
        row = {"quantizer": kind, "searches": searches}
        for key in runs[0]:
            row[key] = sum(run[key] for run in runs) / len(runs)
        rows.append(row)
    gaps = []
    for kind in ("tcq4", "tcq8"):
        quantizer = model.quantizer(kind)
        for image in images:
            x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
            with torch.no_grad():
                y = model.g_a(x)
                codec = model.latent_codec
                z_hat = codec.entropy_bottleneck.dequantize(codec.side_symbols(y))
                gaps.append({"quantizer": kind, **mismatch(codec, y, quantizer, z_hat)})
    summary = {k: {key: sum(g[key] for g in gaps if g["quantizer"] == k)
                   / max(1, sum(g["quantizer"] == k for g in gaps))
                   for key in ("mean_abs_means_moved", "rows_changed")}
               for k in ("tcq4", "tcq8")}
    text = json.dumps({"model": args.model, "images": [p.name for p in paths], "rows": rows,
                       "mismatch": summary}, indent=1)
    print(text)
    if args.json is not None:
        write_atomic(args.json, (text + "\n").encode(), force=True)
    print("\n| quantizer | searches | bpp | PSNR (dB) | latent RD cost |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        cost = row["latent_rd_cost"]
        print(f"| {row['quantizer']} | {row['searches']} | {row['bpp']:.4f} | "
              f"{row['psnr']:.2f} | {cost:.4f} |" if math.isfinite(cost) else "")
    for kind, gap in summary.items():
        print(f"{kind}: the exact means move {gap['mean_abs_means_moved']:.3f} on average from "
              f"the first pass's; {gap['rows_changed']:.1%} of positions change table row")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
