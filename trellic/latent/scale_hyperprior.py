"""The scale hyperprior latent codec (Balle, Minnen, Singh, Hwang, Johnston 2018).

CompressAI's ``bmshj2018-hyperprior`` entropy model: the hyper-networks see
|y| and predict only the scales of a zero-mean Gaussian for y::

    |y| -> h_a (ReLU) -> z -> round(z - median) -> z symbols
    z_hat -> h_s (ReLU) -> scales; means = 0

Everything else (tables, coding order, proxies, the quantizer's walk) is the
mean-scale hyperprior's: only the hyper-networks and the parameters differ.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trellic.entropy.gaussian import bound_scales
from trellic.latent.hyperprior import MeanScaleHyperprior
from trellic.layers import conv, deconv


class ScaleHyperprior(MeanScaleHyperprior):
    """h_a / h_s with ReLU, a factorized prior for z, a zero-mean Gaussian for y."""

    @staticmethod
    def hyper_transforms(N: int, M: int) -> tuple[nn.Module, nn.Module]:
        """h_a: |y| (B, M, h, w) -> z (B, N, h/4, w/4); h_s: z_hat -> scales (B, M, h, w)."""
        h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.ReLU(inplace=True), conv(N, N), nn.ReLU(inplace=True), conv(N, N)
        )
        h_s = nn.Sequential(
            deconv(N, N), nn.ReLU(inplace=True), deconv(N, N), nn.ReLU(inplace=True),
            conv(N, M, 3, 1), nn.ReLU(inplace=True),
        )
        return h_a, h_s

    def scale_channels(self) -> slice:
        """h_s predicts scales only."""
        return slice(None)

    def decoded_means(self, z_hat: Tensor) -> Tensor:
        """Zero, without running h_s."""
        h, w = (self.downscale * size for size in z_hat.shape[-2:])
        return z_hat.new_zeros(z_hat.shape[0], self.config.M, h, w)

    def side_latents(self, y: Tensor) -> Tensor:
        """z = h_a(|y|): the scales depend on the magnitudes only."""
        return self.h_a(torch.abs(y))

    def parameters_from(self, hyper: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """h_s's output (B, M, h, w) -> zero means and lower-bounded scales, in ``dtype``."""
        scales = bound_scales(hyper).to(dtype)
        return torch.zeros_like(scales), scales
