"""Hyperprior latent codecs: one base that trains, decides, codes and decodes y in parts.

    y -> h_a -> z -> round(z - median) -> z symbols -----------------------> z stream
                         z_hat -> h_s -> hyper parameters
    for each part of y, in coding order (the codec's walk):
        means, scales <- hyper parameters and the parts reconstructed before it
        (k, qid) <- quantizer.search(y_part - means, scales, table rate)  -> y stream
        y_hat_part = means + level(k, qid)

:class:`Hyperprior` writes the z path, the training pass (any proxy, TRUE
included), the relaxed pass of refinement, the encoder's decisions, compress
and decompress *once*. A codec contributes only :meth:`Hyperprior.walk`: how
it walks its parts and where each part's means and scales come from (one part
for the mean-scale hyperprior below; slices for the channel-conditional
codec; two checkerboard passes for a spatial context), and
:meth:`Hyperprior.merge` if its parts are not channel slices.

Coding order (the container's two streams): z in one step, one table row per
channel; then every part of y, in walk order, each in its quantizer's walk
(USQ one step, TCQ one step per latent column), into one y stream. The
encoder derives each part's parameters from the *decoded* z symbols and the
reconstructed parts through the decoder's own code path, in exact arithmetic
(:mod:`trellic.latent.exact`), so both see bit-identical rows on any machine.
The checksum covers the z symbols and y's indices in y's layout.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trellic.coding.bitstream import symbols_crc
from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.factorized import FactorizedPrior
from trellic.entropy.gaussian import bound_scales, build_gaussian_tables, default_scale_table
from trellic.entropy.tables import PmfTables
from trellic.latent.base import LatentCodec, LatentCompressed, LatentForward, LatentQuantized
from trellic.latent.exact import Arithmetic, ExactNetworks, levels
from trellic.latent.factorized import FactorizedCoding
from trellic.latent.gaussian import GaussianCoding
from trellic.latent.integer_net import PRECISION_1, CachedIntegerSynthesis
from trellic.layers import conv, deconv
from trellic.quant.base import ProxyKind, Quantized, Quantizer
from trellic.quant.registry import QUANTIZERS

# A part's quantization, as the walk sees it: (the part's residual y - means, or None on
# the decoder; its scales) -> the reconstructed residual.
PartQuantizer = Callable[[Tensor | None, Tensor], Tensor]


@dataclass
class PartDecision:
    """The encoder's decision for one part of y: indices and quantizer ids, and the scales
    that select their table rows (all the part's shape)."""

    quantized: Quantized
    scales: Tensor


@dataclass
class Decision:
    """Everything ``compress`` codes: the z symbols (1, N, h/4, w/4), y's parts in coding
    order, and what they decode to and cost."""

    z_symbols: Tensor
    parts: list[PartDecision]
    result: LatentQuantized


class Hyperprior(LatentCodec):
    """The base of the hyperprior codecs: h_a / h_s (LeakyReLU by default), the
    factorized prior of z and its coding, the Gaussian tables of y, and the passes
    over y's parts; subclasses give :meth:`walk`.

    Args:
        config: the model's config (N hyper channels, M latent channels, quantizer steps).
        hyper_transforms: ``(N, M) -> (h_a, h_s)`` of the architecture, if not the
            codec's own :meth:`hyper_transforms` (e.g. Cheng 2020's).
    """

    downscale = 4  # h_a halves H and W twice
    reads_float_files = False  # format-1 files (float entropy parameters) exist for this codec
    precision = PRECISION_1  # of its integer networks: every file it wrote depends on it

    def __init__(self, config, hyper_transforms: Callable | None = None) -> None:
        super().__init__(config)
        build = self.hyper_transforms if hyper_transforms is None else hyper_transforms
        self.h_a, self.h_s = build(config.N, config.M)
        self.entropy_bottleneck = FactorizedPrior(config.N, config.prior_filters)
        self.register_buffer("scale_table", default_scale_table())
        self.exact = ExactNetworks(self.precision)

    # -- the parts of y --------------------------------------------------------------
    @abc.abstractmethod
    def walk(
        self, z_hat: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """Visit y's parts in coding order and return y_hat (B, M, h, w).

        For each part: its means and scales from ``z_hat`` (B, N, h/4, w/4) and the
        parts reconstructed before it, computed in ``arithmetic``; then
        ``quantize(y_part - means or None, scales)`` gives its reconstructed residual.
        ``y`` is None on the decoder.
        """

    def merge(self, parts: list[Tensor], shape: tuple[int, int]) -> Tensor:
        """Per-part tensors (likelihoods, indices) in walk order -> y's layout (B, M, h, w)
        (``shape``: (h, w)). Parts that are channel slices concatenate."""
        return torch.cat(parts, 1)

    # -- the entropy model ------------------------------------------------------------
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

    # -- training -------------------------------------------------------------------
    def forward(
        self,
        y: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> LatentForward:
        """y (B, M, h, w) -> y_hat and likelihoods {"y", "z"}; each part is predicted from
        the proxy's reconstruction of the parts before it.

        TRUE codes exactly what ``compress`` codes: z rounded around the median
        (straight-through), every part of y by the quantizer's search with the
        coder's code lengths and the exact parameters (with the float networks'
        gradients); its likelihoods are those of the true symbols.
        """
        z = self.side_latents(y)
        prior, arithmetic = self.entropy_bottleneck, Arithmetic.FLOAT
        if proxy is ProxyKind.TRUE:
            z_hat = prior.dequantize(prior.quantize(z)) + (z - z.detach())
            z_likelihoods = prior.likelihood(z_hat)
            arithmetic = Arithmetic.STRAIGHT
        else:
            z_hat, z_likelihoods = prior(z)
        likelihoods: list[Tensor] = []
        quantize = self.training_parts(y, z, quantizer, proxy, lambda_t, likelihoods)
        y_hat = self.walk(z_hat, y, quantize, arithmetic)
        y_likelihoods = self.merge(likelihoods, y.shape[-2:])
        return LatentForward(y_hat, {"y": y_likelihoods, "z": z_likelihoods})

    def training_parts(
        self,
        y: Tensor,
        z: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind,
        lambda_t: float | None,
        likelihoods: list[Tensor],
    ) -> PartQuantizer:
        """The training pass's per-part callback: the quantizer's proxy (TRUE: its search
        with the coder's code lengths), each part's likelihood appended to ``likelihoods``."""
        rate = self.y_coding(quantizer).rate if proxy is ProxyKind.TRUE else None

        def quantize(residual: Tensor, scales: Tensor) -> Tensor:
            r_tilde, likelihood = quantizer.proxy(residual, scales, proxy, lambda_t, rate)
            likelihoods.append(likelihood)
            return r_tilde

        return quantize

    def relaxed(
        self, y: Tensor, side: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> LatentForward:
        """``rounding`` of z around the medians and of every part's residual on the USQ
        grid of this model (its ``usq_delta``)."""
        medians = self.entropy_bottleneck.medians.view(1, -1, 1, 1)
        z_tilde = rounding(side - medians) + medians
        grid = self.quantizer("usq")
        likelihoods: list[Tensor] = []

        def quantize(residual: Tensor, scales: Tensor) -> Tensor:
            r_tilde, likelihood = grid.relaxed(residual, scales, rounding)
            likelihoods.append(likelihood)
            return r_tilde

        y_hat = self.walk(z_tilde, y, quantize, Arithmetic.FLOAT)
        z_likelihoods = self.entropy_bottleneck.likelihood(z_tilde)
        y_likelihoods = self.merge(likelihoods, y.shape[-2:])
        return LatentForward(y_hat, {"y": y_likelihoods, "z": z_likelihoods})

    # -- bitstreams -----------------------------------------------------------------
    @torch.no_grad()
    def decide(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> Decision:
        """The encoder's decisions for y (1, M, h, w) and z (``side``, default h_a(y))."""
        coding = self.y_coding(quantizer)
        z_symbols = self.side_symbols(y, side)
        parts: list[PartDecision] = []

        def quantize(residual: Tensor, scales: Tensor) -> Tensor:
            quantized = quantizer.search(residual, scales, lambda_t, coding.rate)
            parts.append(PartDecision(quantized, scales))
            return levels(quantizer, quantized)

        z_hat = self.entropy_bottleneck.dequantize(z_symbols)
        y_hat = self.walk(z_hat, y, quantize, Arithmetic.EXACT)
        return self.decision(z_symbols, parts, y_hat, coding)

    def decision(
        self, z_symbols: Tensor, parts: list[PartDecision], y_hat: Tensor, coding: GaussianCoding
    ) -> Decision:
        """The decisions with their code length under the integer tables."""
        bits = self.z_coding().bits(z_symbols).sum()
        bits += sum(coding.bits(part.quantized, part.scales).sum() for part in parts)
        return Decision(z_symbols, parts, LatentQuantized(y_hat, float(bits)))

    def quantize(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentQuantized:
        return self.decide(y, quantizer, lambda_t, side).result

    def compress(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentCompressed:
        """Any y and z (``side``, default h_a(y)) give a valid file for the unchanged decoder."""
        decision = self.decide(y, quantizer, lambda_t, side)
        coding = self.y_coding(quantizer)
        encoder = SymbolEncoder(coding.tables)
        for part in decision.parts:
            coding.encode_to(encoder, part.quantized, part.scales)
        streams = (self.z_coding().encode(decision.z_symbols), encoder.finish())
        k = self.merge([part.quantized.k for part in decision.parts], y.shape[-2:])
        result = decision.result
        return LatentCompressed(result.y_hat, result.estimated_bits, streams,
                                symbols_crc(decision.z_symbols, k))

    @torch.no_grad()
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        """The parts in lockstep: decode each with the rows its exact scales select."""
        if not (exact or self.reads_float_files):
            raise ValueError(f"{type(self).__name__} files exist only in the portable format")
        z_stream, y_stream = streams
        z_symbols = self.decode_side(z_stream, latent_shape)
        coding = self.y_coding(quantizer)
        decoder = SymbolDecoder(y_stream, coding.tables)
        indices: list[Tensor] = []

        def quantize(residual: None, scales: Tensor) -> Tensor:
            quantized = coding.decode_from(decoder, scales)
            indices.append(quantized.k)
            return levels(quantizer, quantized)

        z_hat = self.entropy_bottleneck.dequantize(z_symbols)
        arithmetic = Arithmetic.EXACT if exact else Arithmetic.FLOAT
        y_hat = self.walk(z_hat, None, quantize, arithmetic)
        self.check_symbols(checksum, z_symbols, self.merge(indices, latent_shape))
        return y_hat


class MeanScaleHyperprior(Hyperprior):
    """Minnen, Balle, Toderici 2018 without the context model (CompressAI's mbt2018-mean):
    a Gaussian (means, scales) for every y element from h_s; y is one part.

    Portability: the scales, which select every table row and trellis state,
    come from h_s in integer arithmetic (only its scale channels computed); the
    means stay float by design: they only shift the reconstruction (by a last
    bit across machines), never a row. So this codec's ``arithmetic`` is its
    scales'. Format-1 files used the float scales (``exact=False``).

    Args:
        config: the model's config (N hyper channels, M latent channels, quantizer steps).
    """

    reads_float_files = True

    def __init__(self, config, hyper_transforms: Callable | None = None) -> None:
        super().__init__(config, hyper_transforms)
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

    def hyper_parameters(self, z_hat: Tensor, arithmetic: Arithmetic) -> tuple[Tensor, Tensor]:
        """Means and scales of y from z_hat: float, or the float means with the exact
        scales (STRAIGHT: with the float scales' gradients)."""
        if arithmetic is Arithmetic.FLOAT:
            return self.entropy_parameters(z_hat)
        if arithmetic is Arithmetic.EXACT:
            return self.decoded_means(z_hat), self.exact_scales(z_hat)
        means, scales = self.entropy_parameters(z_hat)
        with torch.no_grad():
            exact = self.exact_scales(z_hat)
        return means, exact + (scales - scales.detach())

    def walk(
        self, z_hat: Tensor, y: Tensor | None, quantize: PartQuantizer, arithmetic: Arithmetic
    ) -> Tensor:
        """One part: all of y."""
        means, scales = self.hyper_parameters(z_hat, arithmetic)
        return means + quantize(None if y is None else y - means, scales)

    def merge(self, parts: list[Tensor], shape: tuple[int, int]) -> Tensor:
        (whole,) = parts
        return whole
