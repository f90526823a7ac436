"""Trellis-coded quantization (TCQ) with a rate-distortion Viterbi search.

Two quantizers interleave: Q0 holds the even multiples of delta, Q1 the odd
multiples and zero; each has spacing 2 * delta, their union spacing delta.
Index k in quantizer q reconstructs at ``(2k - sgn(k) * q) * delta``. The
state machine (VVC 4-state or ECM 8-state, :mod:`trellic.quant.trellis`)
chooses the quantizer of each element from the parities of the indices
before it, so the encoder's Viterbi search (:mod:`trellic.quant.viterbi`)
trades distortion against rate along a whole sequence.

Bitstream format (sequences): latents (B, M, H, W) split into B*M*H
independent sequences, one per row ``(b, m, h)``, of length W, scanned left to
right (``to_sequences(t) == t.reshape(-1, W)``). Each sequence starts in
state 0 and is not terminated: the encoder keeps the best end state, and the
decoder replays the states from the decoded indices
(``state = next_state[state][k & 1]``).
"""

from __future__ import annotations

from torch import Tensor

from trellic.quant.base import IntervalMass, ProxyKind, Quantizer, RateModel, gaussian_mass
from trellic.quant.proxy import quantizer_proxy
from trellic.quant.trellis import Trellis

# Along the optimum on Gaussian residuals the best lambda_t is about 0.3 * delta^2 (DESIGN.md).
LAMBDA_PER_DELTA2 = 0.3

# Width of the switching perturbation's noise, in units of delta, so that its MSE
# (width^2 / 12) equals that of real TCQ at the default lambda_t. Measured with
# quantize() on 1,032,192 Gaussian residuals, scales log-uniform in [0.11, 20],
# delta 0.6: MSE / delta^2 = 0.2077 for TCQ-8 (width 1.579), 0.2102 for TCQ-4
# (width 1.588); one constant serves both. (Scales > 2 alone give 0.239, width 1.69.)
TCQ_NOISE_WIDTH = 1.58


class TCQ(Quantizer):
    """Trellis-coded quantization (Marcellin & Fischer, 1990; as in VVC/ECM).

    Args:
        trellis: a two-quantizer trellis, e.g. ``VVC4`` or ``ECM8``.
        delta: step; the levels of the union of Q0 and Q1 are multiples of it.
    """

    default_linear_weight = 0.75  # at the default lambda_t, as measured (docs/quantization.md)

    def __init__(self, trellis: Trellis, delta: float = 0.6) -> None:
        if trellis.num_quantizers != 2:
            raise ValueError(f"TCQ needs a two-quantizer trellis, got {trellis.name}")
        super().__init__(f"tcq{trellis.num_states}", trellis, delta)

    @property
    def default_lambda_t(self) -> float:
        """0.3 * delta^2 (latent units)."""
        return LAMBDA_PER_DELTA2 * self.delta**2

    def proxy(
        self,
        r: Tensor,
        scales: Tensor,
        kind: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
        rate: RateModel | None = None,
        mass: IntervalMass = gaussian_mass,
    ) -> tuple[Tensor, Tensor]:
        """NOISE is the switching perturbation.

        In steady state the trellis codes half of the elements with Q0 and half
        with Q1, and the search's error lies between that of the union (step
        delta) and that of one sub-quantizer (step 2 * delta). So each element
        gets uniform noise of width ``TCQ_NOISE_WIDTH * delta``, which has the
        MSE of real TCQ, and a quantizer id q ~ Bernoulli(1/2); its likelihood
        is the Gaussian mass of q's decision interval width around r_tilde
        (2 * delta for Q0; delta at zero, 1.5 * delta at +-delta for Q1), which
        is what coding an index of q costs. On the DESIGN.md Gaussian residuals
        its rate is ~4% above that of real TCQ (USQ's noise: ~3% above rounding).
        """
        width = TCQ_NOISE_WIDTH * self.delta
        return quantizer_proxy(self, r, scales, kind, width, lambda_t, rate, mass)
