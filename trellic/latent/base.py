"""The latent-codec contract: y -> streams -> y_hat, for any quantizer.

A model is ``g_a -> latent codec -> g_s`` (CompressAI's ``latent_codecs``
idea). The latent codec owns everything between the transforms: its entropy
parameters (hyper-networks, priors), its integer coding tables, the coding
order of its streams and the decoder's replay. The quantizer is a parameter
of every call, never a mode string: the codec asks it for proxies, searches
and the walk over its coding steps.

    training:    forward(y, quantizer, proxy)     -> y_hat (proxy), likelihoods
    tables:      update()                          (integer tables, built once, shipped)
    encoder:     compress(y, quantizer, lambda_t) -> streams, y_hat, estimated bits
                 quantize(...)                     -> the same decisions, not coded
    decoder:     decompress(streams, latent_shape, quantizer) -> y_hat
    retraining:  forward(y, quantizer, ProxyKind.TRUE) -> the decoder's y_hat and the
                 likelihood of the true indices (a rate to train on)
    refinement:  side_latents(y), relaxed(y, side, rounding) -> a differentiable rate

``compress`` returns y_hat exactly as ``decompress`` will produce it, so the
encoder knows the decoder's reconstruction without decoding.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trellic.coding.bitstream import symbols_crc
from trellic.entropy.tables import PmfTables
from trellic.errors import TrellicError
from trellic.quant.base import ProxyKind, Quantizer
from trellic.quant.registry import QUANTIZERS, make_quantizer, quantizer_spec


@dataclass
class LatentForward:
    """y_hat (B, M, h, w) for g_s, and the likelihood of every coded value by stream name."""

    y_hat: Tensor
    likelihoods: dict[str, Tensor]


@dataclass
class LatentQuantized:
    """The encoder's decisions: the decoder's y_hat (1, M, h, w) and their code length
    under the integer tables."""

    y_hat: Tensor
    estimated_bits: float


@dataclass
class LatentCompressed(LatentQuantized):
    """The decisions and their coded streams (container order: side information, then y),
    with the checksum of the coded symbols (``trellic.coding.bitstream.symbols_crc``)."""

    streams: tuple[bytes, bytes]
    checksum: int


class LatentCodec(nn.Module, abc.ABC):
    """Base of the latent codecs; ``config`` is the model's :class:`ModelConfig`.

    Subclasses set ``downscale``: how many times smaller than y their coarsest
    grid is (the hyperprior's z: 4), so images are padded to
    ``16 * downscale``.
    """

    downscale: int = 1

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.tables: dict[str, PmfTables] = {}

    @abc.abstractmethod
    def forward(
        self,
        y: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> LatentForward:
        """Training pass on y (B, M, h, w) with the quantizer's proxy; ``lambda_t`` for TRUE."""

    @abc.abstractmethod
    def quantize(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentQuantized:
        """What :meth:`compress` would code, without coding it (the true cost of latents)."""

    @abc.abstractmethod
    def compress(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        side: Tensor | None = None,
    ) -> LatentCompressed:
        """Code y (1, M, h, w); ``side``: side latents to code instead of ``side_latents(y)``."""

    @abc.abstractmethod
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        """Streams of a y grid of ``latent_shape`` (h, w) -> y_hat (1, M, h, w).

        ``checksum``: the encoder's checksum of the coded symbols; if given, the
        decoded symbols must match it (a desynchronised decoder raises
        ValueError). ``exact=False``: the float entropy-parameter path of
        format-1 files (exact only on kernels that round like the encoder's).
        """

    @abc.abstractmethod
    def side_latents(self, y: Tensor) -> Tensor:
        """The side latents the encoder derives from y (what ``compress`` codes by default)."""

    @abc.abstractmethod
    def relaxed(
        self, y: Tensor, side: Tensor, rounding: Callable[[Tensor], Tensor]
    ) -> LatentForward:
        """y_hat and likelihoods of (y, side) with ``rounding`` in place of every
        integer rounding (encoder-side optimisation, e.g. stochastic Gumbel annealing)."""

    @abc.abstractmethod
    def build_tables(self) -> dict[str, PmfTables]:
        """The integer coding tables of the current parameters, by name."""

    @abc.abstractmethod
    def table_rows(self) -> dict[str, int]:
        """The row count of every table this codec needs (what a weights file must hold)."""

    @abc.abstractmethod
    def transforms(self) -> list[nn.Module]:
        """Its convolutional networks (mixed precision may run them in bfloat16)."""

    @abc.abstractmethod
    def aux_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by :meth:`aux_loss` alone; they fix the coding grid
        (retraining keeps them)."""

    @abc.abstractmethod
    def aux_loss(self) -> Tensor:
        """The auxiliary loss that fits :meth:`aux_parameters` (the table bounds)."""

    @staticmethod
    def check_symbols(checksum: int | None, *symbols: Tensor) -> None:
        """Raise ValueError if the decoded symbols (side, then y's indices) do not match
        the encoder's checksum."""
        if checksum is not None and symbols_crc(*symbols) != checksum:
            raise ValueError("the decoded symbols fail the integrity check (decoder out of sync)")

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the integer tables (CompressAI's ``update``)."""
        self.tables = self.build_tables()

    def quantizer(self, name: str) -> Quantizer:
        """The registry's quantizer ``name`` with the step this codec's tables code."""
        return make_quantizer(name, getattr(self.config, quantizer_spec(name).step))

    def quantizer_tables(self, quantizer: Quantizer) -> PmfTables:
        """The frozen tables that code this quantizer's indices (checked against its step)."""
        if not self.tables:
            raise RuntimeError("coding tables missing: call update() or load shipped weights")
        delta = self.quantizer(quantizer.kind).delta
        if abs(quantizer.delta - delta) > 1e-9:
            raise ValueError(
                f"this model's {quantizer.kind} tables are for delta {delta}, not {quantizer.delta}"
            )
        family = quantizer_spec(quantizer.kind).tables
        if family not in self.tables:
            raise TrellicError(
                f"these weights hold no {family!r} coding tables, which {quantizer.kind} needs "
                f"(they hold {', '.join(sorted(self.tables))}): rebuild them with update() "
                "and save the model again"
            )
        return self.tables[family]

    def table_problem(self) -> str | None:
        """What is wrong with the tables held (from a weights file), or None.

        A weights file declares the families it holds: each must have this
        codec's row count, and the side information's tables must be there. A
        quantizer's family may be absent (a file written before that quantizer
        existed): using that quantizer is the error, not loading the file.
        """
        expected = self.table_rows()
        optional = {spec.tables for spec in QUANTIZERS.values()}
        missing = sorted(set(expected) - set(self.tables) - optional)
        if missing:
            return f"no {missing[0]!r} coding tables"
        for family, tables in sorted(self.tables.items()):
            if family not in expected:
                return f"coding tables {family!r} that no quantizer of this trellic uses"
            if tables.num_rows != expected[family]:
                return (f"{tables.num_rows} rows in the {family!r} coding tables, "
                        f"expected {expected[family]}")
        return None
