"""CompressAI 1.2.8's own coding speed (random weights): the reference for trellic's.

Runs in the scratch environment of ``scripts/make_compressai_fixtures.py``
(CompressAI is no dependency of trellic), with the repository on the path.

Two modes:

- Without ``--out-dir``: mbt2018-mean (N=128/M=192) coding Kodak, seconds per
  image (mean) and bpp per thread count, the reference for
  ``bench/codec_speed.py --arch 128,192`` (README's speed section)::

    PYTHONPATH=$PWD "$VENV"/bin/python bench/compressai_speed.py --threads 1 2 --images 4 \\
        > docs/data/compressai_speed.json

- With ``--out-dir DIR``: every CompressAI image architecture (``ARCHS``; ``--arch``
  picks some) at CompressAI's quality-1 sizes, each built with seeded random
  weights, given a realistic latent spread (below), ``update(force=True)``-ed and
  saved as ``DIR/ARCH.pth.tar`` (its ``state_dict``); then CompressAI's
  compress and decompress of one image (default: the first Kodak image), each
  the best of ``--repeats`` after a warm-up, on ``--threads`` threads (default 1),
  decompress split into g_s and the rest (the latent decode). CompressAI's decoded
  image is kept as ``DIR/ARCH.compressai.png`` and the JSON as
  ``DIR/compressai_speed.json`` (``--json`` elsewhere; files named relative to DIR) for
  ``bench/decode_speed.py``, trellic's side (``OUT``: any scratch folder)::

    PYTHONPATH=$PWD "$VENV"/bin/python bench/compressai_speed.py --out-dir "$OUT"

Random weights from CompressAI's initialisation give latents of std ~0.04 (all
zero once rounded: nothing to decode). So each model is moved as the fixture
generator moves its spatial-context, checkerboard, ELIC and factorized fixtures
(``_perturb_spec``: g_a's last convolution scaled so that y has a std of 3,
h_a's so that z has 2.5, context networks scaled to the hyper-synthesis' spread,
the entropy parameters' last layer set per channel to scales from under the 0.11
bound to ~4 and means of a few units, g_s's last layer to a mid-grey
reconstruction), measured on a 256x256 crop of the coded image;
``bmshj2018-hyperprior`` and ``mbt2018-mean`` (which that function does not
cover) get the same steps here (``_spread_hyperprior``). The bitrates are
therefore meaningless, but the streams are of a realistic size for the
coders' work (recorded).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from trellic.argtypes import positive_int
from trellic.io import (
    image_to_tensor,
    list_images,
    pad_to_multiple,
    read_image,
    tensor_to_image,
    write_image,
)
from trellic.paths import data_root, kodak_dir

ROOT = Path(__file__).resolve().parents[1]
VERSION = "1.2.8"

# registry name -> (fixture family, constructor kwargs, seed). Quality-1 sizes of
# CompressAI's zoo (bmshj/mbt: N=128, M=192; cheng2020: N=128, M=N); ELIC at its
# defaults (N=192, M=320, groups [16, 16, 32, 64, M - 128]), written out because the
# fixture recipe reads them.
ELIC = {"N": 192, "M": 320, "groups": [16, 16, 32, 64, 192]}
ARCHS = {
    "bmshj2018-factorized": ("factorized", {"N": 128, "M": 192}, 101),
    "bmshj2018-factorized-relu": ("factorized", {"N": 128, "M": 192}, 102),
    "bmshj2018-hyperprior": ("hyperprior", {"N": 128, "M": 192}, 103),
    "mbt2018-mean": ("hyperprior", {"N": 128, "M": 192}, 104),
    "mbt2018": ("serial", {"N": 128, "M": 192}, 105),
    "cheng2020-anchor": ("serial", {"N": 128}, 106),
    "cheng2020-attn": ("serial", {"N": 128}, 107),
    "cheng2020-anchor-checkerboard": ("checkerboard", {"N": 128}, 108),
    "elic2022-official": ("elic", ELIC, 109),
    "elic2022-chandelier": ("elic", ELIC, 110),
}


def _fixtures():
    """The fixture generator as a module, with CompressAI's unused imports stubbed."""
    name = "make_compressai_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        module._stub_unused_imports()
    return sys.modules[name]


def _import_compressai():
    """CompressAI's mbt2018-mean class (the fixture generator's import recipe)."""
    _fixtures()
    from compressai.models import MeanScaleHyperprior

    return MeanScaleHyperprior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, nargs="+", default=None,
                        help="thread counts (default: 1 2 without --out-dir, else 1)")
    parser.add_argument("--images", type=positive_int, default=4,
                        help="Kodak images (without --out-dir)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="per-architecture mode: where the checkpoints are written")
    parser.add_argument("--arch", action="append", choices=tuple(ARCHS), default=None,
                        help="an architecture to time (repeatable; default: all ten)")
    parser.add_argument("--image", type=Path, default=None,
                        help="the image to code (default: the first Kodak image)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="best of this many")
    parser.add_argument("--json", type=Path, default=None,
                        help="write here (default: stdout; with --out-dir: "
                        "OUT_DIR/compressai_speed.json)")
    args = parser.parse_args()
    if args.out_dir is None:
        result = legacy(args)
    else:
        result = per_architecture(args)
    text = json.dumps(result, indent=1)
    if args.json is None and args.out_dir is not None:
        args.json = args.out_dir / "compressai_speed.json"
    if args.json is None:
        print(text)
    else:
        args.json.write_text(text + "\n")


# -- without --out-dir: mbt2018-mean over Kodak --------------------------------------------


def legacy(args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    model = _import_compressai()(N=128, M=192).eval()
    model.update(force=True)
    files = list_images(kodak_dir(), limit=args.images)
    runs = [time_run(model, files, threads) for threads in args.threads or [1, 2]]
    return {"codec": "CompressAI 1.2.8 mbt2018-mean N=128/M=192 (random weights)", "runs": runs}


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


# -- with --out-dir: every architecture on one image ---------------------------------------


def cpu_model() -> str:
    """``lscpu``'s model name (from /proc/cpuinfo), else the platform's processor."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build(arch: str, x_probe: torch.Tensor):
    """CompressAI's ``arch``, seeded random weights with a realistic latent spread, updated."""
    fixtures = _fixtures()
    from compressai.registry import MODELS

    family, kwargs, seed = ARCHS[arch]
    torch.manual_seed(seed)
    model = MODELS[arch](**kwargs)
    model.eval()
    if family == "hyperprior":
        _spread_hyperprior(model, arch, x_probe, seed)
    else:
        fixtures._perturb_spec(model, fixtures.Spec(family, kwargs, seed), x_probe)
    model.eval()
    model.update(force=True)
    return model


def _spread_hyperprior(model, arch: str, x: torch.Tensor, seed: int) -> None:
    """``_perturb_spec``'s spread for the two hyperpriors it does not cover: y std 3, z std
    2.5, h_s's last convolution set per channel (scales std 0.6 around -0.3..4.0, means std 1
    around random biases), g_s's last layer for a mid-grey reconstruction."""
    fixtures = _fixtures()
    generator = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        fixtures._scale_to_std(model, x, fixtures._last_conv_child(model.g_a), "g_a", 3.0)
        fixtures._scale_to_std(model, x, fixtures._last_conv_child(model.h_a), "h_a", 2.5)
        if arch == "mbt2018-mean":  # h_s -> (scales, means)
            bias = torch.randn(model.M, generator=generator)
            fixtures._normalise_params(model, x, "h_s.4", ("scales", "means"), bias)
        else:  # bmshj2018-hyperprior: h_s -> ReLU(conv) = the scales
            _normalise_scales(model, x, "h_s.4")
        last = fixtures._last_conv_child(model.g_s)
        for _ in range(2):
            x_hat = model(x)["x_hat"]
            factor = 0.12 / float(x_hat.std())
            last.weight.mul_(factor)
            last.bias.mul_(factor)
            last.bias.add_(0.5 - float(model(x)["x_hat"].mean()))


def _normalise_scales(model, x: torch.Tensor, name: str) -> None:
    """Per output channel of ``name``: std 0.6 around -0.3..4.0 (before the ReLU)."""
    fixtures = _fixtures()
    layer = model.get_submodule(name)
    _, probe = fixtures._probe(model, x, inputs=[name])
    bias = layer.bias.view(1, -1, 1, 1)
    out = torch.cat([layer(args[0]) - bias for args in probe.inputs[name]])
    flat = out.transpose(0, 1).flatten(1)
    factor = 0.6 / flat.std(dim=1)
    layer.weight.mul_(factor.view(-1, 1, 1, 1))
    layer.bias.copy_(torch.linspace(-0.3, 4.0, flat.shape[0]) - flat.mean(dim=1) * factor)


class _Timer:
    """Seconds spent inside a module's forward (hooks), summed since the last reset."""

    def __init__(self, module: torch.nn.Module):
        self.seconds, self._start = 0.0, None
        module.register_forward_pre_hook(self._before)
        module.register_forward_hook(self._after)

    def _before(self, *_):
        self._start = time.perf_counter()

    def _after(self, *_):
        self.seconds += time.perf_counter() - self._start


def time_architecture(arch: str, model, x: torch.Tensor, repeats: int) -> tuple[dict, torch.Tensor]:
    """CompressAI's compress and decompress of x: best of ``repeats`` after a warm-up."""
    g_s = _Timer(model.g_s)
    encode, decode, synthesis = [], [], []
    with torch.no_grad():
        y = model.g_a(x)
        for index in range(repeats + 1):
            start = time.perf_counter()
            out = model.compress(x)
            middle = time.perf_counter()
            g_s.seconds = 0.0
            x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
            end = time.perf_counter()
            if index:  # the first run warms up
                encode.append(middle - start)
                decode.append(end - middle)
                synthesis.append(g_s.seconds)
    best = min(range(repeats), key=decode.__getitem__)
    streams = [sum(len(s) for s in strings) for strings in out["strings"]]
    pixels = x.shape[-2] * x.shape[-1]
    return {
        "class": type(model).__name__,
        "encode_s": min(encode),
        "decode_s": decode[best],
        "decode_g_s_s": synthesis[best],
        "decode_latent_s": decode[best] - synthesis[best],
        "decode_all_s": decode,
        "stream_bytes": streams,
        "bpp": 8 * sum(streams) / pixels,
        "y_std": float(y.std()),
        "y_nonzero_fraction": float((y.round() != 0).float().mean()),
    }, x_hat


def per_architecture(args: argparse.Namespace) -> dict:
    threads = (args.threads or [1])[0]
    torch.set_num_threads(threads)
    image_path = args.image or list_images(kodak_dir(), limit=1)[0]
    image = read_image(image_path)
    x = pad_to_multiple(image_to_tensor(image), 64)
    height, width = image.shape[:2]
    top, left = (height - 256) // 2, (width - 256) // 2
    x_probe = x[..., top:top + 256, left:left + 256].contiguous()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = {}
    for arch in args.arch or list(ARCHS):
        model = build(arch, x_probe)
        checkpoint = args.out_dir / f"{arch}.pth.tar"
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, checkpoint)
        row, x_hat = time_architecture(arch, model, x, args.repeats)
        decoded = args.out_dir / f"{arch}.compressai.png"
        write_image(decoded, tensor_to_image(x_hat[..., :height, :width]), force=True)
        family, kwargs, seed = ARCHS[arch]
        rows[arch] = {"kwargs": kwargs, "seed": seed, "checkpoint": checkpoint.name,
                      "decoded": decoded.name, **row,
                      "load_average": [round(v, 2) for v in os.getloadavg()]}
        print(f"{arch}: decode {row['decode_s']:.3f} s (g_s {row['decode_g_s_s']:.3f} s), "
              f"encode {row['encode_s']:.3f} s, {row['bpp']:.3f} bpp", file=sys.stderr)
    try:
        image_name = str(Path(image_path).resolve().relative_to(data_root().resolve()))
    except ValueError:
        image_name = str(image_path)
    return {
        "codec": f"CompressAI {VERSION}",
        "torch": torch.__version__,
        "image": image_name,
        "image_size": [width, height],
        "threads": threads,
        "timing": f"best of {args.repeats} after one warm-up run",
        "cpu": cpu_model(),
        "load_average_before": load_before,
        "weights": "seeded random init, latent spread set as bench/compressai_speed.py says; "
                   "bitrates meaningless",
        "archs": rows,
    }


if __name__ == "__main__":
    main()
