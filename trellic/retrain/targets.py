"""The forward pass with the real quantizer, shared by all retraining modes.

It is the latent codec's pass with ``ProxyKind.TRUE``; for the hyperprior:

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

import torch
from torch import Tensor

from trellic.models.model import CodecModel, ForwardOutput
from trellic.quant.base import ProxyKind, Quantizer


@torch.no_grad()
def encode(model: CodecModel, x: Tensor) -> Tensor:
    """The frozen analysis transform: x (B, 3, H, W) -> y (B, M, H/16, W/16)."""
    return model.g_a(x)


@torch.no_grad()
def quantized_latents(
    model: CodecModel, quantizer: Quantizer, y: Tensor, lambda_t: float | None
) -> Tensor:
    """y_hat exactly as compress() produces it (frozen hyperprior), for decoder-only retraining."""
    return model.latent_codec(y, quantizer, ProxyKind.TRUE, lambda_t).y_hat


def forward_quantized(
    model: CodecModel, quantizer: Quantizer, y: Tensor, lambda_t: float | None
) -> ForwardOutput:
    """Differentiable (w.r.t. the latent codec and g_s) pass with truly quantized z and y."""
    return model.forward_latents(y, quantizer, ProxyKind.TRUE, lambda_t)
