"""The serial spatial context (mbt2018): wavefronts that decode as CompressAI's raster loop."""


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
