"""CompressAI's mbt2018-mean (N=128/M=192, random weights) coding Kodak: seconds per image.

The reference for ``bench/codec_speed.py --arch 128,192``: the same architecture
in CompressAI 1.2.8, its own compress/decompress (rANS coder), at the same
thread count. Runs in the scratch environment of
``scripts/make_compressai_fixtures.py`` (CompressAI is no dependency of trellic):

    PYTHONPATH=$PWD "$VENV"/bin/python bench/compressai_speed.py --threads 1 2 --images 4 \
        > docs/data/compressai_speed.json

Prints one JSON object: per thread count, encode and decode seconds per image
(mean) and bpp (docs: README's speed section sets them beside trellic's).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import torch

from trellic.argtypes import positive_int
from trellic.io import image_to_tensor, list_images, pad_to_multiple, read_image
from trellic.paths import kodak_dir

ROOT = Path(__file__).resolve().parents[1]


def _import_compressai():
    """CompressAI with its unused imports stubbed (the fixture generator's recipe)."""
    spec = importlib.util.spec_from_file_location(
        "make_compressai_fixtures", ROOT / "scripts" / "make_compressai_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures._stub_unused_imports()
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, nargs="+", default=[1])
    parser.add_argument("--images", type=positive_int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = _import_compressai()(N=128, M=192).eval()
    model.update(force=True)
    files = list_images(kodak_dir(), limit=args.images)
    runs = [time_run(model, files, threads) for threads in args.threads]
    print(json.dumps({"codec": "CompressAI 1.2.8 mbt2018-mean N=128/M=192 (random weights)",
                      "runs": runs}, indent=1))


def time_run(model, files: list, threads: int) -> dict:
    """Mean encode and decode seconds per image at ``threads`` intra-op threads."""
    torch.set_num_threads(threads)
    encode, decode, bits, pixels = [], [], 0, 0
    with torch.no_grad():
        for index, path in enumerate([files[0], *files]):  # the first run warms up
            image = read_image(path)
            x = pad_to_multiple(image_to_tensor(image), 64)
            start = time.perf_counter()
            out = model.compress(x)
            middle = time.perf_counter()
            model.decompress(out["strings"], out["shape"])
            if index:
                encode.append(middle - start)
                decode.append(time.perf_counter() - middle)
                bits += 8 * sum(len(s[0]) for s in out["strings"])
                pixels += image.shape[0] * image.shape[1]
    return {"threads": threads, "images": len(files), "encode_s": sum(encode) / len(encode),
            "decode_s": sum(decode) / len(decode), "bpp": bits / pixels,
            "load_average": [round(v, 2) for v in os.getloadavg()]}


if __name__ == "__main__":
    main()
