"""Coding the symbols of the hyper-latents z with the factorized prior's tables.

One step, one table row per channel: the values are grouped by channel
(channel-major order of the (1, C, h, w) symbols, see the container's docstring).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.tables import PmfTables


class FactorizedCoding:
    """The z coder: integer symbols (1, C, h, w) with one table row per channel."""

    def __init__(self, tables: PmfTables):
        self.tables = tables

    @staticmethod
    def _rows(shape: torch.Size | tuple[int, ...]) -> np.ndarray:
        channels = np.arange(shape[1]).reshape(1, -1, 1, 1)
        return np.broadcast_to(channels, shape).ravel().copy()

    def encode(self, symbols: Tensor) -> bytes:
        encoder = SymbolEncoder(self.tables)
        encoder.encode_step(symbols.numpy().ravel(), self._rows(symbols.shape))
        return encoder.finish()

    def decode(self, stream: bytes, shape: torch.Size | tuple[int, ...]) -> Tensor:
        """The z stream -> symbols of ``shape`` (1, C, h, w), int64."""
        values = SymbolDecoder(stream, self.tables).decode_step(self._rows(shape))
        return torch.from_numpy(values).view(shape)

    def bits(self, symbols: Tensor) -> Tensor:
        """Code length of every symbol (flattened), float64."""
        rows = torch.from_numpy(self._rows(symbols.shape))
        return self.tables.bits(rows, symbols.ravel())
