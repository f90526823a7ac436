"""The docs' tables generated from bench/ runs (scripts/doc_tables.py calls them by kind):
speed against CompressAI, the exact scales' fidelity, TCQ on a serial context."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from table_format import markdown_table, read_json

ROOT = Path(__file__).resolve().parents[1]


def compressai_speed(paths: list[Path]) -> list[str]:
    """bench/compressai_speed.py runs beside trellic's N=128/M=192 USQ rows at the same
    thread count (the first file: CompressAI's runs; the others: codec_speed files)."""
    ours = {}
    for path in paths[1:]:
        run = read_json(path)
        if run["N"] == 128 and run["M"] == 192:
            ours[run.get("threads", 1)] = run["results"]["usq"]
    rows = []
    for run in read_json(paths[0])["runs"]:
        mine = ours.get(run["threads"])
        ratio = "-" if mine is None else (f"{mine['encode_s'] / run['encode_s']:.2f}x / "
                                          f"{mine['decode_s'] / run['decode_s']:.2f}x")
        rows.append([str(run["threads"]), str(run["images"]), f"{run['encode_s']:.3f}",
                     f"{run['decode_s']:.3f}", ratio])
    return markdown_table(["threads", "images", "CompressAI encode s", "CompressAI decode s",
                   "trellic usq / CompressAI (encode / decode)"], rows)


def scale_fidelity(paths: list[Path]) -> list[str]:
    """bench/scale_fidelity.py: the exact (integer) scales against the float model's."""
    run = read_json(paths[0])
    rows = [[f"`{name}`", f"{r['mean_relative_error']:.2%}", f"{r['max_relative_error']:.1%}",
             f"{r['rows_changed']:.1%}", f"{r['rate_loss']:+.2%}", f"{r['table_rate_loss']:+.2%}"]
            for name, r in run["models"].items()]
    return [f"On {', '.join(run['images'])}:", ""] + markdown_table(
        ["model", "mean rel. scale error", "max", "rows changed",
         "ideal y rate, integer vs float scales", "table y rate, integer vs float"], rows)


def decode_speed(paths: list[Path]) -> list[str]:
    """bench/decode_speed.py's tables: CompressAI's and trellic's decode of the same
    checkpoints, then trellic's checkerboard against its mean-scale hyperprior at one N/M."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("decode_speed").tables(read_json(paths[0]))
    finally:
        sys.path.remove(str(ROOT / "bench"))


def serial_trellis(paths: list[Path]) -> list[str]:
    """bench/serial_trellis.py: TCQ on a serial context model, one search on first-pass
    parameters against further searches given the previous path's exact parameters."""
    run = read_json(paths[0])
    rows = [[r["quantizer"], str(r["searches"]), f"{r['bpp']:.4f}", f"{r['psnr']:.2f}",
             f"{r['latent_rd_cost']:.4f}"] for r in run["rows"]]
    gaps = [f"{kind}: the exact means move {g['mean_abs_means_moved']:.3f} on average from the "
            f"first pass's; {g['rows_changed']:.1%} of positions change table row."
            for kind, g in run["mismatch"].items()]
    return ([f"`{run['model']}` on {', '.join(run['images'])}:", ""]
            + markdown_table(["quantizer", "searches", "bpp", "PSNR (dB)", "latent RD cost"], rows)
            + [""] + gaps)
