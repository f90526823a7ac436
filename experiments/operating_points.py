"""Choose each model's operating point per quantizer by measurement on non-Kodak photos.

    python experiments/operating_points.py --json docs/data/operating_points.json \
        [--models mbt-mean-n64-l0067 ...] [--images 4] [--write-manifest]

For every model and quantizer: the search's rate weight lambda_t for the plain
encoder, then the linearised mode's point (``quantizer+linear``): its weight
(the fraction of ``linearised_shift`` taken) at the plain lambda_t for USQ and
RDOQ, jointly with lambda_t for TCQ; each the lowest mean RD cost
(lambda * 255^2 * MSE + bpp at the model's training lambda, bpp from real
files) on the first ``--images`` BSDS500 ``val`` photos (training photos, never
Kodak: the reporting set). ``--write-manifest`` stores the choices in each
model's weights file and manifest entry (``trellic.zoo.record_operating_points``),
which ``trellic compress`` then uses as its defaults for those weights, by name or
by path. The JSON is rewritten after every model. The sweep and its grids are
``trellic.tune`` (``sweep``, ``GRIDS``), which ``trellic tune`` runs on a user's photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from trellic import tune
from trellic.io import read_image, write_atomic
from trellic.paths import data_root
from trellic.zoo import load, read_manifest, record_operating_points


def sweep(model: str, images: list, log) -> dict:
    """Every config's measurement and the chosen operating points: per quantizer for the
    plain encoder, and per ``quantizer+linear`` for the linearised mode (trellic.tune.sweep)."""
    loaded = load(model)
    lmbda = loaded.info["training"]["lmbda"]
    result = tune.sweep(loaded, images, lmbda, tune.GRIDS, log=lambda text, point: log(
        f"{model} {text:20s} rd {point['rd_cost']:.4f}"))
    return {"sha256": loaded.sha256, "lambda": lmbda, "configs": result.configs,
            "operating_points": result.operating_points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="manifest names (default: every model of the manifest)")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--write-manifest", action="store_true")
    args = parser.parse_args()
    manifest = read_manifest()
    models = args.models or sorted(manifest["models"])
    files = sorted((data_root() / "train" / "bsds500" / "val").glob("*.jpg"))[: args.images]
    images = [read_image(f) for f in files]
    out = json.loads(args.json.read_text()) if args.json.is_file() else {"models": {}}
    out["images"] = [f.name for f in files]
    for model in models:
        out["models"][model] = sweep(model, images, lambda line: print(line, flush=True))
        write_atomic(args.json, (json.dumps(out, indent=1) + "\n").encode(), force=True)
    if args.write_manifest:
        for model, result in out["models"].items():
            if result["sha256"] in load(model).identities:  # measured on these weights
                record_operating_points(model, result["operating_points"])


if __name__ == "__main__":
    main()
