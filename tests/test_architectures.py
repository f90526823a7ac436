"""Every architecture in the registry with every quantizer: files that round-trip bit-exactly.

One tiny seeded model per architecture (its latent codec's parameters moved off
their initial values, so context and slice networks act); each quantizer codes
a synthetic image into a real container, the decoder rebuilds the encoder's
y_hat and pixels exactly, the file's y stream is what the encoder estimated,
and the TRUE proxy of retraining reconstructs what the coder codes.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_image
from trellic.codec import Codec
from trellic.determinism import single_threaded
from trellic.io import image_to_tensor, pad_to_multiple, tensor_to_image
from trellic.models import CodecModel, ModelConfig
from trellic.models.architectures import architecture, architecture_names
from trellic.quant.base import ProxyKind
from trellic.quant.registry import quantizer_names
from trellic.zoo import load, save_model


def seeded_model(name: str, N: int = 16, M: int = 32, seed: int = 0) -> CodecModel:
    """A random model of architecture ``name`` with every latent-codec parameter moved."""
    torch.manual_seed(seed)
    family = architecture(name)
    M = N if family.latent_is_inner else max(M, family.min_latent_channels)
    model = CodecModel(ModelConfig(name, N=N, M=M))
    with torch.no_grad():
        last = [layer for layer in model.g_a if isinstance(layer, torch.nn.Conv2d)][-1]
        last.weight.mul_(30.0)  # indices well away from zero (attention blocks after it)
        # ReLU transforms shrink more than GDN's: bring y's spread on a probe up to 1
        probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        last.weight.div_(model.g_a(probe).std().clamp_max(1.0))
        for key, parameter in model.latent_codec.named_parameters():
            if "quantiles" not in key:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    model.update()
    return model


@pytest.fixture(scope="module", params=architecture_names())
def loaded(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / f"{request.param}.safetensors"
    save_model(seeded_model(request.param), path, {})
    return load(str(path))


@pytest.mark.parametrize("kind", quantizer_names())
def test_every_quantizer_round_trips_through_a_file(loaded, kind):
    codec = Codec.load_from(loaded, kind)
    image = synthetic_image(40, 70, seed=5)
    encoded = codec.encode(image)
    decoded = codec.decode(encoded.data)
    model = loaded.model
    x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
    compressed = model.compress(x, codec.quantizer, codec.lambda_t)
    assert compressed.y_hat.abs().max() > 1, "test latents should be non-trivial"
    y_hat = model.latent_codec.decompress(
        compressed.streams, tuple(compressed.y_hat.shape[-2:]), codec.quantizer,
        compressed.checksum)
    assert torch.equal(y_hat, compressed.y_hat)
    with torch.no_grad(), single_threaded():
        expected = tensor_to_image(model.synthesize(y_hat)[..., :40, :70])
    assert np.array_equal(decoded, expected)
    coded = 8 * sum(len(stream) for stream in compressed.streams)
    assert abs(coded - compressed.estimated_bits) <= 0.01 * compressed.estimated_bits + 128


@pytest.mark.parametrize("kind", ["usq", "tcq4"])
def test_the_true_proxy_reconstructs_what_the_coder_codes(loaded, kind):
    model, x = loaded.model, torch.rand(1, 3, 64, 128)
    quantizer = model.quantizer(kind)
    with torch.no_grad():
        y = model.g_a(x)
        true = model.latent_codec(y, quantizer, ProxyKind.TRUE)
        coded = model.latent_codec.quantize(y, quantizer)
    assert torch.equal(true.y_hat, coded.y_hat)


@pytest.mark.parametrize("proxy", list(ProxyKind))
def test_it_trains_with_every_proxy(loaded, proxy):
    model = loaded.model
    x = torch.rand(2, 3, 64, 64)
    out = model(x, model.quantizer("tcq4"), proxy)
    y_likelihoods = out.likelihoods["y"]
    assert y_likelihoods.shape == (2, model.config.M, 4, 4)
    assert ((y_likelihoods > 0) & (y_likelihoods <= 1)).all()
    loss = out.x_hat.square().mean() - sum(torch.log2(v).sum() for v in out.likelihoods.values())
    loss.backward()
    assert all(p.grad is not None for p in model.g_s.parameters())
    model.zero_grad()


# One process per kernel setting: oneDNN's ISA cap is read once, at its first use.
_PROBE = """
import hashlib, sys, torch
from tests.test_architectures import seeded_model
from trellic.models.architectures import architecture_names
from trellic.latent.hyperprior import MeanScaleHyperprior
setting = sys.argv[1]
torch.backends.mkldnn.enabled = setting != "no-onednn"
torch.set_num_threads(2 if setting == "two-threads" else 1)
for name in architecture_names():
    model = seeded_model(name)
    y = torch.randn(1, model.config.M, 8, 12, generator=torch.Generator().manual_seed(1)) * 6
    digest = hashlib.sha256()
    for kind in ("rdoq", "tcq4"):
        compressed = model.latent_codec.compress(y, model.quantizer(kind))
        digest.update(b"".join(compressed.streams))
        if type(model.latent_codec) is not MeanScaleHyperprior:  # float means by design
            digest.update(compressed.y_hat.numpy().tobytes())
    print(name, digest.hexdigest())
"""
SETTINGS = {"default": {}, "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"}, "no-onednn": {},
            "two-threads": {}}


def test_every_architecture_codes_the_same_bytes_and_y_hat_under_every_kernel_setting():
    """The portable path: rows, trellis states and (but for the mean-scale hyperprior's
    float means) y_hat come from exact arithmetic, whatever the float kernels."""
    outputs = {}
    for setting, env in SETTINGS.items():
        run = subprocess.run([sys.executable, "-c", _PROBE, setting], check=True, text=True,
                             capture_output=True,
                             env={**os.environ, **env, "PYTHONPATH": os.getcwd()})
        outputs[setting] = run.stdout
    assert len(set(outputs.values())) == 1, outputs
    assert len(outputs["default"].splitlines()) == len(architecture_names())
