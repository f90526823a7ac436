"""The quantizer interface shared by USQ and TCQ, and the Gaussian rate model.

Quantizer ``q`` of a trellis with ``Q`` quantizers (Q = 1 for USQ, 2 for TCQ)
reconstructs index ``k`` at ``(Q * k - sgn(k) * q) * delta``:

    USQ  (Q=1):  k * delta
    TCQ  Q0:     ..., -4d, -2d, 0, 2d, 4d, ...     (even multiples of delta)
    TCQ  Q1:     ..., -3d,  -d, 0,  d, 3d, ...     (odd multiples and zero)

Each quantizer's levels increase with k, and the decision interval of a level
reaches halfway to its two neighbours in the same quantizer. Everything that
only depends on the levels and the trellis (reconstruction, state replay,
likelihoods, pmfs, the search) lives here once; the subclasses choose the
trellis, the defaults and the training proxy.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from trellic.errors import TrellicError
from trellic.quant.trellis import CodingStep, Trellis, from_sequences, to_sequences, walk
from trellic.quant.viterbi import RateModel, viterbi_search

LIKELIHOOD_BOUND = 1e-9


class ProxyKind(enum.Enum):
    """Differentiable stand-in for quantization during training.

    NOISE: additive uniform noise (USQ) or the switching perturbation (TCQ).
    STE: the true quantizer output with a straight-through gradient.
    MIXED: STE value for the decoder, NOISE likelihood for the rate.
    TRUE: what the decoder gets (the search with the caller's lambda_t and rate
    model, no gradient to r) and the likelihood of those true indices
    (straight-through to r): retraining on truly quantized latents.
    """

    NOISE = "noise"
    STE = "ste"
    MIXED = "mixed"
    TRUE = "true"


def _lower_bound(p: Tensor) -> Tensor:
    """Clamp at LIKELIHOOD_BOUND, passing the gradient through (it raises p, as rate wants)."""
    bounded = p.clamp_min(LIKELIHOOD_BOUND)
    return p + (bounded - p).detach() if p.requires_grad else bounded


def gaussian_mass(lo: Tensor, hi: Tensor, scales: Tensor) -> Tensor:
    """Mass of N(0, scales^2) on [lo, hi], lower-bounded by 1e-9 (all args broadcast).

    By symmetry the interval is moved left of the mean, [-|c| - w, -|c| + w]
    for centre c and half-width w, so that the mass is a difference of two
    erfc values of the same tail, both computed to full relative precision.
    """
    centre2 = (lo + hi).abs()
    width = hi - lo
    # Phi(x / s) = erfc(-x / (sqrt(2) s)) / 2; centre2 and width are 2|c| and 2w.
    gain = 1.0 / (2.0 * math.sqrt(2.0) * scales)
    mass = 0.5 * (torch.erfc((centre2 - width) * gain) - torch.erfc((centre2 + width) * gain))
    return _lower_bound(mass)


#: The residual's probability of an interval, ``mass(lo, hi, scales)`` (arguments broadcast),
#: lower-bounded: :func:`gaussian_mass` (N(0, scales^2)) unless a latent codec models the
#: residual with another density (a factorized prior, whose "scales" are channels).
IntervalMass = Callable[[Tensor, Tensor, Tensor], Tensor]


class Quantized(NamedTuple):
    """The search's decision: indices k and the quantizer id that codes each, same shape."""

    k: Tensor
    qid: Tensor


class GaussianRate:
    """Ideal code length: -log2 of the Gaussian mass over the level's decision interval."""

    def __init__(self, quantizer: Quantizer) -> None:
        self.quantizer = quantizer

    def bits(self, k: Tensor, qid: int, scales: Tensor) -> Tensor:
        lo, hi = self.quantizer.decision_bounds(k, qid)
        return -torch.log2(gaussian_mass(lo, hi, scales))


class Quantizer(abc.ABC):
    """A trellis of scalar quantizers with step ``delta`` (see the module docstring).

    Typical workflow: ``k = q.quantize(y - means, scales)`` on the encoder;
    ``y_hat = means + q.dequantize(k)`` on both sides; ``q.pmf`` builds the
    coder's tables, ``q.likelihood(k, scales)`` gives the rate of true
    indices, and ``q.proxy`` stands in for quantization during training.
    """

    kind: str
    trellis: Trellis
    delta: float

    def __init__(self, kind: str, trellis: Trellis, delta: float) -> None:
        if not delta > 0:
            raise TrellicError(f"quantizer step delta must be positive, got {delta}")
        self.kind = kind
        self.trellis = trellis
        self.delta = float(delta)
        # The fraction of the linearised image metric's move of the target that the
        # search does best with (trellic.models.refine.linearised_shift). Encoder only.
        self.linear_weight = self.default_linear_weight

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, delta={self.delta})"

    #: ``linear_weight`` unless a model's operating point says otherwise (measured).
    default_linear_weight: float

    @property
    @abc.abstractmethod
    def default_lambda_t(self) -> float:
        """Rate weight of the search when the caller gives none (latent units)."""

    @abc.abstractmethod
    def proxy(
        self,
        r: Tensor,
        scales: Tensor,
        kind: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
        rate: RateModel | None = None,
        mass: IntervalMass = gaussian_mass,
    ) -> tuple[Tensor, Tensor]:
        """Differentiable training path.

        Args:
            r: (B, M, H, W) residuals y - means.
            scales: (B, M, H, W) Gaussian scales.
            kind: which approximation (see :class:`ProxyKind`).
            lambda_t: the search's rate weight, for ``TRUE`` (see :meth:`search`).
            rate: the search's rate model, for ``STE``, ``MIXED`` and ``TRUE``.
            mass: the residual's density, which prices the likelihoods.

        Returns:
            (r_tilde, likelihood), both (B, M, H, W), differentiable w.r.t. r and scales.
        """

    @property
    def num_quantizers(self) -> int:
        return self.trellis.num_quantizers

    def level_units(self, k: Tensor, qid: Tensor | int) -> Tensor:
        """Reconstruction of index k in quantizer qid in units of delta, in k's dtype.

        Exact in float32 for |k| < 2**23, which is why the float paths use it on float k.
        """
        return self.num_quantizers * k - torch.sign(k) * qid

    def level(self, k: Tensor, qid: Tensor | int) -> Tensor:
        """Reconstruction of index k (int64) in quantizer qid (int or broadcastable tensor)."""
        return self.level_units(k.to(torch.get_default_dtype()), qid) * self.delta

    def decision_bounds(self, k: Tensor, qid: Tensor | int) -> tuple[Tensor, Tensor]:
        """(lo, hi): midpoints from level k to levels k-1 and k+1 of the same quantizer."""
        kf = k.to(torch.get_default_dtype())
        units = self.level_units(kf, qid)
        half = 0.5 * self.delta
        lo = (units + self.level_units(kf - 1, qid)) * half
        hi = (units + self.level_units(kf + 1, qid)) * half
        return lo, hi

    def index_below(self, r: Tensor, qid: Tensor | int) -> Tensor:
        """Index of the highest level of quantizer qid at or below r (int64, shape of r)."""
        u = r / self.delta
        return torch.floor((u + torch.sign(u) * qid) / self.num_quantizers).long()

    @torch.no_grad()
    def search(
        self,
        r: Tensor,
        scales: Tensor,
        lambda_t: float | None = None,
        rate: RateModel | None = None,
    ) -> Quantized:
        """True quantization: the indices minimising sum (r - r_hat)^2 + lambda_t * bits.

        With one state and lambda_t = 0 that is rounding; otherwise a Viterbi
        search over each sequence (see :mod:`trellic.quant.tcq`), which also
        knows the quantizer id of every element along its path.

        Args:
            r: (B, M, H, W) residuals y - means.
            scales: (B, M, H, W) Gaussian scales (> 0), used by the rate model.
            lambda_t: rate weight in latent units; None uses ``default_lambda_t``.
            rate: code length model; None uses :class:`GaussianRate`.

        Returns:
            indices k and quantizer ids, both (B, M, H, W) int64.
        """
        lam = self.default_lambda_t if lambda_t is None else float(lambda_t)
        if self.trellis.num_states == 1 and lam == 0.0:
            k = torch.round(r / self.delta).long()
            return Quantized(k, torch.zeros_like(k))
        dtype = torch.promote_types(r.dtype, torch.float32)  # never search in half precision
        k, qid, _ = viterbi_search(
            self,
            self.scan(r.to(dtype)),
            self.scan(scales.to(dtype).expand_as(r)),
            lam,
            GaussianRate(self) if rate is None else rate,
        )
        return Quantized(self.unscan(k, r.shape), self.unscan(qid, r.shape))

    def quantize(self, r: Tensor, scales: Tensor, lambda_t: float | None = None,
                 rate: RateModel | None = None) -> Tensor:
        """The indices k of :meth:`search`, (B, M, H, W) int64."""
        return self.search(r, scales, lambda_t, rate).k

    def scan(self, t: Tensor) -> Tensor:
        """(B, M, H, W) -> (S, T): the independent coding sequences, in the format's scan order."""
        return to_sequences(t)

    def unscan(self, sequences: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
        """Inverse of :meth:`scan`."""
        return from_sequences(sequences, shape)

    def walk(self, shape: tuple[int, int], step: CodingStep, qid: Tensor | None = None,
             device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Visit the coding steps of (S, T) sequences; see :func:`trellic.quant.trellis.walk`.

        The coder codes (``qid`` given by the search) and decodes (states
        replayed) through this one walk, so both follow the same order.
        """
        return walk(self.trellis, shape, step, qid, device)

    def quantizer_ids(self, k: Tensor) -> Tensor:
        """Replay the trellis: the quantizer id of each element given the indices before it.

        Args:
            k: (B, M, H, W) int64 indices.

        Returns:
            (B, M, H, W) int64 quantizer ids (all zeros for USQ).
        """
        sequences = self.scan(k)
        _, qid = self.walk(
            tuple(sequences.shape), lambda positions, _: sequences[:, positions], device=k.device
        )
        return self.unscan(qid, k.shape)

    def dequantize(self, k: Tensor, qid: Tensor | None = None) -> Tensor:
        """(B, M, H, W) int64 indices -> (B, M, H, W) reconstructed residuals r_hat.

        qid: the indices' quantizer ids if known (the search's); else replayed.
        """
        return self.level(k, self.quantizer_ids(k) if qid is None else qid)

    def likelihood(
        self, k: Tensor, scales: Tensor, r: Tensor | None = None, qid: Tensor | None = None,
        mass: IntervalMass = gaussian_mass,
    ) -> Tensor:
        """P(k | quantizer of its state, N(0, scales)), lower-bounded by 1e-9.

        The value depends on the scales only, so the rate of true indices has
        no gradient w.r.t. the means that produced them. Given the residuals
        ``r`` (= y - means) the value is unchanged, but the interval moves
        with r in the backward pass (straight-through), so retraining the
        hyperprior on true indices still pulls the means towards y.

        Args:
            k: (B, M, H, W) int64 indices.
            scales: (B, M, H, W) Gaussian scales; the result is differentiable w.r.t. them.
            r: optional (B, M, H, W) residuals that k quantizes.
            qid: the indices' quantizer ids if known; else replayed.
            mass: the residual's density (default N(0, scales^2)).
        """
        lo, hi = self.decision_bounds(k, self.quantizer_ids(k) if qid is None else qid)
        if r is not None:
            shift = r - r.detach()
            lo, hi = lo + shift, hi + shift
        return mass(lo, hi, scales)

    def relaxed(
        self, r: Tensor, scales: Tensor, rounding: Callable[[Tensor], Tensor],
        mass: IntervalMass = gaussian_mass,
    ) -> tuple[Tensor, Tensor]:
        """Encoder-side relaxation (refinement): r on the grid of all this quantizer's
        levels (step delta) with ``rounding`` in place of rounding, and the mass
        (``mass``, default Gaussian) of a delta-wide interval around it.

        Args:
            r, scales: (B, M, H, W) residuals and Gaussian scales.
            rounding: a differentiable stand-in for ``torch.round`` (e.g. annealed
                stochastic rounding), applied in units of delta.

        Returns:
            (r_tilde, likelihood), both (B, M, H, W).
        """
        r_tilde = self.delta * rounding(r / self.delta)
        half = 0.5 * self.delta
        return r_tilde, mass(r_tilde - half, r_tilde + half, scales)

    def pmf(self, qid: int, scales: Tensor, k: Tensor) -> Tensor:
        """P(k | qid, scale) on a grid, for the coder's tables.

        Args:
            qid: quantizer id.
            scales: (L, 1) Gaussian scales.
            k: (1, K) int64 indices.

        Returns:
            (L, K) probabilities (each lower-bounded by 1e-9).
        """
        lo, hi = self.decision_bounds(k, qid)
        return gaussian_mass(lo, hi, scales)

