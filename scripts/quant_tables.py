"""docs/quantization.md's generated tables (scripts/doc_tables.py calls them by kind): the
quantizer studies on BSDS500 photos, the Kodak study, the operating points and the training
recipes of the search-trained models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from table_format import markdown_table, read_json

from trellic.eval.bdrate import bd_psnr, bd_rate


def quant_study(paths: list[Path]) -> list[str]:
    """experiments/quant_study.py runs: per config the RD cost, its gain over the first config
    (% of its bpp) and the encode seconds; one table per run."""
    lines: list[str] = []
    for path in paths:
        run = read_json(path)
        caption = (f"`{path.name}`: `{run['model']}` (lambda {run['lambda']:g}), BSDS500 val "
                   f"{', '.join(Path(name).stem for name in run['images'])}:")
        rows = [[f"`{config}`", f"{point['lambda_t']:g}", f"{point.get('shrink', 1):g}",
                 f"{point['bpp']:.4f}", f"{point['rd_cost']:.4f}",
                 f"{point['gain_percent']:+.2f}%", f"{point['encode_s']:.2f}"]
                for config, point in run["configs"].items()]
        header = ["config", "lambda_t", "shrink", "bpp", "RD cost", "gain", "encode s"]
        lines += ([""] if lines else []) + [caption, ""] + markdown_table(header, rows)
    return lines


def rate_vs_sweep(point: dict, sweep: dict) -> float | None:
    """The rate difference (%) of one point against a model's USQ step sweep at the point's
    PSNR (log-rate interpolated linearly in PSNR); None outside the sweep's PSNR range."""
    steps = sorted(sweep.values(), key=lambda p: p["psnr"])
    psnrs = [p["psnr"] for p in steps]
    if len(steps) < 2 or not psnrs[0] <= point["psnr"] <= psnrs[-1]:
        return None
    log_rate = np.interp(point["psnr"], psnrs, [np.log(p["bpp"]) for p in steps])
    return 100 * (point["bpp"] / np.exp(log_rate) - 1)


def _same_weights(point: dict, sweep: dict) -> bool:
    """Whether a sweep exists and was measured on the weights (and images) of ``point``."""
    return bool(sweep) and all(p["sha256"] == point["sha256"] and p["images"] == point["images"]
                               for p in sweep.values())


def quant_kodak(paths: list[Path]) -> list[str]:
    """experiments/kodak_study.py: per (decoders, quantizer, encoder) row, BD-rate and BD-PSNR
    over the four rate points against plain USQ with the base models, and against plain USQ
    with the row's own decoders; the rate at equal PSNR against the USQ step sweep of the
    decoder set's USQ model at each rate point, and encode seconds per image (both means over
    the rate points)."""
    study = read_json(paths[0])
    rows, sweeps = study["rows"], study.get("sweeps", {})

    def against_sweep(row: dict, own: dict | None) -> str:
        if own is None or len(row) < 4:
            return "n/a"
        diffs = [rate_vs_sweep(point, sweeps[own[rate]["model"]])
                 if rate in own and _same_weights(own[rate], sweeps.get(own[rate]["model"], {}))
                 else None for rate, point in row.items()]
        return "n/a" if None in diffs else f"{np.mean(diffs):+.1f}"

    def curve(row: dict) -> tuple[list[float], list[float]]:
        points = [row[rate] for rate in sorted(row, key=lambda r: row[r]["bpp"])]
        return [p["bpp"] for p in points], [p["psnr"] for p in points]

    def against(anchor: dict | None, row: dict) -> tuple[str, str]:
        if anchor is None or len(anchor) < 4 or len(row) < 4:
            return "n/a", "n/a"
        return (f"{bd_rate(*curve(anchor), *curve(row)):+.1f}",
                f"{bd_psnr(*curve(anchor), *curve(row)):+.2f}")

    base = rows.get("base usq plain")
    order = ("base", "retrained", "proxy", "searched", "usq", "rdoq", "tcq4", "tcq8",
             "plain", "linear", "cheap", "full")
    table = []
    for label in sorted(rows, key=lambda label: [order.index(w) for w in label.split()]):
        row = rows[label]
        decoders, quantizer, encoder = label.split()
        own = rows.get(f"{decoders} usq plain")
        rate, quality = against(base, row)
        own_rate, _ = against(own, row)
        seconds = sum(p["encode_s"] for p in row.values()) / len(row)
        table.append([decoders, quantizer, encoder, rate, quality, own_rate,
                      against_sweep(row, own), f"{seconds:.2f}", f"{len(row)}"])
    header = ["decoders", "quantizer", "encoder", "BD-rate % vs base USQ", "BD-PSNR dB",
              "BD-rate % vs own USQ", "rate % vs own USQ step sweep", "encode s/image",
              "rate points"]
    steps = sorted({float(step) for sweep in sweeps.values() for step in sweep})
    note = (f"The step sweeps code the decoder set's USQ model at each rate point with plain "
            f"USQ at steps {', '.join(f'{step:g}' for step in steps)} ({len(sweeps)} models); "
            "n/a: a decoder set without a sweep, or a point outside its sweep's PSNR range."
            if sweeps else "No step sweep measured yet.")
    return [f"Kodak, {study['images']} images, real files; BD over the four rate points "
            "(pchip):", ""] + markdown_table(header, table) + ["", note]


def search_training(paths: list[Path]) -> list[str]:
    """Training with the true search against the other recipes: each rate point's models that
    have a search-trained variant, coded with TCQ-4 at the quantizer's own lambda_t (the
    search the retrained and the search-trained models saw), and the base model's USQ."""
    models = read_json(paths[0])["models"]
    recipes = [("", "base (USQ noise)"), ("-tcq4", "+ TCQ-4 noise proxy fine-tune"),
               ("-tcq4dec", "+ decoder retrained on true TCQ-4 latents"),
               ("-tcq4hyper", "+ hyperprior and decoder retrained"),
               ("-tcq4ste", "+ fine-tuned with the true TCQ-4 search (STE)")]
    bases = sorted((name.removesuffix("-tcq4ste") for name in models if name.endswith("-tcq4ste")),
                   key=lambda name: models[name]["lambda"])
    rows = []
    for base in bases:
        lmbda = models[base]["lambda"]
        for suffix, recipe in recipes:
            entry = models[base + suffix]
            steps = entry["retrain"]["steps"] if "retrain" in entry else entry["steps"]
            for kind in ("usq", "tcq4") if not suffix else ("tcq4",):
                point = entry["kodak"][kind]
                cost = lmbda * 255**2 * 10 ** (-point["psnr_rgb"] / 10) + point["bpp"]
                rows.append([f"`{base + suffix}`", recipe, f"{steps:,}", kind,
                             f"{point['bpp']:.4f}", f"{point['psnr_rgb']:.2f}", f"{cost:.4f}"])
    return markdown_table(["model", "recipe", "steps", "coded with", "bpp", "PSNR (dB)",
                   "RD cost at the mean PSNR"], rows)


def operating_points(paths: list[Path]) -> list[str]:
    """experiments/operating_points.py: each model's chosen lambda_t for the plain encoder and
    (lambda_t, weight) for the linearised mode, per quantizer (TCQ-8 takes TCQ-4's)."""
    study = read_json(paths[0])
    kinds = ("usq", "rdoq", "tcq4")
    rows = []
    for model, result in study["models"].items():
        points = result["operating_points"]
        rows.append([f"`{model}`"] + [
            f"{points[q]['lambda_t']:g}" for q in kinds[1:]] + [
            f"{points[q + '+linear']['lambda_t']:g} / {points[q + '+linear']['linear_weight']:g}"
            for q in kinds])
    caption = (f"Chosen on BSDS500 val {', '.join(Path(name).stem for name in study['images'])}"
               " (lambda_t of the plain encoder; lambda_t / weight of the linearised mode):")
    header = ["model", "rdoq", "tcq4, tcq8", "usq linear", "rdoq linear", "tcq4, tcq8 linear"]
    return [caption, ""] + markdown_table(header, rows)
