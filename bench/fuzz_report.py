"""Hostile bitstreams: ~10,000 mutated trellic files, each must decode or fail cleanly.

    nice python bench/fuzz_report.py [--cases 10000] [--seed 0] [--memory-gib 4] [--json out.json]
        [--architecture ms2020-channel]

Valid files are coded with the tiny test model (tests/conftest.py) for USQ,
TCQ-4 and TCQ-8 at a few sizes, then mutated by category (see ``CATEGORIES``).
A case passes when decoding ends within ``TIME_LIMIT_S`` with either a uint8
image of the size its header states, or a one-line :class:`TrellicError`; any
other exception, a multi-line message, a memory error or a slow case fails.
In the categories marked *refuse* (well-formed streams of other symbols under
the file's symbols CRC) only the integrity check's error passes: an image
there is a desynchronised decoder that went unnoticed.
The process runs under an address-space limit (``--memory-gib``), so an
allocation sized by an unchecked header field shows up as a failure, not as a
swapping machine. One case in ``CLI_EVERY`` also goes through ``trellic
decompress`` in-process: exit 0 with a PNG, or exit 1 with one stderr line.
With shipped weights present, a few cases use the default model: a header
claiming the largest allowed image in front of tiny streams, and garbage TCQ
streams. Prints one JSON object and a table (docs/robustness.md quotes them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.conftest: the tiny model

from tests.conftest import make_tiny_model, synthetic_image  # noqa: E402
from trellic.cli import main as cli_main  # noqa: E402
from trellic.codec import MAX_PIXELS, Codec  # noqa: E402
from trellic.coding import bitstream  # noqa: E402
from trellic.errors import TrellicError  # noqa: E402
from trellic.models.architectures import architecture_names  # noqa: E402
from trellic.quant.registry import quantizer_names
from trellic.zoo import load, save_model  # noqa: E402

TIME_LIMIT_S = 10.0
CLI_EVERY = 100
KINDS = quantizer_names()
SIZES = ((40, 70), (1, 1), (64, 200), (130, 90))
ID_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789._:+-"


class Seed:
    """A valid file and the byte offsets of its sections."""

    def __init__(self, data: bytes):
        self.data = data
        self.container = bitstream.unpack(data)
        self.header = self.container.header
        z_len, y_len = len(self.container.z_stream), len(self.container.y_stream)
        self.y_start = len(data) - 8 - y_len
        self.z_start = self.y_start - len(bitstream._varint(y_len)) - z_len
        id_end = 6 + len(self.header.model_id)
        sizes_start = id_end + bitstream.SHA_PREFIX_BYTES + 9
        self.boundaries = sorted({0, 4, 5, 6, id_end, id_end + 8, id_end + 9, id_end + 13,
                                  sizes_start, self.z_start - len(bitstream._varint(z_len)),
                                  self.z_start, self.y_start - len(bitstream._varint(y_len)),
                                  self.y_start, len(data) - 8, len(data) - 4, len(data)})
        self.sizes_start = sizes_start


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def repack(seed: Seed, z: bytes | None = None, y: bytes | None = None, **fields) -> bytes:
    """The seed with some streams or header fields replaced, bypassing pack()'s checks."""
    h = seed.header
    values = {"model_id": h.model_id.encode(), "sha": bytes.fromhex(h.weights_sha256),
              "version": bitstream.FORMAT_VERSION, "code": bitstream.QUANTIZER_CODES[h.quantizer],
              "delta": h.delta, "lambda_t": h.lambda_t, "height": h.height, "width": h.width,
              "symbols_crc": seed.container.symbols_crc}
    values.update(fields)
    z = seed.container.z_stream if z is None else z
    y = seed.container.y_stream if y is None else y
    out = bytearray(bitstream.MAGIC)
    out += struct.pack("<BB", values["version"], len(values["model_id"]) % 256) + values["model_id"]
    out += values["sha"] + struct.pack("<Bff", values["code"], values["delta"], values["lambda_t"])
    out += bitstream._varint(values["height"]) + bitstream._varint(values["width"])
    out += fields.get("z_len_bytes", bitstream._varint(len(z))) + z
    out += fields.get("y_len_bytes", bitstream._varint(len(y))) + y
    out += struct.pack("<I", values["symbols_crc"])
    return with_crc(bytes(out))


# -- mutators: (rng, seed, context) -> bytes -----------------------------------------------
def truncate_boundary(rng, seed, ctx):
    cut = int(rng.choice(seed.boundaries)) + int(rng.integers(-1, 2))
    body = seed.data[: max(cut, 0)]
    return with_crc(body[:-4] if len(body) >= 4 else body) if rng.random() < 0.5 else body


def truncate_stream(rng, seed, ctx):
    name = "z" if rng.random() < 0.3 else "y"
    stream = getattr(seed.container, f"{name}_stream")
    cut = int(rng.integers(0, len(stream) + 1))
    cut -= cut % 4 if rng.random() < 0.8 else 0
    return repack(seed, **{name: stream[:cut]})


def bit_flip(rng, seed, ctx, fix_crc=False):
    data = bytearray(seed.data)
    for _ in range(int(rng.integers(1, 9))):
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
    return with_crc(bytes(data[:-4])) if fix_crc else bytes(data)


def random_bytes(rng, seed, ctx):
    blob = rng.bytes(int(rng.integers(0, 2000)))
    style = rng.integers(3)
    if style == 0:
        return blob
    prefix = bitstream.MAGIC + bytes([bitstream.FORMAT_VERSION])
    return prefix + blob if style == 1 else with_crc(prefix + blob)


def lying_header(rng, seed, ctx):
    lie = int(rng.integers(10))
    if lie == 0:  # huge or random image size, streams unchanged
        sides = [1, 5000, 8192, bitstream.MAX_SIDE, int(rng.integers(1, 1 << 16))]
        return repack(seed, height=int(rng.choice(sides)), width=int(rng.choice(sides)))
    if lie == 1:  # just under the pixel limit: the costliest claim a decoder accepts
        return repack(seed, height=4096, width=MAX_PIXELS // 4096)
    if lie == 2:  # absurd section lengths
        key = "z_len_bytes" if rng.random() < 0.5 else "y_len_bytes"
        value = int(rng.choice([0, 1, 3, 2**20, 2**34, rng.integers(0, 4000)]))
        return repack(seed, **{key: bitstream._varint(value)})
    if lie == 3:  # unknown version
        return repack(seed, version=int(rng.integers(0, 256)))
    if lie == 4:  # another model id: valid alphabet or arbitrary bytes
        n = int(rng.integers(0, 70))
        model_id = bytes(rng.choice(list(ID_ALPHABET), n)) if rng.random() < 0.5 else rng.bytes(n)
        return repack(seed, model_id=model_id)
    if lie == 5:  # wrong weights hash
        return repack(seed, sha=rng.bytes(8))
    if lie == 6:  # quantizer code, delta, lambda_t
        floats = [np.nan, np.inf, -1.0, 0.0, 0.6, 1.0, 1e-30, 1e30, float(rng.normal())]
        return repack(seed, code=int(rng.integers(0, 6)), delta=float(rng.choice(floats)),
                      lambda_t=float(rng.choice(floats)))
    if lie == 7:  # CRC mismatch
        return seed.data[:-4] + rng.bytes(4)
    if lie == 8:  # another seed's size header with this seed's streams
        other = ctx["seeds"][int(rng.integers(len(ctx["seeds"])))].header
        return repack(seed, height=other.height, width=other.width)
    # a non-minimal or overlong varint in the size fields
    body = bytearray(seed.data[:-4])
    padding = [0x80 | int(rng.integers(128))] * int(rng.integers(1, 7))
    body[seed.sizes_start : seed.sizes_start] = bytes(padding)
    return with_crc(bytes(body))


def garbage_streams(rng, seed, ctx):
    length = lambda n: int(max(n, 4) * rng.uniform(0.25, 4.0)) // (4 if rng.random() < 0.9 else 1)  # noqa: E731
    y = rng.bytes(length(len(seed.container.y_stream)) * 4)
    z = rng.bytes(length(len(seed.container.z_stream)) * 4) if rng.random() < 0.3 else None
    return repack(seed, z=z, y=y)


def splice(rng, seed, ctx):
    seeds = ctx["seeds"]
    a, b = (seeds[int(i)] for i in rng.integers(len(seeds), size=2))
    return repack(seed, z=a.container.z_stream, y=b.container.y_stream)


def recoded_y(seed, ctx, magnitude: int, rng) -> bytes:
    """The seed with a well-formed y stream of latents in [-magnitude, magnitude], coded
    by the model's own encoder under the seed's z (any latent codec's coding order)."""
    model, codec = ctx["model"], ctx["codecs"][seed.header.quantizer]
    latent = model.latent_codec
    h, w = model.latent_shape(seed.header.height, seed.header.width)
    z_hat = latent.entropy_bottleneck.dequantize(latent.decode_side(seed.container.z_stream,
                                                                    (h, w)))
    y = torch.from_numpy(rng.integers(-magnitude, magnitude + 1, (1, model.config.M, h, w)))
    forged = latent.compress(y.float(), codec.quantizer, side=z_hat)
    return repack(seed, y=forged.streams[1])


def absurd_escapes(rng, seed, ctx):
    """A well-formed y stream whose indices are huge: every one an escape."""
    return recoded_y(seed, ctx, int(2 ** rng.uniform(4, 25)), rng)


def other_symbols(rng, seed, ctx):
    """A well-formed y stream of other (small) indices under the file's symbols CRC."""
    return recoded_y(seed, ctx, 2, rng)


CATEGORIES = {  # name: (mutator, share of the cases)
    "truncation at section boundaries": (truncate_boundary, 0.08),
    "truncated stream, valid CRC": (truncate_stream, 0.10),
    "bit flips": (bit_flip, 0.08),
    "bit flips, CRC recomputed": (lambda r, s, c: bit_flip(r, s, c, fix_crc=True), 0.17),
    "random bytes": (random_bytes, 0.08),
    "lying headers": (lying_header, 0.20),
    "garbage streams, valid CRC": (garbage_streams, 0.18),
    "spliced streams": (splice, 0.05),
    "absurd escape values": (absurd_escapes, 0.03),
    "other symbols, valid CRCs (refuse)": (other_symbols, 0.03),
}


def run_case(data: bytes, codecs: dict) -> tuple[str, str]:
    """('image' | 'error' | 'failure', detail)."""
    try:
        header = bitstream.unpack(data).header
        image = codecs[header.quantizer].decode(data)
    except TrellicError as error:
        message = str(error)
        if "\n" in message or "memory" in message or "alloc" in message:
            return "failure", f"bad error message: {message[:200]!r}"
        return "error", message
    except BaseException as error:  # noqa: BLE001 - the point is to catch anything
        if isinstance(error, KeyboardInterrupt):
            raise
        return "failure", f"{type(error).__name__}: {str(error)[:200]}"
    if image.dtype != np.uint8 or image.shape != (header.height, header.width, 3):
        return "failure", f"{image.dtype} {image.shape} for a {header.width}x{header.height} header"
    return "image", ""


def run_cli_case(data: bytes, weights: Path, folder: Path) -> str:
    """'' if `trellic decompress` behaved (exit 0 + PNG, or exit 1 + one line), else why not."""
    source, target = folder / "case.trl", folder / "case.png"
    source.write_bytes(data)
    target.unlink(missing_ok=True)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_main(["decompress", str(source), str(target), "--model", str(weights)])
        except BaseException as error:  # noqa: BLE001
            return f"cli raised {type(error).__name__}: {error}"
    err = stderr.getvalue()
    if code == 0 and target.is_file():
        return ""
    one_line = err.startswith("trellic: error: ") and err.count("\n") == 1
    if code == 1 and one_line and not target.exists():
        return ""
    return f"cli exit {code}, stderr {err[:200]!r}"


def default_model_cases(rng) -> dict:
    """The shipped default model: a maximal size claim with tiny streams, garbage streams, flips."""
    try:
        loaded = load("default")
    except TrellicError as error:
        return {"skipped": str(error)}
    results = {}
    image = synthetic_image(256, 384)
    for kind in KINDS:
        codec = Codec.load_from(loaded, kind)
        seed = Seed(codec.encode(image).data)
        codecs = {kind: codec}
        largest = {"height": 4096, "width": MAX_PIXELS // 4096}
        cases = {"largest claimed size, real streams": [repack(seed, **largest)],
                 "largest claimed size, 8-byte streams": [
                     repack(seed, z=rng.bytes(8), y=rng.bytes(8), **largest)],
                 "garbage y stream, valid CRC": [garbage_streams(rng, seed, {}) for _ in range(10)],
                 "bit flips, CRC recomputed": [bit_flip(rng, seed, {}, fix_crc=True)
                                               for _ in range(10)]}
        for name, blobs in cases.items():
            tally = results.setdefault(f"default model: {name}", defaultdict(float))
            for blob in blobs:
                outcome, detail = timed_case(blob, codecs, tally)
                if outcome != "image":
                    tally.setdefault("examples", []).append(detail[:60])
    return {name: dict(t) for name, t in results.items()}


def timed_case(data: bytes, codecs: dict, tally: defaultdict) -> tuple[str, str]:
    """Run one case, count it in ``tally``; a case over the time limit is a failure."""
    start = time.perf_counter()
    outcome, detail = run_case(data, codecs)
    seconds = time.perf_counter() - start
    if seconds > TIME_LIMIT_S:
        outcome, detail = "failure", f"took {seconds:.1f} s"
    tally["tried"] += 1
    tally[outcome] += 1
    tally["max_seconds"] = max(tally["max_seconds"], seconds)
    return outcome, detail


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-gib", type=float, default=4.0, help="address-space limit")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--architecture", choices=architecture_names(), default="mbt2018-mean",
                        help="the tiny model's latent codec")
    args = parser.parse_args(argv)
    limit = int(args.memory_gib * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()

    folder = Path(tempfile.mkdtemp(prefix="trellic-fuzz-"))
    weights = folder / "tiny.safetensors"
    save_model(make_tiny_model(architecture=args.architecture), weights, {})
    loaded = load(str(weights))
    codecs = {kind: Codec(loaded, loaded.model.quantizer(kind)) for kind in KINDS}
    seeds = [Seed(codecs[kind].encode(synthetic_image(h, w, seed=h)).data)
             for kind in KINDS for h, w in SIZES]
    ctx = {"seeds": seeds, "model": loaded.model, "codecs": codecs}

    report = {"cases": 0, "failures": 0, "categories": {}, "cli": {"tried": 0, "failures": 0}}
    for name, (mutate, share) in CATEGORIES.items():
        tally = defaultdict(float)
        examples, messages = [], Counter()
        for _ in range(round(args.cases * share)):
            seed = seeds[int(rng.integers(len(seeds)))]
            data = mutate(rng, seed, ctx)
            outcome, detail = timed_case(data, codecs, tally)
            if "(refuse)" in name and not (outcome == "error" and "integrity" in detail):
                tally[outcome] -= 1
                tally["failure"] += 1
                outcome, detail = "failure", f"not refused by the integrity check: {detail}"
            if outcome == "failure" and len(examples) < 5:
                examples.append(detail)
            if outcome == "error":
                messages[detail.split(":")[0] if "version" in detail else detail[:48]] += 1
            report["cases"] += 1
            if report["cases"] % CLI_EVERY == 0:
                report["cli"]["tried"] += 1
                why = run_cli_case(data, weights, folder)
                if why:
                    report["cli"]["failures"] += 1
                    report["cli"].setdefault("examples", []).append(why)
        report["failures"] += int(tally["failure"])
        report["categories"][name] = {**{k: round(v, 3) for k, v in tally.items()},
                                      "examples": examples,
                                      "top_errors": dict(messages.most_common(4))}
    report["default_model"] = default_model_cases(rng)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report["memory_limit_gib"] = args.memory_gib
    print(json.dumps(report, indent=1))
    print(f"\n{'category':52s} {'tried':>6s} {'image':>6s} {'error':>6s} {'fail':>5s} "
          f"{'max s':>7s}")
    for name, t in {**report["categories"], **report["default_model"]}.items():
        if "tried" in t:
            print(f"{name:52s} {int(t['tried']):6d} {int(t.get('image', 0)):6d} "
                  f"{int(t.get('error', 0)):6d} {int(t.get('failure', 0)):5d} "
                  f"{t['max_seconds']:7.3f}")
    print(f"total {report['cases']} cases, {report['failures']} failures, CLI "
          f"{report['cli']['tried']} tried / {report['cli']['failures']} failed, "
          f"{report['seconds']} s, peak RSS {report['peak_rss_mib']} MiB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
