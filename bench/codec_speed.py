"""Codec speed on Kodak: encode / decode seconds, Viterbi ms, the decoder's
integer scale path (ms), coder overhead, peak RSS.

    python bench/codec_speed.py [--model NAME|PATH] [--arch N,M] [--images 24]
        [--json docs/data/codec_speed_X.json [--force]] [--refine MODE ...]
        [--refine-quantizers usq tcq4 ...]

``--model`` benchmarks a shipped model (default: the zoo default). ``--arch
128,192`` instead benchmarks a randomly initialised model of that size whose
latents are scaled to a realistic range (the transforms cost the same as a
trained model's; the coding cost is representative, not exact), for a
comparison with CompressAI's mbt2018-mean at N=128/M=192.
``--refine MODE`` (a mode of ``trellic compress --refine`` or a number of steps;
repeatable) adds a row per ``--refine-quantizers`` quantizer (default usq) with
that encoder (docs/codec.md, docs/quantization.md).
Prints one JSON object and a table; the JSON records the measuring condition
(CPU, load average before and after, commit), since the timings depend on what
else the machine runs. Targets (issue 2, 2-core CPU, 768x512,
N=128/M=192): encode <= 0.75 s, decode <= 0.98 s, TCQ-4 Viterbi <= 60 ms,
TCQ encode <= 1.3x USQ encode, coder overhead <= 0.3 %.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import time

import numpy as np
import torch

from trellic.argtypes import positive_int, word_or_int
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.eval.results import provenance
from trellic.io import image_to_tensor, list_images, pad_to_multiple, read_image, write_atomic
from trellic.models import CodecModel, ModelConfig
from trellic.models.refine import REFINE_MODES, refine_config
from trellic.paths import kodak_dir
from trellic.quant.registry import quantizer_names
from trellic.zoo import LoadedModel
from trellic.zoo import load as load_model

QUANTIZERS = quantizer_names()


def architecture(text: str) -> tuple[int, int]:
    """``N,M`` as two positive channel counts (argparse type)."""
    try:
        n, m = (positive_int(v) for v in text.split(","))
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"expected N,M (two counts), got {text!r}") from None
    return n, m


def synthetic_model(n: int, m: int, image: np.ndarray) -> LoadedModel:
    """Random transforms; latents scaled to std ~2 and a hyperprior predicting that scale."""
    torch.manual_seed(0)
    model = CodecModel(ModelConfig(N=n, M=m)).eval()
    with torch.no_grad():
        y = model.g_a(pad_to_multiple(image_to_tensor(image), 64))
        model.g_a[-1].weight.mul_(2.0 / float(y.std()))
        model.g_a[-1].bias.mul_(2.0 / float(y.std()))
        h_s = model.latent_codec.h_s
        h_s[-1].weight.zero_()
        h_s[-1].bias[:m].zero_()
        h_s[-1].bias[m:].fill_(2.0)
    model.update()
    return LoadedModel(model, f"random-{n}x{m}", "0" * 64, {})


def milliseconds_in(owner: object, method: str, work) -> tuple[float, object]:
    """``work()``'s result and the milliseconds it spent inside ``owner.method``."""
    inner, elapsed = getattr(owner, method), []

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = inner(*args, **kwargs)
        elapsed.append(time.perf_counter() - start)
        return result

    setattr(owner, method, timed)
    try:
        result = work()
    finally:
        delattr(owner, method)
    return 1000 * sum(elapsed), result


def viterbi_ms(codec: Codec, image: np.ndarray) -> float:
    """Milliseconds of the quantizer's search while the codec encodes the image."""
    return milliseconds_in(codec.quantizer, "search", lambda: codec.encode(image))[0]


def run(loaded: LoadedModel, files: list, threads: int, refine: tuple = (),
        refine_quantizers: tuple = ("usq",)) -> dict:
    torch.set_num_threads(threads)
    codecs = {kind: Codec.load_from(loaded, kind) for kind in QUANTIZERS}
    for option in refine:
        label = option if isinstance(option, str) else f"refine{option}"
        for kind in refine_quantizers:
            codecs[f"{kind}+{label}"] = Codec.load_from(loaded, kind,
                                                        refine=refine_config(option))
    rows = {}
    for kind, codec in codecs.items():
        codec.decode(codec.encode(read_image(files[0])).data)  # warm-up: lazy tables, allocator
        enc, dec, exact, vit, file_bits, est_bits, header_bits = [], [], [], [], 0, 0.0, 0
        latent_codec = codec.loaded.model.latent_codec
        for path in files:
            image = read_image(path)
            start = time.perf_counter()
            encoded = codec.encode(image)
            middle = time.perf_counter()
            decode = functools.partial(codec.decode, encoded.data)
            if hasattr(latent_codec, "exact_scales"):  # the hyperprior's integer scale path
                exact.append(milliseconds_in(latent_codec, "exact_scales", decode)[0])
            else:
                decode()
            enc.append(middle - start)
            dec.append(time.perf_counter() - middle)
            searched = codec.quantizer.num_quantizers > 1 and codec.refine is None
            vit.append(viterbi_ms(codec, image) if searched else 0.0)  # not re-run refinement
            file_bits += 8 * len(encoded.data)
            est_bits += encoded.estimated_bits
            header_bits += 8 * bitstream.unpack(encoded.data).header_bytes
        rows[kind] = {
            "encode_s": float(np.mean(enc)),
            "decode_s": float(np.mean(dec)),
            "viterbi_ms": float(np.mean(vit)),
            **({"exact_scales_ms": float(np.mean(exact))} if exact else {}),  # integer h_s
            "coder_overhead_pct": 100 * (file_bits - header_bits - est_bits) / est_bits,
            "header_pct": 100 * header_bits / file_bits,
            "bpp": file_bits / sum(read_image(f).shape[0] * read_image(f).shape[1] for f in files),
        }
    for kind, row in rows.items():
        if kind != "usq":
            row["encode_vs_usq"] = row["encode_s"] / rows["usq"]["encode_s"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--arch", type=architecture, default=None,
                        help="N,M of a random-weight model instead")
    parser.add_argument("--images", type=positive_int, default=24)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--force", action="store_true", help="overwrite --json")
    parser.add_argument("--refine", type=word_or_int(tuple(REFINE_MODES), 1), action="append",
                        default=[], metavar="MODE",
                        help="also time latent refinement: a mode or a number of steps "
                        "(repeatable; a shipped model only)")
    parser.add_argument("--refine-quantizers", nargs="+", choices=QUANTIZERS, default=["usq"],
                        help="the quantizers timed with each --refine (default: usq)")
    args = parser.parse_args()
    if args.refine and args.arch:
        parser.error("--refine needs a trained model's lambda: use --model, not --arch")
    if args.json and os.path.exists(args.json) and not args.force:
        parser.error(f"output exists (use --force to overwrite): {args.json}")
    files = list_images(kodak_dir(), limit=args.images)
    if args.arch:
        loaded = synthetic_model(*args.arch, read_image(files[0]))
    else:
        loaded = load_model(args.model)
    load_before = os.getloadavg()
    rows = run(loaded, files, args.threads, tuple(args.refine), tuple(args.refine_quantizers))
    config = loaded.model.config
    result = {
        "model": loaded.model_id,
        "N": config.N,
        "M": config.M,
        "images": len(files),
        "threads": args.threads,
        "results": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **provenance(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    text = json.dumps(result, indent=2) + "\n"
    print(text, end="")
    if args.json:
        write_atomic(args.json, text.encode(), force=args.force)
    print(
        f"\n{loaded.model_id} (N={config.N}, M={config.M}), {len(files)} Kodak images, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB"
    )
    print(
        f"{'quantizer':<14}{'bpp':>8}{'encode s':>10}{'decode s':>10}{'scales ms':>10}"
        f"{'viterbi ms':>12}{'overhead %':>12}{'header %':>10}"
    )
    for kind, row in rows.items():
        print(
            f"{kind:<14}{row['bpp']:>8.4f}{row['encode_s']:>10.3f}{row['decode_s']:>10.3f}"
            f"{row.get('exact_scales_ms', float('nan')):>10.1f}{row['viterbi_ms']:>12.1f}"
            f"{row['coder_overhead_pct']:>12.3f}{row['header_pct']:>10.2f}"
        )


if __name__ == "__main__":
    main()
