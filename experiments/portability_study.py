"""Files written under one set of CPU kernels, decoded under another: do they still decode?

    python experiments/portability_study.py                         # default model, 24 Kodak images
    python experiments/portability_study.py --models all --limit 4  # every shipped model, 4 images
    python experiments/portability_study.py -o docs/data/portability.json --force

Each *kernel setting* runs in its own process (oneDNN reads its ISA cap once):
``native`` (whatever oneDNN picks on this CPU), ``avx2`` / ``sse41``
(``ONEDNN_MAX_CPU_ISA`` caps, what an older CPU would run), ``no-onednn``
(``torch.backends.mkldnn.enabled = False``: plain ATen kernels) and
``two-threads`` (2 intra-op threads). Every file is encoded under each encoder
setting and decoded under each decoder setting; a decode counts as *failed* if
it raises, and as *wrong* if any pixel differs by more than ``--tolerance``
levels from the decode under the encoder's own setting (the float g_s may move
a pixel by one level across kernels: that is allowed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SETTINGS = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "no-onednn": {},
    "two-threads": {},
}
ENCODERS = ("native", "sse41", "no-onednn")  # the default --encoders
QUANTIZERS = ("usq", "tcq4")


def _apply(setting: str) -> None:
    import torch

    torch.backends.mkldnn.enabled = setting != "no-onednn"
    torch.set_num_threads(2 if setting == "two-threads" else 1)


def _encode(work: Path, setting: str, models: list[str], images: list[str]) -> None:
    """Worker: write work/<model>.<q>.<image>.<setting>.trl and its decode (.npy)."""
    _apply(setting)
    from trellic.codec import Codec
    from trellic.io import read_image

    for model in models:
        for quantizer in QUANTIZERS:
            codec = Codec.load(model, quantizer)
            for image_path in images:
                stem = f"{model}.{quantizer}.{Path(image_path).stem}.{setting}"
                data = codec.encode(read_image(image_path)).data
                (work / f"{stem}.trl").write_bytes(data)
                np.save(work / f"{stem}.npy", codec.decode(data))


def _decode(work: Path, setting: str) -> None:
    """Worker: decode every work/*.trl, print one JSON line per file (max pixel difference)."""
    _apply(setting)
    from trellic.codec import codec_for_file
    from trellic.errors import TrellicError

    for path in sorted(work.glob("*.trl")):
        data = path.read_bytes()
        try:
            image = codec_for_file(data).decode(data)
        except TrellicError as error:
            print(json.dumps({"file": path.name, "error": str(error)}))
            continue
        reference = np.load(path.with_suffix(".npy"))
        difference = int(np.abs(image.astype(np.int16) - reference).max())
        print(json.dumps({"file": path.name, "max_difference": difference}))


def _run(setting: str, *args: str) -> str:
    env = {**os.environ, **SETTINGS[setting]}
    command = [sys.executable, __file__, "--worker", setting, *args]
    return subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout


def study(models: list[str], images: list[str], tolerance: int,
          encoders: tuple[str, ...] = ENCODERS) -> dict:
    """Every (encoder setting, decoder setting) pair: files decoded, failed, wrong."""
    pairs = []
    with tempfile.TemporaryDirectory() as folder:
        for encoder in encoders:
            work = Path(folder) / encoder
            work.mkdir()
            _run(encoder, "encode", str(work), ",".join(models), *images)
            for decoder in SETTINGS:
                if decoder == encoder:
                    continue
                output = _run(decoder, "decode", str(work))
                lines = [json.loads(line) for line in output.splitlines()]
                failed = [r["file"] for r in lines if "error" in r]
                wrong = [r["file"] for r in lines if r.get("max_difference", 0) > tolerance]
                worst = max((r.get("max_difference", 0) for r in lines), default=0)
                pairs.append({"encoder": encoder, "decoder": decoder, "files": len(lines),
                              "failed": len(failed), "wrong": len(wrong),
                              "max_difference": worst if not wrong else None,
                              "failures": failed + wrong})
                print(f"{encoder:>10} -> {decoder:<12} {len(lines)} files, {len(failed)} failed, "
                      f"{len(wrong)} wrong, max pixel difference {worst}", file=sys.stderr)
    from trellic.coding.bitstream import FORMAT_VERSION

    return {"format": FORMAT_VERSION, "models": models, "images": [Path(p).name for p in images],
            "quantizers": list(QUANTIZERS), "tolerance": tolerance, "pairs": pairs}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--worker":
        setting, job, work = sys.argv[2], sys.argv[3], Path(sys.argv[4])
        if job == "encode":
            _encode(work, setting, sys.argv[5].split(","), sys.argv[6:])
        else:
            _decode(work, setting)
        return 0
    from trellic.argtypes import int_in, positive_int
    from trellic.io import list_images, write_atomic
    from trellic.paths import kodak_dir
    from trellic.zoo import read_manifest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="default", help="comma-separated names, or 'all'")
    parser.add_argument("--limit", type=positive_int, default=24, help="first N Kodak images")
    parser.add_argument("--tolerance", type=int_in(0, 255), default=2, help="pixel levels")
    parser.add_argument("--encoders", default=",".join(ENCODERS),
                        help=f"comma-separated settings to encode under, of {', '.join(SETTINGS)}")
    parser.add_argument("-o", "--output", type=Path, help="write the JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite --output")
    args = parser.parse_args(argv)
    models = (sorted(read_manifest()["models"]) if args.models == "all"
              else args.models.split(","))
    images = [str(p) for p in list_images(kodak_dir(), limit=args.limit)]
    encoders = tuple(args.encoders.split(","))
    unknown = set(encoders) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown --encoders {', '.join(sorted(unknown))}")
    result = study(models, images, args.tolerance, encoders)
    text = json.dumps(result, indent=1) + "\n"
    if args.output:
        write_atomic(args.output, text.encode(), args.force)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
