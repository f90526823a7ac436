"""``trellic compress`` and ``decompress``: the codec on files (``info``, ``models``: catalog).

Exit codes (see trellic.cli): 0 success, 1 an error reported as one line
``trellic: error: ...`` (missing or unreadable input, corrupt file, unknown
model, existing output without --force, any file of a batch failed, ...), 2 a
usage error (argparse). Warnings, such as a dropped alpha channel, are one line
``trellic: warning:``. An output never replaces the input or anything but a
regular file (not even with --force; /dev/null and ``-`` for stdout are the only
other outputs), and is checked before the coding starts (trellic.io.check_output).
Several files, folders, default output names and stdin/stdout: trellic.batch.

This module imports neither torch nor numpy: its parsers are built for every
``trellic`` call, and ``trellic info`` runs without them (trellic.container_header).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from trellic import batch
from trellic.argtypes import float_in, positive_int, threads, word_or_int
from trellic.container_header import MAX_FILE_BYTES, MAX_LAMBDA_T, QUANTIZER_NAMES
from trellic.device import add_device_option, resolve_device
from trellic.errors import TrellicError, warn
from trellic.files import refuse_torch_checkpoint

REFINE_MODE_NAMES = ("linear", "cheap", "full")  # trellic.models.refine.REFINE_MODES
MAX_REFINE_STEPS = 10_000  # trellic.models.refine.MAX_STEPS: ~100x full, hours on a large image
JOBS_HELP = ("files worked on at once, on threads sharing one loaded model; capped at the number "
             "of files and of usable CPUs")
THREADS_HELP = ("torch threads for the networks (default: torch's own, all usable CPUs; 1 per "
                "job when --jobs > 1); the bytes and pixels do not depend on it")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compress",
        help="code images into .trl files",
        description="Code PNG/JPEG images into trellic files. `compress IN OUT` codes one "
        "file; `compress IN...` writes each next to its input (in.png -> in.trl); "
        "`compress IN... -o OUTDIR` or `compress INDIR -o OUTDIR` writes into a folder "
        "(made if missing). - is stdin (as input) or stdout (as output); /dev/null is "
        "accepted as output for timing runs.",
    )
    p.add_argument("inputs", nargs="+", metavar="PATH",
                   help="images (PNG, JPEG, ...) or folders of images, - for stdin; with two "
                   "paths and no -o, the second is the output unless it is an existing image")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="output file (one input), folder (several inputs or a folder), - for "
                   "stdout or /dev/null (default: next to each input, with the suffix .trl)")
    p.add_argument("--model", default="default",
                   help="zoo model name (`trellic models` lists them) or .safetensors path; "
                   "default: the zoo's default model")
    p.add_argument("--quantizer", choices=QUANTIZER_NAMES, default="usq",
                   help="uniform scalar (usq: rounding; rdoq: rate-aware search on its grid), "
                   "or trellis-coded with a 4- or 8-state trellis")
    p.add_argument(
        "--lambda-t",
        type=float_in(0.0, MAX_LAMBDA_T, high_open=True),
        default=None,
        help="rate weight of the rdoq/tcq search in latent units; with usq, a value > 0 makes "
        "the rounding rate-aware (rdoq's search, on usq's grid and tables) (default: the "
        "model's measured operating point, else the quantizer's: usq 0, rdoq 0.01 * delta^2, "
        "tcq 0.3 * delta^2; `trellic models` shows the one its tcq4 figures were measured at)",
    )
    p.add_argument(
        "--refine",
        type=word_or_int(REFINE_MODE_NAMES, 0, MAX_REFINE_STEPS),
        default=0,
        metavar="MODE",
        help="optimise the image's latents first, then quantize: linear (the search aims "
        "where the image's linearised error is lowest: one backward pass), cheap (a few "
        "steps), full (100 annealed steps) or a number of annealed steps up to "
        f"{MAX_REFINE_STEPS}, 0 for off; slower encoder, same decoder; a progress bar on "
        "stderr when it is a terminal, always with -v (default: 0)",
    )
    _add_common(p, "trellic file")
    p.set_defaults(func=compress)

    p = subparsers.add_parser(
        "decompress",
        help="decode .trl files into images (PNG, WebP, JPEG)",
        description="Decode trellic files into images: PNG, or by the output's extension "
        "lossless WebP (.webp) or JPEG at quality 95 (.jpg); stdout gets PNG. The forms "
        "of compress: "
        "`decompress IN OUT`, `decompress IN...` (x.trl -> x.png next to it), "
        "`decompress IN... -o OUTDIR`, `decompress INDIR -o OUTDIR` (its .trl files); "
        "- is stdin or stdout; /dev/null is accepted as output.",
    )
    p.add_argument("inputs", nargs="+", metavar="PATH",
                   help="trellic files or folders of .trl files, - for stdin; with two paths "
                   "and no -o, the second is the output unless it is an existing .trl file")
    p.add_argument("-o", "--output", default=None, metavar="OUT",
                   help="output image (one input; .png, .webp or .jpg), folder (several "
                   "inputs or a folder), - for stdout or /dev/null (default: next to each "
                   "input, with the suffix .png)")
    p.add_argument("--model", default=None,
                   help="zoo name or weights path (default: the model the file's header names; "
                   "a file coded with weights the zoo does not hold needs their path)")
    p.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="original image: print the PSNR of the decoded one against it (one input only)",
    )
    _add_common(p, "PNG")
    p.set_defaults(func=decompress)


def _add_common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--jobs", "-j", type=positive_int, default=1, help=JOBS_HELP)
    p.add_argument("--threads", type=threads, default=None, help=THREADS_HELP)
    add_device_option(p, "where g_a and g_s run: auto (the GPU if CUDA is available, else the "
                      "CPU), cpu or cuda; the entropy coding stays on the CPU, so files do not "
                      "depend on it (default: auto)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file on stdout instead of a line (on stderr when "
                   f"the {what} goes to stdout)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print timing and rates; progress bars even when stderr is not a "
                   "terminal")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _torch_threads(args: argparse.Namespace, workers: int, refine: bool) -> int | None:
    """The torch thread count of a run: --threads, else 1 per job when several run at once.

    Refinement counts on one thread per image (trellic.determinism.single_threaded), which
    is only race-free across concurrent jobs when the whole run is single-threaded.
    """
    if workers > 1 and refine:
        return 1
    if args.threads is not None:
        return args.threads
    return 1 if workers > 1 else None


def _read_image(source: str):
    """The input image, its warnings (a dropped alpha channel) one line each on stderr."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = batch.read_image_input(source)
    for warning in caught:
        warn(str(warning.message))
    return image


def compress(args: argparse.Namespace) -> int:
    from trellic.io import IMAGE_SUFFIXES
    from trellic.models.refine import PROGRESS_ALWAYS, refine_config

    device = resolve_device(args.device)
    refuse_torch_checkpoint(args.model)
    jobs = batch.plan_jobs(args.inputs, args.output, "compress")
    for job in jobs:  # a .trl under an image's name would later be read as an image
        if not _png_sink(job) and Path(job.target).suffix.lower() in IMAGE_SUFFIXES:
            raise TrellicError(f"output {job.target} is named like an image: compress writes "
                               "trellic files (.trl)")
    workers = batch.workers_for(args.jobs, len(jobs))
    refine = refine_config(args.refine)
    with batch.torch_threads(_torch_threads(args, workers, refine is not None)):
        from trellic.codec import Codec

        start = time.perf_counter()
        codec = Codec.load(args.model, args.quantizer, args.lambda_t, refine, device=device)
        if args.verbose:
            _say(f"  model load {time.perf_counter() - start:.2f} s")
        progress = False if len(jobs) > 1 else (PROGRESS_ALWAYS if args.verbose else True)

        def work(job: batch.Job) -> dict:
            batch.check_target(job, args.force, (job.source,))
            image = _read_image(job.source)
            began = time.perf_counter()
            encoded = codec.encode(image, progress=progress)
            seconds = time.perf_counter() - began
            batch.write_output(job, encoded.data, args.force)
            pixels = image.shape[0] * image.shape[1]
            return {
                "input": job.source, "output": job.target, "bytes": len(encoded.data),
                "bpp": 8 * len(encoded.data) / pixels, "width": image.shape[1],
                "height": image.shape[0], "model": codec.loaded.model_id,
                "quantizer": codec.quantizer.kind, "lambda_t": codec.lambda_t,
                "estimated_bpp": encoded.estimated_bits / pixels, "encode_seconds": seconds,
            }

        def describe(r: dict) -> str:
            return (f"{r['input']} -> {r['output']}: {r['bytes']} bytes, {r['bpp']:.4f} bpp "
                    f"({r['quantizer']}, model {r['model']})")

        def detail(r: dict) -> str:
            return (f"  image {r['width']}x{r['height']}, estimated {r['estimated_bpp']:.4f} "
                    f"bpp for the streams, lambda_t {r['lambda_t']:g}, encode "
                    f"{r['encode_seconds']:.2f} s")

        return batch.run_jobs(jobs, work, describe, workers, args.json, args.verbose, detail)


def decompress(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    refuse_torch_checkpoint(args.model)
    jobs = batch.plan_jobs(args.inputs, args.output, "decompress")
    from trellic.io import encode_image, encode_png, image_format_for

    for job in jobs:  # a bad output fails before any decoding
        batch.check_target(job, args.force, (job.source, args.reference))
        if not _png_sink(job):
            image_format_for(job.target)
    if args.reference is not None and len(jobs) > 1:
        raise TrellicError(f"--reference takes one input, got {len(jobs)}")
    workers = batch.workers_for(args.jobs, len(jobs))
    with batch.torch_threads(_torch_threads(args, workers, False)):
        from trellic.codec import Codec, codec_for_file
        from trellic.coding import bitstream
        from trellic.eval.metrics import psnr

        single = len(jobs) == 1  # its errors name the file; a batch's are prefixed with it
        cache: dict[tuple, object] = {}
        lock = threading.Lock()

        def codec_for(data: bytes, header) -> Codec:
            """One model load per (model, weights) of the batch."""
            key = ((args.model,) if args.model is not None
                   else (header.model_id, header.weights_sha256))
            with lock:
                if key not in cache:
                    cache[key] = codec_for_file(data, args.model).loaded
            return Codec.load_from(cache[key], header.quantizer, header.lambda_t, device=device)

        def work(job: batch.Job) -> dict:
            batch.check_target(job, args.force, (job.source, args.reference))
            data = batch.read_input(job.source, MAX_FILE_BYTES)
            container = bitstream.unpack(data, job.source if single else None)
            header = container.header
            if container.version < bitstream.FORMAT_VERSION:
                warn(f"{job.source} is a format-{container.version} file: it "
                     "decodes exactly only where the CPU kernels round like the encoder's "
                     "(re-encode it for a portable file)")
            reference = None
            if args.reference is not None:
                reference = _read_image(str(args.reference))
                if reference.shape[:2] != (header.height, header.width):
                    raise TrellicError(
                        f"reference {args.reference} is {reference.shape[1]}x"
                        f"{reference.shape[0]}, the file codes {header.width}x{header.height}")
            codec = codec_for(data, header)
            began = time.perf_counter()
            image = codec.decode(data)
            seconds = time.perf_counter() - began
            encoded = encode_png(image) if _png_sink(job) else encode_image(image, job.target)
            batch.write_output(job, encoded, args.force)
            record = {
                "input": job.source, "output": job.target, "width": image.shape[1],
                "height": image.shape[0], "bytes": len(data),
                "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]),
                "model": header.model_id, "quantizer": header.quantizer,
                "decode_seconds": seconds,
            }
            if reference is not None:
                record["psnr_rgb"] = psnr(reference, image)
            return record

        def describe(r: dict) -> str:
            line = f"{r['input']} -> {r['output']}: {r['width']}x{r['height']}"
            if "psnr_rgb" in r:
                line += f", {r['bpp']:.4f} bpp, PSNR {r['psnr_rgb']:.2f} dB"
            return line

        def detail(r: dict) -> str:
            return f"  decode {r['decode_seconds']:.2f} s"

        return batch.run_jobs(jobs, work, describe, workers, args.json, args.verbose, detail)


def _png_sink(job: batch.Job) -> bool:
    """stdout and /dev/null (which take PNG from decompress); any other target is a file."""
    return job.to_stdout or batch.is_devnull(job.target)
