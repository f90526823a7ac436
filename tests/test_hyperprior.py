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
    assert out.y_likelihoods.shape == (2, 24, 4, 8)
    assert ((out.y_likelihoods > 0) & (out.y_likelihoods <= 1)).all()
    (out.x_hat.mean() - torch.log(out.y_likelihoods).sum()).backward()
    assert model.g_a[0].weight.grad is not None


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_decoder_y_hat_equals_encoder_y_hat(tiny_model, x, kind):
    quantizer = make_quantizer(kind)
    latents = tiny_model.quantize_latents(x, quantizer)
    assert latents.k.abs().max() > 1, "test latents should be non-trivial"
    y_hat_encoder = latents.means + quantizer.dequantize(latents.k)
    y_hat_decoder = tiny_model.decode_latents(tiny_model.compress(x, quantizer), quantizer)
    assert torch.equal(y_hat_encoder, y_hat_decoder)


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_decode_is_identical_whatever_the_thread_count(tiny_model, x, kind):
    quantizer = make_quantizer(kind)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        compressed = tiny_model.compress(x, quantizer)
        again = tiny_model.compress(x, quantizer)
        two = tiny_model.decompress(compressed, quantizer)
        torch.set_num_threads(1)
        one = tiny_model.decompress(compressed, quantizer)
        single_encoded = tiny_model.compress(x, quantizer)
    finally:
        torch.set_num_threads(threads)
    assert compressed.y_stream == again.y_stream == single_encoded.y_stream
    assert torch.equal(one, two)


def test_tcq_and_usq_code_different_indices(tiny_model, x):
    usq = tiny_model.quantize_latents(x, make_quantizer("usq")).k
    tcq = tiny_model.quantize_latents(x, make_quantizer("tcq8")).k
    assert not torch.equal(usq, tcq)


def test_estimated_bits_track_the_stream_size(tiny_model, x):
    for kind in QUANTIZERS:
        compressed = tiny_model.compress(x, make_quantizer(kind))
        coded = 8 * (len(compressed.z_stream) + len(compressed.y_stream))
        assert abs(coded - compressed.estimated_bits) <= 0.01 * compressed.estimated_bits + 128
