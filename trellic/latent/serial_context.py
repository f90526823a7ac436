"""The serial spatial context model (Minnen, Balle, Toderici 2018), decoded in wavefronts.

Minnen, Balle, Toderici, "Joint autoregressive and hierarchical priors for
learned image compression" (NeurIPS 2018); CompressAI's ``mbt2018``, and with
Cheng et al.'s transforms ``cheng2020-anchor`` / ``cheng2020-attn``::

    params(i, j) = entropy_parameters(cat(h_s(z_hat)(i, j), context_prediction(y_hat)(i, j)))

where the type-A masked 5x5 convolution sees only the positions decoded
before (i, j) in raster order: rows i-2 and i-1 at columns j-2 .. j+2, row i
at columns j-2 and j-1. Position (i, j) therefore depends only on positions
of smaller ``3 i + j``, so all positions of one value of ``3 i + j`` (a
wavefront, at most h of them) are decoded together: 3(h - 1) + w steps
instead of h w, each one batch of 5x5 patches through the context and
parameter networks (at the wavefront's positions only).

Each wavefront is one part of y (B * n, M, 1, 1): a quantizer whose
decisions are per element (USQ, RDOQ) codes it as the hyperprior base codes
any part. A trellis (TCQ) runs along each row of each channel, across the
wavefronts: :meth:`SerialContext.decide` searches with first-pass parameters
and codes the path with the exact sequential ones, and the decoder carries
each row's trellis state from one wavefront to the next. Every network runs
in exact arithmetic when coding, so rows and states agree on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor

from trellic.coding.range_coder import SymbolDecoder
from trellic.latent.exact import Arithmetic, levels
from trellic.latent.hyperprior import Decision, Hyperprior, PartDecision, PartQuantizer
from trellic.latent.integer_net import PRECISION_2
from trellic.latent.spatial_context import context_prediction, entropy_parameters, gaussian_of
from trellic.models.blocks import MaskedConv2d
from trellic.quant.base import ProxyKind, Quantized, Quantizer

REACH = 2  # the context kernel's half width (5x5)


@cache
def wavefronts(h: int, w: int) -> tuple[tuple[Tensor, Tensor], ...]:
    """The positions (rows, columns) of each wavefront ``3 i + j = t`` of an h x w grid, in
    decoding order; within one, by row."""
    fronts = []
    for t in range(3 * (h - 1) + w):
        rows = torch.tensor([i for i in range(h) if 0 <= t - 3 * i < w], dtype=torch.long)
        fronts.append((rows, t - 3 * rows))
    return tuple(fronts)


def wavefront_order(h: int, w: int) -> Tensor:
    """(h w,) the raster index of each position in wavefront order."""
    return torch.cat([rows * w + cols for rows, cols in wavefronts(h, w)])


class SerialContext(Hyperprior):
    """A hyperprior plus the serial (raster-order) spatial context, coded in wavefronts.

    Args:
        config: the model's config (N, M, quantizer steps).
        hyper_transforms: ``(N, M) -> (h_a, h_s)``, h_s giving 2M side parameters (Cheng
            2020's for cheng2020-anchor / -attn); default the mean-scale hyperprior's (mbt2018).
    """

    precision = PRECISION_2  # the means feed later parts: float-like accuracy

    def __init__(self, config, hyper_transforms: Callable | None = None) -> None:
        super().__init__(config, hyper_transforms)
        M = config.M
        self.context_prediction = context_prediction(M, MaskedConv2d)
        self.entropy_parameters = entropy_parameters(M, 2 * M)
        # The context at chosen positions: the same convolution on 5x5 patches, unpadded.
        # Not a submodule (its tensors are context_prediction's, refreshed at every use).
        self.__dict__["_at_positions"] = MaskedConv2d(M, 2 * M, kernel_size=5, padding=0)

    def transforms(self) -> list[torch.nn.Module]:
        return [self.h_a, self.h_s, self.context_prediction, self.entropy_parameters]

    def _context_at_positions(self) -> MaskedConv2d:
        layer = self.__dict__["_at_positions"]
        source = self.context_prediction
        layer.weight, layer.bias, layer.mask = source.weight, source.bias, source.mask
        return layer

    # -- trellis quantizers: one path along each row, across the wavefronts ---------------
    def training_parts(
        self,
        y: Tensor,
        z: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind,
        lambda_t: float | None,
        likelihoods: list[Tensor],
    ) -> PartQuantizer:
        """TRUE with a trellis: the path :meth:`decide` codes (a search per wavefront would
        restart the trellis at every one), its reconstruction constant and its indices'
        likelihood under the exact parameters with the float networks' gradients
        (straight-through to the residuals, as :func:`trellic.quant.proxy.true_proxy`)."""
        if proxy is not ProxyKind.TRUE or quantizer.trellis.num_states == 1:
            return super().training_parts(y, z, quantizer, proxy, lambda_t, likelihoods)
        path = iter(self.decide(y.detach(), quantizer, lambda_t, side=z.detach()).parts)

        def quantize(residual: Tensor, scales: Tensor) -> Tensor:
            k, qid = next(path).quantized
            likelihoods.append(quantizer.likelihood(k, scales, residual, qid))
            return levels(quantizer, Quantized(k, qid))

        return quantize

    @torch.no_grad()
    def decide(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
        searches: int = 1,
    ) -> Decision:
        """Per-element quantizers: the hyperprior's decisions, wavefront by wavefront.

        A trellis search needs every position's parameters before it runs, but here
        they depend on the reconstructions along its own path. So: (1) a first pass
        rounds every residual on the quantizer's grid (step delta) to get parameters
        for all positions; (2) the trellis searches each row with them; (3) the path's
        indices are kept and every position is reconstructed and coded with the exact
        sequential parameters that the decoder will derive (their means move the
        reconstruction from what the search assumed). ``searches > 1`` repeats (2)
        and (3), each search given the parameters the previous path produced
        (``bench/serial_trellis.py`` measures what that buys).
        """
        if quantizer.trellis.num_states == 1:
            return super().decide(y, quantizer, lambda_t, side)
        coding = self.y_coding(quantizer)
        z_symbols = self.side_symbols(y, side)
        z_hat = self.entropy_bottleneck.dequantize(z_symbols)
        residuals, scales = self.first_pass(z_hat, y, quantizer)
        for _ in range(searches):
            path = quantizer.search(residuals, scales, lambda_t, coding.rate)
            parts, residuals, scales, y_hat = self.follow(z_hat, y, quantizer, path)
        return self.decision(z_symbols, parts, y_hat, coding)

    def first_pass(
        self, z_hat: Tensor, y: Tensor, quantizer: Quantizer
    ) -> tuple[Tensor, Tensor]:
        """Residuals and scales (1, M, h, w) of every position when each residual is rounded
        on the quantizer's grid (step delta): what the trellis search is first given."""
        return self._exact_pass(z_hat, y, lambda r, _: quantizer.delta
                                * torch.round(r / quantizer.delta))[1:]

    def follow(
        self, z_hat: Tensor, y: Tensor, quantizer: Quantizer, path: Quantized
    ) -> tuple[list[PartDecision], Tensor, Tensor, Tensor]:
        """A path reconstructed with the exact sequential parameters: per wavefront its
        decision, the residuals and scales of every position (1, M, h, w), and y_hat."""
        steps = iter(zip(self.split(path.k), self.split(path.qid), strict=True))
        parts: list[PartDecision] = []

        def along_path(residual: Tensor, scales: Tensor) -> Tensor:
            quantized = Quantized(*next(steps))
            parts.append(PartDecision(quantized, scales))
            return levels(quantizer, quantized)

        y_hat, residuals, scales = self._exact_pass(z_hat, y, along_path)
        return parts, residuals, scales, y_hat

    def _exact_pass(
        self, z_hat: Tensor, y: Tensor, quantize: PartQuantizer
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The exact walk with ``quantize``: y_hat and every position's residual and scales."""
        seen: list[tuple[Tensor, Tensor]] = []

        def recorded(residual: Tensor, scales: Tensor) -> Tensor:
            seen.append((residual, scales))
            return quantize(residual, scales)

        y_hat = self.walk(z_hat, y, recorded, Arithmetic.EXACT)
        shape = tuple(y.shape[-2:])
        return (y_hat, self.merge([r for r, _ in seen], shape),
                self.merge([s for _, s in seen], shape))

    @torch.no_grad()
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        """Per-element quantizers: the hyperprior's decoder. A trellis: each row's state
        carried from wavefront to wavefront, replayed from the decoded indices."""
        if quantizer.trellis.num_states == 1:
            return super().decompress(streams, latent_shape, quantizer, checksum, exact)
        z_stream, y_stream = streams
        z_symbols = self.decode_side(z_stream, latent_shape)
        coding = self.y_coding(quantizer)
        decoder = SymbolDecoder(y_stream, coding.tables)
        next_state = quantizer.trellis.next_state_table()
        quantizer_of = quantizer.trellis.quantizer_table()
        state = torch.zeros(1, self.config.M, latent_shape[0], dtype=torch.long)
        fronts = iter(wavefronts(*latent_shape))
        indices: list[Tensor] = []

        def decode(residual: None, scales: Tensor) -> Tensor:
            rows, _ = next(fronts)
            current = state[:, :, rows].transpose(1, 2).reshape(scales.shape)
            qid = quantizer_of[current]
            k = coding.decode_known_states(decoder, scales, qid)
            state[:, :, rows] = next_state[current, k & 1].view(-1, rows.numel(), self.config.M
                                                               ).transpose(1, 2)
            indices.append(k)
            return levels(quantizer, Quantized(k, qid))

        z_hat = self.entropy_bottleneck.dequantize(z_symbols)
        y_hat = self.walk(z_hat, None, decode, Arithmetic.EXACT)
        self.check_symbols(checksum, z_symbols, self.merge(indices, latent_shape))
        return y_hat

    def walk(
        self, z_hat: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """The wavefronts in order; each position's context from the positions decoded before."""
        hyper = self.exact(self.h_s, z_hat, arithmetic)
        with self.exact.fixed_weights():
            return self._wavefronts(hyper, y, quantize, arithmetic)

    def _wavefronts(
        self, hyper: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        B, _, h, w = hyper.shape
        M = self.config.M
        span = torch.arange(2 * REACH + 1)
        context_layer = self._context_at_positions()
        decoded = hyper.new_zeros(B, M, h + 2 * REACH, w + 2 * REACH, dtype=torch.float32)
        for rows, cols in wavefronts(h, w):
            n = rows.numel()
            window = decoded[:, :, rows.view(-1, 1, 1) + span.view(1, -1, 1),
                             cols.view(-1, 1, 1) + span.view(1, 1, -1)]
            patches = window.transpose(1, 2).reshape(B * n, M, 2 * REACH + 1, 2 * REACH + 1)
            context = self.exact(context_layer, patches, arithmetic)
            side = hyper[:, :, rows, cols].transpose(1, 2).reshape(B * n, 2 * M, 1, 1)
            params = self.exact(self.entropy_parameters, torch.cat([side, context], 1),
                                arithmetic)
            means, scales = gaussian_of(params)
            target = None
            if y is not None:
                target = y[:, :, rows, cols].transpose(1, 2).reshape(B * n, M, 1, 1) - means
            values = (means + quantize(target, scales)).view(B, n, M).transpose(1, 2)
            decoded = decoded.clone()
            decoded[:, :, rows + REACH, cols + REACH] = values
        return decoded[:, :, REACH:-REACH, REACH:-REACH].contiguous()

    def split(self, t: Tensor) -> list[Tensor]:
        """The inverse of :meth:`merge`: (B, M, h, w) -> its wavefront parts (B n_t, M, 1, 1)."""
        B, M, h, w = t.shape
        return [t[:, :, rows, cols].transpose(1, 2).reshape(-1, M, 1, 1)
                for rows, cols in wavefronts(h, w)]

    def merge(self, parts: list[Tensor], shape: tuple[int, int]) -> Tensor:
        """Wavefront parts (B n_t, M, 1, 1) -> (B, M, h, w)."""
        h, w = shape
        batch = parts[0].shape[0] // wavefronts(h, w)[0][0].numel()
        ordered = torch.cat([part.view(batch, -1, part.shape[1]) for part in parts], 1)
        raster = torch.empty_like(ordered)
        raster[:, wavefront_order(h, w)] = ordered
        return raster.transpose(1, 2).reshape(batch, -1, h, w)
