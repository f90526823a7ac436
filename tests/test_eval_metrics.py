"""PSNR and MS-SSIM on known arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trellic.errors import TrellicError
from trellic.eval.metrics import PSNR_MAX, ms_ssim, psnr, psnr_of_mse, to_uint8


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


def test_psnr_is_finite_by_the_mse_floor_for_identical_images():
    black = np.zeros((4, 4, 3), np.uint8)
    assert psnr(black, black) == PSNR_MAX == pytest.approx(120.0)
    big = np.zeros((1000, 1000, 3), np.uint8)  # the smallest error on 1 MP stays below the cap
    off = big.copy()
    off[0, 0, 0] = 1
    assert psnr(big, off) == pytest.approx(10 * math.log10(255**2 * 3e6))
    assert psnr(big, off) < PSNR_MAX


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


def test_decompress_reference_uses_the_same_psnr(tmp_path, tiny_weights, capsys):
    """Against its own decode (identical images) decompress --reference reports PSNR_MAX."""
    from PIL import Image

    from trellic.cli import main

    weights = str(tiny_weights[0])
    Image.fromarray(_image(40, 72)).save(tmp_path / "in.png")
    trl, out, again = tmp_path / "a.trl", tmp_path / "a.png", tmp_path / "b.png"
    assert main(["compress", str(tmp_path / "in.png"), str(trl), "--model", weights]) == 0
    assert main(["decompress", str(trl), str(out), "--model", weights]) == 0
    capsys.readouterr()
    assert main(["decompress", str(trl), str(again), "--model", weights,
                 "--reference", str(out)]) == 0
    assert f"PSNR {PSNR_MAX:.2f} dB" in capsys.readouterr().out


def test_psnr_of_an_mse_is_the_one_formula_of_image_psnr():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = np.full((4, 4, 3), 10, dtype=np.uint8)
    assert psnr(a, b) == psnr_of_mse(100 / 255**2)
    assert psnr_of_mse(0.01) == pytest.approx(20.0)
    assert psnr_of_mse(0.0) == PSNR_MAX
