"""The forward pass with the real quantizer, shared by all retraining modes.

    x -> g_a (frozen, no grad) -> y
    y -> h_a -> z -> round around the median (straight-through) -> z_hat
    z_hat -> h_s -> means, scales
    k = quantizer.quantize(y - means, scales)     (true indices, no gradient)
    y_hat = means + dequantize(k)  -> g_s -> x_hat
    rate = -log2 P(k | state's quantizer, scales) + -log2 P(z_hat)

The rate of k moves with y - means in the backward pass (straight-through,
see ``Quantizer.likelihood``): without it the means get no rate gradient and
drift, which measurably raised the rate of a retrained USQ model by 11%.

Gradients reach g_s through x_hat, h_s through means (distortion) and
scales (rate of the true indices), h_a through the straight-through z_hat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trellic.models.hyperprior import MeanScaleHyperprior
from trellic.quant.base import Quantizer


@dataclass
class QuantizedForward:
    """x_hat (B, 3, H, W); likelihoods of the true y indices and of z_hat; the indices k."""

    x_hat: Tensor
    y_likelihoods: Tensor
    z_likelihoods: Tensor
    k: Tensor


@torch.no_grad()
def encode(model: MeanScaleHyperprior, x: Tensor) -> Tensor:
    """The frozen analysis transform: x (B, 3, H, W) -> y (B, M, H/16, W/16)."""
    return model.g_a(x)


@torch.no_grad()
def quantized_latents(
    model: MeanScaleHyperprior, quantizer: Quantizer, y: Tensor, lambda_t: float | None
) -> Tensor:
    """y_hat exactly as compress() produces it (frozen hyperprior), for decoder-only retraining."""
    latents = model.quantize_y(y, quantizer, lambda_t)
    return latents.means + quantizer.dequantize(latents.k)


def forward_quantized(
    model: MeanScaleHyperprior, quantizer: Quantizer, y: Tensor, lambda_t: float | None
) -> QuantizedForward:
    """Differentiable (w.r.t. h_a, h_s, prior, g_s) pass with truly quantized z and y."""
    prior = model.entropy_bottleneck
    z = model.h_a(y)
    z_rounded = prior.dequantize(prior.quantize(z))
    z_hat = z + (z_rounded - z).detach()
    z_likelihoods = prior.likelihood(z_hat)
    means, scales = model.hyper_synthesis(z_hat)
    r = y - means
    with torch.no_grad():
        k = quantizer.quantize(r, scales, lambda_t, rate=model.y_coding(quantizer).rate)
    y_hat = means + quantizer.dequantize(k)
    likelihoods = quantizer.likelihood(k, scales, r)  # straight-through to the means
    return QuantizedForward(model.g_s(y_hat), likelihoods, z_likelihoods, k)
