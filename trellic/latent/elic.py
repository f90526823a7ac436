"""The ELIC latent codec (He et al., CVPR 2022): uneven channel groups, a checkerboard in each.

He, Yang, Peng, Ma, Qin, Wang, "ELIC: efficient learned image compression with
unevenly grouped space-channel contextual adaptive coding" (CVPR 2022), as
CompressAI 1.2.8 codes it in ``elic2022-official`` and ``elic2022-chandelier``
(a ``ChannelGroupsLatentCodec`` of ``CheckerboardLatentCodec`` groups inside a
``HyperpriorLatentCodec``)::

    hyper = h_s(z_hat)                                        (B, P, h, w)
    for each channel group k (g_k channels), in order:
        channel = g_ch^k(decoded groups)                      (B, 2 g_k, h, w), k > 0
        anchors:      params = aggregation^k(cat(0,                   channel, hyper))
        non-anchors:  params = aggregation^k(cat(g_sp^k(y_hat anchors), channel, hyper))
        each pass:    means, scales = chunks of params; y_hat = means + level(k, qid)

The decoded groups that g_ch^k reads are all groups before k (official) or
group 0 and group k - 1 (chandelier, Chandelier's re-implementation); params
chunk as (scales, means) in the official model, (means, scales) in
chandelier's. The networks are :mod:`trellic.models.elic`'s; the codec's
attribute names make its state_dict CompressAI's less the ``y.`` and
``hyper.`` levels: ``channel_context.yK`` (``y.channel_context.yK``),
``spatial_context.K`` (``y.latent_codec.yK.context_prediction``),
``param_aggregation.K`` (``y.latent_codec.yK.entropy_parameters``), ``h_a``,
``h_s`` and ``entropy_bottleneck`` (``hyper.*``).

Parts of y, in coding order: group 0's anchors, group 0's non-anchors, group
1's anchors, ... each packed to (B, g_k, h, w/2) by
:func:`trellic.latent.checkerboard.unembed`, so every quantizer walks a part
as it walks a whole y. Every network runs in exact arithmetic when coding
(later parts' parameters depend on earlier parts' reconstructions), so rows,
trellis states and y_hat agree on every machine.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor, nn

from trellic.entropy.gaussian import bound_scales
from trellic.latent.channel_conditional import slice_sizes
from trellic.latent.checkerboard import embed, two_passes, unembed
from trellic.latent.exact import Arithmetic
from trellic.latent.hyperprior import Hyperprior, PartQuantizer
from trellic.latent.integer_net import PRECISION_2
from trellic.models.elic import (
    elic_channel_context,
    elic_groups,
    elic_hyper,
    elic_param_aggregation,
    elic_spatial_context,
)


def default_groups(M: int) -> tuple[int, ...]:
    """CompressAI's groups (16, 16, 32, 64, M - 128) for M > 128; below, the same
    doubling in units of M/16 (M/16, M/16, M/8, M/4, the rest; M >= 16) for small models.

    Raises:
        ValueError: M below 16.
    """
    return tuple(elic_groups(M)) if M > 128 else slice_sizes(M)


class Elic(Hyperprior):
    """A hyperprior whose y is coded in channel groups, each in two checkerboard passes.

    Subclasses name the CompressAI variant: its networks, the decoded groups each
    channel context reads (:meth:`context_groups`) and the order of the parameters'
    chunks.

    Args:
        config: the model's config (N, M, quantizer steps; ``groups``, default
            :func:`default_groups`).
        hyper_transforms: ``(N, M) -> (h_a, h_s)``; default the variant's.
    """

    variant: str
    chunks: tuple[str, str]  # the order of means and scales in the aggregation's output

    precision = PRECISION_2  # the means feed later parts: float-like accuracy

    def __init__(self, config, hyper_transforms: Callable | None = None) -> None:
        super().__init__(config, hyper_transforms)
        N, M = config.N, config.M
        self.groups = config.groups or default_groups(M)
        self.channel_context = elic_channel_context(self.groups, self.variant)
        self.spatial_context = elic_spatial_context(self.groups)
        self.param_aggregation = elic_param_aggregation(N, M, self.groups, self.variant)

    def hyper_transforms(self, N: int, M: int) -> tuple[nn.Module, nn.Module]:
        """The variant's h_a and h_s (:func:`trellic.models.elic.elic_hyper`)."""
        return elic_hyper(N, M, self.variant)

    def transforms(self) -> list[nn.Module]:
        return [self.h_a, self.h_s, *self.channel_context.values(), *self.spatial_context,
                *self.param_aggregation]

    @abc.abstractmethod
    def context_groups(self, k: int) -> list[int]:
        """The decoded groups, in order, that group k's channel context reads (k >= 1)."""

    def gaussian_of(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """The aggregation's output (B, 2 g_k, ...) -> means, lower-bounded scales."""
        named = dict(zip(self.chunks, params.chunk(2, dim=1), strict=True))
        return named["means"], bound_scales(named["scales"])

    def walk(
        self, z_hat: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """The groups in order, each predicted from the hyperprior and the groups before it."""
        hyper = unembed(self.exact(self.h_s, z_hat, arithmetic))
        targets = [None] * len(self.groups) if y is None else y.split(self.groups, 1)
        decoded: list[Tensor] = []
        for k, target in enumerate(targets):
            channel = None
            if k > 0:
                read = torch.cat([decoded[i] for i in self.context_groups(k)], 1)
                channel = unembed(self.exact(self.channel_context[f"y{k}"], read, arithmetic))
            decoded.append(self.checkerboard(k, target, hyper, channel, quantize, arithmetic))
        return torch.cat(decoded, 1)

    def checkerboard(
        self,
        k: int,
        y: Tensor | None,
        hyper: tuple[Tensor, Tensor],
        channel: tuple[Tensor, Tensor] | None,
        quantize: PartQuantizer,
        arithmetic: Arithmetic,
    ) -> Tensor:
        """Group k's two passes -> its y_hat (B, g_k, h, w). ``y``: the group (None on the
        decoder); ``hyper``, ``channel``: h_s's output and the channel context (None for
        group 0), each as (anchors, non-anchors)."""

        def gaussian(part: int, spatial: Tensor) -> tuple[Tensor, Tensor]:
            inputs = [spatial, hyper[part]] if channel is None else [
                spatial, channel[part], hyper[part]]
            params = self.exact(self.param_aggregation[k], torch.cat(inputs, 1), arithmetic)
            return self.gaussian_of(params)

        def context(placed: Tensor) -> Tensor:
            return self.exact(self.spatial_context[k], placed, arithmetic)

        b, _, h, half = hyper[0].shape
        no_context = hyper[0].new_zeros((b, 2 * self.groups[k], h, half))
        return two_passes(y, quantize, gaussian, context, no_context)

    def merge(self, parts: list[Tensor], shape: tuple[int, int]) -> Tensor:
        """Per-part tensors (anchors, non-anchors of each group in turn) -> (B, M, h, w)."""
        return torch.cat([embed(*parts[i : i + 2]) for i in range(0, len(parts), 2)], 1)


class ElicOfficial(Elic):
    """CompressAI's elic2022-official: h_s ends at 2N channels, group k's channel context
    reads all groups before it, parameters chunk as (scales, means)."""

    variant = "official"
    chunks = ("scales", "means")

    def context_groups(self, k: int) -> list[int]:
        return list(range(k))


class ElicChandelier(Elic):
    """CompressAI's elic2022-chandelier (Chandelier's re-implementation): h_s ends at 2M
    channels, group k's channel context reads group 0 and group k - 1, parameters chunk as
    (means, scales)."""

    variant = "chandelier"
    chunks = ("means", "scales")

    def context_groups(self, k: int) -> list[int]:
        return [0] if k == 1 else [0, k - 1]
