"""The checkerboard context model (He et al., CVPR 2021): y in two passes.

He, Zheng, Sun, Wang, Qin, "Checkerboard context model for efficient learned
image compression" (CVPR 2021); CompressAI's ``CheckerboardLatentCodec``
inside a ``HyperpriorLatentCodec`` (``cheng2020-anchor-checkerboard``)::

    anchors (even row + column):  params = entropy_parameters(cat(0, h_s(z_hat)))
    non-anchors:                  params = entropy_parameters(cat(ctx(y_hat_anchors), h_s(z_hat)))

Each pass is one part of y, packed to (B, M, h, w/2) as CompressAI packs it
(row i keeps the columns of its colour), so every quantizer walks a part as
it walks a whole y; the decoder decodes the anchors, predicts the
non-anchors' parameters from them, then decodes those. Every network runs
in exact arithmetic when coding (the parameters of the second pass depend on
the first pass's reconstruction), so rows, states and y_hat agree on every
machine.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from trellic.latent.exact import Arithmetic
from trellic.latent.hyperprior import Hyperprior, PartQuantizer
from trellic.latent.integer_net import PRECISION_2
from trellic.latent.spatial_context import context_prediction, entropy_parameters, gaussian_of
from trellic.models.blocks import CheckerboardMaskedConv2d


def unembed(x: Tensor) -> tuple[Tensor, Tensor]:
    """(B, C, h, w), h and w even -> the anchors and non-anchors, each (B, C, h, w/2): row i
    of a part holds row i's positions of that colour (differentiable)."""
    b, c, h, w = x.shape
    cells = x.reshape(b, c, h // 2, 2, w // 2, 2)  # row 2i + r, column 2j + s
    anchors = torch.stack([cells[:, :, :, 0, :, 0], cells[:, :, :, 1, :, 1]], 3)
    others = torch.stack([cells[:, :, :, 0, :, 1], cells[:, :, :, 1, :, 0]], 3)
    return anchors.reshape(b, c, h, w // 2), others.reshape(b, c, h, w // 2)


def embed(anchors: Tensor, others: Tensor) -> Tensor:
    """The inverse of :func:`unembed`: two (B, C, h, w/2) parts -> (B, C, h, w)."""
    b, c, h, half = anchors.shape
    a, o = (part.reshape(b, c, h // 2, 2, half) for part in (anchors, others))
    even = torch.stack([a[:, :, :, 0], o[:, :, :, 0]], -1)
    odd = torch.stack([o[:, :, :, 1], a[:, :, :, 1]], -1)
    return torch.stack([even, odd], 3).reshape(b, c, h, 2 * half)


def two_passes(
    y: Tensor | None,
    quantize: PartQuantizer,
    gaussian: Callable[[int, Tensor], tuple[Tensor, Tensor]],
    context: Callable[[Tensor], Tensor],
    no_context: Tensor,
) -> Tensor:
    """One tensor's checkerboard passes -> its y_hat (B, C, h, w).

    Args:
        y: (B, C, h, w), None on the decoder.
        quantize: the hyperprior base's per-part callback.
        gaussian: ``(part, spatial context) -> (means, scales)`` of that pass, packed.
        context: anchors' y_hat placed in the full grid -> the spatial context (B, S, h, w).
        no_context: the anchors' spatial context (zeros, packed: CompressAI's).
    """
    targets = (None, None) if y is None else unembed(y)
    spatial, anchors = no_context, None
    for part in (0, 1):
        if anchors is not None:
            spatial = unembed(context(embed(anchors, torch.zeros_like(anchors))))[1]
        means, scales = gaussian(part, spatial)
        residual = None if targets[part] is None else targets[part] - means
        decoded = means + quantize(residual, scales)
        if anchors is None:
            anchors = decoded
    return embed(anchors, decoded)


class Checkerboard(Hyperprior):
    """A hyperprior whose y is coded in two checkerboard passes (anchors, then the rest).

    Args:
        config: the model's config (N, M, quantizer steps).
        hyper_transforms: ``(N, M) -> (h_a, h_s)``, h_s giving 2M side parameters (Cheng
            2020's in cheng2020-anchor-checkerboard); default the mean-scale hyperprior's.
    """

    precision = PRECISION_2  # the means feed later parts: float-like accuracy

    def __init__(self, config, hyper_transforms: Callable | None = None) -> None:
        super().__init__(config, hyper_transforms)
        M = config.M
        self.context_prediction = context_prediction(M, CheckerboardMaskedConv2d)
        self.entropy_parameters = entropy_parameters(M, 2 * M)

    def transforms(self) -> list[torch.nn.Module]:
        return [self.h_a, self.h_s, self.context_prediction, self.entropy_parameters]

    def walk(
        self, z_hat: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """The anchors with no spatial context, then the non-anchors with the anchors'."""
        side = unembed(self.exact(self.h_s, z_hat, arithmetic))

        def gaussian(part: int, spatial: Tensor) -> tuple[Tensor, Tensor]:
            params = self.exact(self.entropy_parameters, torch.cat([spatial, side[part]], 1),
                                arithmetic)
            return gaussian_of(params)

        def context(placed: Tensor) -> Tensor:
            return self.exact(self.context_prediction, placed, arithmetic)

        b, _, h, half = side[0].shape
        no_context = side[0].new_zeros((b, 2 * self.config.M, h, half))
        return two_passes(y, quantize, gaussian, context, no_context)

    def merge(self, parts: list[Tensor], shape: tuple[int, int]) -> Tensor:
        return embed(*parts)
