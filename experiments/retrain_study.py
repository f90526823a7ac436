"""Retraining study: Kodak bpp / PSNR of a model before and after each retraining variant.

    python experiments/retrain_study.py --model NAME [--steps 1500] [--crop 128] [--lr 3e-5]
        [--hyper-lr 1e-5] [--cache-crops 4096]
        [--variants a,b,c,d,e,c8,d8] [--runs runs/retrain-study] [--json docs/data/X.json]
    python experiments/retrain_study.py --report docs/data/retraining-*.json [--section NAME]

The first form measures one rate point; ``--report`` joins the rate points into
curves and plots them (docs/results/retraining_rd[_NAME].png). The tables of
docs/retraining.md (one per rate point, and paper-style BD-rates: each variant
against the same quantizer before retraining and against USQ before retraining)
come from :func:`markdown`, through ``python scripts/doc_tables.py``.

Variants (the issue's list): (a) USQ decoder-only offline, (b) USQ hyper+decoder
online, (c) TCQ-4 decoder-only offline, (d) TCQ-4 hyper+decoder online, (e) TCQ-4
hyper+decoder offline in 3 rounds (re-quantizing between rounds); (c8), (d8): (c),
(d) with TCQ-8; (b10): (b) at 10x the learning rate; (e1), (e2): (e) in one round
of as many steps (the paper's offline way, no re-quantization) and in two. Training data:
$TRELLIC_DATA/train; Kodak only measures. Every number comes from real files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tcq_operating_point import measure  # same folder: one RD measurement for both studies

from trellic.errors import TrellicError
from trellic.eval.bdrate import bd
from trellic.io import list_images, read_image, write_atomic
from trellic.paths import data_root, kodak_dir
from trellic.quant.registry import quantizer_names
from trellic.retrain.loop import RetrainConfig, retrain
from trellic.train.data import CropDataset
from trellic.zoo import LoadedModel, load, save_model

VARIANTS = {
    "a": ("usq", "decoder", "offline", 1),
    "b": ("usq", "hyper+decoder", "online", 1),
    "c": ("tcq4", "decoder", "offline", 1),
    "d": ("tcq4", "hyper+decoder", "online", 1),
    "e": ("tcq4", "hyper+decoder", "offline", 3),
    "c8": ("tcq8", "decoder", "offline", 1),
    "d8": ("tcq8", "hyper+decoder", "online", 1),
    "b10": ("usq", "hyper+decoder", "online", 1),  # (b) at 10x the hyper+decoder lr
    "e1": ("tcq4", "hyper+decoder", "offline", 1),  # (e) without re-quantization
    "e2": ("tcq4", "hyper+decoder", "offline", 2),
}
LR_SCALE = {"b10": 10.0}
QUANTIZERS = quantizer_names()
CONTROLS = {"b10", "e1", "e2"}  # tabulated, left out of the plot


ROOT = Path(__file__).resolve().parents[1]


def _plot_path(section: str) -> Path:
    """docs/results/retraining_rd[_SECTION].png."""
    return ROOT / "docs" / "results" / f"retraining_rd{'_' + section if section else ''}.png"


LABELS = {
    "before": "before retraining",
    "a": "(a) USQ decoder-only",
    "b": "(b) USQ hyper+decoder, online",
    "c": "(c) TCQ-4 decoder-only",
    "d": "(d) TCQ-4 hyper+decoder, online",
    "e": "(e) TCQ-4 hyper+decoder, offline, 3 rounds",
    "c8": "(c8) TCQ-8 decoder-only",
    "d8": "(d8) TCQ-8 hyper+decoder, online",
    "b10": "(b, lr x10) USQ hyper+decoder, online",
    "e1": "(e, 1 round) TCQ-4 hyper+decoder, offline",
    "e2": "(e, 2 rounds) TCQ-4 hyper+decoder, offline",
}


def _merge(studies: list[dict]) -> list[dict]:
    """One study per model version: the rows of its runs, each (variant, quantizer) once."""
    merged: dict[str, dict] = {}
    for study in studies:
        into = merged.setdefault(study["model"], {**study, "rows": []})
        if into["sha256"] != study["sha256"]:
            raise TrellicError(f"studies of two versions of {study['model']} (sha256 differs)")
        seen = {(r["variant"], r["quantizer"]) for r in into["rows"]}
        into["rows"] += [r for r in study["rows"] if (r["variant"], r["quantizer"]) not in seen]
    variants = list(LABELS)
    for study in merged.values():
        study["rows"].sort(
            key=lambda r: (variants.index(r["variant"]), QUANTIZERS.index(r["quantizer"]))
        )
    return list(merged.values())


def _curves(studies: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(variant, quantizer) -> its rows over the rate points, by lambda."""
    curves: dict[tuple[str, str], list[dict]] = {}
    for study in sorted(studies, key=lambda s: s["lambda"]):
        for row in study["rows"]:
            curves.setdefault((row["variant"], row["quantizer"]), []).append(row)
    return curves


def _bd_cell(anchor: list[dict], test: list[dict]) -> str:
    try:
        result = bd(
            [r["bpp"] for r in anchor], [r["psnr"] for r in anchor],
            [r["bpp"] for r in test], [r["psnr"] for r in test],
        )
    except TrellicError:
        return "n/a"
    psnr = "" if result.quality_delta is None else f" / {result.quality_delta:+.3f} dB"
    return f"{result.rate_percent:+.2f}%{psnr}"


def markdown(paths: list[Path]) -> list[str]:
    """The study's tables in Markdown: one per rate point, then BD-rates over the rate points."""
    studies = _merge([json.loads(p.read_text()) for p in paths])
    curves = _curves(studies)
    lines = []
    for study in sorted(studies, key=lambda s: s["lambda"]):
        before = {r["quantizer"]: r for r in study["rows"] if r["variant"] == "before"}
        lines += [
            f"### {' '.join(filter(None, (study.get('architecture'), study['model'])))} "
            f"(lambda {study['lambda']}, sha256 {study['sha256'][:12]})",
            "",
            "| variant | quantizer | bpp | PSNR (dB) | dPSNR | dbpp | RD cost | steps | lr "
            "| wall |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in study["rows"]:
            ref = before[r["quantizer"]]
            if r["variant"] == "before":
                deltas, recipe = "- | -", "- | - | -"
            else:
                steps = r["steps_per_round"]
                steps = f"{r['rounds']} x {steps}" if r["rounds"] > 1 else steps
                dbpp = 100 * (r["bpp"] / ref["bpp"] - 1)
                deltas = f"{r['psnr'] - ref['psnr']:+.3f} | {dbpp:+.1f}%"
                recipe = f"{steps} | {r['lr']} | {r['wall_seconds']} s"
            lines.append(
                f"| {LABELS[r['variant']]} | {r['quantizer']} | {r['bpp']:.4f} | "
                f"{r['psnr']:.3f} | {deltas} | {r['rd_cost']:.4f} | {recipe} |"
            )
        lines.append("")
    points = len(studies)
    lines += [
        f"### BD-rate over the {points} rate points (Kodak, PSNR-RGB, pchip)",
        "",
        "Negative BD-rate / positive BD-PSNR: the variant is better. Anchors: the same",
        "quantizer before retraining, and USQ before retraining.",
        "",
        "| curve | quantizer | vs same quantizer before | vs USQ before |",
        "|---|---|---|---|",
    ]
    usq_before = curves[("before", "usq")]
    for (variant, kind), rows in curves.items():
        if len(rows) != points:
            continue
        same = "-" if variant == "before" else _bd_cell(curves[("before", kind)], rows)
        vs_usq = "-" if (variant, kind) == ("before", "usq") else _bd_cell(usq_before, rows)
        lines.append(f"| {LABELS[variant]} | {kind} | {same} | {vs_usq} |")
    return lines


def comparison(paths: list[Path]) -> list[str]:
    """Per rate point and variant, the RD-cost change of retraining (against the same
    quantizer before) on each model family of ``paths``: the hyperprior, the
    channel-conditional and the spatial context studies side by side."""
    studies = _merge([json.loads(p.read_text()) for p in paths])
    families = sorted({_family(s) for s in studies}, key=lambda f: (f != "hyperprior", f))
    gains: dict[tuple[float, str, str], dict[str, str]] = {}
    for study in studies:
        before = {r["quantizer"]: r["rd_cost"] for r in study["rows"] if r["variant"] == "before"}
        for r in study["rows"]:
            if r["variant"] != "before":
                cell = f"{100 * (r['rd_cost'] / before[r['quantizer']] - 1):+.2f}%"
                key = (study["lambda"], r["variant"], r["quantizer"])
                gains.setdefault(key, {})[_family(study)] = cell
    variants = list(LABELS)
    lines = ["| lambda | variant | quantizer | " + " | ".join(families) + " |",
             "|---|---|---|" + "---|" * len(families)]
    for (lmbda, variant, kind) in sorted(gains, key=lambda k: (k[0], variants.index(k[1]))):
        cells = [gains[(lmbda, variant, kind)].get(family, "-") for family in families]
        lines.append(f"| {lmbda:g} | {LABELS[variant]} | {kind} | " + " | ".join(cells) + " |")
    return ["RD cost (D + lambda R on Kodak, 24 images) after retraining against the same "
            "quantizer before, per rate point; negative: retraining gains.", ""] + lines


FAMILIES = {"ms2020-channel": "channel-conditional", "mbt2018-checkerboard": "checkerboard",
            "cheng2020-anchor-checkerboard": "checkerboard", "mbt2018": "serial context",
            "cheng2020-anchor": "serial context", "cheng2020-attn": "serial context"}


def _family(study: dict) -> str:
    """The model family of a study: its architecture (recorded since the spatial context
    studies; earlier studies' model ids name the channel-conditional model)."""
    architecture = study.get("architecture")
    if architecture is None and "ms2020-channel" in study["model"]:
        architecture = "ms2020-channel"
    return FAMILIES.get(architecture, "hyperprior")


def report(paths: list[Path], section: str = "") -> None:
    """Plot the curves of the studies in ``paths`` (docs/results/retraining_rd[_SECTION].png)."""
    studies = _merge([json.loads(p.read_text()) for p in paths])
    _plot(_curves(studies), len(studies), _plot_path(section))


def _plot(curves: dict[tuple[str, str], list[dict]], points: int, path: Path) -> None:
    """PSNR against bpp, one line per (variant, quantizer), styled as ``trellic plot`` does."""
    from trellic.eval.plot import curve_styles, legend_columns, make_figure, png_bytes

    shown = {key: rows for key, rows in curves.items()
             if len(rows) == points and key[0] not in CONTROLS}
    labels = [f"{LABELS[variant]}, {kind}" for variant, kind in shown]
    width = 8.0
    figure = make_figure(figsize=(width, 6), dpi=120, layout="constrained")
    axes = figure.subplots()
    styles = curve_styles([variant == "before" for variant, _ in shown])
    for rows, label, style in zip(shown.values(), labels, styles, strict=True):
        axes.plot([r["bpp"] for r in rows], [r["psnr"] for r in rows], label=label,
                  **style.kwargs())
    axes.set(xlabel="bpp", ylabel="PSNR-RGB (dB)", title="Retraining on Kodak (24 images)")
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=legend_columns(labels, width, 8), fontsize=8,
                  frameon=False)
    path.write_bytes(png_bytes(figure))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, nargs="+", default=None,
                        help="study JSONs to join into one RD plot")
    parser.add_argument("--section", default="",
                        help="with --report: the plot's name suffix (default: none)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=1500, help="per variant, split over rounds")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-5, help="decoder-only variants")
    parser.add_argument("--hyper-lr", type=float, default=1e-5, help="hyper+decoder variants")
    parser.add_argument("--cache-crops", type=int, default=4096)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--runs", type=Path, default=Path("runs/retrain-study"),
                        help="retraining runs (checkpoints, caches, model.safetensors)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.report:
        report(args.report, args.section)
        return

    loaded = load(args.model)
    lmbda = loaded.info["training"]["lmbda"]
    images = [read_image(f) for f in sorted(kodak_dir().glob("kodim*.png"))[: args.images]]
    dataset = CropDataset(list_images(data_root() / "train", recursive=True), args.crop)
    rows = []
    def save() -> None:
        if args.json:
            result = {
                "model": loaded.model_id,
                "architecture": loaded.model.config.architecture,
                "sha256": loaded.sha256,
                "lambda": lmbda,
                "kodak_images": len(images),
                "crop": args.crop,
                "batch_size": args.batch_size,
                "rows": rows,
            }
            write_atomic(args.json, (json.dumps(result, indent=2) + "\n").encode(), force=True)

    for kind in QUANTIZERS:
        rows.append(
            {"variant": "before", "quantizer": kind, **measure(loaded, kind, images, lmbda)}
        )
        print(json.dumps(rows[-1]), flush=True)
    save()
    for name in args.variants.split(","):
        kind, part, mode, rounds = VARIANTS[name]
        lr = (args.lr if part == "decoder" else args.hyper_lr) * LR_SCALE.get(name, 1.0)
        config = RetrainConfig(
            quantizer=kind,
            part=part,
            mode=mode,
            rounds=rounds,
            steps=args.steps // rounds,
            batch_size=args.batch_size,
            crop=args.crop,
            lr=lr,
            lmbda=lmbda,
            cache_crops=args.cache_crops,
        )
        start = time.time()
        model = retrain(loaded.model, config, dataset, args.runs / name, identity=loaded.sha256)
        seconds = time.time() - start
        recipe = {
            **loaded.info,
            "retrain": config.to_dict(),
            "retrain_data": ["shared/data/train"],
            "retrained_from": {"model": loaded.model_id, "sha256": loaded.sha256},
        }
        save_model(model, args.runs / name / "model.safetensors", recipe)  # ship_model.py input
        variant = LoadedModel(model, loaded.model_id, loaded.sha256, loaded.info)
        rows.append(
            {
                "variant": name,
                "quantizer": kind,
                "part": part,
                "mode": mode,
                "rounds": rounds,
                "steps_per_round": config.steps,
                "lr": lr,
                "wall_seconds": round(seconds),
                **measure(variant, kind, images, lmbda),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        save()  # after every variant: a study stopped midway keeps what it measured
    save()
    before = {r["quantizer"]: r for r in rows if r["variant"] == "before"}
    print("\n| variant | quantizer | part | mode | rounds | bpp | PSNR | dPSNR | RD cost |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = before[r["quantizer"]]
        print(
            f"| {r['variant']} | {r['quantizer']} | {r.get('part', '-')} | {r.get('mode', '-')} | "
            f"{r.get('rounds', '-')} | {r['bpp']:.4f} | {r['psnr']:.3f} | "
            f"{r['psnr'] - ref['psnr']:+.3f} | {r['rd_cost']:.4f} |"
        )


if __name__ == "__main__":
    main()
