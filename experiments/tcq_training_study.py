"""TCQ-proxy training against USQ-noise training, all coded with the real TCQ: Kodak RD.

    python experiments/tcq_training_study.py LABEL=RUN_DIR_OR_MODEL ... [--images 24]
        [--json docs/data/tcq_training.json]

Each argument names a training run folder (its checkpoint is measured) or a
shipped model. Every model is coded with USQ and TCQ-4 through the real codec on
Kodak; the table gives bpp (real file size), PSNR and the RD cost
lambda * 255^2 * MSE + bpp at the model's training lambda (lower is better).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tcq_operating_point import measure  # same folder: one RD measurement for all studies

from trellic.io import read_image
from trellic.paths import kodak_dir
from trellic.train.checkpoint import model_from_checkpoint
from trellic.zoo import LoadedModel, load


def load_any(source: str) -> tuple[LoadedModel, dict]:
    """A run folder's checkpoint or a shipped model, with its training config."""
    checkpoint = Path(source) / "checkpoint.safetensors"
    if not checkpoint.is_file():
        loaded = load(source)
        return loaded, {**loaded.info["training"], "step": loaded.info.get("steps")}
    model, progress = model_from_checkpoint(checkpoint)
    config = progress["config"]
    return LoadedModel(model, "experiment", "0" * 64, {}), {**config, "step": progress["step"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="LABEL=RUN_DIR or LABEL=MODEL_NAME")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    images = [read_image(f) for f in sorted(kodak_dir().glob("kodim*.png"))[: args.images]]
    rows = []
    for item in args.models:
        label, _, source = item.partition("=")
        loaded, config = load_any(source or label)
        for kind in ("usq", "tcq4"):
            row = {
                "label": label,
                "trained_with": config["quantizer"],
                "steps": config["step"],
                "quantizer": kind,
                **measure(loaded, kind, images, config["lmbda"]),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"kodak_images": len(images), "rows": rows}, indent=2))
    print("\n| model | trained with | steps | coded with | bpp | PSNR (dB) | RD cost |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['label']} | {r['trained_with']} | {r['steps']} | {r['quantizer']} | "
            f"{r['bpp']:.4f} | {r['psnr']:.3f} | {r['rd_cost']:.4f} |"
        )


if __name__ == "__main__":
    main()
