"""``trellic compress``, ``decompress``, ``info`` and ``models``: the codec on files.

Exit codes (see trellic.cli): 0 success, 1 an error reported as one line
``trellic: error: ...`` (missing or unreadable input, corrupt file, unknown
model, existing output without --force, ...), 2 a usage error (argparse).
Warnings, such as a dropped alpha channel, are one line ``trellic: warning:``.
An output never replaces the input or anything but a regular file (not even
with --force), and is checked before the coding starts (trellic.io.check_output).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from trellic.argtypes import float_in, word_or_int
from trellic.coding import bitstream
from trellic.errors import TrellicError
from trellic.eval.metrics import psnr
from trellic.io import check_output, encode_png, read_bytes, read_image, write_atomic
from trellic.models.refine import REFINE_MODES, refine_config
from trellic.paths import WEIGHTS_ENV
from trellic.quant.registry import quantizer_names


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compress",
        help="code an image into a .trl file",
        description="Code a PNG/JPEG image into a trellic file.",
    )
    p.add_argument("input", type=Path, help="image to code (PNG, JPEG, ...)")
    p.add_argument("output", type=Path, help="trellic file to write")
    p.add_argument("--model", default="default",
                   help="zoo model name (`trellic models` lists them) or .safetensors path; "
                   "default: the zoo's default model")
    p.add_argument("--quantizer", choices=quantizer_names(), default="usq",
                   help="uniform scalar (usq: rounding; rdoq: rate-aware search on its grid), "
                   "or trellis-coded with a 4- or 8-state trellis")
    p.add_argument(
        "--lambda-t",
        type=float_in(0.0, bitstream.MAX_LAMBDA_T, high_open=True),
        default=None,
        help="rate weight of the rdoq/tcq search in latent units (default: the model's "
        "measured operating point, else the quantizer's: rdoq 0.01 * delta^2, tcq 0.3 * delta^2)",
    )
    p.add_argument(
        "--refine",
        type=word_or_int(tuple(REFINE_MODES), 0),
        default=0,
        metavar="MODE",
        help="optimise the image's latents first, then quantize: linear (the search aims "
        "where the image's linearised error is lowest: one backward pass), cheap (a few "
        "steps), full (100 annealed steps) or a number of annealed steps, 0 for off; slower "
        "encoder, same decoder (default: 0)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-v", "--verbose", action="store_true", help="print timing and rates")
    p.set_defaults(func=compress)

    p = subparsers.add_parser(
        "decompress",
        help="decode a .trl file into a PNG",
        description="Decode a trellic file into a PNG image.",
    )
    p.add_argument("input", type=Path, help="trellic file")
    p.add_argument("output", type=Path, help="PNG to write")
    p.add_argument("--model", default=None, help="weights path (for files coded with one)")
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="original image: print the PSNR of the decoded one against it",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-v", "--verbose", action="store_true", help="print timing")
    p.set_defaults(func=decompress)

    p = subparsers.add_parser("info", help="print the header of a .trl file")
    p.add_argument("input", type=Path, help="trellic file")
    p.set_defaults(func=info)

    p = subparsers.add_parser(
        "models",
        help="list the models of the weights folder",
        description="List the zoo: name, training lambda, the quantizer each model was trained "
        "for, file size and Kodak results, from the weights folder's manifest.json "
        "($TRELLIC_WEIGHTS; default: a checkout's weights/, else the installed default model).",
    )
    p.set_defaults(func=models)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _read_image(path: Path) -> np.ndarray:
    """read_image with its warnings (a dropped alpha channel) as one line each on stderr.

    Images larger than the codec codes are refused from their header, unread.
    """
    from trellic.codec import MAX_PIXELS

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(path, MAX_PIXELS)
    for warning in caught:
        _say(f"trellic: warning: {warning.message}")
    return image


def compress(args: argparse.Namespace) -> int:
    from trellic.codec import Codec

    check_output(args.output, args.force, (args.input,))
    image = _read_image(args.input)
    start = time.perf_counter()
    codec = Codec.load(args.model, args.quantizer, args.lambda_t, refine_config(args.refine))
    loaded = time.perf_counter()
    encoded = codec.encode(image, progress=True)
    done = time.perf_counter()
    write_atomic(args.output, encoded.data, force=args.force)
    pixels = image.shape[0] * image.shape[1]
    print(
        f"{args.input} -> {args.output}: {len(encoded.data)} bytes, "
        f"{8 * len(encoded.data) / pixels:.4f} bpp ({codec.quantizer.kind}, "
        f"model {codec.loaded.model_id})"
    )
    if args.verbose:
        _say(
            f"  image {image.shape[1]}x{image.shape[0]}, estimated "
            f"{encoded.estimated_bits / pixels:.4f} bpp for the streams, "
            f"lambda_t {codec.lambda_t:g}"
        )
        _say(f"  model load {loaded - start:.2f} s, encode {done - loaded:.2f} s")
    return 0


def decompress(args: argparse.Namespace) -> int:
    from trellic.codec import codec_for_file

    check_output(args.output, args.force, (args.input, args.reference))
    data = read_bytes(args.input, limit=bitstream.MAX_FILE_BYTES)
    container = bitstream.unpack(data)
    header = container.header
    if container.version < bitstream.FORMAT_VERSION:
        _say(f"trellic: warning: {args.input} is a format-{container.version} file: it decodes "
             "exactly only where the CPU kernels round like the encoder's (re-encode it for a "
             "portable file)")
    reference = None
    if args.reference is not None:
        reference = _read_image(args.reference)
        if reference.shape[:2] != (header.height, header.width):
            raise TrellicError(
                f"reference {args.reference} is {reference.shape[1]}x{reference.shape[0]}, "
                f"the file codes {header.width}x{header.height}"
            )
    start = time.perf_counter()
    codec = codec_for_file(data, args.model)
    loaded = time.perf_counter()
    image = codec.decode(data)
    done = time.perf_counter()
    write_atomic(args.output, encode_png(image), force=args.force)
    message = f"{args.input} -> {args.output}: {image.shape[1]}x{image.shape[0]}"
    if reference is not None:
        bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
        message += f", {bpp:.4f} bpp, PSNR {psnr(reference, image):.2f} dB"
    print(message)
    if args.verbose:
        _say(f"  model load {loaded - start:.2f} s, decode {done - loaded:.2f} s")
    return 0


def info(args: argparse.Namespace) -> int:
    data = read_bytes(args.input, limit=bitstream.MAX_FILE_BYTES)
    container = bitstream.unpack(data)
    h = container.header
    print(f"file           {args.input} ({len(data)} bytes)")
    print(f"format         trellic v{container.version}")
    print(f"model          {h.model_id} (weights sha256 {h.weights_sha256}...)")
    print(f"quantizer      {h.quantizer}, delta {h.delta:g}, lambda_t {h.lambda_t:g}")
    print(f"image          {h.width}x{h.height}")
    print(
        f"streams        z {len(container.z_stream)} bytes, y {len(container.y_stream)} bytes, "
        f"header+crc {container.header_bytes} bytes"
    )
    print(f"bpp            {8 * len(data) / (h.width * h.height):.4f}")
    return 0


def models(args: argparse.Namespace) -> int:
    """A table of the manifest's models, the default marked with '*', sorted by lambda."""
    from trellic.paths import weights_dir
    from trellic.zoo import read_manifest

    folder = weights_dir()
    manifest = read_manifest(folder)
    entries = sorted(
        manifest["models"].items(),
        key=lambda item: (_number(item[1].get("lambda")) or 0.0, item[0]),
    )
    rows = [["model", "lambda", "trained for", "MB", "Kodak usq bpp", "dB", "tcq4 bpp", "dB"]]
    absent, images = 0, set()
    for name, entry in entries:
        file = folder / str(entry.get("file"))
        absent += not file.is_file()
        kodak = entry.get("kodak") if isinstance(entry.get("kodak"), dict) else {}
        images |= {_point(kodak, q, "images") for q in ("usq", "tcq4")} - {None}
        rows.append([
            ("* " if name == manifest["default"] else "  ") + name,
            _cell(entry.get("lambda"), "g"),
            _trained_for(entry),
            f"{file.stat().st_size / 1e6:.1f}" if file.is_file() else "-",
            _cell(_point(kodak, "usq", "bpp"), ".4f"),
            _cell(_point(kodak, "usq", "psnr_rgb"), ".2f"),
            _cell(_point(kodak, "tcq4", "bpp"), ".4f"),
            _cell(_point(kodak, "tcq4", "psnr_rgb"), ".2f"),
        ])
    rows[0][0] = "  " + rows[0][0]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"weights folder {folder} (set {WEIGHTS_ENV} to use another)")
    for row in rows:
        print("  ".join(
            cell.ljust(w) if i in (0, 2) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip())
    counts = "/".join(str(n) for n in sorted(images)) or "-"
    print(f"Kodak: {counts} images, bpp of the real files, PSNR-RGB (docs/zoo.md); "
          "'*' marks the default model.")
    if absent:
        print(f"{absent} of these weights files are not in this folder (MB '-'): set "
              f"{WEIGHTS_ENV} to a folder that holds the zoo, e.g. a checkout's weights/")
    return 0


def _trained_for(entry: dict) -> str:
    retrain = entry.get("retrain")
    if isinstance(retrain, dict):
        return f"{retrain.get('quantizer')} (retrained {retrain.get('part')})"
    return str(entry.get("quantizer_trained", "-"))


def _point(kodak: dict, quantizer: str, field: str) -> object:
    point = kodak.get(quantizer)
    return point.get(field) if isinstance(point, dict) else None


def _number(value: object) -> float | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if is_number else None


def _cell(value: object, spec: str) -> str:
    """A manifest number formatted with ``spec``, or '-' where the entry lacks it."""
    number = _number(value)
    return "-" if number is None else format(number, spec)
