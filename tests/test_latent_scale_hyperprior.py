"""The scale hyperprior (bmshj2018): zero means, a model of its own, real files with USQ and TCQ."""

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_image
from trellic.codec import Codec
from trellic.determinism import single_threaded
from trellic.io import image_to_tensor, pad_to_multiple, tensor_to_image
from trellic.latent.scale_hyperprior import ScaleHyperprior
from trellic.models import CodecModel, ModelConfig
from trellic.quant.base import ProxyKind
from trellic.zoo import load, save_model


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """An N=16/M=24 scale hyperprior, latents scaled up, saved and loaded as a weights file."""
    torch.manual_seed(0)
    model = CodecModel(ModelConfig("bmshj2018-hyperprior", N=16, M=24)).eval()
    with torch.no_grad():
        model.g_a[-1].weight.mul_(30.0)
        model.latent_codec.h_s[-2].bias.fill_(2.0)  # scales ~2: several table rows in use
    model.update()
    path = tmp_path_factory.mktemp("weights") / "scale.safetensors"
    save_model(model, path, {})
    return load(str(path))


def test_the_architecture_builds_a_scale_only_hyperprior_with_zero_means(loaded):
    codec = loaded.model.latent_codec
    assert isinstance(codec, ScaleHyperprior) and loaded.model.config.architecture == (
        "bmshj2018-hyperprior"
    )
    means, scales = codec.entropy_parameters(torch.randn(1, 16, 2, 3))
    assert torch.equal(means, torch.zeros_like(means)) and (scales >= 0.11).all()
    assert scales.shape == (1, 24, 8, 12)


def test_it_trains_with_a_proxy_like_any_latent_codec(loaded):
    model = CodecModel(loaded.model.config).train()
    out = model(torch.rand(2, 3, 64, 64), loaded.model.quantizer("usq"), ProxyKind.NOISE)
    assert set(out.likelihoods) == {"y", "z"} and out.x_hat.shape == (2, 3, 64, 64)
    (out.x_hat.mean() - torch.log(out.likelihoods["y"]).sum()).backward()
    assert model.latent_codec.h_a[0].weight.grad is not None


@pytest.mark.parametrize("kind", ["usq", "tcq4"])
def test_files_round_trip_to_the_encoders_reconstruction(loaded, kind):
    codec = Codec.load_from(loaded, kind)
    image = synthetic_image(40, 70, seed=5)
    encoded = codec.encode(image)
    decoded = codec.decode(encoded.data)
    model = loaded.model
    x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
    compressed = model.compress(x, codec.quantizer, codec.lambda_t)
    assert compressed.y_hat.abs().max() > 1, "test latents should be non-trivial"
    with torch.no_grad(), single_threaded():
        expected = tensor_to_image(model.synthesize(compressed.y_hat)[..., :40, :70])
    assert np.array_equal(decoded, expected)
    coded = 8 * sum(len(stream) for stream in compressed.streams)
    assert abs(coded - compressed.estimated_bits) <= 0.01 * compressed.estimated_bits + 128
