"""Large images through the CLI: seconds and peak RSS per run, and the refusal above the limit.

    nice python bench/large_images.py [--model NAME|PATH] [--sizes 2000x1500,4000x3000,5000x5000]
                                      [--refuse 8000x6000] [--quantizer usq] [--json out.json]

Each size is coded and decoded by ``trellic compress`` / ``trellic decompress``
in a child process, whose own peak RSS comes from ``os.wait4`` (the whole CLI:
interpreter, torch, model, image, transforms, coding). The picture is a Kodak
photo resized to the target size (a synthetic texture without Kodak), saved as
PNG. ``--refuse`` sizes exceed trellic.codec.MAX_PIXELS: the run must exit 1
with one line, and its time and memory show what a refusal costs. Prints one
JSON object and a table (docs/robustness.md quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from trellic.codec import MAX_PIXELS
from trellic.paths import kodak_dir
from trellic.quant.registry import quantizer_names


def make_png(width: int, height: int, path: Path) -> None:
    source = kodak_dir() / "kodim23.png"
    if source.is_file():
        with Image.open(source) as image:
            image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(path)
        return
    rng = np.random.default_rng(0)
    row = (np.arange(width) % 256).astype(np.uint8)
    array = np.broadcast_to(row[None, :, None], (height, width, 3)).copy()
    array[::7] = rng.integers(0, 256, array[::7].shape, dtype=np.uint8)
    Image.fromarray(array).save(path)


def run_cli(args: list[str]) -> dict:
    """Run ``trellic ARGS`` in a child: exit code, seconds, its own peak RSS (MiB), output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        command = [sys.executable, "-m", "trellic.cli", *args]
        child = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"exit": child.returncode, "seconds": round(seconds, 2),
                "peak_rss_mib": round(usage.ru_maxrss / 1024), "stdout": out.read().strip(),
                "stderr": err.read().strip()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--quantizer", default="usq", choices=quantizer_names())
    parser.add_argument("--sizes", default="2000x1500,4000x3000")
    parser.add_argument("--refuse", default="8000x6000")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="trellic-large-"))
    report = {"model": args.model, "quantizer": args.quantizer, "max_pixels": MAX_PIXELS,
              "threads_note": "compress/decompress run their transforms single-threaded",
              "runs": []}
    for size in [s for s in args.sizes.split(",") if s] + [s for s in args.refuse.split(",") if s]:
        width, height = (int(v) for v in size.split("x"))
        png, trl, out = folder / f"{size}.png", folder / f"{size}.trl", folder / f"{size}.out.png"
        make_png(width, height, png)
        encode = run_cli(["compress", str(png), str(trl), "--model", args.model,
                          "--quantizer", args.quantizer, "-v"])
        run = {"size": size, "megapixels": round(width * height / 1e6, 2), "encode": encode}
        if encode["exit"] == 0:
            model = ["--model", args.model] if os.sep in args.model else []
            run["decode"] = run_cli(["decompress", str(trl), str(out), "--reference", str(png),
                                     "-v", *model])
            run["bytes"] = trl.stat().st_size
        report["runs"].append(run)
        for path in (png, trl, out):
            path.unlink(missing_ok=True)
    print(json.dumps(report, indent=1))
    print(f"\n{'size':>10s} {'Mpx':>6s} {'enc exit':>8s} {'enc s':>7s} {'enc MiB':>8s} "
          f"{'dec s':>7s} {'dec MiB':>8s}")
    for run in report["runs"]:
        enc, dec = run["encode"], run.get("decode", {})
        print(f"{run['size']:>10s} {run['megapixels']:6.2f} {enc['exit']:8d} {enc['seconds']:7.2f} "
              f"{enc['peak_rss_mib']:8d} {dec.get('seconds', float('nan')):7.2f} "
              f"{dec.get('peak_rss_mib') or 0:8d}")
        if enc["exit"] != 0:
            print(f"{'':>10s} refusal: {enc['stderr']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
