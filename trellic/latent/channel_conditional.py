"""The channel-conditional latent codec (Minnen & Singh, ICIP 2020; uneven slices as ELIC).

Minnen & Singh, "Channel-wise autoregressive entropy models for learned image
compression" (ICIP 2020), with the uneven slice sizes of He et al., ELIC
(CVPR 2022). The hyperprior is the mean-scale one (its h_a, h_s and factorized
prior, so a shipped ``mbt2018-mean`` model warm-starts it); y is coded in
slices of M/16, M/16, M/8, M/4 and the remaining channels, each conditioned on
the hyperprior and on the slices reconstructed before it::

    z_hat -> h_s -> (hyper means, hyper scales)
    for each slice i:
        mean_i  = hyper means_i  + mean_nets[i]([hyper means, y_hat_0 .. y_hat_{i-1}])
        scale_i = hyper scales_i + scale_nets[i]([hyper scales, y_hat_0 .. y_hat_{i-1}])
        (k_i, qid_i) = quantizer.search(y_i - mean_i, scale_i)      (TCQ: a trellis per slice)
        y_hat_i = mean_i + level(k_i, qid_i)
        y_hat_i += clamp(lrp_nets[i]([hyper means, y_hat_0 .. y_hat_i]), -1/2, 1/2)

The last line is latent residual prediction (LRP); a clamp stands in for the
paper's 0.5 * tanh, whose last bit differs between maths libraries. The slice
networks predict corrections to the hyperprior's own means and scales, and
their last layers start at zero: a model warm-started from a shipped
hyperprior starts at that hyperprior's rate and distortion (exactly in
training; in coding its means come from the integer h_s), and
training only has to find what the earlier slices add (a few thousand CPU
steps instead of relearning the parameters).

Coding: the z stream as the hyperprior's; one y stream holding the slices in
order, each in its quantizer's walk, so the decoder replays them in lockstep:
decode slice i's indices with the rows its scales select, reconstruct it, then
predict slice i + 1. The checksum covers the z symbols and all of y's indices
(channel order).

Portability: a reconstructed slice feeds the next slices' scales, so here the
*whole* entropy-parameter path is exact (:mod:`trellic.latent.integer_net`): h_s
(means and scales), the mean, scale and LRP networks run in integer arithmetic
on encoder and decoder, and every y_hat is a correctly rounded float32 sum of
exact values. Means, scales, rows, trellis states and y_hat are therefore the
same on every machine; only g_s's float pixels may move by a level. Training
uses the float networks (retraining on true latents takes the exact values with
the float networks' gradients, straight-through).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from trellic.entropy.gaussian import bound_scales
from trellic.latent.exact import Arithmetic
from trellic.latent.hyperprior import Hyperprior, PartQuantizer
from trellic.layers import conv

LRP_BOUND = 0.5  # |latent residual prediction| <= half a USQ step


def slice_sizes(M: int) -> tuple[int, ...]:
    """Channel counts of y's slices: M/16, M/16, M/8, M/4 and the rest (ELIC's proportions).

    Raises:
        ValueError: M below 16 (a slice would be empty).
    """
    if M < 16:
        raise ValueError(f"the channel-conditional codec needs M >= 16, got {M}")
    head = (M // 16, M // 16, M // 8, M // 4)
    return (*head, M - sum(head))


def slice_network(cin: int, cout: int, M: int) -> nn.Sequential:
    """Three 3x3 convolutions with LeakyReLU, widths M/2 and M/4 (integer-network
    friendly); the last one starts at zero (the network starts as "no correction")."""
    hidden, narrow = max(M // 2, 8), max(M // 4, 8)
    last = conv(narrow, cout, 3, 1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        conv(cin, hidden, 3, 1), nn.LeakyReLU(inplace=True),
        conv(hidden, narrow, 3, 1), nn.LeakyReLU(inplace=True),
        last,
    )


class ChannelConditional(Hyperprior):
    """Mean-scale hyperprior plus channel-wise autoregression over slices of y (the parts).

    Args:
        config: the model's config (N hyper channels, M >= 16 latent channels, quantizer steps).
    """

    def __init__(self, config, hyper_transforms: Callable | None = None) -> None:
        super().__init__(config, hyper_transforms)
        M = config.M
        self.sizes = slice_sizes(M)
        slices = [(sum(self.sizes[:i]), size) for i, size in enumerate(self.sizes)]
        self.mean_nets = nn.ModuleList(
            slice_network(M + start, size, M) for start, size in slices)
        self.scale_nets = nn.ModuleList(
            slice_network(M + start, size, M) for start, size in slices)
        self.lrp_nets = nn.ModuleList(
            slice_network(M + start + size, size, M) for start, size in slices)

    def transforms(self) -> list[nn.Module]:
        return [self.h_a, self.h_s, *self.mean_nets, *self.scale_nets, *self.lrp_nets]

    def walk(
        self, z_hat: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """The slices in order, each predicted from the hyperprior and the slices before it."""
        hyper_means, hyper_scales = self.exact(self.h_s, z_hat, arithmetic).chunk(2, dim=1)
        decoded: list[Tensor] = []
        start = 0
        for i, size in enumerate(self.sizes):
            channels = slice(start, start + size)
            mean_input = torch.cat([hyper_means, *decoded], 1)
            mean = hyper_means[:, channels] + self.exact(self.mean_nets[i], mean_input, arithmetic)
            scale_input = torch.cat([hyper_scales, *decoded], 1)
            scale = bound_scales(
                hyper_scales[:, channels] + self.exact(self.scale_nets[i], scale_input, arithmetic))
            residual = None if y is None else y[:, channels] - mean
            y_hat = mean + quantize(residual, scale)
            lrp_input = torch.cat([hyper_means, *decoded, y_hat], 1)
            lrp = self.exact(self.lrp_nets[i], lrp_input, arithmetic)
            decoded.append(y_hat + lrp.clamp(-LRP_BOUND, LRP_BOUND))
            start += size
        return torch.cat(decoded, 1)
