"""Kodak RD curves and BD-rates of the zoo: docs/results/zoo-*.json, zoo_bdrate.md, zoo_rd.png.

    python experiments/zoo_report.py [--models A,B,C,D] [--workers 2]

Runs the real codec (``trellic eval``) over the 24 Kodak images for every zoo
model (one point per model) with usq, tcq4 and tcq8, then tabulates BD-rates
against JPEG, WebP, AVIF (docs/baselines) and CompressAI's published
mbt2018-mean with ``trellic bdrate --table``, and plots them with ``trellic plot``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trellic.cli import main as trellic
from trellic.paths import kodak_dir
from trellic.zoo import read_manifest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("docs/results")  # relative to ROOT, so the tables name no machine paths
BASELINES = Path("docs/baselines")


def base_models() -> list[str]:
    """Zoo models that are not retrained variants, by lambda."""
    models = read_manifest()["models"]
    bases = [name for name, entry in models.items() if "variant_of" not in entry]
    return sorted(bases, key=lambda name: models[name]["lambda"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default=None, help="comma-separated (default: every base model)"
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.chdir(ROOT)
    models = args.models.split(",") if args.models else base_models()
    curves = []
    for kind in ("usq", "tcq4", "tcq8"):
        out = RESULTS / f"zoo-{kind}.json"
        model_args = [arg for name in models for arg in ("--model", name)]
        trellic(
            [
                "eval",
                str(kodak_dir()),
                *model_args,
                "--quantizer",
                kind,
                "--workers",
                str(args.workers),
                "--name",
                f"trellic zoo ({kind})",
                "-o",
                str(out),
                "--force",
            ]
        )
        curves.append(str(out))
    anchors = [str(BASELINES / f"{name}.json") for name in ("jpeg", "webp", "avif")]
    for metric, suffix in (("psnr", ""), ("ms-ssim", "_msssim")):
        trellic(
            [
                "bdrate",
                "--table",
                *anchors,
                *curves,
                "--reference",
                "mbt2018-mean",
                "--metric",
                metric,
                "-o",
                str(RESULTS / f"zoo_bdrate{suffix}.md"),
                "--force",
            ]
        )
    trellic(
        [
            "plot",
            *anchors,
            *curves,
            "--reference",
            "mbt2018-mean",
            "-o",
            str(RESULTS / "zoo_rd.png"),
            "--force",
        ]
    )


if __name__ == "__main__":
    main()
