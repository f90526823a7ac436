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

import enum
from collections.abc import Callable

import torch
from torch import Tensor, nn

from trellic.coding.bitstream import symbols_crc
from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.gaussian import bound_scales
from trellic.latent.base import LatentCompressed, LatentForward, LatentQuantized
from trellic.latent.hyperprior import Hyperprior
from trellic.latent.integer_net import CachedIntegerSynthesis
from trellic.layers import conv
from trellic.quant.base import ProxyKind, Quantized, Quantizer, gaussian_mass

LRP_BOUND = 0.5  # |latent residual prediction| <= half a USQ step

# What one slice's quantization returns to the slice loop: the reconstructed residual.
SliceQuantizer = Callable[[Tensor | None, Tensor], Tensor]


def levels(quantizer: Quantizer, quantized: Quantized) -> Tensor:
    """The reconstructed residuals in float32 whatever torch's default dtype: y_hat, the
    next slices' input, must be the same float32 sum on every machine and process."""
    return quantizer.level_units(quantized.k.to(torch.float32), quantized.qid) * quantizer.delta


class Arithmetic(enum.Enum):
    """How the slice loop computes its entropy parameters.

    FLOAT: the float networks (training, refinement). EXACT: their integer
    versions (coding). STRAIGHT: the exact values with the float networks'
    gradients (retraining on what the coder codes).
    """

    FLOAT = "float"
    EXACT = "exact"
    STRAIGHT = "straight"


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
    """Mean-scale hyperprior plus channel-wise autoregression over slices of y.

    Args:
        config: the model's config (N hyper channels, M >= 16 latent channels, TCQ step).
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        M = config.M
        self.sizes = slice_sizes(M)
        slices = [(sum(self.sizes[:i]), size) for i, size in enumerate(self.sizes)]
        self.mean_nets = nn.ModuleList(
            slice_network(M + start, size, M) for start, size in slices)
        self.scale_nets = nn.ModuleList(
            slice_network(M + start, size, M) for start, size in slices)
        self.lrp_nets = nn.ModuleList(
            slice_network(M + start + size, size, M) for start, size in slices)
        # Each network's integer version (by the network's id), derived again only when its
        # weights change.
        self.integer_nets: dict[int, CachedIntegerSynthesis] = {}

    def transforms(self) -> list[nn.Module]:
        return [self.h_a, self.h_s, *self.mean_nets, *self.scale_nets, *self.lrp_nets]

    # -- the slice loop ------------------------------------------------------------------
    def _run(self, net: nn.Sequential, x: Tensor, arithmetic: Arithmetic) -> Tensor:
        """One network's output, float32, in the given arithmetic."""
        if arithmetic is Arithmetic.FLOAT:
            return net(x).float()
        exact = self.integer_nets.setdefault(id(net), CachedIntegerSynthesis())(net, x.detach())
        if arithmetic is Arithmetic.EXACT:
            return exact
        approx = net(x).float()
        return exact + (approx - approx.detach())

    def _slices(
        self, hyper: Tensor, y: Tensor | None, quantize: SliceQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """h_s's output (B, 2M, h, w) and y (or None on the decoder) -> y_hat (B, M, h, w).

        ``quantize(r_i or None, scale_i)`` quantizes slice i's residual (or decodes
        it) and returns the reconstructed residual.
        """
        hyper_means, hyper_scales = hyper.chunk(2, dim=1)
        decoded: list[Tensor] = []
        start = 0
        for i, size in enumerate(self.sizes):
            channels = slice(start, start + size)
            mean_input = torch.cat([hyper_means, *decoded], 1)
            mean = hyper_means[:, channels] + self._run(self.mean_nets[i], mean_input, arithmetic)
            scale_input = torch.cat([hyper_scales, *decoded], 1)
            scale = bound_scales(
                hyper_scales[:, channels] + self._run(self.scale_nets[i], scale_input, arithmetic))
            residual = None if y is None else y[:, channels] - mean
            y_hat = mean + quantize(residual, scale)
            lrp_input = torch.cat([hyper_means, *decoded, y_hat], 1)
            lrp = self._run(self.lrp_nets[i], lrp_input, arithmetic)
            decoded.append(y_hat + lrp.clamp(-LRP_BOUND, LRP_BOUND))
            start += size
        return torch.cat(decoded, 1)

    def _hyper(self, z_hat: Tensor, arithmetic: Arithmetic) -> Tensor:
        return self._run(self.h_s, z_hat, arithmetic)

    # -- training ------------------------------------------------------------------------
    def forward(
        self,
        y: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> LatentForward:
        """y (B, M, h, w) -> y_hat and likelihoods {"y", "z"}; each slice is predicted from
        the proxy's reconstruction of the slices before it (TRUE: the coder's)."""
        z = self.side_latents(y)
        prior, rate, arithmetic = self.entropy_bottleneck, None, Arithmetic.FLOAT
        if proxy is ProxyKind.TRUE:
            z_hat = prior.dequantize(prior.quantize(z)) + (z - z.detach())
            z_likelihoods = prior.likelihood(z_hat)
            rate, arithmetic = self.y_coding(quantizer).rate, Arithmetic.STRAIGHT
        else:
            z_hat, z_likelihoods = prior(z)
        likelihoods: list[Tensor] = []

        def quantize(residual: Tensor, scale: Tensor) -> Tensor:
            r_tilde, likelihood = quantizer.proxy(residual, scale, proxy, lambda_t, rate)
            likelihoods.append(likelihood)
            return r_tilde

        y_hat = self._slices(self._hyper(z_hat, arithmetic), y, quantize, arithmetic)
        return LatentForward(y_hat, {"y": torch.cat(likelihoods, 1), "z": z_likelihoods})

    def relaxed(
        self, y: Tensor, side: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> LatentForward:
        """Rounding of z around the medians and of every slice's residual (USQ's grid)."""
        medians = self.entropy_bottleneck.medians.view(1, -1, 1, 1)
        z_tilde = rounding(side - medians) + medians
        likelihoods: list[Tensor] = []

        def quantize(residual: Tensor, scale: Tensor) -> Tensor:
            r_tilde = rounding(residual)
            likelihoods.append(gaussian_mass(r_tilde - 0.5, r_tilde + 0.5, scale))
            return r_tilde

        hyper = self._hyper(z_tilde, Arithmetic.FLOAT)
        y_hat = self._slices(hyper, y, quantize, Arithmetic.FLOAT)
        z_likelihoods = self.entropy_bottleneck.likelihood(z_tilde)
        return LatentForward(y_hat, {"y": torch.cat(likelihoods, 1), "z": z_likelihoods})

    # -- bitstreams ----------------------------------------------------------------------
    @torch.no_grad()
    def _decide(
        self, y: Tensor, quantizer: Quantizer, lambda_t: float | None, side: Tensor | None
    ) -> tuple[Tensor, list[tuple[Quantized, Tensor]], LatentQuantized]:
        """z symbols, every slice's (indices, scales), and what they decode to and cost."""
        coding = self.y_coding(quantizer)
        z_symbols = self.side_symbols(y, side)
        hyper = self._hyper(self.entropy_bottleneck.dequantize(z_symbols), Arithmetic.EXACT)
        decisions: list[tuple[Quantized, Tensor]] = []

        def quantize(residual: Tensor, scale: Tensor) -> Tensor:
            quantized = quantizer.search(residual, scale, lambda_t, coding.rate)
            decisions.append((quantized, scale))
            return levels(quantizer, quantized)

        y_hat = self._slices(hyper, y, quantize, Arithmetic.EXACT)
        bits = self.z_coding().bits(z_symbols).sum()
        bits += sum(coding.bits(quantized, scale).sum() for quantized, scale in decisions)
        return z_symbols, decisions, LatentQuantized(y_hat, float(bits))

    def compress(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentCompressed:
        """Any y and z (``side``, default h_a(y)) give a valid file for the unchanged decoder."""
        z_symbols, decisions, decided = self._decide(y, quantizer, lambda_t, side)
        coding = self.y_coding(quantizer)
        encoder = SymbolEncoder(coding.tables)
        for quantized, scale in decisions:
            coding.encode_to(encoder, quantized, scale)
        streams = (self.z_coding().encode(z_symbols), encoder.finish())
        k = torch.cat([quantized.k for quantized, _ in decisions], 1)
        return LatentCompressed(decided.y_hat, decided.estimated_bits, streams,
                                symbols_crc(z_symbols, k))

    @torch.no_grad()
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        """The slices in lockstep: decode slice i with the rows its exact scales select."""
        if not exact:
            raise ValueError("channel-conditional files exist only in the portable format")
        z_stream, y_stream = streams
        z_symbols = self.decode_side(z_stream, latent_shape)
        coding = self.y_coding(quantizer)
        decoder = SymbolDecoder(y_stream, coding.tables)
        indices: list[Tensor] = []

        def quantize(residual: None, scale: Tensor) -> Tensor:
            quantized = coding.decode_from(decoder, scale)
            indices.append(quantized.k)
            return levels(quantizer, quantized)

        hyper = self._hyper(self.entropy_bottleneck.dequantize(z_symbols), Arithmetic.EXACT)
        y_hat = self._slices(hyper, None, quantize, Arithmetic.EXACT)
        self.check_symbols(checksum, z_symbols, torch.cat(indices, 1))
        return y_hat
