"""The scale hyperprior (bmshj2018): zero means, a model of its own, real files with USQ and TCQ."""

import pytest
import torch

from trellic.latent.scale_hyperprior import ScaleHyperprior
from trellic.models import CodecModel, ModelConfig
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
