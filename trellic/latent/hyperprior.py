"""The mean-scale hyperprior latent codec (Minnen, Balle, Toderici 2018, no context model).

    y -> h_a -> z -> round(z - median) -> z symbols ---------------> z stream
                         z_hat -> h_s -> (means, scales)
    y - means -> quantizer.search(scales, table rate) -> (k, qid) -> y stream
    y_hat = means + level(k, qid)

Coding order (the container's two streams): z in one step, one table row per
channel; then y with the table of (quantizer id, scale level) of every index,
in the quantizer's walk (USQ one step, TCQ one step per latent column). The
encoder derives means and scales from the *decoded* z symbols through the
same code path as the decoder, h_s in integer arithmetic
(:mod:`trellic.latent.integer_net`), so both see bit-identical probabilities
on any machine, thread count or kernel set.

:class:`Hyperprior` holds what every hyperprior codec shares (h_a, h_s, the z
prior and its coding, y's tables); :class:`MeanScaleHyperprior` adds the
per-element Gaussian and the one-walk coding above. Subclasses with other
hyper-networks override :meth:`hyper_transforms`, :meth:`side_latents` and
:meth:`parameters_from` (the scale hyperprior); the channel-conditional codec
(:mod:`trellic.latent.channel_conditional`) brings its own slice order.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor, nn

from trellic.coding.bitstream import symbols_crc
from trellic.entropy.factorized import FactorizedPrior
from trellic.entropy.gaussian import bound_scales, build_gaussian_tables, default_scale_table
from trellic.entropy.tables import PmfTables
from trellic.latent.base import LatentCodec, LatentCompressed, LatentForward, LatentQuantized
from trellic.latent.factorized import FactorizedCoding
from trellic.latent.gaussian import GaussianCoding
from trellic.latent.integer_net import CachedIntegerSynthesis
from trellic.layers import conv, deconv
from trellic.quant.base import ProxyKind, Quantized, Quantizer, gaussian_mass
from trellic.quant.registry import QUANTIZERS


class Hyperprior(LatentCodec):
    """What every hyperprior codec shares: h_a / h_s (LeakyReLU by default), the
    factorized prior of z and its coding, the Gaussian tables of y; subclasses decide
    how h_s's output conditions y and in what order y is coded.

    Args:
        config: the model's config (N hyper channels, M latent channels, TCQ step).
    """

    downscale = 4  # h_a halves H and W twice

    def __init__(self, config) -> None:
        super().__init__(config)
        self.h_a, self.h_s = self.hyper_transforms(config.N, config.M)
        self.entropy_bottleneck = FactorizedPrior(config.N, config.prior_filters)
        self.register_buffer("scale_table", default_scale_table())

    # -- the entropy model ------------------------------------------------------
    @staticmethod
    def hyper_transforms(N: int, M: int) -> tuple[nn.Module, nn.Module]:
        """h_a: y (B, M, h, w) -> z (B, N, h/4, w/4); h_s: z_hat -> (B, 2M, h, w) means, scales."""
        h_a = nn.Sequential(
            conv(M, N, 3, 1), nn.LeakyReLU(inplace=True), conv(N, N), nn.LeakyReLU(inplace=True),
            conv(N, N),
        )
        h_s = nn.Sequential(
            deconv(N, M), nn.LeakyReLU(inplace=True), deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True), conv(M * 3 // 2, M * 2, 3, 1),
        )
        return h_a, h_s

    def side_latents(self, y: Tensor) -> Tensor:
        """z = h_a(y) (B, N, h/4, w/4)."""
        return self.h_a(y)

    def transforms(self) -> list[nn.Module]:
        return [self.h_a, self.h_s]

    def aux_parameters(self) -> list[nn.Parameter]:
        return [self.entropy_bottleneck.quantiles]

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.aux_loss()

    # -- coding tables ----------------------------------------------------------------
    def build_tables(self) -> dict[str, PmfTables]:
        """z per channel; y per (quantizer id, scale level), one set per registry table key."""
        tables = {"z": self.entropy_bottleneck.build_tables()}
        for name, spec in QUANTIZERS.items():
            if spec.tables not in tables:
                tables[spec.tables] = build_gaussian_tables(self.quantizer(name), self.scale_table)
        return tables

    def table_rows(self) -> dict[str, int]:
        rows = {"z": self.config.N}
        for name, spec in QUANTIZERS.items():
            rows[spec.tables] = self.quantizer(name).num_quantizers * self.scale_table.numel()
        return rows

    def y_coding(self, quantizer: Quantizer) -> GaussianCoding:
        """The coder of y's indices with this quantizer."""
        return GaussianCoding(self.quantizer_tables(quantizer), self.scale_table, quantizer)

    def z_coding(self) -> FactorizedCoding:
        """The coder of the z symbols."""
        return FactorizedCoding(self.tables["z"])

    def side_symbols(self, y: Tensor, side: Tensor | None = None) -> Tensor:
        """The z symbols the encoder codes: of ``side``, default h_a(y)."""
        return self.entropy_bottleneck.quantize(self.side_latents(y) if side is None else side)

    def decode_side(self, z_stream: bytes, latent_shape: tuple[int, int]) -> Tensor:
        """The z symbols (1, N, h/4, w/4) of a y grid of ``latent_shape`` (h, w)."""
        h, w = latent_shape
        z_shape = (1, self.config.N, h // self.downscale, w // self.downscale)
        return self.z_coding().decode(z_stream, z_shape)

    @staticmethod
    def check_symbols(checksum: int | None, z_symbols: Tensor, k: Tensor) -> None:
        """Raise ValueError if the decoded symbols do not match the encoder's checksum."""
        if checksum is not None and symbols_crc(z_symbols, k) != checksum:
            raise ValueError("the decoded symbols fail the integrity check (decoder out of sync)")

    # -- the encoder's decisions ------------------------------------------------------
    @abc.abstractmethod
    def _decide(
        self, y: Tensor, quantizer: Quantizer, lambda_t: float | None, side: Tensor | None
    ) -> tuple:
        """Everything ``compress`` codes, its last item what it decodes to and costs."""

    def quantize(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentQuantized:
        return self._decide(y, quantizer, lambda_t, side)[-1]


class MeanScaleHyperprior(Hyperprior):
    """A Gaussian (means, scales) for every y element from h_s; y coded in one walk.

    Args:
        config: the model's config (N hyper channels, M latent channels, TCQ step).
    """

    def __init__(self, config) -> None:
        super().__init__(config)
        self.integer_h_s = CachedIntegerSynthesis(self.scale_channels())

    # -- the entropy parameters ------------------------------------------------------
    def entropy_parameters(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """z_hat (B, N, h, w) -> means, lower-bounded scales (B, M, 4h, 4w), in z_hat's dtype
        (even when h_s computes in bfloat16: the likelihoods need the precision)."""
        return self.parameters_from(self.h_s(z_hat), z_hat.dtype)

    def parameters_from(self, hyper: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """h_s's output (B, 2M, h, w) -> means, lower-bounded scales (B, M, h, w) in ``dtype``."""
        means, scales = hyper.chunk(2, dim=1)
        return means.to(dtype), bound_scales(scales).to(dtype)

    def scale_channels(self) -> slice:
        """The channels of h_s's output that hold the scales (its second half)."""
        return slice(self.config.M, 2 * self.config.M)

    def exact_scales(self, z_hat: Tensor) -> Tensor:
        """z_hat (B, N, h, w) -> lower-bounded scales (B, M, 4h, 4w) from h_s in integer
        arithmetic (only the scale channels computed), the same on every machine."""
        return bound_scales(self.integer_h_s(self.h_s, z_hat)).to(z_hat.dtype)

    def decoded_means(self, z_hat: Tensor) -> Tensor:
        """The means of y (B, M, 4h, 4w) that the decoder adds to the levels (float h_s)."""
        return self.entropy_parameters(z_hat)[0]

    # -- training -------------------------------------------------------------------
    def forward(
        self,
        y: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> LatentForward:
        """y (B, M, h, w) -> y_hat and likelihoods {"y", "z"}.

        TRUE codes exactly what ``compress`` codes: z rounded around the
        median (straight-through), y by the quantizer's search with the
        coder's code lengths; its likelihoods are those of the true symbols.
        """
        z = self.side_latents(y)
        prior, rate = self.entropy_bottleneck, None
        if proxy is ProxyKind.TRUE:
            z_hat = prior.dequantize(prior.quantize(z)) + (z - z.detach())
            z_likelihoods = prior.likelihood(z_hat)
            rate = self.y_coding(quantizer).rate
            means, scales = self._exact_straight_through(z_hat)
        else:
            z_hat, z_likelihoods = prior(z)
            means, scales = self.entropy_parameters(z_hat)
        r_tilde, y_likelihoods = quantizer.proxy(y - means, scales, proxy, lambda_t, rate)
        return LatentForward(r_tilde + means, {"y": y_likelihoods, "z": z_likelihoods})

    def relaxed(
        self, y: Tensor, side: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> LatentForward:
        """Rounding of z around the medians and of y - means on the integer grid (USQ's)."""
        medians = self.entropy_bottleneck.medians.view(1, -1, 1, 1)
        z_tilde = rounding(side - medians) + medians
        means, scales = self.entropy_parameters(z_tilde)
        r_tilde = rounding(y - means)
        y_likelihoods = gaussian_mass(r_tilde - 0.5, r_tilde + 0.5, scales)
        z_likelihoods = self.entropy_bottleneck.likelihood(z_tilde)
        return LatentForward(r_tilde + means, {"y": y_likelihoods, "z": z_likelihoods})

    # -- bitstreams -----------------------------------------------------------------
    def _exact_straight_through(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """What compress codes (float means, the integer path's scales), with the float
        h_s's gradients for the scales."""
        means, scales = self.entropy_parameters(z_hat)
        with torch.no_grad():
            exact = self.exact_scales(z_hat)
        return means, exact + (scales - scales.detach())

    def decoded_parameters(self, z_symbols: Tensor, exact: bool = True) -> tuple[Tensor, Tensor]:
        """What the decoder derives from the z symbols: means and scales of y.

        exact: the scales, which select every table row, from h_s in integer
        arithmetic (``trellic.latent.integer_net``), the same on every machine:
        what format-2 files are coded with. The means stay float: they only shift
        the reconstruction (by a last bit across machines), never a row or a
        trellis state. False: the float scales of format-1 files, exact only on
        kernels that round like the encoder's.
        """
        z_hat = self.entropy_bottleneck.dequantize(z_symbols)
        if not exact:
            return self.entropy_parameters(z_hat)
        return self.decoded_means(z_hat), self.exact_scales(z_hat)

    @torch.no_grad()
    def _decide(
        self, y: Tensor, quantizer: Quantizer, lambda_t: float | None, side: Tensor | None
    ) -> tuple[Tensor, Tensor, Quantized, LatentQuantized]:
        """z symbols, scales, y's (k, qid) and what they decode to and cost."""
        coding = self.y_coding(quantizer)
        z_symbols = self.side_symbols(y, side)
        means, scales = self.decoded_parameters(z_symbols)
        quantized = quantizer.search(y - means, scales, lambda_t, coding.rate)
        bits = self.z_coding().bits(z_symbols).sum()
        bits += coding.bits(quantized, scales).sum()
        y_hat = means + quantizer.level(quantized.k, quantized.qid)
        return z_symbols, scales, quantized, LatentQuantized(y_hat, float(bits))

    def compress(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentCompressed:
        """Any y and z (``side``, default h_a(y)) give a valid file for the unchanged decoder."""
        z_symbols, scales, quantized, decided = self._decide(y, quantizer, lambda_t, side)
        streams = (
            self.z_coding().encode(z_symbols),
            self.y_coding(quantizer).encode(quantized, scales),
        )
        checksum = symbols_crc(z_symbols, quantized.k)
        return LatentCompressed(decided.y_hat, decided.estimated_bits, streams, checksum)

    @torch.no_grad()
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        z_stream, y_stream = streams
        z_symbols = self.decode_side(z_stream, latent_shape)
        means, scales = self.decoded_parameters(z_symbols, exact)
        k, qid = self.y_coding(quantizer).decode(y_stream, scales)
        self.check_symbols(checksum, z_symbols, k)
        return means + quantizer.level(k, qid)
