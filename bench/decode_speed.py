"""trellic's decode time of every CompressAI image architecture against CompressAI's own.

The same checkpoint, the same image, the same thread count (1 by default) on
both sides. CompressAI's side runs first, in its scratch environment: it builds
each architecture with seeded random weights, saves the checkpoints and times
its own compress / decompress (``bench/compressai_speed.py --out-dir``). This
script (trellic's environment) then imports each checkpoint
(``trellic import-compressai``'s conversion), encodes the same image with USQ
and times trellic's decode, best of ``--repeats`` after a warm-up: the whole
``Codec.decode`` and, inside it, the latent decode (``decode_latents``: z, the
hyperprior and context networks, the entropy decoder) and g_s::

    PYTHONPATH=$PWD "$VENV"/bin/python bench/compressai_speed.py --out-dir "$OUT"
    .venv/bin/python bench/decode_speed.py --checkpoints "$OUT" --json docs/data/decode_speed.json

(``OUT``: any scratch folder; the checkpoints take 0.6 GB.)

It also times a trellic-only pair at one size (N=128, M=192, random weights with
the latent spread of the CompressAI side): ``mbt2018-checkerboard`` against
``mbt2018-mean``, the checkerboard's cost over the mean-scale hyperprior's.

Prints the Markdown tables (``tables``) and writes one JSON object (``--json``):
per architecture both sides' seconds, the ratio trellic / CompressAI, stream
sizes, and how far trellic's decoded image is from CompressAI's (the same model
decodes to nearly the same pixels: a check that both did the same work); under
``compressai``, CompressAI's whole record.
Targets (issue 25): the serial context models (mbt2018, cheng2020-anchor,
cheng2020-attn) no slower than CompressAI's; the checkerboard within 1.5x of
the mean-scale hyperprior at the same N/M.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trellic.argtypes import positive_int
from trellic.codec import Codec
from trellic.eval.results import device_description
from trellic.interop.compressai import import_checkpoint
from trellic.io import image_to_tensor, pad_to_multiple, read_image
from trellic.latent.checkerboard import embed, unembed
from trellic.models import CodecModel, ModelConfig
from trellic.paths import data_root
from trellic.zoo import LoadedModel, save_model

SERIAL = ("mbt2018", "cheng2020-anchor", "cheng2020-attn")
PAIR = ("mbt2018-mean", "mbt2018-checkerboard")  # trellic architectures, N=128 / M=192
SERIAL_TARGET = 1.0  # trellic / CompressAI decode time, at most
CHECKERBOARD_TARGET = 1.5  # mbt2018-checkerboard / mbt2018-mean decode time, at most


def cpu_model() -> str:
    """``lscpu``'s model name (from /proc/cpuinfo), else the platform's processor."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_decode(codec: Codec, data: bytes, repeats: int) -> dict:
    """``codec.decode(data)``, best of ``repeats`` after a warm-up: total, latent decode, g_s."""
    model = codec.loaded.model
    inner = {"decode_latents": codec.decode_latents, "synthesize": model.synthesize}
    spent = dict.fromkeys(inner, 0.0)

    def timed(name):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner[name](*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return call

    codec.decode_latents, model.synthesize = timed("decode_latents"), timed("synthesize")
    runs = []
    try:
        for index in range(repeats + 1):
            spent.update(dict.fromkeys(spent, 0.0))
            start = time.perf_counter()
            image = codec.decode(data)
            total = time.perf_counter() - start
            if index:  # the first run warms up (lazy tables, integer networks)
                runs.append((total, spent["decode_latents"], spent["synthesize"]))
    finally:
        del codec.decode_latents, model.synthesize
    total, latent, synthesis = min(runs)
    return {"decode_s": total, "decode_latent_s": latent, "decode_g_s_s": synthesis,
            "decode_all_s": [run[0] for run in runs], "image": image}


def time_encode_decode(codec: Codec, image: np.ndarray, repeats: int) -> dict:
    start = time.perf_counter()
    encoded = codec.encode(image)
    encode = time.perf_counter() - start
    row = time_decode(codec, encoded.data, repeats)
    height, width = image.shape[:2]
    row.update(encode_s=encode, file_bytes=len(encoded.data),
               bpp=8 * len(encoded.data) / (height * width))
    return row


def compare(ours: np.ndarray, theirs_path: Path) -> dict:
    """How far trellic's decoded image is from CompressAI's (8-bit levels)."""
    theirs = read_image(theirs_path)
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    mse = float((diff.astype(np.float64) ** 2).mean())
    psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
    return {"max_abs_diff": int(diff.max()), "equal_fraction": float((diff == 0).mean()),
            "psnr_db": round(psnr, 2) if np.isfinite(psnr) else None}


def imported_rows(reference: dict, image: np.ndarray, checkpoints: Path, work_dir: Path,
                  repeats: int) -> dict:
    """Each checkpoint of the CompressAI run imported, coded and decoded by trellic."""
    rows = {}
    for arch, theirs in reference["archs"].items():
        model, info = import_checkpoint(checkpoints / theirs["checkpoint"], arch)
        weights = work_dir / f"{arch}.safetensors"
        save_model(model, weights, info)
        codec = Codec.load(str(weights), "usq")
        row = time_encode_decode(codec, image, repeats)
        decoded = row.pop("image")
        rows[arch] = {
            "compressai_decode_s": theirs["decode_s"],
            "compressai_decode_latent_s": theirs["decode_latent_s"],
            "compressai_decode_g_s_s": theirs["decode_g_s_s"],
            "compressai_bpp": theirs["bpp"],
            **row,
            "ratio": row["decode_s"] / theirs["decode_s"],
            "latent_ratio": row["decode_latent_s"] / theirs["decode_latent_s"],
            "vs_compressai_image": compare(decoded, checkpoints / theirs["decoded"]),
            "load_average": [round(v, 2) for v in os.getloadavg()],
        }
        print(f"{arch}: trellic {row['decode_s']:.3f} s, CompressAI {theirs['decode_s']:.3f} s",
              file=sys.stderr)
    return rows


# -- the trellic-only pair ----------------------------------------------------------------


def _settle_rows(layer: torch.nn.Conv2d, inputs: torch.Tensor, rows: slice, std: float,
                 centres: torch.Tensor) -> None:
    """Output channels ``rows`` of ``layer`` on ``inputs``: std ``std`` around ``centres``."""
    out = torch.nn.functional.conv2d(inputs, layer.weight, None, layer.stride, layer.padding)
    flat = out[:, rows].transpose(0, 1).flatten(1)
    factor = std / flat.std(dim=1)
    layer.weight[rows] *= factor.view(-1, 1, 1, 1)
    layer.bias[rows] = centres - flat.mean(dim=1) * factor


def _scale_output(layer: torch.nn.Conv2d, output: torch.Tensor, std: float) -> None:
    factor = std / float(output.std())
    layer.weight.mul_(factor)
    layer.bias.mul_(factor)


@torch.no_grad()
def random_model(architecture: str, x: torch.Tensor, seed: int = 0) -> LoadedModel:
    """A random-weight trellic model (N=128, M=192) with the CompressAI side's latent spread:
    y std 3, z std 2.5, the spatial context scaled to h_s's spread, scales std 0.6 per
    channel around -0.3..4.0 and means std 1 around random centres, measured on ``x``."""
    torch.manual_seed(seed)
    M = 192
    model = CodecModel(ModelConfig(architecture=architecture, N=128, M=M)).eval()
    codec = model.latent_codec
    generator = torch.Generator().manual_seed(1000 + seed)
    _scale_output(model.g_a[-1], model.g_a(x), 3.0)
    y = model.g_a(x)
    _scale_output(codec.h_a[-1], codec.h_a(y), 2.5)
    z_hat = codec.h_a(y).round()
    hyper = codec.h_s[:-1](z_hat)
    means, scales = slice(0, M), slice(M, 2 * M)  # trellic's h_s: means, then scales
    if architecture == "mbt2018-checkerboard":
        side = codec.h_s(z_hat)
        y_hat = y.round()
        anchors, _ = unembed(y_hat)
        placed = embed(anchors, torch.zeros_like(anchors))
        _scale_output(codec.context_prediction, codec.context_prediction(placed),
                      float(side.std()))
        inputs = codec.entropy_parameters[:-1](
            torch.cat([codec.context_prediction(placed), side], 1))
        layer = codec.entropy_parameters[-1]
        scales, means = slice(0, M), slice(M, 2 * M)  # entropy_parameters: scales, then means
    else:
        inputs, layer = hyper, codec.h_s[-1]
    _settle_rows(layer, inputs, scales, 0.6, torch.linspace(-0.3, 4.0, M))
    _settle_rows(layer, inputs, means, 1.0, torch.randn(M, generator=generator))
    model.update()
    return LoadedModel(model, f"random-{architecture}-128x192", "0" * 64, {})


def pair_rows(image: np.ndarray, repeats: int) -> dict:
    """The two trellic architectures' decode, interleaved (mean, checkerboard, mean, ...) so
    that a change in the machine's load falls on both alike; best of ``repeats`` each."""
    x = pad_to_multiple(image_to_tensor(image), 64)
    height, width = image.shape[:2]
    top, left = (height - 256) // 2, (width - 256) // 2
    probe = x[..., top:top + 256, left:left + 256].contiguous()
    codecs = {a: Codec.load_from(random_model(a, probe), "usq") for a in PAIR}
    encoded, encode = {}, {}
    for architecture, codec in codecs.items():
        start = time.perf_counter()
        encoded[architecture] = codec.encode(image).data
        encode[architecture] = time.perf_counter() - start
    runs = {a: [] for a in PAIR}
    for _ in range(repeats):
        for architecture, codec in codecs.items():
            row = time_decode(codec, encoded[architecture], 1)  # its own warm-up, then one
            runs[architecture].append(row)
    rows = {}
    for architecture in PAIR:
        best = min(runs[architecture], key=lambda row: row["decode_s"])
        best.pop("image")
        best["decode_all_s"] = [row["decode_s"] for row in runs[architecture]]
        data = encoded[architecture]
        rows[architecture] = {**best, "encode_s": encode[architecture], "file_bytes": len(data),
                              "bpp": 8 * len(data) / (height * width),
                              "load_average": [round(v, 2) for v in os.getloadavg()]}
        print(f"{architecture} (trellic, 128/192): {best['decode_s']:.3f} s", file=sys.stderr)
    mean, checkerboard = (rows[a]["decode_s"] for a in PAIR)
    return {"N": 128, "M": 192, "archs": rows, "ratio": checkerboard / mean,
            "latent_ratio": rows[PAIR[1]]["decode_latent_s"] / rows[PAIR[0]]["decode_latent_s"],
            "timing": f"interleaved, best of {repeats}, each after its own warm-up"}


# -- report -------------------------------------------------------------------------------


def targets(rows: dict, pair: dict) -> dict:
    serial = {arch: rows[arch]["ratio"] for arch in SERIAL if arch in rows}
    return {
        "serial_no_slower": {"max_ratio": SERIAL_TARGET, "ratios": serial,
                             "met": all(r <= SERIAL_TARGET for r in serial.values())
                             if serial else None},
        "checkerboard_within": {"max_ratio": CHECKERBOARD_TARGET, "ratio": pair["ratio"],
                                "met": pair["ratio"] <= CHECKERBOARD_TARGET},
    }


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """scripts/table_format.py's layout (the docs' generated tables)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def tables(result: dict) -> list[str]:
    """Both sides per architecture, then the trellic-only pair (docs/compressai.md)."""
    rows = [[arch, f"{r['compressai_decode_s']:.3f}", f"{r['decode_s']:.3f}",
             f"{r['ratio']:.2f}", f"{r['compressai_decode_latent_s']:.3f}",
             f"{r['decode_latent_s']:.3f}", f"{r['compressai_decode_g_s_s']:.3f}",
             f"{r['decode_g_s_s']:.3f}"] for arch, r in result["archs"].items()]
    lines = markdown_table(["architecture", "CompressAI decode s", "trellic decode s",
                            "trellic / CompressAI", "CompressAI latent s", "trellic latent s",
                            "CompressAI g_s s", "trellic g_s s"], rows)
    pair = result["trellic_pair"]
    rows = [[arch, f"{r['decode_s']:.3f}", f"{r['decode_latent_s']:.3f}",
             f"{r['decode_g_s_s']:.3f}"] for arch, r in pair["archs"].items()]
    rows.append(["checkerboard / mean", f"{pair['ratio']:.2f}", f"{pair['latent_ratio']:.2f}",
                 "-"])
    return lines + [""] + markdown_table(
        [f"trellic, N={pair['N']} / M={pair['M']}", "decode s", "latent s", "g_s s"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, required=True,
                        help="bench/compressai_speed.py's --out-dir")
    parser.add_argument("--compressai", type=Path, default=None,
                        help="its JSON (default: CHECKPOINTS/compressai_speed.json)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the imported weights go (default: CHECKPOINTS)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="default: the CompressAI run's")
    parser.add_argument("--repeats", type=positive_int, default=3, help="best of this many")
    parser.add_argument("--json", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    reference_path = args.compressai or args.checkpoints / "compressai_speed.json"
    reference = json.loads(reference_path.read_text())
    threads = args.threads or reference["threads"]
    torch.set_num_threads(threads)
    image = read_image(data_root() / reference["image"])
    work_dir = args.work_dir or args.checkpoints
    work_dir.mkdir(parents=True, exist_ok=True)
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = imported_rows(reference, image, args.checkpoints, work_dir, args.repeats)
    pair = pair_rows(image, args.repeats)
    result = {
        "what": "decode seconds of the same checkpoint and image: CompressAI's decompress "
                "(serial context: one latent position at a time, in Python) against trellic's "
                "Codec.decode with USQ (wavefronts)",
        "image": reference["image"],
        "image_size": reference["image_size"],
        "threads": threads,
        "timing": f"best of {args.repeats} after one warm-up run, each side",
        "cpu": cpu_model(),
        "trellic": {"device": device_description(), "torch": torch.__version__},
        "load_average_before": load_before,
        "archs": rows,
        "trellic_pair": pair,
        "compressai": reference,
    }
    result["targets"] = targets(rows, pair)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n".join(tables(result)))
    print(json.dumps(result["targets"], indent=1))


if __name__ == "__main__":
    main()
