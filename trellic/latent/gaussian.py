"""Coding the indices of y with the Gaussian conditional's integer tables.

Every element's table row is (quantizer id of its trellis state, scale
level), or, for :class:`TableCoding` in general, (quantizer id, the level its
rate's row selector gives, e.g. a factorized prior's channel); the
quantizer's walk fixes the order: USQ codes all indices in one
step, TCQ one step per sequence position, over every sequence at once (see
:func:`trellic.quant.trellis.walk` and the container's docstring). The
encoder passes the quantizer ids its search found; the decoder replays them
from the indices it decodes, through the same walk.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.gaussian import RowRate, TableRate, table_rows
from trellic.entropy.tables import PmfTables
from trellic.quant.base import Quantized, Quantizer


class TableCoding:
    """The y coder of one quantizer: its tables' rows and the quantizer's walk.

    Args:
        rate: the tables and their row selector; also the Viterbi's rate term (the
            coder's exact code lengths).
        quantizer: the quantizer whose indices are coded.
    """

    def __init__(self, rate: RowRate, quantizer: Quantizer):
        self.rate = rate
        self.tables = rate.tables
        self.quantizer = quantizer

    def _levels(self, scales: Tensor) -> Tensor:
        """Row levels as (S, T) sequences."""
        return self.quantizer.scan(self.rate.levels(scales))

    def _rows(self, qid: Tensor, levels: Tensor) -> Tensor:
        return table_rows(qid, levels, self.rate.num_levels)

    def encode(self, quantized: Quantized, scales: Tensor) -> bytes:
        """Indices k with their quantizer ids, and scales, all (1, M, h, w) -> the y stream."""
        encoder = SymbolEncoder(self.tables)
        self.encode_to(encoder, quantized, scales)
        return encoder.finish()

    def encode_to(self, encoder: SymbolEncoder, quantized: Quantized, scales: Tensor) -> None:
        """Code (1, C, h, w) indices into an open encoder (a stream coded in parts, e.g.
        one slice of y after another, each part's scales known only after the last)."""
        k, levels = self.quantizer.scan(quantized.k), self._levels(scales)

        def step(positions: slice, qid: Tensor) -> Tensor:
            rows = self._rows(qid, levels[:, positions])
            encoder.encode_step(k[:, positions].numpy(), rows.numpy())
            return k[:, positions]

        self.quantizer.walk(tuple(k.shape), step, self.quantizer.scan(quantized.qid))

    def decode(self, stream: bytes, scales: Tensor) -> Quantized:
        """The y stream and scales (1, M, h, w) -> indices and quantizer ids (1, M, h, w)."""
        return self.decode_from(SymbolDecoder(stream, self.tables), scales)

    def decode_from(self, decoder: SymbolDecoder, scales: Tensor) -> Quantized:
        """The next (1, C, h, w) indices of an open decoder (the inverse of :meth:`encode_to`)."""
        levels = self._levels(scales)

        def step(positions: slice, qid: Tensor) -> Tensor:
            rows = self._rows(qid, levels[:, positions])
            values = decoder.decode_step(rows.numpy())
            return torch.from_numpy(values).view(levels.shape[0], -1)

        k, qid = self.quantizer.walk(tuple(levels.shape), step)
        shape = scales.shape
        return Quantized(self.quantizer.unscan(k, shape), self.quantizer.unscan(qid, shape))

    def decode_known_states(self, decoder: SymbolDecoder, scales: Tensor, qid: Tensor) -> Tensor:
        """The next indices of an open decoder, each coded with a known quantizer id (one
        step over all of them, as :meth:`encode_to` codes a part whose sequences are one
        position long): (C', h', w') scales and ids -> int64 indices of that shape."""
        rows = self._rows(qid.reshape(-1), self.rate.levels(scales).reshape(-1))
        return torch.from_numpy(decoder.decode_step(rows.numpy())).view(scales.shape)

    def bits(self, quantized: Quantized, scales: Tensor) -> Tensor:
        """Code length of each index under the integer tables, (1, M, h, w) float64."""
        return self.tables.bits(self._rows(quantized.qid, self.rate.levels(scales)), quantized.k)


class GaussianCoding(TableCoding):
    """The y coder of one quantizer with the Gaussian tables: rows (quantizer id, scale level).

    Args:
        tables: the integer tables of the quantizer's (quantizer id, scale level) rows.
        scale_table: (L,) scale levels.
        quantizer: the quantizer whose indices are coded.
    """

    def __init__(self, tables: PmfTables, scale_table: Tensor, quantizer: Quantizer):
        super().__init__(TableRate(tables, scale_table), quantizer)
        self.scale_table = scale_table
