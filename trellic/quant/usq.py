"""Uniform scalar quantization: rounding to multiples of delta, plainly or rate-aware.

USQ is the 1-state trellis with one quantizer, so reconstruction, likelihoods
and pmfs are the shared ones of :class:`~trellic.quant.base.Quantizer`;
``quantize`` rounds (or, given lambda_t > 0, runs the 1-state search, i.e.
per-element rate-distortion optimised quantization). :class:`RDOQ` is that
search as a quantizer of its own: the same grid and tables, another header
code and a default lambda_t > 0, the baseline TCQ must beat.
"""

from __future__ import annotations

from torch import Tensor

from trellic.quant.base import IntervalMass, ProxyKind, Quantizer, RateModel, gaussian_mass
from trellic.quant.proxy import quantizer_proxy
from trellic.quant.trellis import USQ_TRELLIS

# RDOQ's default rate weight per delta^2 (latent units): the lowest mean RD cost
# of the default model on non-Kodak photos (docs/quantization.md, experiments/quant_study.py).
RDOQ_LAMBDA_PER_DELTA2 = 0.01


class USQ(Quantizer):
    """Levels ``k * delta``; the classic quantizer of learned codecs (Balle et al., 2018)."""

    name = "usq"
    default_linear_weight = 0.25  # as most measured operating points (docs/quantization.md)

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__(self.name, USQ_TRELLIS, delta)

    @property
    def default_lambda_t(self) -> float:
        """0: plain rounding."""
        return 0.0

    def proxy(
        self,
        r: Tensor,
        scales: Tensor,
        kind: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
        rate: RateModel | None = None,
        mass: IntervalMass = gaussian_mass,
    ) -> tuple[Tensor, Tensor]:
        """NOISE adds U(-delta/2, delta/2): the rounding error's distribution at high rate."""
        return quantizer_proxy(self, r, scales, kind, self.delta, lambda_t, rate, mass)


class RDOQ(USQ):
    """Rate-distortion optimised quantization on USQ's grid: per element, the index
    minimising ``(r - k * delta)^2 + lambda_t * bits(k)`` among the two neighbours of r
    and zero (the 1-state trellis search). Files decode with USQ's tables."""

    name = "rdoq"
    default_linear_weight = 0.375  # as most measured operating points (docs/quantization.md)

    @property
    def default_lambda_t(self) -> float:
        """``RDOQ_LAMBDA_PER_DELTA2 * delta^2`` (latent units)."""
        return RDOQ_LAMBDA_PER_DELTA2 * self.delta**2
