"""Kodak RD curves and BD-rates of the zoo: docs/results/zoo-*.json, zoo_bdrate.md, zoo_rd.png.

    python experiments/zoo_report.py [--workers 2] [--curves zoo-usq,zoo-tcq4,...]

Runs the real codec (``trellic eval``) over the 24 Kodak images for every zoo
model (one point per model): the USQ-trained models with usq, tcq4 and tcq8, the
TCQ-4-proxy-trained models with tcq4, the TCQ-4 hyper+decoder retrained variants
(``*-tcq4hyper``) with tcq4, the USQ decoder-only retrained ones (``*-usqdec``)
with usq, and the USQ models with usq after latent refinement (its retrained-decoder twin
matched it, -0.3% against -0.5% BD-rate vs WebP on the v3 zoo, and is no longer measured).
The refined curve costs ~1 CPU-core-hour (100 optimisation steps per image);
with ``--curves`` only the named curves are re-measured (``--curves ''``: none, the
tables and the plot are rebuilt from the stored JSON in seconds). Then it tabulates BD-rates
against JPEG, WebP, AVIF (docs/baselines), CompressAI's published
mbt2018-mean and the curves of earlier zoo versions (docs/results/v1/, v2/, v3/: what
the zoo measured before its models were trained longer; format1/: the same v4 models
coding format-1 files, with float scales, before portable bitstreams) with
``trellic bdrate --table``, and plots them with ``trellic plot``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from trellic.cli import main as trellic
from trellic.paths import kodak_dir
from trellic.quant.registry import quantizer_names
from trellic.zoo import read_manifest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("docs/results")  # relative to ROOT, so the tables name no machine paths
BASELINES = Path("docs/baselines")
# earlier zoos' curves: what longer training bought
EARLIER = (RESULTS / "v1", RESULTS / "v2", RESULTS / "v3", RESULTS / "format1")
WEIGHTS = ROOT / "weights"
QUANTIZERS = quantizer_names()
REFINED = "zoo-usq-refine100"
CHANNEL = "ms2020-channel"  # the channel-conditional zoo: its own curves
CHANNEL_QUANTIZERS = ("usq", "rdoq", "tcq4")


def zoo_curves() -> list[tuple[str, str, list[str]]]:
    """(file stem, quantizer, models by lambda) for each zoo curve that has every rate point.

    ``zoo-usq-refine100``: the USQ models with 100 steps of latent refinement per
    image (``--refine 100``, trellic.models.refine): a slower encoder, same files.
    """
    models = read_manifest()["models"]
    by_lambda = sorted(models, key=lambda name: models[name]["lambda"])

    def architecture(name: str) -> str:
        return models[name].get("architecture", "mbt2018-mean")

    def trained(quantizer: str, kind: str = "mbt2018-mean") -> list[str]:
        return [n for n in by_lambda if "variant_of" not in models[n]
                and models[n]["quantizer_trained"] == quantizer and architecture(n) == kind]

    usq, tcq, channel = trained("usq"), trained("tcq4"), trained("usq", CHANNEL)
    def retrained(quantizer: str, part: str) -> list[str]:
        return [n for n in by_lambda if models[n].get("retrain", {}).get("quantizer") == quantizer
                and models[n]["retrain"]["part"] == part and architecture(n) == "mbt2018-mean"]

    curves = [(f"zoo-{kind}", kind, usq) for kind in QUANTIZERS]
    curves += [("zoo-tcq4-trained", "tcq4", tcq),
               ("zoo-tcq4-retrained", "tcq4", retrained("tcq4", "hyper+decoder")),
               ("zoo-usq-retrained", "usq", retrained("usq", "decoder")),
               (REFINED, "usq", usq)]
    curves = [curve for curve in curves if len(curve[2]) == len(usq)]
    return curves + [(f"zoo-channel-{kind}", kind, channel)
                     for kind in CHANNEL_QUANTIZERS if len(channel) >= 4]


NAMES = {
    **{f"zoo-{kind}": f"trellic zoo ({kind})" for kind in QUANTIZERS},
    "zoo-tcq4-trained": "trellic zoo, TCQ-4 proxy fine-tuned (tcq4)",
    "zoo-tcq4-retrained": "trellic zoo, TCQ-4 hyper+decoder retrained (tcq4)",
    "zoo-usq-retrained": "trellic zoo, USQ decoder retrained (usq)",
    REFINED: "trellic zoo (usq), latents refined 100 steps",
    **{f"zoo-channel-{kind}": f"trellic channel-conditional zoo ({kind})"
       for kind in CHANNEL_QUANTIZERS},
}
EXTRA_ARGS = {REFINED: ["--refine", "100"]}


def check_current(path: Path, models: list[str]) -> None:
    """Refuse a curve that was not re-measured on the shipped weights of its models."""
    manifest = read_manifest()["models"]
    points = json.loads(path.read_text())["points"]
    measured = {p["model"]: p["checkpoint_sha256"] for p in points}
    stale = [m for m in models if measured.get(m) != manifest[m]["sha256"]]
    if stale:
        raise SystemExit(f"zoo_report: {path} predates the shipped {', '.join(stale)}: "
                         f"rerun with --curves {path.stem}")


def write_model_table(path: Path) -> None:
    """Every shipped model with its recipe summary, file size and Kodak numbers (manifest)."""
    manifest = read_manifest()
    lines = [
        "# Shipped models (from weights/manifest.json)",
        "",
        "Kodak, 24 images: bpp from real file sizes / PSNR-RGB (dB), measured by",
        "`scripts/ship_model.py` on the shipped file.",
        "",
        "Steps: each training stage of the model, after the model it was warm-started from.",
        "",
    ]
    models = manifest["models"]
    measured = [q for q in QUANTIZERS if all(q in e["kodak"] for e in models.values())]
    lines += [
        "| model | lambda | trained | steps | retrained | file | " + " | ".join(measured) + " |",
        "|" + "---|" * (6 + len(measured)),
    ]
    for name in sorted(models, key=lambda n: (models[n]["lambda"], n)):
        entry = models[name]
        retrain = entry.get("retrain")
        how = "-" if retrain is None else (
            f"{retrain['quantizer']} {retrain['part']}, {retrain['mode']}, {retrain['steps']} steps"
        )
        size = (WEIGHTS / entry["file"]).stat().st_size / 1e6
        kodak = entry["kodak"]
        cells = [f"{kodak[q]['bpp']:.4f} / {kodak[q]['psnr_rgb']:.2f}" for q in measured]
        stages = entry.get("stages") or [{"steps": entry["steps"]}]
        steps = " + ".join(f"{stage['steps']:,}" for stage in stages)
        if "warm_start_model" in entry:
            steps = f"{entry['warm_start_model']} + {steps}"
        lines.append(
            f"| `{name}` | {entry['lambda']} | {entry['quantizer_trained']} {entry['proxy']} | "
            f"{steps} | {how} | {size:.2f} MB | " + " | ".join(cells) + " |"
        )
    total = sum((WEIGHTS / e["file"]).stat().st_size for e in models.values()) / 1e6
    lines += ["", f"All weights together: {total:.1f} MB.", ""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--curves", default=None, metavar="STEMS",
                        help="re-measure only these curves (comma-separated file stems; '' for "
                             "none); the others are read back, and must match the shipped weights")
    args = parser.parse_args()
    os.chdir(ROOT)
    write_model_table(RESULTS / "zoo_models.md")
    chosen = None if args.curves is None else set(args.curves.split(","))
    curves = []
    for stem, kind, models in zoo_curves():
        out = RESULTS / f"{stem}.json"
        if chosen is not None and stem not in chosen:
            check_current(out, models)
            curves.append(str(out))
            continue
        model_args = [arg for name in models for arg in ("--model", name)]
        trellic(
            [
                "eval",
                str(kodak_dir()),
                *model_args,
                "--quantizer",
                kind,
                *EXTRA_ARGS.get(stem, []),
                "--workers",
                str(args.workers),
                "--name",
                NAMES[stem],
                "-o",
                str(out),
                "--force",
            ]
        )
        curves.append(str(out))
    baselines = [str(BASELINES / f"{name}.json") for name in ("jpeg", "webp", "avif")]
    earlier = [str(path) for folder in EARLIER for path in sorted(folder.glob("*.json"))]
    anchors = baselines + earlier
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
            "plot",  # the earlier zoos last: the palette's strong colours go to today's curves
            *baselines,
            *curves,
            *earlier,
            "--reference",
            "mbt2018-mean",
            "--max-bpp",
            "1.0",  # the zoo ends near 0.6 bpp: room for its curves
            "-o",
            str(RESULTS / "zoo_rd.png"),
            "--force",
        ]
    )


if __name__ == "__main__":
    main()
