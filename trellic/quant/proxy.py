"""Differentiable training proxies, shared by USQ and TCQ.

Each quantizer picks its noise model (which sub-quantizer, how wide the
noise); the mechanics are the same for both:

- NOISE: ``r_tilde = r + U(-w/2, w/2)``; the likelihood is the Gaussian mass
  of an interval centred on ``r_tilde``, as wide as the decision interval of
  the level of quantizer ``qid`` nearest ``r_tilde``. For USQ (w = delta, one
  quantizer) that is the usual ``Phi((r~ + d/2)/s) - Phi((r~ - d/2)/s)``.
- STE: the true quantizer output with a straight-through gradient; the
  likelihood is the mass of its decision interval, moved along with
  ``r_tilde`` so that the gradient reaches r as well as the scales. Its search
  prices indices with the caller's rate model (default: Gaussian).
- MIXED: the STE value (the decoder trains on true reconstructions) and the
  NOISE likelihood (the rate keeps a smooth gradient w.r.t. r).
- TRUE: the true reconstruction without gradient (the decoder's input; the
  means still get the distortion's gradient from y_hat = means + r_hat) and
  the likelihood of the true indices, straight-through to r (see
  ``Quantizer.likelihood``): retraining on truly quantized latents.

Every likelihood is the mass of the residual's density over an interval: the
Gaussian N(0, scales^2) unless the caller passes another ``mass`` (a factorized
prior's, :mod:`trellic.latent.factorized_prior`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from trellic.quant.base import IntervalMass, ProxyKind, Quantizer, RateModel, gaussian_mass


def centred_interval_mass(quantizer: Quantizer, x: Tensor, scales: Tensor, qid: Tensor,
                          mass: IntervalMass = gaussian_mass) -> Tensor:
    """The mass around x, as wide as the decision interval of quantizer qid at x.

    Args:
        x: (B, M, H, W) values; the mass is differentiable w.r.t. x and scales.
        scales: (B, M, H, W) Gaussian scales.
        qid: (B, M, H, W) int64 quantizer ids.
    """
    x0 = x.detach()
    below = quantizer.index_below(x0, qid)
    nearer_above = quantizer.level(below + 1, qid) - x0 < x0 - quantizer.level(below, qid)
    lo, hi = quantizer.decision_bounds(below + nearer_above, qid)
    half = 0.5 * (hi - lo)
    return mass(x - half, x + half, scales)


def noise_proxy(
    quantizer: Quantizer, r: Tensor, scales: Tensor, noise_width: float,
    mass: IntervalMass = gaussian_mass,
) -> tuple[Tensor, Tensor]:
    """Uniform noise of width ``noise_width``; the likelihood uses a random quantizer per element.

    The quantizer id is drawn uniformly among the trellis' quantizers (always 0 for USQ).
    """
    r_tilde = r + (torch.rand_like(r) - 0.5) * noise_width
    qid = torch.randint(0, quantizer.num_quantizers, r.shape, device=r.device)
    return r_tilde, centred_interval_mass(quantizer, r_tilde, scales, qid, mass)


def ste_proxy(
    quantizer: Quantizer, r: Tensor, scales: Tensor, rate: RateModel | None = None,
    mass: IntervalMass = gaussian_mass,
) -> tuple[Tensor, Tensor]:
    """True quantization (default lambda_t; ``rate``, default Gaussian) with a
    straight-through gradient."""
    k, qid = quantizer.search(r.detach(), scales.detach(), None, rate)
    r_hat = quantizer.level(k, qid).to(r.dtype)
    lo, hi = quantizer.decision_bounds(k, qid)
    r_tilde = r_hat + (r - r.detach())  # exactly r_hat, with the gradient of r
    return r_tilde, mass(r_tilde + (lo - r_hat), r_tilde + (hi - r_hat), scales)


def true_proxy(
    quantizer: Quantizer, r: Tensor, scales: Tensor, lambda_t: float | None,
    rate: RateModel | None, mass: IntervalMass = gaussian_mass,
) -> tuple[Tensor, Tensor]:
    """The search's reconstruction (constant) and its indices' likelihood (straight-through)."""
    k, qid = quantizer.search(r.detach(), scales.detach(), lambda_t, rate)
    return quantizer.level(k, qid), quantizer.likelihood(k, scales, r, qid, mass)


def quantizer_proxy(
    quantizer: Quantizer,
    r: Tensor,
    scales: Tensor,
    kind: ProxyKind,
    noise_width: float,
    lambda_t: float | None = None,
    rate: RateModel | None = None,
    mass: IntervalMass = gaussian_mass,
) -> tuple[Tensor, Tensor]:
    """Dispatch on ``kind``; see the module docstring. Shapes as in ``Quantizer.proxy``."""
    if kind is ProxyKind.TRUE:
        return true_proxy(quantizer, r, scales, lambda_t, rate, mass)
    if kind is ProxyKind.NOISE:
        return noise_proxy(quantizer, r, scales, noise_width, mass)
    if kind is ProxyKind.STE:
        return ste_proxy(quantizer, r, scales, rate, mass)
    if kind is ProxyKind.MIXED:
        r_tilde, _ = ste_proxy(quantizer, r, scales, rate, mass)
        _, likelihood = noise_proxy(quantizer, r, scales, noise_width, mass)
        return r_tilde, likelihood
    raise ValueError(f"unknown proxy kind {kind!r}")
