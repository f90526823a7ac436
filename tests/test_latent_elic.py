"""The ELIC latent codec: CompressAI's two variants, group by group, exact on every kernel set.

The CompressAI fixtures (tests/fixtures/compressai/elic2022-*.safetensors, N=8, M=14,
groups [2, 3, 4, 5]) import into trellic's model (trellic.interop); trellic's float
forward then repeats CompressAI's eval forward, and its float walk CompressAI's decoder,
on the fixture's real crop. Coding runs every network in integer arithmetic (PRECISION_2): its means
follow CompressAI's float means to ~1e-5, so the symbols agree but where y - means lies
that close to a half, and y_hat agrees up to the means' difference.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.test_architectures import seeded_model
from trellic.interop.compressai import import_checkpoint
from trellic.io import image_to_tensor, read_image
from trellic.latent.checkerboard import embed, unembed
from trellic.latent.elic import default_groups
from trellic.latent.exact import Arithmetic
from trellic.models import CodecModel, ModelConfig
from trellic.paths import data_root

FIXTURES = Path(__file__).parent / "fixtures" / "compressai"
META = json.loads((FIXTURES / "fixtures.json").read_text())
VARIANTS = ["elic2022-official", "elic2022-chandelier"]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-4}  # float32 sums in another order (packed parts)
LIKELIHOOD_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}


def fixture(arch: str, kind: str) -> dict[str, torch.Tensor]:
    """The fixture's ``state.*`` or ``expected.*`` tensors, prefix removed."""
    tensors = load_file(str(FIXTURES / f"{arch}.safetensors"))
    prefix = f"{kind}."
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


@pytest.fixture(scope="module", params=VARIANTS)
def imported(request, tmp_path_factory) -> tuple[str, CodecModel]:
    """(architecture, the fixture's CompressAI checkpoint imported by trellic.interop)."""
    from tests.test_interop_compressai import fixture_state, save_checkpoint

    arch = request.param
    checkpoint = save_checkpoint(tmp_path_factory.mktemp(arch) / "c.pth.tar",
                                 fixture_state(arch))
    model, _ = import_checkpoint(checkpoint, arch)
    return arch, model


def test_the_default_groups_are_compressais_and_shrink_for_small_models():
    assert default_groups(320) == (16, 16, 32, 64, 192)
    assert default_groups(32) == (2, 2, 4, 8, 16)
    with pytest.raises(ValueError):
        default_groups(15)


def test_groups_round_trip_through_the_stored_config_and_empty_ones_are_left_out():
    config = ModelConfig("elic2022-official", N=8, M=14, groups=(2, 3, 4, 5))
    stored = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(stored) == config
    assert "groups" not in ModelConfig("elic2022-official", N=16, M=32).to_dict()
    with pytest.raises(ValueError, match="groups"):
        ModelConfig("elic2022-official", N=8, M=14, groups=(2, 3, 4, 4))


def test_the_float_forward_repeats_compressais_eval_forward(imported):
    arch, model = imported
    codec, expected = model.latent_codec, fixture(arch, "expected")
    caught: dict[str, list[torch.Tensor]] = {}

    def catch(name):
        return lambda module, args, output: caught.setdefault(name, []).append(output)

    nets = {"hyper_params": codec.h_s, **{f"channel_context.{k}": net for k, net in
                                          codec.channel_context.items()},
            **{f"gaussian_params.y{k}": net for k, net in enumerate(codec.param_aggregation)}}
    hooks = [net.register_forward_hook(catch(name)) for name, net in nets.items()]
    x = expected["x_u8"][None].float() / 255.0
    with torch.no_grad():
        y = model.g_a(x)
        z = codec.side_latents(y)
        # CompressAI's y and z (not trellic's, a last bit apart) feed the walk: a rounding
        # decision then differs only where y - means is within 1e-5 of a half.
        out = codec.relaxed(expected["y"], expected["z"], torch.round)
        x_hat = model.g_s(out.y_hat)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(y, expected["y"], **TOLERANCE)
    torch.testing.assert_close(z, expected["z"], **TOLERANCE)
    for name, outputs in caught.items():
        got = outputs[0] if len(outputs) == 1 else embed(*outputs)  # the two passes
        torch.testing.assert_close(got, expected[name], **TOLERANCE)
        if name.startswith("gaussian_params"):
            group = name.split(".")[1]
            chunks = dict(zip(codec.chunks, got.chunk(2, dim=1), strict=True))
            torch.testing.assert_close(chunks["means"], expected[f"means.{group}"], **TOLERANCE)
            torch.testing.assert_close(chunks["scales"], expected[f"scales.{group}"],
                                       **TOLERANCE)
    assert caught.keys() == nets.keys()
    torch.testing.assert_close(out.y_hat, expected["y_hat"], **TOLERANCE)
    torch.testing.assert_close(x_hat, expected["x_hat"], **TOLERANCE)
    for name in ("y", "z"):
        torch.testing.assert_close(out.likelihoods[name], expected[f"{name}_likelihoods"],
                                   **LIKELIHOOD_TOLERANCE)


def crop_latents(model: CodecModel) -> torch.Tensor:
    """y of the fixtures' real crop, or a skip when the data folder lacks it."""
    crop = META["crop"]
    path = data_root() / crop["path"]
    if not path.is_file():
        pytest.skip(f"{path} not found (set TRELLIC_DATA)")
    left, top, right, bottom = crop["box"]
    image = read_image(path)[top:bottom, left:right]
    assert hashlib.sha256(image.tobytes()).hexdigest() == crop["input_sha256"]
    with torch.no_grad():
        return model.g_a(image_to_tensor(image))


def test_usq_decode_of_a_real_crop_is_compressais_where_the_rounding_agrees(imported):
    arch, model = imported
    codec, theirs = model.latent_codec, fixture(arch, "expected")["crop_y_hat"]
    y = crop_latents(model)
    z_hat = codec.entropy_bottleneck.dequantize(codec.side_symbols(y))
    # CompressAI's symbols: its y_hat less trellic's float means, fed its own y_hat as
    # context (trellic's float decoder, which must land on integers).
    symbols: list[torch.Tensor] = []

    def replay(residual: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        symbols.append(residual.round())
        assert (residual - symbols[-1]).abs().max() < 1e-4
        return symbols[-1]

    with torch.no_grad():
        float_y_hat = codec.walk(z_hat, theirs, replay, Arithmetic.FLOAT)
    torch.testing.assert_close(float_y_hat, theirs, **TOLERANCE)
    their_k = codec.merge(symbols, y.shape[-2:])

    usq = model.quantizer("usq")
    decision = codec.decide(y, usq)
    compressed = codec.compress(y, usq)
    y_hat = codec.decompress(compressed.streams, tuple(y.shape[-2:]), usq, compressed.checksum)
    assert torch.equal(y_hat, compressed.y_hat)
    assert torch.equal(decision.result.y_hat, y_hat)
    our_k = codec.merge([part.quantized.k for part in decision.parts], y.shape[-2:]).float()
    agree = our_k == their_k
    # Measured with PRECISION_2 (the integer means are portable): at most 2 of 896 symbols
    # differ, by 1; where they agree, y_hat differs by the means' difference, at most
    # 0.007 (it was 157 / 266 symbols, up to 2 apart, 0.84, at PRECISION_1's 2**-8 steps).
    assert (~agree).sum() <= 2
    assert (our_k - their_k).abs().max() <= 1
    assert (y_hat - theirs)[agree].abs().max() < 0.02


def part_decisions(model: CodecModel, y: torch.Tensor, z: torch.Tensor):
    decision = model.latent_codec.decide(y, model.quantizer("tcq4"), side=z)
    return [(part.quantized.k, part.scales) for part in decision.parts]


@pytest.mark.parametrize("arch", VARIANTS)
def test_anchors_read_only_earlier_groups_and_non_anchors_read_their_anchors(arch):
    model = seeded_model(arch)
    groups = model.latent_codec.groups
    generator = torch.Generator().manual_seed(3)
    y = 5 * torch.randn(1, sum(groups), 8, 12, generator=generator)
    z = 2 * torch.randn(1, model.config.N, 2, 3, generator=generator)
    base = part_decisions(model, y, z)
    start = 0
    for k, size in enumerate(groups):
        moved = y.clone()
        moved[:, start + size:] += 7  # every later group
        anchors, others = unembed(moved[:, start:start + size])
        moved[:, start:start + size] = embed(anchors, others + 7)  # group k's non-anchors
        changed = part_decisions(model, moved, z)
        before = 2 * k + 1  # the parts of earlier groups, and group k's anchors
        for (k_base, scales_base), (k_moved, scales_moved) in zip(
                base[:before], changed[:before], strict=True):
            assert torch.equal(k_moved, k_base) and torch.equal(scales_moved, scales_base)
        moved = y.clone()
        moved[:, start:start + size] = embed(anchors + 7, others)  # group k's anchors
        spatial = part_decisions(model, moved, z)[before][1]
        assert not torch.equal(spatial, base[before][1])  # the non-anchors read them
        start += size
    shifted = y.clone()
    shifted[:, : groups[0]] += 7
    assert not torch.equal(part_decisions(model, shifted, z)[2][1], base[2][1])  # channel context


_PROBE = """
import hashlib, torch
from tests.test_architectures import seeded_model
y = torch.randn(1, 32, 8, 12, generator=torch.Generator().manual_seed(1)) * 6
for arch in ("elic2022-official", "elic2022-chandelier"):
    model = seeded_model(arch)
    for kind in ("usq", "tcq4"):
        compressed = model.latent_codec.compress(y, model.quantizer(kind))
        print(hashlib.sha256(b"".join(compressed.streams) + compressed.y_hat.numpy().tobytes())
              .hexdigest())
"""


def test_both_variants_code_the_same_bytes_and_y_hat_with_avx2_kernels():
    digests = set()
    for env in ({}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}):
        run = subprocess.run([sys.executable, "-c", _PROBE], check=True, text=True,
                             capture_output=True,
                             env={**os.environ, **env, "PYTHONPATH": os.getcwd()})
        assert len(set(run.stdout.split())) == 4  # two variants, two quantizers
        digests.add(run.stdout)
    assert len(digests) == 1, digests
