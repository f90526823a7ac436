"""Uniform scalar quantization: rounding to multiples of delta.

USQ is the 1-state trellis with one quantizer, so reconstruction, likelihoods
and pmfs are the shared ones of :class:`~trellic.quant.base.Quantizer`;
``quantize`` rounds (or, given lambda_t > 0, runs the 1-state search, i.e.
per-element rate-distortion optimised quantization).
"""

from __future__ import annotations

from torch import Tensor

from trellic.quant.base import ProxyKind, Quantizer, RateModel
from trellic.quant.proxy import quantizer_proxy
from trellic.quant.trellis import USQ_TRELLIS


class USQ(Quantizer):
    """Levels ``k * delta``; the classic quantizer of learned codecs (Balle et al., 2018)."""

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__("usq", USQ_TRELLIS, delta)

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
    ) -> tuple[Tensor, Tensor]:
        """NOISE adds U(-delta/2, delta/2): the rounding error's distribution at high rate."""
        return quantizer_proxy(self, r, scales, kind, self.delta, lambda_t, rate)
