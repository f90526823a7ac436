"""``trellic info`` and ``trellic models``: what a file's header and the weights folder say.

Neither imports torch: ``trellic info`` parses headers with trellic.container_header,
``trellic models`` reads the manifest only (the models' Kodak results, measured at
the settings ``compress`` uses by default: each model's operating point).
"""

from __future__ import annotations

import argparse
import json
import sys

from trellic import batch
from trellic.container_header import MAX_FILE_BYTES, read_header
from trellic.errors import TrellicError
from trellic.paths import WEIGHTS_ENV


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="print the header of .trl files",
        description="Print what a trellic file's header says, without decoding it: format "
        "version, model and weights hash, quantizer (step, lambda_t), image size, stream "
        "sizes and bits per pixel. The whole file is checked (CRC) as the decoder would.",
    )
    p.add_argument("inputs", nargs="+", metavar="FILE", help="trellic files")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file on stdout instead of text")
    p.set_defaults(func=info)

    p = subparsers.add_parser(
        "models",
        help="list the models of the weights folder",
        description="List the zoo: name, training lambda, the quantizer each model was trained "
        "for, file size and Kodak results (with the lambda_t the tcq4 figures were measured "
        "at), from the weights folder's manifest.json ($TRELLIC_WEIGHTS; default: a "
        "checkout's weights/, else the installed default model).",
    )
    p.add_argument("--json", action="store_true",
                   help="one JSON object (folder, default, models) on stdout instead of a table")
    p.set_defaults(func=models)


def info(args: argparse.Namespace) -> int:
    """The header of each file; with several, a failing one is named and the rest shown."""
    failed = 0
    for index, path in enumerate(args.inputs):
        try:
            h = read_header(batch.read_input(path, MAX_FILE_BYTES),
                            path if len(args.inputs) == 1 else None)
        except TrellicError as error:
            if args.json:
                print(json.dumps({"input": path, "error": str(error)}), flush=True)
            if len(args.inputs) == 1:
                raise
            failed += 1
            print(f"trellic: error: {path}: {error}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"input": path, **h.to_dict()}), flush=True)
            continue
        if index:
            print()
        print(f"file           {path} ({h.file_bytes} bytes)")
        print(f"format         trellic v{h.version}")
        print(f"model          {h.model_id} (weights sha256 {h.weights_sha256}...)")
        print(f"quantizer      {h.quantizer}, delta {h.delta:g}, lambda_t {h.lambda_t:g}")
        print(f"image          {h.width}x{h.height}")
        print(f"streams        z {h.z_bytes} bytes, y {h.y_bytes} bytes, "
              f"header+crc {h.header_bytes} bytes")
        print(f"bpp            {h.bpp:.4f}")
    return 1 if failed else 0


def models(args: argparse.Namespace) -> int:
    """A table of the manifest's models, the default marked with '*', sorted by lambda."""
    from trellic.manifest import read_manifest
    from trellic.paths import weights_dir

    folder = weights_dir()
    manifest = read_manifest(folder)
    entries = sorted(
        manifest["models"].items(),
        key=lambda item: (_number(item[1].get("lambda")) or 0.0, item[0]),
    )
    if args.json:
        listed = []
        for name, entry in entries:
            file = folder / str(entry.get("file"))
            listed.append({
                "name": name, "default": name == manifest["default"],
                "lambda": entry.get("lambda"), "trained_for": _trained_for(entry),
                "file": str(file), "bytes": file.stat().st_size if file.is_file() else None,
                "kodak": entry.get("kodak") if isinstance(entry.get("kodak"), dict) else None,
                "operating_points": entry.get("operating_points"),
            })
        print(json.dumps({"weights_folder": str(folder), "default": manifest["default"],
                          "models": listed}, indent=2))
        return 0
    rows = [["model", "lambda", "trained for", "MB", "Kodak usq bpp", "dB", "tcq4 bpp", "dB",
             "at lambda_t"]]
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
            _cell(_point(kodak, "tcq4", "lambda_t"), "g"),
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
    print("The tcq4 figures were measured at the lambda_t shown: the model's operating point, "
          "which compress uses unless --lambda-t is given (scripts/measure_zoo.py).")
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
