"""The serial spatial context (mbt2018): wavefronts that decode as CompressAI's raster loop."""

import hashlib
import os
import subprocess
import sys

import torch

from tests.test_architectures import seeded_model
from trellic.latent.exact import Arithmetic
from trellic.latent.serial_context import wavefront_order, wavefronts

ARCHITECTURE = "mbt2018"


def test_every_position_is_in_one_wavefront_after_everything_its_context_reads():
    h, w = 5, 9
    assert sorted(wavefront_order(h, w).tolist()) == list(range(h * w))
    front_of = torch.empty(h, w, dtype=torch.long)
    for t, (rows, cols) in enumerate(wavefronts(h, w)):
        front_of[rows, cols] = t
    mask = seeded_model(ARCHITECTURE).latent_codec.context_prediction.mask[0, 0]
    taps = [(di - 2, dj - 2) for di in range(5) for dj in range(5) if mask[di, dj]]
    assert len(taps) == 12  # two rows above, two to the left
    for i in range(h):
        for j in range(w):
            for di, dj in taps:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    assert front_of[i + di, j + dj] < front_of[i, j]


def test_the_wavefront_walk_is_the_raster_loop():
    """Float parameters of every position equal CompressAI's raster order (the padded masked
    convolution over the partly decoded y_hat), rounding y - means."""
    codec = seeded_model(ARCHITECTURE).latent_codec
    generator = torch.Generator().manual_seed(2)
    y = 4 * torch.randn(1, 32, 4, 8, generator=generator)
    z_hat = torch.round(2 * torch.randn(1, 16, 1, 2, generator=generator))
    with torch.no_grad():
        walked = codec.walk(z_hat, y, lambda r, _: torch.round(r), Arithmetic.FLOAT)
        hyper, raster = codec.h_s(z_hat), torch.zeros_like(y)
        for i in range(4):
            for j in range(8):
                context = codec.context_prediction(raster)
                scales, means = codec.entropy_parameters(torch.cat([hyper, context], 1)).chunk(2, 1)
                raster[:, :, i, j] = means[:, :, i, j] + torch.round(y[:, :, i, j]
                                                                     - means[:, :, i, j])
    assert torch.allclose(walked, raster, atol=1e-4)


_PROBE = """
import hashlib, sys, torch
from tests.test_architectures import seeded_model
setting = sys.argv[1]
torch.backends.mkldnn.enabled = setting != "no-onednn"
torch.set_num_threads(2 if setting == "two-threads" else 1)
model = seeded_model("mbt2018")
y = torch.randn(1, 32, 8, 12, generator=torch.Generator().manual_seed(1)) * 6
digest = hashlib.sha256()
for kind in ("rdoq", "tcq4"):
    compressed = model.latent_codec.compress(y, model.quantizer(kind))
    digest.update(b"".join(compressed.streams) + compressed.y_hat.numpy().tobytes())
print(digest.hexdigest())
"""
SETTINGS = {"default": {}, "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41"}, "no-onednn": {},
            "two-threads": {}}


def test_wavefronts_code_the_same_bytes_and_y_hat_under_every_kernel_setting():
    digests = set()
    for setting, env in SETTINGS.items():
        run = subprocess.run([sys.executable, "-c", _PROBE, setting], check=True, text=True,
                             capture_output=True,
                             env={**os.environ, **env, "PYTHONPATH": os.getcwd()})
        digests.add(run.stdout.strip())
    assert len(digests) == 1, digests
    assert hashlib.sha256(b"").hexdigest() not in digests
