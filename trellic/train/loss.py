"""Rate-distortion losses (CompressAI's conventions) and a differentiable MS-SSIM.

    mse:      loss = lambda * 255^2 * MSE + bpp          (lambda ~ 0.0018 .. 0.0483)
    ms-ssim:  loss = lambda * (1 - MS-SSIM) + bpp        (lambda ~ 2.40 .. 220)

MS-SSIM follows Wang et al. (2003) with the settings of ``pytorch_msssim`` (and of
``trellic.eval.metrics``): 11-tap Gaussian window (sigma 1.5), K = (0.01, 0.03),
five scales, 2x2 average pooling, the mean over the three channels. It needs
images of at least 161 pixels on each side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trellic.models.model import ForwardOutput
from trellic.rd import rd_cost

DISTORTIONS = ("mse", "ms-ssim")
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIDE = 161  # (window - 1) * 2^4 + 1
_WINDOW, _SIGMA = 11, 1.5
_FLOOR = 1e-6  # keeps d(x^w)/dx finite where a similarity term reaches 0


@dataclass
class LossTerms:
    loss: Tensor
    mse: Tensor
    bpp: Tensor
    ms_ssim: Tensor | None = None


def bits(likelihoods: Tensor) -> Tensor:
    return -torch.log(likelihoods).sum() / math.log(2)


def rate_bits(likelihoods: dict[str, Tensor]) -> Tensor:
    """Bits of every stream's likelihoods, summed in stream order."""
    return sum(bits(values) for values in likelihoods.values())


def rate_distortion(output: ForwardOutput, x: Tensor, lmbda: float,
                    distortion: str = "mse") -> LossTerms:
    """Loss of one batch x (B, 3, H, W); bpp counts y and z bits per image pixel."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = rate_bits(output.likelihoods) / pixels
    mse = torch.mean((output.x_hat - x) ** 2)
    if distortion == "mse":
        return LossTerms(rd_cost(mse, bpp, lmbda), mse, bpp)
    if distortion == "ms-ssim":
        similarity = ms_ssim(output.x_hat, x).mean()
        return LossTerms(lmbda * (1 - similarity) + bpp, mse, bpp, similarity)
    raise ValueError(f"unknown distortion {distortion!r}: expected one of {DISTORTIONS}")


def _ssim_terms(x: Tensor, y: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel, each (B, C)."""
    channels = x.shape[1]
    rows = window.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    cols = window.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    stack = torch.cat([x, y, x * x, y * y, x * y])
    blurred = F.conv2d(F.conv2d(stack, rows, groups=channels), cols, groups=channels)
    mu_x, mu_y, xx, yy, xy = blurred.chunk(5)
    c1, c2 = 0.01**2, 0.03**2
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(dim=(2, 3)), cs_map.mean(dim=(2, 3))


def ms_ssim(x: Tensor, y: Tensor) -> Tensor:
    """MS-SSIM of images x, y (B, 3, H, W) in [0, 1] -> (B,), differentiable.

    Negative similarity terms are floored at 1e-6 (pytorch_msssim clips them at 0).
    """
    if min(x.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs at least {MS_SSIM_MIN_SIDE} pixels on each side, "
                         f"got {x.shape[-1]}x{x.shape[-2]}")
    coords = torch.arange(_WINDOW, dtype=x.dtype, device=x.device) - _WINDOW // 2
    window = torch.exp(-(coords**2) / (2 * _SIGMA**2))
    window = window / window.sum()
    factors = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_terms(x, y, window)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            factors.append(cs.clamp_min(_FLOOR))
            padding = [side % 2 for side in x.shape[-2:]]
            x, y = F.avg_pool2d(x, 2, padding=padding), F.avg_pool2d(y, 2, padding=padding)
    factors.append(ssim.clamp_min(_FLOOR))
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return torch.prod(torch.stack(factors) ** weights, dim=0).mean(dim=1)
