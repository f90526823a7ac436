"""PSNR and MS-SSIM on known arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trellic.errors import TrellicError
from trellic.eval.metrics import ms_ssim, psnr, to_uint8


def _image(height=192, width=176, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx + yy, 2 * yy, 128 + 60 * np.sin(xx / 7)], axis=-1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_psnr_of_known_arrays():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 100))
    assert psnr(a, np.full_like(a, 255)) == pytest.approx(0.0)
    assert psnr(a, a) == math.inf


def test_psnr_does_not_wrap_around_in_uint8():
    a = np.full((2, 2, 3), 250, np.uint8)
    b = np.full((2, 2, 3), 5, np.uint8)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 245**2))


def test_ms_ssim_of_identical_images_is_one():
    image = _image()
    assert ms_ssim(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_is_below_one_and_falls_with_noise():
    image = _image()
    rng = np.random.default_rng(1)
    light = to_uint8(image + rng.normal(0, 3, image.shape))
    heavy = to_uint8(image + rng.normal(0, 25, image.shape))
    assert 1 > ms_ssim(image, light) > ms_ssim(image, heavy) > 0


def test_ms_ssim_of_odd_sizes_and_small_images():
    image = _image(171, 203)
    noisy = to_uint8(image + np.random.default_rng(2).normal(0, 8, image.shape))
    assert 0 < ms_ssim(image, noisy) < 1
    with pytest.raises(TrellicError, match="at least 161"):
        ms_ssim(image[:100], noisy[:100])


def test_mismatched_shapes_are_refused():
    with pytest.raises(TrellicError, match="shapes differ"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_to_uint8_clamps_and_rounds():
    values = np.array([-3.0, 0.4, 0.6, 254.5, 300.0])
    assert to_uint8(values).tolist() == [0, 0, 1, 254, 255]
