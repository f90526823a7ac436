"""Image quality metrics on 8-bit RGB images: PSNR-RGB and MS-SSIM-RGB.

Both take uint8 arrays of shape (H, W, 3) (the reconstruction already clamped and
rounded, as a decoder writes it). PSNR is always finite: the MSE, on pixel values scaled
to [0, 1], is floored at ``MSE_FLOOR`` = 1e-12, so identical images (a lossless codec, an
all-black image) give ``PSNR_MAX`` = 120 dB instead of infinity, and RD curves, means and
results files stay numbers. No real 8-bit error reaches the floor below 5 megapixels (the
smallest, one channel of one pixel off by one, is 1 / (3 * 255^2 * pixels)).

MS-SSIM follows Wang et al., "Multiscale structural similarity for image quality
assessment" (2003) with the settings of ``pytorch_msssim`` that CompressAI reports: 11-tap
Gaussian window (sigma 1.5), K = (0.01, 0.03), five scales with weights (0.0448, 0.2856,
0.3001, 0.2363, 0.1333), 2x2 average pooling between scales, negative contrast terms
clipped to zero, the mean over the three channels. Computed in numpy float64; it matches
that torch implementation to ~1e-10 (odd sizes included).
"""

from __future__ import annotations

import math

import numpy as np

from trellic.errors import TrellicError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11
_SIGMA = 1.5
MS_SSIM_MIN_SIDE = (_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # 161
MSE_FLOOR = 1e-12  # on [0, 1] pixel values
PSNR_MAX = -10 * math.log10(MSE_FLOOR)  # 120 dB: identical images


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Clamp and round a reconstruction to 8 bits (uint8 input passes through)."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _check_pair(original: np.ndarray, reconstruction: np.ndarray) -> None:
    if original.shape != reconstruction.shape:
        raise TrellicError(f"image shapes differ: {original.shape} vs {reconstruction.shape}")
    if original.ndim != 3 or original.shape[2] != 3:
        raise TrellicError(f"expected (H, W, 3) RGB images, got shape {original.shape}")


def mse(original: np.ndarray, reconstruction: np.ndarray) -> float:
    _check_pair(original, reconstruction)
    difference = original.astype(np.float64) - reconstruction.astype(np.float64)
    return float(np.mean(difference**2))


def psnr(original: np.ndarray, reconstruction: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over all pixels and channels, in [0, PSNR_MAX] (120 dB for identical images)."""
    return psnr_of_mse(mse(original, reconstruction) / peak**2)


def psnr_of_mse(mse_unit: float) -> float:
    """PSNR in dB of an MSE of pixel values in [0, 1] (floored at MSE_FLOOR: PSNR_MAX)."""
    return -10 * math.log10(max(mse_unit, MSE_FLOOR))


def _gaussian_window() -> np.ndarray:
    coords = np.arange(_WINDOW, dtype=np.float64) - _WINDOW // 2
    window = np.exp(-(coords**2) / (2 * _SIGMA**2))
    return window / window.sum()


def _blur(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filter over axes 1 (rows) and 2 (columns) of (K, H, W, C)."""
    for axis in (1, 2):
        size = x.shape[axis] - len(window) + 1
        index = [slice(None)] * x.ndim
        out = np.zeros(x.shape[:axis] + (size,) + x.shape[axis + 1:])
        for k, weight in enumerate(window):
            index[axis] = slice(k, k + size)
            out += weight * x[tuple(index)]
        x = out
    return x


def _ssim_terms(x: np.ndarray, y: np.ndarray, window: np.ndarray, peak: float):
    """Per-channel mean SSIM and mean contrast-structure term, each (C,)."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_x, mu_y, xx, yy, xy = _blur(np.stack([x, y, x * x, y * y, x * y]), window)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(axis=(0, 1)), cs_map.mean(axis=(0, 1))


def _downsample(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (H, W, C); an odd side gets a zero first row or column
    (``avg_pool2d(padding=side % 2)`` as pytorch_msssim does)."""
    for axis in (0, 1):
        if x.shape[axis] % 2:
            pad = [(0, 0)] * x.ndim
            pad[axis] = (1, 0)
            x = np.pad(x, pad)
        x = (np.take(x, range(0, x.shape[axis], 2), axis=axis)
             + np.take(x, range(1, x.shape[axis], 2), axis=axis)) / 2
    return x


def ms_ssim(original: np.ndarray, reconstruction: np.ndarray, peak: float = 255.0) -> float:
    """MS-SSIM-RGB in [0, 1]; images need at least 161 pixels on each side."""
    _check_pair(original, reconstruction)
    if min(original.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise TrellicError(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE} pixels on "
                           f"each side, got {original.shape[1]}x{original.shape[0]}")
    x, y = original.astype(np.float64), reconstruction.astype(np.float64)
    window = _gaussian_window()
    factors = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_terms(x, y, window, peak)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            factors.append(np.maximum(cs, 0))
            x, y = _downsample(x), _downsample(y)
    factors.append(np.maximum(ssim, 0))
    weights = np.asarray(MS_SSIM_WEIGHTS)[:, None]
    return float(np.mean(np.prod(np.stack(factors) ** weights, axis=0)))
