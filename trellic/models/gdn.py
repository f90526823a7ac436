"""Generalized divisive normalization (Balle et al. 2016), the nonlinearity of g_a / g_s.

GDN:  y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)
IGDN: y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)

beta and gamma must stay positive; they are stored reparametrized
(``param = sqrt(value + pedestal)``) and bounded below, as in the paper's code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trellic.ops import lower_bound

PEDESTAL = 2.0**-36  # reparametrisation offset squared (2**-18)**2, as in CompressAI
BETA_MIN = 1e-6


class GDN(nn.Module):
    """GDN over channels (``inverse=True`` gives IGDN). Input (B, C, H, W)."""

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = BETA_MIN,
        gamma_init: float = 0.1,
    ):
        super().__init__()
        self.inverse = inverse
        self.beta_bound = (beta_min + PEDESTAL) ** 0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + PEDESTAL))
        gamma = gamma_init * torch.eye(channels)
        self.gamma = nn.Parameter(torch.sqrt(gamma + PEDESTAL))

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        beta = lower_bound(self.beta, self.beta_bound) ** 2 - PEDESTAL
        gamma = lower_bound(self.gamma, PEDESTAL**0.5) ** 2 - PEDESTAL
        norm = F.conv2d(x * x, gamma.view(channels, channels, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm
