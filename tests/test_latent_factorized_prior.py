"""The factorized-prior latent codec (bmshj2018-factorized, -relu) against CompressAI 1.2.8.

The fixtures (tests/fixtures/compressai/, scripts/make_compressai_fixtures.py) hold tiny
random-weight CompressAI models (``state.*``, CompressAI's keys) and what CompressAI
computed with them (``expected.*``); they load here through an explicit key mapping.
Every quantizer's round trip and the y stream's size against the tables' estimate are
tests/test_architectures.py's, which covers every registered architecture.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from trellic.codec import Codec
from trellic.determinism import kernel_fingerprint
from trellic.entropy.tables import TOTAL
from trellic.io import image_to_tensor, read_image
from trellic.models import CodecModel, ModelConfig
from trellic.paths import data_root
from trellic.quant import ProxyKind
from trellic.zoo import save_model

FIXTURES = Path(__file__).parent / "fixtures" / "compressai"
META = json.loads((FIXTURES / "fixtures.json").read_text())
ARCHS = ["bmshj2018-factorized", "bmshj2018-factorized-relu"]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# trellic's density subtracts the sigmoids on the far side of the median, CompressAI 1.2.8
# subtracts them plainly: likelihoods of ~3e-3 differ by ~3e-5 relative (CompressAI's the
# less precise).
LIKELIHOOD_TOLERANCE = {"rtol": 5e-5, "atol": 1e-12}
# CompressAI's coding tables and its layers' constants: derived data, not weights.
NOT_WEIGHTS = ("._offset", "._quantized_cdf", "._cdf_length", ".target", ".pedestal",
               "lower_bound.bound")


def same_kernels(arch: str) -> bool:
    """Whether this machine's float kernels round like those that made the fixture."""
    return kernel_fingerprint() == META["archs"][arch].get("kernels", META["kernels"])


def fixture(arch: str, prefix: str) -> dict[str, torch.Tensor]:
    tensors = load_file(str(FIXTURES / f"{arch}.safetensors"))
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def compressai_model(arch: str) -> CodecModel:
    """The fixture's CompressAI model as a trellic model, tables built.

    Key mapping: ``g_a.*``, ``g_s.*`` as they are; ``entropy_bottleneck.{quantiles,
    matrices,biases,factors}.*`` under ``latent_codec.`` (CompressAI's filters (3, 3, 3, 3));
    CompressAI's tables and constants dropped. The load is strict.
    """
    meta = META["archs"][arch]
    state = {
        (f"latent_codec.{key}" if key.startswith("entropy_bottleneck.") else key): value
        for key, value in fixture(arch, "state.").items()
        if not key.endswith(NOT_WEIGHTS)
    }
    config = ModelConfig(arch, N=meta["N"], M=meta["M"], prior_filters=(3, 3, 3, 3))
    model = CodecModel(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    model.update()
    return model


@pytest.mark.parametrize("arch", ARCHS)
def test_noise_free_forward_equals_compressai(arch):
    model, expected = compressai_model(arch), fixture(arch, "expected.")
    x = expected["x_u8"][None].float() / 255.0
    usq = model.quantizer("usq")
    with torch.no_grad():
        y = model.g_a(x)
        true = model(x, usq, ProxyKind.TRUE)  # the decoder's y_hat, the true indices' rate
        coded = model.latent_codec.quantize(y, usq)
    torch.testing.assert_close(y, expected["y"], **TOLERANCE)
    torch.testing.assert_close(true.x_hat, expected["x_hat"], **TOLERANCE)
    torch.testing.assert_close(true.likelihoods["y"], expected["y_likelihoods"],
                               **LIKELIHOOD_TOLERANCE)
    if same_kernels(arch):  # round(y - median) + median repeats bit for bit
        assert torch.equal(coded.y_hat, expected["y_hat"])
        assert torch.equal(coded.y_hat, expected["decoded_y_hat"])
    assert model.aux_loss().item() == pytest.approx(META["archs"][arch]["aux_loss"], abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_usq_decode_of_a_real_crop_equals_compressai_decode(tmp_path, arch):
    crop = META["crop"]
    path = data_root() / crop["path"]
    if not path.is_file():
        pytest.skip(f"{path} not found (set TRELLIC_DATA)")
    left, top, right, bottom = crop["box"]
    image = read_image(path)[top:bottom, left:right]
    assert hashlib.sha256(image.tobytes()).hexdigest() == crop["input_sha256"]
    model, expected = compressai_model(arch), fixture(arch, "expected.")
    save_model(model, tmp_path / "m.safetensors", {})
    codec = Codec.load(str(tmp_path / "m.safetensors"), "usq")
    decoded = codec.decode(codec.encode(image).data)
    reference = expected["crop_x_hat_u8"].numpy()
    if same_kernels(arch):
        compressed = model.compress(image_to_tensor(image), codec.quantizer)
        assert torch.equal(compressed.y_hat, expected["crop_y_hat"])
        assert (decoded == reference).all()
        assert hashlib.sha256(decoded.tobytes()).hexdigest() == META["archs"][arch][
            "crop_decoded_sha256"]
    else:  # float kernels that round otherwise move a pixel by a level at most
        assert np.abs(decoded.astype(int) - reference.astype(int)).max() <= 1


def test_usq_rows_at_delta_one_are_the_unit_grid_of_the_prior():
    """USQ at delta 1 codes CompressAI's symbols round(y - median): the prior's own tables."""
    model = compressai_model("bmshj2018-factorized")
    codec = model.latent_codec
    usq, grid = codec.tables["usq"], codec.entropy_bottleneck.build_tables()
    assert np.array_equal(usq.freqs, grid.freqs)
    assert np.array_equal(usq.offsets, grid.offsets)


def test_tcq_rows_are_the_density_over_each_levels_decision_interval():
    model = compressai_model("bmshj2018-factorized")
    codec, tcq = model.latent_codec, model.quantizer("tcq4")
    tables, M = codec.tables["tcq"], model.config.M
    assert tables.num_rows == 2 * M
    for qid in range(2):
        for c in range(M):
            row = qid * M + c
            n = int(tables.lengths[row]) - 1  # the last symbol is the escape
            k = torch.arange(n) + int(tables.offsets[row])
            shape = (1, M, 1, n)  # the row's k in every channel: y's layout
            lo, hi = (bound.expand(shape) for bound in tcq.decision_bounds(k, qid))
            with torch.no_grad():
                mass = codec.residual_mass(lo, hi, codec.channels(shape))[0, c, 0]
            coded = tables.freqs[row, :n] / TOTAL
            others = np.arange(n) != coded.argmax()  # the most probable takes the rounding
            np.testing.assert_allclose(coded[others], mass.double().numpy()[others],
                                       atol=(n + 2) / TOTAL)


def test_the_side_stream_is_empty_and_a_side_stream_is_refused():
    model = compressai_model("bmshj2018-factorized")
    codec, usq = model.latent_codec, model.quantizer("usq")
    y = model.g_a(torch.rand(1, 3, 32, 48))
    compressed = codec.compress(y, usq, side=codec.side_latents(y))
    side_stream, y_stream = compressed.streams
    assert side_stream == b""
    y_hat = codec.decompress(compressed.streams, (2, 3), usq, compressed.checksum)
    assert torch.equal(y_hat, compressed.y_hat)
    with pytest.raises(ValueError, match="no side stream"):
        codec.decompress((b"\0" * 4, y_stream), (2, 3), usq)
    with pytest.raises(ValueError, match="integrity"):
        codec.decompress(compressed.streams, (2, 3), usq, compressed.checksum ^ 1)
