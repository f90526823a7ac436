"""The factorized-prior latent codec (Balle, Minnen, Singh, Hwang, Johnston 2018's baseline).

CompressAI's ``bmshj2018-factorized`` entropy model: no side information; each
of y's M channels c has its own learned density F_c (a
:class:`~trellic.entropy.factorized.FactorizedPrior` over M channels,
CompressAI's ``entropy_bottleneck``) around a learned median::

    y -> r = y - median_c -> (k, qid) <- quantizer.search(r, c, table rate) -> y stream
    y_hat = median_c + level(k, qid)

With USQ at delta 1 that is CompressAI's ``round(y - median) + median``.

Tables: one set per quantizer table family (the registry's ``tables`` key);
row ``qid * M + c`` codes index k with

    P(k | qid, c) = F_c(median_c + hi) - F_c(median_c + lo)

over the decision interval [lo, hi] of level k in quantizer qid
(:meth:`~trellic.entropy.factorized.FactorizedPrior.build_tables`); indices
outside a row's range escape. The quantizer sees each element's channel where
a hyperprior gives it a scale: the channel selects the row, both for the
coder and for the Viterbi's rate term (the same rows' exact code lengths).

Container: the side stream is empty; the y stream holds the indices in the
quantizer's walk (USQ: one step, grouped by channel; TCQ: one step per latent
column, every row of every channel a sequence); the symbols CRC covers y's
indices (there are no side symbols).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from trellic.coding.bitstream import symbols_crc
from trellic.entropy.factorized import FactorizedPrior
from trellic.entropy.gaussian import RowRate
from trellic.entropy.tables import PmfTables
from trellic.latent.base import LatentCodec, LatentCompressed, LatentForward, LatentQuantized
from trellic.latent.exact import levels
from trellic.latent.gaussian import TableCoding
from trellic.quant.base import ProxyKind, Quantized, Quantizer
from trellic.quant.registry import QUANTIZERS


def channel_levels(channels: Tensor) -> Tensor:
    """The row selector: an element's channel index, which the quantizer carries as its
    "scale" (float, exact), as the row level (int64)."""
    return channels.long()


class FactorizedPriorCodec(LatentCodec):
    """y coded with a learned density per channel and any quantizer; no side information.

    Typical workflow: train :meth:`forward` with a quantizer's proxy (the rate of every
    interval from its channel's density) and :meth:`aux_loss` (the quantiles), then
    ``update()`` and :meth:`compress` / :meth:`decompress`.

    Args:
        config: the model's config (M latent channels, quantizer steps, the prior's filters).
    """

    downscale = 1  # no coarser grid than y's: images pad to g_a's stride, 16

    def __init__(self, config) -> None:
        super().__init__(config)
        self.entropy_bottleneck = FactorizedPrior(config.M, config.prior_filters)

    # -- y's density ----------------------------------------------------------------
    def medians(self) -> Tensor:
        """(1, M, 1, 1) the centre of each channel's grid (fixed by the aux loss alone)."""
        return self.entropy_bottleneck.medians.view(1, -1, 1, 1)

    def channels(
        self, shape: torch.Size | tuple[int, ...], device: torch.device | str = "cpu"
    ) -> Tensor:
        """The channel index of every element of a y of ``shape`` (B, M, h, w), float32: what
        the quantizer's calls take as scales, here the row selector (:func:`channel_levels`)."""
        index = torch.arange(shape[1], dtype=torch.float32, device=device)
        return index.view(1, -1, 1, 1).expand(shape)

    def residual_mass(self, lo: Tensor, hi: Tensor, channels: Tensor) -> Tensor:
        """The quantizer's interval mass for y: P(y - median_c in [lo, hi]) =
        F_c(median_c + hi) - F_c(median_c + lo), (B, M, h, w) in y's layout, whose channel
        axis is c (as ``channels`` says)."""
        medians = self.medians()
        lo, hi = torch.broadcast_tensors(lo, hi)
        return self.entropy_bottleneck.interval_mass(medians + lo, medians + hi)

    def transforms(self) -> list[nn.Module]:
        """No networks: no entropy parameter is computed."""
        return []

    def side_latents(self, y: Tensor) -> Tensor:
        """No side latents: an empty (B, 0, h, w) tensor."""
        return y.new_zeros(y.shape[0], 0, *y.shape[-2:])

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.entropy_bottleneck.quantiles]

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.aux_loss()

    # -- coding tables ----------------------------------------------------------------
    def build_tables(self) -> dict[str, PmfTables]:
        """Rows (quantizer id, channel), one set per registry table key."""
        tables: dict[str, PmfTables] = {}
        for name, spec in QUANTIZERS.items():
            if spec.tables not in tables:
                tables[spec.tables] = self.entropy_bottleneck.build_tables(self.quantizer(name))
        return tables

    def table_rows(self) -> dict[str, int]:
        return {spec.tables: self.quantizer(name).num_quantizers * self.config.M
                for name, spec in QUANTIZERS.items()}

    def rate(self, tables: PmfTables) -> RowRate:
        """Exact code lengths of rows (quantizer id, channel) of ``tables``."""
        return RowRate(tables, channel_levels, self.config.M)

    def coding(self, quantizer: Quantizer) -> TableCoding:
        """The coder of y's indices with this quantizer's frozen tables."""
        return TableCoding(self.rate(self.quantizer_tables(quantizer)), quantizer)

    # -- training -------------------------------------------------------------------
    def forward(
        self,
        y: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> LatentForward:
        """y (B, M, h, w) -> y_hat and likelihoods {"y"}: the quantizer's proxy of y - median,
        every interval priced by its channel's density.

        The searches of STE and MIXED price indices with tables of the current density
        (built here: the prior trains with the model); TRUE's with the frozen tables, so it
        reconstructs exactly what ``compress`` codes.
        """
        rate = None
        if proxy is ProxyKind.TRUE:
            rate = self.coding(quantizer).rate
        elif proxy is not ProxyKind.NOISE:
            rate = self.rate(self.entropy_bottleneck.build_tables(quantizer))
        return self._pass(y, lambda r, c: quantizer.proxy(r, c, proxy, lambda_t, rate,
                                                          self.residual_mass))

    def relaxed(
        self, y: Tensor, side: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> LatentForward:
        """``rounding`` of y - median on the USQ grid of this model (its ``usq_delta``);
        ``side`` is empty."""
        grid = self.quantizer("usq")
        return self._pass(y, lambda r, c: grid.relaxed(r, c, rounding, self.residual_mass))

    def _pass(self, y: Tensor, approximate: Callable) -> LatentForward:
        """``approximate(y - median, channels) -> (r_tilde, likelihood)`` -> y_hat, {"y"}."""
        medians = self.medians()
        r_tilde, likelihood = approximate(y - medians, self.channels(y.shape, y.device))
        return LatentForward(medians + r_tilde, {"y": likelihood})

    # -- bitstreams -----------------------------------------------------------------
    @torch.no_grad()
    def decide(
        self, y: Tensor, quantizer: Quantizer, lambda_t: float | None = None
    ) -> tuple[Quantized, LatentQuantized]:
        """The encoder's indices for y (1, M, h, w), what they decode to and cost."""
        coding, channels = self.coding(quantizer), self.channels(y.shape)
        quantized = quantizer.search(y - self.medians(), channels, lambda_t, coding.rate)
        bits = coding.bits(quantized, channels).sum()
        return quantized, LatentQuantized(self.reconstruct(quantizer, quantized), float(bits))

    def reconstruct(self, quantizer: Quantizer, quantized: Quantized) -> Tensor:
        """y_hat = median + level, the same float32 sum on the encoder and the decoder."""
        return self.medians() + levels(quantizer, quantized)

    @staticmethod
    def _check_side(side: Tensor | None) -> None:
        if side is not None and side.numel():
            raise ValueError("the factorized-prior codec has no side latents")

    def quantize(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentQuantized:
        self._check_side(side)
        return self.decide(y, quantizer, lambda_t)[1]

    def compress(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentCompressed:
        """y (1, M, h, w) -> (empty side stream, y stream); ``side`` must be empty."""
        self._check_side(side)
        quantized, result = self.decide(y, quantizer, lambda_t)
        stream = self.coding(quantizer).encode(quantized, self.channels(y.shape))
        return LatentCompressed(result.y_hat, result.estimated_bits, (b"", stream),
                                symbols_crc(quantized.k))

    @torch.no_grad()
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        """The y stream, rows by channel (``exact`` is moot: no network selects a row)."""
        side_stream, y_stream = streams
        if side_stream:
            raise ValueError("a factorized-prior file has no side stream")
        channels = self.channels((1, self.config.M, *latent_shape))
        quantized = self.coding(quantizer).decode(y_stream, channels)
        self.check_symbols(checksum, quantized.k)
        return self.reconstruct(quantizer, quantized)
