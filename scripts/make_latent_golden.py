"""Write the latent-codec golden record (tests/golden/latent_codecs.json).

    python scripts/make_latent_golden.py [--force]

The shipped models are all mbt2018-mean; this record pins every *architecture*
in the registry, quantizer by quantizer, on tiny seeded models and seeded
latents, below g_a: the coded streams, their checksum, the decoder's y_hat and
the training outputs (the noise and straight-through proxies, TRUE, the relaxed
rounding of refinement). A refactor of the latent-codec layer must leave every
entry as it is. The model, y and z come from torch's seeded CPU generator, the
same on every machine; streams depend on float kernels only through the
mean-scale hyperprior's float means, so ``kernels`` records the writer's
kernel fingerprint, as for the golden files (write with ``ONEDNN_MAX_CPU_ISA=AVX2``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from trellic.determinism import kernel_fingerprint, single_threaded
from trellic.latent.hyperprior import Hyperprior
from trellic.models import CodecModel, ModelConfig
from trellic.quant.base import ProxyKind
from trellic.quant.registry import quantizer_names

OUT = Path(__file__).resolve().parent.parent / "tests" / "golden" / "latent_codecs.json"
# Architectures recorded, with the (N, M) of their tiny models.
ARCHITECTURES = {
    "mbt2018-mean": (8, 16), "bmshj2018-hyperprior": (8, 12), "ms2020-channel": (8, 32),
    "mbt2018-checkerboard": (8, 16), "cheng2020-anchor-checkerboard": (8, 8),
    "mbt2018": (8, 16), "cheng2020-anchor": (8, 8), "cheng2020-attn": (8, 8),
    "elic2022-official": (8, 16), "elic2022-chandelier": (8, 16),
    "bmshj2018-factorized": (8, 16), "bmshj2018-factorized-relu": (8, 16),
}
LATENT_SHAPE = (8, 12)  # y's (h, w); z is a quarter of it


def sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def tiny_model(architecture: str) -> CodecModel:
    """A seeded model with every parameter moved off its initial value (the channel
    networks' last layers start at zero)."""
    N, M = ARCHITECTURES[architecture]
    torch.manual_seed(7)
    model = CodecModel(ModelConfig(architecture=architecture, N=N, M=M)).eval()
    with torch.no_grad():
        for name, parameter in model.latent_codec.named_parameters():
            if "quantiles" not in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.update()
    return model


def latents(model: CodecModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded y (1, M, h, w) and z (1, N, h/4, w/4)."""
    config, (h, w) = model.config, LATENT_SHAPE
    generator = torch.Generator().manual_seed(11)
    y = 4 * torch.randn(1, config.M, h, w, generator=generator)
    z = 3 * torch.randn(1, config.N, h // 4, w // 4, generator=generator)
    return y, z


def record(architecture: str) -> dict:
    """Every quantizer's streams, checksum, y_hat and training outputs."""
    model = tiny_model(architecture)
    codec = model.latent_codec
    y, z = latents(model)
    if not isinstance(codec, Hyperprior):  # no side information: its own (empty) side latents
        z = codec.side_latents(y)
    entries = {}
    for name in quantizer_names():
        quantizer = model.quantizer(name)
        compressed = codec.compress(y, quantizer, None, side=z)
        decoded = codec.decompress(compressed.streams, LATENT_SHAPE, quantizer, compressed.checksum)
        assert torch.equal(decoded, compressed.y_hat), (architecture, name)
        quantized = codec.quantize(y, quantizer, None, side=z)
        assert torch.equal(quantized.y_hat, compressed.y_hat), (architecture, name)
        entry = {
            "streams": [hashlib.sha256(s).hexdigest() for s in compressed.streams],
            "sizes": [len(s) for s in compressed.streams],
            "checksum": compressed.checksum,
            "y_hat": sha256(compressed.y_hat),
            "estimated_bits": repr(compressed.estimated_bits),
        }
        for proxy in ProxyKind:
            torch.manual_seed(3)
            out = codec(y, quantizer, proxy)
            entry[f"forward_{proxy.value}"] = [
                sha256(out.y_hat), *(sha256(v) for _, v in sorted(out.likelihoods.items()))]
        entries[name] = entry
    relaxed = codec.relaxed(y, z, torch.round)
    return {"N": model.config.N, "M": model.config.M, "quantizers": entries,
            "relaxed": [sha256(relaxed.y_hat),
                        *(sha256(v) for _, v in sorted(relaxed.likelihoods.items()))]}


def build() -> dict:
    with single_threaded():
        return {"kernels": kernel_fingerprint(), "latent_shape": list(LATENT_SHAPE),
                "architectures": {arch: record(arch) for arch in ARCHITECTURES}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite the existing record")
    args = parser.parse_args(argv)
    if OUT.exists() and not args.force:
        print(f"{OUT.name} exists (--force overwrites)", file=sys.stderr)
        return 1
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
