"""Learned factorized prior for the hyper-latents z, or for y itself (Balle et al. 2018,
appendix 6.1; the factorized-prior model, :mod:`trellic.latent.factorized_prior`).

Each channel has its own univariate density, defined through a monotone
cumulative function built from small per-channel "matrices", biases and
factors. The likelihood of an integer-quantized value is the mass of the unit
interval around it. Coding uses integer symbols ``round(z - median)``, where the
median (and the tail quantiles bounding each table) are learned by the
auxiliary loss, as in CompressAI's EntropyBottleneck; y's tables code any
quantizer's indices of ``y - median`` (the mass of each level's decision interval).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trellic.entropy.tables import PmfTables
from trellic.quant.base import Quantizer
from trellic.quant.usq import USQ

LIKELIHOOD_BOUND = 1e-9
TAIL_MASS = 1e-9


class FactorizedPrior(nn.Module):
    """Factorized density over C channels. Input z (B, C, H, W)."""

    def __init__(
        self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0
    ):
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.quantiles = nn.Parameter(
            torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1)
        )
        target = math.log(2 / TAIL_MASS - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]), persistent=False)

    @property
    def medians(self) -> Tensor:
        """(C,) learned medians, the centre of each channel's integer grid."""
        return self.quantiles[:, 0, 1].detach()

    def _logits_cumulative(self, x: Tensor, stop_gradient: bool = False) -> Tensor:
        """x (C, 1, N) -> cumulative logits (C, 1, N); stop_gradient freezes the density."""
        logits = x
        for i, matrix in enumerate(self.matrices):
            bias = self.biases[i]
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def _mass_cn(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Mass of each channel's density on [lower, upper], both (C, 1, N), always in full
        precision (a caller's autocast would run its matmuls in bfloat16)."""
        with torch.autocast(lower.device.type, enabled=False):
            lower = self._logits_cumulative(lower)
            upper = self._logits_cumulative(upper)
            sign = -torch.sign(lower + upper).detach()
            mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return mass.clamp_min(LIKELIHOOD_BOUND)

    def interval_mass(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Mass of each channel's density on [lower, upper], both (B, C, H, W)."""
        b, c, h, w = lower.shape

        def by_channel(t: Tensor) -> Tensor:
            return t.permute(1, 0, 2, 3).reshape(c, 1, -1)

        mass = self._mass_cn(by_channel(lower), by_channel(upper))
        return mass.reshape(c, b, h, w).permute(1, 0, 2, 3)

    def likelihood(self, z_hat: Tensor) -> Tensor:
        """Likelihood of (quantized or noisy) z: the mass of the unit interval around it,
        shape (B, C, H, W)."""
        return self.interval_mass(z_hat - 0.5, z_hat + 0.5)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Training path: z + U(-1/2, 1/2) in training mode, median-centred rounding otherwise."""
        if self.training:
            z_tilde = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        else:
            z_tilde = self.dequantize(self.quantize(z))
        return z_tilde, self.likelihood(z_tilde)

    def aux_loss(self) -> Tensor:
        """Fits the quantiles (tails and median) that bound the coding tables."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def quantize(self, z: Tensor) -> Tensor:
        """Integer symbols round(z - median), int64 (B, C, H, W)."""
        return torch.round(z - self.medians.view(1, -1, 1, 1)).long()

    def dequantize(self, symbols: Tensor) -> Tensor:
        return symbols.to(self.quantiles.dtype) + self.medians.view(1, -1, 1, 1)

    @torch.no_grad()
    def build_tables(
        self, quantizer: Quantizer | None = None, max_half_width: int = 256
    ) -> PmfTables:
        """Integer pmf rows of a quantizer's indices k of ``x - median`` (default: rounding,
        the symbols of :meth:`quantize`), row ``qid * C + c`` for quantizer id qid, channel c:

            P(k | qid, c) = F_c(median_c + hi) - F_c(median_c + lo)

        over the decision interval [lo, hi] of level k in quantizer qid, for k in
        [-minima, maxima]: the levels (at most ``max_half_width`` each side) that cover the
        channel's quantiles; other indices escape.
        """
        quantizer = USQ() if quantizer is None else quantizer
        medians = self.quantiles[:, 0, 1]
        one = torch.ones((), dtype=torch.long)
        spacing = float(quantizer.level(2 * one, 0) - quantizer.level(one, 0))

        def half_width(distance: Tensor) -> Tensor:
            return torch.ceil(distance / spacing).clamp(1, max_half_width).long()

        minima = half_width(medians - self.quantiles[:, 0, 0])
        lengths = minima + half_width(self.quantiles[:, 0, 2] - medians) + 1
        k = torch.arange(int(lengths.max()), device=medians.device).view(1, -1) - minima.view(-1, 1)
        pmf = []
        for qid in range(quantizer.num_quantizers):
            level = quantizer.level(k, qid).to(medians.dtype)
            lo, hi = (bound.to(medians.dtype) for bound in quantizer.decision_bounds(k, qid))
            values = (level + medians.view(-1, 1)).unsqueeze(1)
            mass = self._mass_cn(values - (level - lo).unsqueeze(1),
                                 values + (hi - level).unsqueeze(1))
            pmf.append(mass.squeeze(1).double().cpu().numpy())
        lengths = np.tile(lengths.cpu().numpy(), quantizer.num_quantizers)
        mask = np.arange(pmf[0].shape[1])[None, :] < lengths[:, None]
        offsets = np.tile(-minima.cpu().numpy(), quantizer.num_quantizers)
        return PmfTables.from_probabilities(np.concatenate(pmf) * mask, lengths, offsets)
