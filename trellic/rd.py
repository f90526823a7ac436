"""The rate-distortion cost: one formula for training, retraining, refinement and evaluation."""

from __future__ import annotations


def rd_cost(mse, bpp, lmbda: float):
    """lambda * 255^2 * MSE + bpp (CompressAI's convention): MSE of pixels in [0, 1], bits per
    pixel; floats or tensors."""
    return lmbda * 255**2 * mse + bpp
