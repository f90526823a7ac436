"""Re-measure shipped models' Kodak results at the settings ``trellic compress`` uses by default.

    python scripts/measure_zoo.py [--models NAME ...] [--images 24] [--quantizers tcq4 tcq8]

For each model, codes the first ``--images`` Kodak images with each quantizer at the
model's operating point (its weights' measured lambda_t, else the quantizer's
default: exactly what ``trellic compress --quantizer Q`` does) and replaces those
quantizers' ``kodak`` results in weights/manifest.json (bpp from the real file
size, PSNR-RGB, the lambda_t used). ``trellic models`` and the README's default
model table (``scripts/doc_tables.py``) read them. The manifest is rewritten after
every model, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from ship_model import kodak_results  # same folder: the measurement a shipped model gets

from trellic.errors import TrellicError
from trellic.io import write_atomic
from trellic.paths import weights_dir
from trellic.quant.registry import quantizer_names
from trellic.zoo import MANIFEST, load_named, read_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="manifest names (default: every model of the manifest)")
    parser.add_argument("--images", type=int, default=24, help="first N Kodak images")
    parser.add_argument("--quantizers", nargs="+", choices=quantizer_names(),
                        default=quantizer_names(), help="quantizers to re-measure")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = args.models or sorted(read_manifest()["models"])
    for name in names:
        results = kodak_results(load_named(name), args.images, args.quantizers)
        manifest = read_manifest()  # again: only this model's results change
        manifest["models"][name].setdefault("kodak", {}).update(results)
        write_atomic(weights_dir() / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(),
                     force=True)
        print(f"{name}: {json.dumps(results)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TrellicError as error:
        print(f"measure_zoo: error: {error}", file=sys.stderr)
        sys.exit(1)
