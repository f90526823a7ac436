"""Integer hyper-synthesis: close to the float h_s, bit-identical under every kernel setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import make_tiny_model
from trellic.latent import integer_net
from trellic.latent.integer_net import PRECISION_1, PRECISION_2, IntegerSynthesis, Precision
from trellic.models.blocks import (
    CheckerboardMaskedConv2d,
    MaskedConv2d,
    ResidualBlock,
    subpel_conv3x3,
)
from trellic.models.cheng2020 import cheng2020_hyper

# One process per kernel setting: oneDNN's ISA cap is read once, at its first use.
_PROBE = """
import hashlib, sys, torch
from tests.conftest import make_tiny_model
from trellic.latent.integer_net import IntegerSynthesis
setting = sys.argv[1]
torch.backends.mkldnn.enabled = setting != "no-onednn"
torch.set_num_threads(2 if setting == "two-threads" else 1)
model = make_tiny_model()
z = torch.randn(1, 16, 6, 5, generator=torch.Generator().manual_seed(1)) * 8
with torch.no_grad():
    exact, fl = IntegerSynthesis(model.latent_codec.h_s)(z), model.latent_codec.h_s(z)
digest = lambda t: hashlib.sha256(t.numpy().tobytes()).hexdigest()
print(digest(exact), digest(fl))
"""

SETTINGS = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "no-onednn": {},
    "two-threads": {},
}


def _digests(setting: str) -> tuple[str, str]:
    env = {**os.environ, **SETTINGS[setting], "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", _PROBE, setting], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], out[1]


def test_integer_synthesis_is_bit_identical_under_every_kernel_setting():
    digests = {setting: _digests(setting) for setting in SETTINGS}
    assert len({exact for exact, _ in digests.values()}) == 1, digests
    # The float h_s is what the integer path replaces: it does differ across these settings.
    assert len({fl for _, fl in digests.values()}) > 1, digests


def test_integer_synthesis_tracks_the_float_network():
    model = make_tiny_model()
    z = torch.randn(1, 16, 6, 5, generator=torch.Generator().manual_seed(2)) * 8
    with torch.no_grad():
        reference = model.latent_codec.h_s(z)
        exact = IntegerSynthesis(model.latent_codec.h_s)(z)
    error = (exact - reference).abs().max() / reference.abs().max()
    assert error < 0.02
    units = 2**PRECISION_1.fraction_bits
    assert torch.equal(exact * units, torch.round(exact * units))


def test_integer_synthesis_refuses_what_it_cannot_run_exactly(monkeypatch):
    with pytest.raises(ValueError, match="cannot run a Sigmoid"):
        IntegerSynthesis(nn.Sequential(nn.Conv2d(2, 2, 3), nn.Sigmoid()))
    # 64 * 25 weights of 127 times activations up to 2**45 exceed float64's exact integers.
    wide = Precision(fraction_bits=8, integer_bits=37, weight_max=127, multiplier_bits=20,
                     adaptive=False)
    with pytest.raises(ValueError, match="too wide"):
        IntegerSynthesis(nn.Sequential(nn.Conv2d(64, 1, 5)), precision=wide)
    # PRECISION_2 narrows the weights of such a layer until its convolution is exact.
    layer = nn.Sequential(nn.Conv2d(1024, 1, 5))
    exact = IntegerSynthesis(layer, precision=PRECISION_2)
    assert exact.layers[0].weight.abs().max() < PRECISION_2.weight_max


def test_a_subset_of_output_channels_is_exactly_those_channels_of_the_whole():
    model = make_tiny_model()
    h_s = model.latent_codec.h_s
    z = torch.randn(1, 16, 6, 5, generator=torch.Generator().manual_seed(3)) * 8
    whole = IntegerSynthesis(h_s)(z)
    channels = model.latent_codec.scale_channels()
    assert torch.equal(IntegerSynthesis(h_s, channels)(z), whole[:, channels])


def test_cached_synthesis_follows_every_change_of_the_weights():
    h_s = make_tiny_model().latent_codec.h_s
    z = torch.randn(1, 16, 6, 5, generator=torch.Generator().manual_seed(4)) * 8
    cached = integer_net.CachedIntegerSynthesis()
    before = cached(h_s, z)
    assert torch.equal(before, IntegerSynthesis(h_s)(z))
    with torch.no_grad():
        h_s[0].weight.mul_(1.5)  # in place, as an optimiser step
    assert torch.equal(cached(h_s, z), IntegerSynthesis(h_s)(z))
    assert not torch.equal(cached(h_s, z), before)
    other = make_tiny_model(seed=1).latent_codec.h_s  # another network
    assert torch.equal(cached(other, z), IntegerSynthesis(other)(z))
    other[0].weight.data.mul_(0.5)  # through .data: no version counter moves
    assert torch.equal(cached(other, z), IntegerSynthesis(other)(z))


def test_cached_synthesis_runs_on_inference_mode_weights():
    with torch.inference_mode():
        h_s = make_tiny_model().latent_codec.h_s
        z = torch.ones(1, 16, 2, 3)
        assert torch.equal(integer_net.CachedIntegerSynthesis()(h_s, z), IntegerSynthesis(h_s)(z))


# -- CompressAI's other entropy-parameter networks: sub-pixel h_s, masked and 1x1 convolutions
def _cheng2020_h_s(N: int = 16) -> nn.Sequential:
    """Cheng 2020's h_s, its layers scaled x2: default initialisation shrinks activations
    ~3x per layer, below a trained h_s's scale and towards the 2**-8 resolution."""
    torch.manual_seed(0)
    _, h_s = cheng2020_hyper(N)
    with torch.no_grad():
        for layer in h_s.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.mul_(2.0)
    return h_s


def _entropy_parameters(M: int = 16) -> nn.Sequential:
    """CompressAI's entropy_parameters (mbt2018, cheng2020): 1x1 convolutions 4M -> 2M."""
    return nn.Sequential(
        nn.Conv2d(M * 12 // 3, M * 10 // 3, 1), nn.LeakyReLU(),
        nn.Conv2d(M * 10 // 3, M * 8 // 3, 1), nn.LeakyReLU(),
        nn.Conv2d(M * 8 // 3, M * 6 // 3, 1),
    )


def _z(N: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.round(torch.randn(1, N, 6, 5, generator=torch.Generator().manual_seed(seed)) * 8)


def test_cheng2020_h_s_with_sub_pixel_convolutions_runs_close_to_float():
    h_s = _cheng2020_h_s()
    with torch.no_grad():
        reference = h_s(_z())
        exact = IntegerSynthesis(h_s)(_z())
    assert exact.shape == reference.shape == (1, 32, 24, 20)
    assert (exact - reference).abs().max() / reference.abs().max() < 0.02
    units = 2**PRECISION_1.fraction_bits
    assert torch.equal(exact * units, torch.round(exact * units))


def test_entropy_parameters_of_1x1_convolutions_run_close_to_float():
    torch.manual_seed(0)
    parameters = _entropy_parameters()
    x = torch.randn(1, 64, 6, 5, generator=torch.Generator().manual_seed(2)) * 8
    with torch.no_grad():
        reference = parameters(x)
        exact = IntegerSynthesis(parameters)(x)
    assert (exact - reference).abs().max() / reference.abs().max() < 0.02


@pytest.mark.parametrize("masked", [MaskedConv2d, CheckerboardMaskedConv2d])
def test_a_masked_convolution_runs_as_the_convolution_of_its_masked_weights(masked):
    torch.manual_seed(0)
    layer = masked(8, 16, kernel_size=5, padding=2)
    plain = nn.Conv2d(8, 16, kernel_size=5, padding=2)
    with torch.no_grad():
        plain.weight.copy_(layer.weight * layer.mask)
        plain.bias.copy_(layer.bias)
    y = torch.round(torch.randn(1, 8, 7, 6, generator=torch.Generator().manual_seed(3)) * 8)
    exact = IntegerSynthesis(nn.Sequential(layer, nn.LeakyReLU()))(y)
    assert torch.equal(exact, IntegerSynthesis(nn.Sequential(plain, nn.LeakyReLU()))(y))
    # the unmasked weights would give another result: the mask is used, not ignored
    with torch.no_grad():
        plain.weight.copy_(layer.weight)
    assert not torch.equal(exact, IntegerSynthesis(nn.Sequential(plain, nn.LeakyReLU()))(y))


def test_cached_synthesis_follows_a_change_of_the_mask():
    torch.manual_seed(0)
    net = nn.Sequential(MaskedConv2d(4, 4, kernel_size=3, padding=1))
    y = torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(4)) * 8
    cached = integer_net.CachedIntegerSynthesis()
    before = cached(net, y)
    net[0].mask.fill_(1.0)
    assert torch.equal(cached(net, y), IntegerSynthesis(net)(y))
    assert not torch.equal(cached(net, y), before)


def test_pixel_shuffle_moves_the_integers_of_the_convolution_before_it():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6 * 4, 3, padding=1)
    z = torch.randn(1, 4, 5, 6, generator=torch.Generator().manual_seed(5)) * 8
    for after in ([], [nn.LeakyReLU()], [nn.ReLU()]):
        shuffled = IntegerSynthesis(nn.Sequential(conv, nn.PixelShuffle(2), *after))(z)
        unshuffled = IntegerSynthesis(nn.Sequential(conv, *after))(z)
        assert torch.equal(shuffled, F.pixel_shuffle(unshuffled, 2))
    network = nn.Sequential(conv, nn.PixelShuffle(2), nn.LeakyReLU(), nn.Conv2d(6, 5, 3, padding=1))
    with torch.no_grad():
        reference = network(z)
    exact = IntegerSynthesis(network)(z)
    assert exact.shape == (1, 5, 10, 12)
    assert (exact - reference).abs().max() / reference.abs().max() < 0.02


def test_output_channels_behind_a_pixel_shuffle_are_those_channels_of_the_whole():
    h_s = _cheng2020_h_s()
    net = nn.Sequential(*h_s, nn.LeakyReLU(), subpel_conv3x3(32, 6, 2))  # ends in a shuffle
    whole = IntegerSynthesis(net)(_z())
    for channels in (slice(2, 5), slice(3, None), slice(-2, None), slice(None, 1)):
        assert torch.equal(IntegerSynthesis(net, channels)(_z()), whole[:, channels])
    with pytest.raises(ValueError, match="step"):
        IntegerSynthesis(net, slice(0, 6, 2))


def test_integer_synthesis_refuses_networks_it_would_run_wrongly():
    with pytest.raises(ValueError, match="only after a convolution"):
        IntegerSynthesis(nn.Sequential(nn.LeakyReLU(), nn.Conv2d(2, 2, 3)))
    with pytest.raises(ValueError, match="only after a convolution"):
        IntegerSynthesis(nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU(), nn.LeakyReLU()))
    for layer in (nn.Conv2d(2, 2, 3, groups=2), nn.Conv2d(2, 2, 3, dilation=2),
                  nn.Conv2d(2, 2, 3, padding=(1, 0)), nn.Conv2d(2, 2, 3, padding="same"),
                  nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")):
        with pytest.raises(ValueError, match="cannot run a Conv2d with"):
            IntegerSynthesis(nn.Sequential(layer))
    with pytest.raises(ValueError, match="cannot run a ResidualBlock"):
        IntegerSynthesis(nn.Sequential(ResidualBlock(2, 2)))


_CHENG_PROBE = """
import hashlib, sys, torch
from tests.test_integer_net import _cheng2020_h_s, _entropy_parameters, _z
from trellic.latent.integer_net import IntegerSynthesis
from trellic.models.blocks import MaskedConv2d
setting = sys.argv[1]
torch.backends.mkldnn.enabled = setting != "no-onednn"
torch.set_num_threads(2 if setting == "two-threads" else 1)
params = IntegerSynthesis(_cheng2020_h_s())(_z())
context = MaskedConv2d(16, 32, kernel_size=5, padding=2)  # seeded by _cheng2020_h_s
parameters = _entropy_parameters()
y = torch.randn(1, 16, 24, 20, generator=torch.Generator().manual_seed(6)) * 8
ctx = IntegerSynthesis(torch.nn.Sequential(context))(y)
out = IntegerSynthesis(parameters)(torch.cat([params, ctx], dim=1))
print(hashlib.sha256(torch.cat([params, ctx, out], 1).numpy().tobytes()).hexdigest())
"""


def test_cheng2020_entropy_parameters_are_bit_identical_under_every_kernel_setting():
    digests = {}
    for setting, extra in SETTINGS.items():
        env = {**os.environ, **extra, "PYTHONPATH": os.getcwd()}
        digests[setting] = subprocess.run(
            [sys.executable, "-c", _CHENG_PROBE, setting], env=env, check=True,
            capture_output=True, text=True,
        ).stdout.strip()
    assert len(set(digests.values())) == 1, digests
