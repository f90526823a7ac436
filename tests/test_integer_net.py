"""Integer hyper-synthesis: close to the float h_s, bit-identical under every kernel setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.conftest import make_tiny_model
from trellic.latent import integer_net
from trellic.latent.integer_net import FRACTION_BITS, IntegerSynthesis

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
    assert torch.equal(exact * 2**FRACTION_BITS, torch.round(exact * 2**FRACTION_BITS))


def test_integer_synthesis_refuses_what_it_cannot_run_exactly(monkeypatch):
    with pytest.raises(ValueError, match="cannot run a Sigmoid"):
        IntegerSynthesis(nn.Sequential(nn.Conv2d(2, 2, 3), nn.Sigmoid()))
    # 64 * 25 weights of 127 times activations up to 2**45 exceed float64's exact integers.
    monkeypatch.setattr(integer_net, "ACTIVATION_LIMIT", 1 << 45)
    with pytest.raises(ValueError, match="too wide"):
        IntegerSynthesis(nn.Sequential(nn.Conv2d(64, 1, 5)))


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
