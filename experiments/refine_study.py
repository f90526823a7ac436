"""Choose latent refinement's steps and learning rate by measurement on training photos.

    python experiments/refine_study.py --model mbt-mean-n64-l0018 --model mbt-mean-n64-l013 \
        [--configs 100:0.01,100:0.02,100:0.03,200:0.02] [--images 4] [--json out.json]

Codes top-left 256x384 crops of BSDS500 ``val`` photos 10 to 13 (training
photos; never Kodak: it is the reporting set) with USQ, plainly and after each
refinement setting (steps:lr), through the real codec. The gain is the drop
in RD cost (lambda * 255^2 * MSE + bpp at the model's training lambda) as a
percentage of the plain bpp: the rate saved at equal distortion, to first
order. Results: docs/codec.md.
"""

from __future__ import annotations

import argparse
import json

from trellic.codec import Codec
from trellic.eval.runner import rate_point
from trellic.io import read_image
from trellic.models.refine import RefineConfig
from trellic.paths import data_root
from trellic.zoo import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--configs", default="100:0.01,100:0.02,100:0.03,200:0.02",
                        help="comma-separated steps:lr")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    files = sorted((data_root() / "train" / "bsds500" / "val").glob("*.jpg"))
    images = [read_image(f)[:256, :384] for f in files[10 : 10 + args.images]]
    rows = []
    for name in args.model:
        loaded = load(name)
        lmbda = loaded.info["training"]["lmbda"]
        plain = rate_point(Codec.load_from(loaded, "usq"), images)
        for item in args.configs.split(","):
            steps, lr = item.split(":")
            config = RefineConfig(steps=int(steps), lr=float(lr))
            point = rate_point(Codec.load_from(loaded, "usq", refine=config), images)
            rows.append({
                "model": name, "sha256": loaded.sha256, "steps": config.steps, "lr": config.lr,
                "plain_bpp": plain.bpp, "plain_psnr": plain.psnr_rgb,
                "bpp": point.bpp, "psnr": point.psnr_rgb,
                "gain_percent": 100 * (plain.rd_cost(lmbda) - point.rd_cost(lmbda)) / plain.bpp,
                "seconds_per_image": point.seconds_per_image,
            })
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"images": [f.name for f in files[10 : 10 + args.images]],
                       "crop": [256, 384], "rows": rows}, file, indent=2)
            file.write("\n")


if __name__ == "__main__":
    main()
