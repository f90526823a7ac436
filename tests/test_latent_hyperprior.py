"""The mean-scale hyperprior latent codec inside the model: training pass, coding, replay."""

import pytest
import torch

from tests.conftest import make_tiny_model, synthetic_image
from trellic.io import image_to_tensor
from trellic.quant import make_quantizer
from trellic.quant.base import ProxyKind
from trellic.quant.registry import quantizer_names

QUANTIZERS = quantizer_names()


@pytest.fixture(scope="module")
def x():
    return image_to_tensor(synthetic_image(128, 192, seed=3))


def test_forward_returns_reconstruction_and_likelihoods_with_gradients():
    model = make_tiny_model().train()
    x = torch.rand(2, 3, 64, 128)
    out = model(x, make_quantizer("usq"), ProxyKind.NOISE)
    assert out.x_hat.shape == x.shape
    assert list(out.likelihoods) == ["y", "z"]
    assert out.likelihoods["y"].shape == (2, 24, 4, 8)
    assert ((out.likelihoods["y"] > 0) & (out.likelihoods["y"] <= 1)).all()
    (out.x_hat.mean() - torch.log(out.likelihoods["y"]).sum()).backward()
    assert model.g_a[0].weight.grad is not None


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_decoder_y_hat_equals_encoder_y_hat(tiny_model, x, kind):
    quantizer = make_quantizer(kind)
    compressed = tiny_model.compress(x, quantizer)
    latent_shape = tuple(compressed.y_hat.shape[-2:])
    y_hat = tiny_model.latent_codec.decompress(compressed.streams, latent_shape, quantizer,
                                               compressed.checksum)
    assert torch.equal(compressed.y_hat, y_hat)
    assert compressed.y_hat.abs().max() > 1, "test latents should be non-trivial"


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_the_true_proxy_gives_the_decoders_y_hat_and_the_rate_of_its_indices(tiny_model, x, kind):
    quantizer = make_quantizer(kind)
    codec = tiny_model.latent_codec
    with torch.no_grad():
        y = tiny_model.g_a(x)
        out = codec(y, quantizer, ProxyKind.TRUE)
    compressed = codec.compress(y, quantizer)
    assert torch.equal(out.y_hat, compressed.y_hat)
    bits = sum(-torch.log2(v).sum().item() for v in out.likelihoods.values())
    assert bits == pytest.approx(compressed.estimated_bits, rel=0.01)


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_any_thread_count_decodes_the_encoders_y_hat(tiny_model, x, kind):
    """The entropy parameters are integers: files decode to the same y_hat on 1 or 2 threads;
    only the float g_s may differ in its last bits."""
    quantizer = make_quantizer(kind)
    codec = tiny_model.latent_codec
    shape = tiny_model.latent_shape(*x.shape[-2:])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        compressed = tiny_model.compress(x, quantizer)
        two = codec.decompress(compressed.streams, shape, quantizer, compressed.checksum)
        image_two = tiny_model.decompress(compressed.streams, shape, quantizer, compressed.checksum)
        torch.set_num_threads(1)
        one = codec.decompress(compressed.streams, shape, quantizer, compressed.checksum)
        image_one = tiny_model.decompress(compressed.streams, shape, quantizer, compressed.checksum)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, compressed.y_hat) and torch.equal(two, compressed.y_hat)
    assert (image_one - image_two).abs().max() < 1e-4


def test_tcq_and_usq_code_different_indices(tiny_model, x):
    usq = tiny_model.compress(x, make_quantizer("usq")).y_hat
    tcq = tiny_model.compress(x, make_quantizer("tcq8")).y_hat
    assert not torch.equal(usq, tcq)


def test_estimated_bits_track_the_stream_size(tiny_model, x):
    for kind in QUANTIZERS:
        compressed = tiny_model.compress(x, make_quantizer(kind))
        coded = 8 * sum(len(stream) for stream in compressed.streams)
        assert abs(coded - compressed.estimated_bits) <= 0.01 * compressed.estimated_bits + 128


def test_coding_needs_the_tables_of_the_quantizers_step(tiny_model, x):
    with pytest.raises(ValueError, match="tables are for delta 0.6"):
        tiny_model.compress(x, make_quantizer("tcq4", delta=0.5))
    untabled = make_tiny_model()
    untabled.latent_codec.tables = {}
    with pytest.raises(RuntimeError, match="call update"):
        untabled.compress(x, make_quantizer("usq"))



@pytest.mark.parametrize("architecture", ["mbt2018-mean", "ms2020-channel"])
def test_relaxed_rounds_on_the_models_usq_grid(architecture):
    """Refinement's relaxation takes its interval from the quantizer: with usq_delta 0.5
    every residual lands on the half-step grid and its likelihood is a half-step mass."""
    from trellic.models import CodecModel, ModelConfig

    torch.manual_seed(0)
    model = CodecModel(ModelConfig(architecture=architecture, N=8, M=16, usq_delta=0.5)).eval()
    codec = model.latent_codec
    y = 3 * torch.randn(1, 16, 4, 8)
    z = codec.side_latents(y)
    rounded = []
    out = codec.relaxed(y, z, lambda v: rounded.append(torch.round(v)) or rounded[-1])
    r_tilde = 0.5 * torch.cat(rounded[1:], 1)  # rounded[0] is z's, then y's parts in units
    if architecture == "mbt2018-mean":
        medians = codec.entropy_bottleneck.medians.view(1, -1, 1, 1)
        means, scales = codec.entropy_parameters(torch.round(z - medians) + medians)
        assert torch.equal(out.y_hat, means + r_tilde)
        half = torch.special.ndtr((r_tilde + 0.25) / scales) - torch.special.ndtr(
            (r_tilde - 0.25) / scales)
        assert torch.allclose(out.likelihoods["y"], half.clamp_min(1e-9), atol=1e-6)
    assert (2 * r_tilde).remainder(2).ne(0).any(), "some residuals must fall on half steps"
