"""Rate-distortion loss: lambda * 255^2 * MSE + bpp (CompressAI's convention)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from trellic.models.hyperprior import ForwardOutput


@dataclass
class LossTerms:
    loss: Tensor
    mse: Tensor
    bpp: Tensor


def bits(likelihoods: Tensor) -> Tensor:
    return -torch.log(likelihoods).sum() / math.log(2)


def rate_distortion(output: ForwardOutput, x: Tensor, lmbda: float) -> LossTerms:
    """Loss of one batch x (B, 3, H, W); bpp counts y and z bits per image pixel."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = (bits(output.y_likelihoods) + bits(output.z_likelihoods)) / pixels
    mse = torch.mean((output.x_hat - x) ** 2)
    return LossTerms(lmbda * 255**2 * mse + bpp, mse, bpp)


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))
