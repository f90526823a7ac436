"""Write the golden files: small real crops coded by every shipped model (tests/test_golden.py).

    python scripts/make_golden.py [--out tests/golden] [--force] [--quantizer NAME ...]
        [--model NAME ...]

For each shipped model (weights/manifest.json) and quantizer (the registry's),
crop ``a`` of a Kodak image is coded into ``<model>-<quantizer>-a.trl``;
the full models (not retrained variants) also code crop ``b``, whose odd size
exercises padding. Extras: one file with a non-default lambda_t, one with a few
steps of latent refinement, and each decoder-only variant decoding its base
model's file. ``golden.json`` records, for every file, how it was made, the
sha256 of its bytes and the sha256 of the decoded image (its uint8 (H, W, 3)
bytes, C order) and of the decoder's latents y_hat (float32 bytes, C order); for
every crop, the image (relative to ``$TRELLIC_DATA``), its coordinates and the
sha256 of its pixels. The images are never copied; the decoded crops are kept as
reference decodes, ``decoded/<file>.png`` (and ``decoded/<model>--<file>.png`` for
a cross decode), so that every machine can check its decode within one level.

The golden files pin the codec's exact bytes and pixels: refresh them only
for a change that is *meant* to alter the format or the shipped models, and
say so in the commit (``--force`` overwrites). ``--quantizer NAME`` writes
only that quantizer's files and adds them to the existing golden.json (no cross
decodes), leaving every other file as it is: for a new quantizer, or a changed
encoder of one; ``--model NAME`` does the same for a newly shipped model.
Bytes and pixels are exact on machines whose float kernels round like the
writer's (g_a and g_s are float): ``kernels`` records a fingerprint of them.
On any machine, every file must decode to the same indices (its symbols CRC
checks them) and to pixels within one level of the reference decode (y_hat's
means come from the float h_s: exact where the kernels match). Write them with oneDNN capped at AVX2
(``ONEDNN_MAX_CPU_ISA=AVX2``), the kernel set most CI machines share.
``format1/`` keeps three files of container version 1, written before portable
bitstreams, and ``legacy/`` three files whose header names the weights by their
file's sha256 (before the content identity of ``trellic.zoo``); both are carried
over as they are, never rewritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from functools import cache
from pathlib import Path

import numpy as np
import torch

from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.determinism import kernel_fingerprint
from trellic.errors import TrellicError
from trellic.io import encode_png, read_image, write_atomic
from trellic.models.refine import RefineConfig
from trellic.paths import data_root
from trellic.quant.registry import quantizer_names
from trellic.zoo import LoadedModel, load, read_manifest

QUANTIZERS = quantizer_names()
CROPS = {
    "a": {"image": "kodak/kodim23.png", "x": 288, "y": 160, "width": 128, "height": 96},
    "b": {"image": "kodak/kodim05.png", "x": 400, "y": 300, "width": 72, "height": 60},
}
DEFAULT = "mbt-mean-n64-l0067-tcq4"
EXTRAS = (
    {"model": DEFAULT, "quantizer": "tcq8", "lambda_t": 0.05, "refine": 0, "crop": "a"},
    {"model": DEFAULT, "quantizer": "usq", "lambda_t": None, "refine": 2, "crop": "b"},
)


def image_sha256(image: np.ndarray) -> str:
    """sha256 of a uint8 (H, W, 3) image's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def read_crop(crop: dict, root: Path) -> np.ndarray:
    """The crop's pixels, uint8 (height, width, 3)."""
    image = read_image(root / crop["image"])
    x, y = crop["x"], crop["y"]
    return np.ascontiguousarray(image[y : y + crop["height"], x : x + crop["width"]])


@cache
def loaded_model(name: str) -> LoadedModel:
    """A shipped model, loaded once per process."""
    return load(name)


def encode(case: dict, crop: np.ndarray) -> bytes:
    """The file a golden case describes (also what the test re-encodes).

    A case without lambda_t codes at the quantizer's own default, not at the model's
    measured operating point (the manifest's, which a new measurement may move).
    """
    refine = RefineConfig(steps=case["refine"]) if case["refine"] else None
    loaded = dataclasses.replace(loaded_model(case["model"]), operating_points={})
    return Codec.load_from(loaded, case["quantizer"], case["lambda_t"], refine).encode(crop).data


def decoder(data: bytes, model: str | None = None) -> Codec:
    """The codec ``trellic decompress [--model NAME]`` decodes a golden file with (cached)."""
    header = bitstream.unpack(data).header
    loaded = loaded_model(header.model_id if model is None else model)
    return Codec.load_from(loaded, header.quantizer, header.lambda_t)


def decode(data: bytes, model: str | None = None) -> np.ndarray:
    """A golden file decoded as ``trellic decompress [--model NAME]`` does it."""
    return decoder(data, model).decode(data)


def latents_sha256(data: bytes) -> str:
    """sha256 of the decoder's y_hat for a golden file (float32 bytes, C order)."""
    y_hat, _ = decoder(data).decode_latents(data)
    return hashlib.sha256(y_hat.contiguous().numpy().tobytes()).hexdigest()


def reference_name(file: str, cross_model: str | None = None) -> str:
    """Where a golden file's reference decode lies under ``decoded/`` (``cross_model``:
    the decoder-only variant that decoded it)."""
    stem = file.removesuffix(".trl")
    return f"{cross_model}--{stem}.png" if cross_model else f"{stem}.png"


def write_reference(folder: Path, name: str, image: np.ndarray, force: bool) -> None:
    (folder / "decoded").mkdir(exist_ok=True)
    write_atomic(folder / "decoded" / name, encode_png(image), force=force)


def file_name(case: dict) -> str:
    extra = (f"-lt{case['lambda_t']:g}" if case["lambda_t"] is not None else "") + (
        f"-refine{case['refine']}" if case["refine"] else ""
    )
    return f"{case['model']}-{case['quantizer']}{extra}-{case['crop']}.trl"


def cases(manifest: dict) -> list[dict]:
    out = []
    for model, entry in manifest["models"].items():
        crops = ("a",) if "retrain" in entry else ("a", "b")
        for crop in crops:
            for kind in QUANTIZERS:
                out.append(
                    {"model": model, "quantizer": kind, "lambda_t": None, "refine": 0, "crop": crop}
                )
    return out + [dict(extra) for extra in EXTRAS]


def cross_decodes(manifest: dict) -> list[dict]:
    """Decoder-only variants decode their base model's files (same encoder and tables)."""
    out = []
    for model in manifest["models"]:
        loaded = loaded_model(model)
        source = loaded.info.get("retrained_from")
        if source and loaded.info.get("retrain", {}).get("part") == "decoder":
            quantizer = loaded.info["retrain"]["quantizer"]
            base = {"model": source["model"], "quantizer": quantizer, "lambda_t": None,
                    "refine": 0, "crop": "a"}
            out.append({"file": file_name(base), "model": model})
    return out


def cross_decoded(entry: dict, folder: Path, force: bool) -> dict:
    """A cross-decode entry with the sha256 of its model's decoding of its file (written
    as its reference decode)."""
    data = (folder / entry["file"]).read_bytes()
    image = decode(data, entry["model"])
    entry = {**entry, "decoded_sha256": image_sha256(image)}
    write_reference(folder, reference_name(entry["file"], entry["model"]), image, force)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "tests" / "golden")
    parser.add_argument("--force", action="store_true", help="overwrite existing golden files")
    parser.add_argument("--quantizer", action="append", choices=QUANTIZERS,
                        help="write only this quantizer's files and add them to golden.json")
    parser.add_argument("--model", action="append",
                        help="write only this shipped model's files and add them to golden.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    root = data_root()
    pixels = {name: read_crop(crop, root) for name, crop in CROPS.items()}
    crops = {name: {**crop, "sha256": image_sha256(pixels[name])} for name, crop in CROPS.items()}
    manifest = read_manifest()
    files, selected = [], cases(manifest)
    if args.quantizer:
        selected = [case for case in selected if case["quantizer"] in args.quantizer]
    if args.model:
        unknown = sorted(set(args.model) - set(manifest["models"]))
        if unknown:
            raise TrellicError(f"--model: not in the manifest: {', '.join(unknown)}")
        selected = [case for case in selected if case["model"] in args.model]
    partial = bool(args.quantizer or args.model)
    if partial:  # checked before any file is written
        golden = json.loads((args.out / "golden.json").read_text())
        if golden["kernels"] != kernel_fingerprint():
            raise TrellicError("this machine's float kernels round unlike those that wrote "
                               "golden.json: add files where they match, or rewrite all")
    for case in selected:
        data = encode(case, pixels[case["crop"]])
        name = file_name(case)
        write_atomic(args.out / name, data, force=args.force)
        image = decode(data)
        entry = {"file": name, **case, "sha256": hashlib.sha256(data).hexdigest(),
                 "decoded_sha256": image_sha256(image), "y_hat_sha256": latents_sha256(data)}
        write_reference(args.out, reference_name(name), image, args.force)
        files.append(entry)
        print(f"{name}: {len(data)} bytes", file=sys.stderr)
    if partial:
        names = {entry["file"] for entry in files}
        golden["files"] = [e for e in golden["files"] if e["file"] not in names] + files
        golden["cross_decodes"] = [cross_decoded(e, args.out, True) if e["file"] in names
                                   else e for e in golden["cross_decodes"]]
        write_atomic(args.out / "golden.json", (json.dumps(golden, indent=1) + "\n").encode(),
                     force=True)
        return 0
    cross = [cross_decoded(entry, args.out, args.force) for entry in cross_decodes(manifest)]
    previous = args.out / "golden.json"
    kept = json.loads(previous.read_text()) if previous.is_file() else {}
    golden = {"schema": 3, "kernels": kernel_fingerprint(), "crops": crops, "files": files,
              "cross_decodes": cross, "format1": kept.get("format1", []),
              "legacy_identity": kept.get("legacy_identity", [])}
    text = json.dumps(golden, indent=1) + "\n"
    write_atomic(args.out / "golden.json", text.encode(), force=args.force)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TrellicError as error:
        print(f"make_golden: error: {error}", file=sys.stderr)
        sys.exit(1)
