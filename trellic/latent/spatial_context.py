"""The networks of the spatial context models (Minnen et al. 2018; He et al. 2021).

A spatial context model predicts each latent's Gaussian from the hyperprior
and from latents already decoded around it: a masked 5x5 convolution
(``context_prediction``: y_hat (B, M, h, w) -> (B, 2M, h, w)) and a pointwise
network (``entropy_parameters``: context and h_s's output -> (B, 2M, h, w),
scales then means, CompressAI's order). Widths and names are CompressAI
1.2.8's (``mbt2018``, ``cheng2020-anchor`` at M = N, ``cheng2020-anchor-checkerboard``),
so their checkpoints' tensors copy by name.
"""

from __future__ import annotations

from torch import Tensor, nn

from trellic.entropy.gaussian import bound_scales
from trellic.models.blocks import MaskedConv2d


def context_prediction(M: int, mask: type[MaskedConv2d]) -> MaskedConv2d:
    """The 5x5 masked convolution y_hat (B, M, h, w) -> context (B, 2M, h, w)."""
    return mask(M, 2 * M, kernel_size=5, padding=2, stride=1)


def entropy_parameters(M: int, hyper_channels: int) -> nn.Sequential:
    """Three 1x1 convolutions with LeakyReLU: context (2M) and h_s's output
    (``hyper_channels``) -> (B, 2M, h, w), widths 10M/3 and 8M/3 as CompressAI's."""
    return nn.Sequential(
        nn.Conv2d(2 * M + hyper_channels, M * 10 // 3, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(M * 10 // 3, M * 8 // 3, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(M * 8 // 3, 2 * M, 1),
    )


def gaussian_of(params: Tensor) -> tuple[Tensor, Tensor]:
    """entropy_parameters' output (B, 2M, ...) -> means, lower-bounded scales (B, M, ...)."""
    scales, means = params.chunk(2, dim=1)
    return means, bound_scales(scales)
