"""Quantizers and encoders compared in the image: RD cost from real files, on non-Kodak photos.

    python experiments/quant_study.py --json out.json [--model default] [--images 4] \
        --configs usq rdoq:0.05 tcq4 tcq4:0.05+cheap tcq4+full

A config is ``quantizer[:lambda_t][~WEIGHT][+REFINE]`` (lambda_t: the search's
rate weight, default the model's operating point; REFINE: encoder-side refinement, a mode of
``--refine``, a number of annealed steps or ``uSTEPS:LR`` for the cheap mode's
unrounded float32 steps at another count and learning rate; WEIGHT: the
linearised mode's weight, default the model's operating point). Runs a-g of
docs/quantization.md also set the search's former shrink weight (``@SHRINK``).
Codes BSDS500 ``val`` photos (training photos, never Kodak: the reporting
set), the first ``--images`` of them in name order from ``--first``, through
the real codec, and records per image the bytes, the MSE and the encode
seconds; the summary per config is the mean RD cost (lambda * 255^2 * MSE +
bpp at the model's training lambda) and its gain against the first config,
as a percentage of its bpp (the rate saved at equal distortion, to first
order). The JSON is rewritten after every config, so a long run keeps what
it finished.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

from trellic.codec import Codec
from trellic.io import read_image, write_atomic
from trellic.models.refine import REFINE_MODES, RefineConfig, refine_config
from trellic.paths import data_root
from trellic.tune import measure  # one RD measurement per config, shared with trellic tune
from trellic.zoo import LoadedModel, load


class Config(NamedTuple):
    """One study config: the quantizer, its search settings (None: the default) and
    the encoder's refinement."""

    quantizer: str
    lambda_t: float | None
    linear_weight: float | None
    refine: RefineConfig | None

    def codec(self, loaded: LoadedModel) -> Codec:
        codec = Codec.load_from(loaded, self.quantizer, self.lambda_t, self.refine)
        if self.linear_weight is not None:
            codec.quantizer.linear_weight = self.linear_weight
        return codec


def parse_config(text: str) -> Config:
    """``quantizer[:lambda_t][~WEIGHT][+REFINE]`` -> its :class:`Config`."""
    head, _, refine = text.partition("+")
    head, _, weight = head.partition("~")
    name, _, lambda_t = head.partition(":")
    if refine.startswith("u"):
        steps, lr = refine[1:].split(":")
        config = RefineConfig(int(steps), float(lr), anneal=False, bfloat16=False)
    else:
        config = refine_config(refine if refine in REFINE_MODES else int(refine or 0))
    return Config(name, float(lambda_t) if lambda_t else None,
                  float(weight) if weight else None, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--configs", nargs="+", required=True)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    files = sorted((data_root() / "train" / "bsds500" / "val").glob("*.jpg"))
    files = files[args.first : args.first + args.images]
    images = [read_image(f) for f in files]
    loaded = load(args.model)
    lmbda = loaded.info["training"]["lmbda"]
    out = {"model": loaded.model_id, "sha256": loaded.sha256, "lambda": lmbda,
           "images": [f.name for f in files], "configs": {}}
    for text in args.configs:
        codec = parse_config(text).codec(loaded)
        point = measure(codec, images, lmbda)
        point["lambda_t"] = codec.lambda_t
        point["linear_weight"] = codec.quantizer.linear_weight
        base = next(iter(out["configs"].values()), point)
        point["gain_percent"] = 100 * (base["rd_cost"] - point["rd_cost"]) / base["bpp"]
        out["configs"][text] = point
        print(f"{text:24s} bpp {point['bpp']:.4f} rd {point['rd_cost']:.4f} "
              f"gain {point['gain_percent']:+.2f}% enc {point['encode_s']:.2f}s", flush=True)
        write_atomic(args.json, (json.dumps(out, indent=1) + "\n").encode(), force=True)


if __name__ == "__main__":
    main()
