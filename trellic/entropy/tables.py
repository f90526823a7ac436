"""Integer pmf tables: the only probabilities the arithmetic coder ever sees.

A table set holds T rows. Row t codes integer values ``offset[t] .. offset[t] +
length[t] - 2`` as symbols ``0 .. length[t] - 2``; the last symbol
``length[t] - 1`` is the *escape*: a value outside the row's range is coded as
escape followed by an Elias-gamma-like payload (see :func:`escape_payload`), so
every integer round-trips. Frequencies are integers summing to
``2**PRECISION`` with every symbol >= 1, built once (``update()``) and shipped
with the weights, so encoder and decoder use identical tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

PRECISION = 16
TOTAL = 1 << PRECISION
# Escape payload: a 5-bit exponent b (0..MAX_ESCAPE_EXPONENT), b mantissa bits, one side bit.
EXPONENT_SYMBOLS = 32
MAX_ESCAPE_EXPONENT = 24


@dataclass(frozen=True)
class PmfTables:
    """Integer frequency rows.

    Shapes: freqs (T, W) int64 (zero-padded), lengths (T,), offsets (T,).
    """

    freqs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.lengths.shape[0])

    @classmethod
    def from_probabilities(
        cls, pmf: np.ndarray, lengths: np.ndarray, offsets: np.ndarray
    ) -> PmfTables:
        """Quantize float rows to integer frequencies.

        Args:
            pmf: (T, W) probabilities of the in-range symbols (entries past
                ``lengths[t]`` ignored); the escape gets the missing mass.
            lengths: (T,) number of in-range symbols per row (escape excluded).
            offsets: (T,) value of symbol 0 per row.
        """
        pmf = np.asarray(pmf, dtype=np.float64)
        rows, width = pmf.shape
        lengths = np.asarray(lengths, dtype=np.int64)
        freqs = np.zeros((rows, width + 1), dtype=np.int64)
        for t in range(rows):
            n = int(lengths[t])
            p = np.clip(pmf[t, :n], 0.0, 1.0)
            p = np.append(p, max(1.0 - p.sum(), 0.0))  # escape mass
            f = np.floor(p * (TOTAL - (n + 1))).astype(np.int64) + 1
            f[int(np.argmax(p))] += TOTAL - int(f.sum())
            freqs[t, : n + 1] = f
        return cls(freqs, lengths + 1, np.asarray(offsets, dtype=np.int64))

    def to_tensors(self, prefix: str) -> dict[str, Tensor]:
        return {
            f"{prefix}.freqs": torch.from_numpy(self.freqs.astype(np.int32)),
            f"{prefix}.lengths": torch.from_numpy(self.lengths.astype(np.int32)),
            f"{prefix}.offsets": torch.from_numpy(self.offsets.astype(np.int32)),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], prefix: str) -> PmfTables:
        """Tables read from a weights file, checked as the coder and decoder use them.

        Every row's mass lies in its first ``length`` symbols, each of them codable
        (frequency >= 1), and sums to 2^PRECISION: the coder uses ``freqs[row, :length]``
        and the decoder's information budget prices the same rows, so a file the
        encoder writes is a file the decoder reads.

        Raises:
            ValueError: non-integer tensors, shapes, lengths or rows that break this.
        """
        parts = {name: tensors[f"{prefix}.{name}"] for name in ("freqs", "lengths", "offsets")}
        floating = [name for name, t in parts.items() if t.is_floating_point() or t.is_complex()]
        if floating:
            raise ValueError(f"table {prefix}.{floating[0]} is {parts[floating[0]].dtype}, "
                             "expected integers")
        freqs, lengths, offsets = (parts[n].numpy().astype(np.int64) for n in parts)
        if freqs.ndim != 2 or lengths.shape != offsets.shape or lengths.shape[0] != freqs.shape[0]:
            raise ValueError(f"inconsistent table shapes for {prefix}")
        if (lengths < 2).any() or (lengths > freqs.shape[1]).any():
            raise ValueError(f"invalid table lengths for {prefix}")
        inside = np.arange(freqs.shape[1])[None, :] < lengths[:, None]
        bad_rows = np.flatnonzero(((freqs < 1) & inside).any(axis=1))
        if bad_rows.size:
            raise ValueError(f"table row {bad_rows[0]} of {prefix} has a symbol of frequency "
                             "below 1 within its length")
        bad_rows = np.flatnonzero(((freqs != 0) & ~inside).any(axis=1))
        if bad_rows.size:
            raise ValueError(f"table row {bad_rows[0]} of {prefix} has mass past its length")
        if not (freqs.sum(axis=1) == TOTAL).all():
            raise ValueError(f"table rows of {prefix} do not sum to 2**{PRECISION}")
        return cls(freqs, lengths, offsets)

    def symbols(self, rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map values to symbols; returns (symbols, escaped mask)."""
        s = values - self.offsets[rows]
        escaped = (s < 0) | (s >= self.lengths[rows] - 1)
        return np.where(escaped, self.lengths[rows] - 1, s), escaped

    def bits(self, rows: Tensor, values: Tensor) -> Tensor:
        """Exact code length in bits of each value in its row, escape payload included.

        Hot path of the Viterbi (one call per quantizer and block): one gather
        for every value, the escape payload only where a value escapes. The tables
        follow the device of ``rows`` (a GPU search prices on the GPU); the values are
        the same float64 numbers on every device.
        """
        log_flat, lengths, offsets = self._torch_tables(rows.device)
        row_lengths = lengths[rows]
        s = values - offsets[rows]
        escaped = (s < 0) | (s >= row_lengths - 1)
        symbol = torch.where(escaped, row_lengths - 1, s)
        bits = log_flat.take(rows * self.freqs.shape[1] + symbol)
        if escaped.any():
            s_out, top = s[escaped], row_lengths[escaped] - 1
            distance = torch.where(s_out < 0, -s_out - 1, s_out - top)
            bits[escaped] += escape_payload_bits(distance)
        return bits

    def _torch_tables(
        self, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(flattened -log2 p table, lengths, offsets) as tensors on ``device``, built once
        per device (computed on the CPU in float64, then copied: the same values anywhere)."""
        device = torch.device(device)
        caches = getattr(self, "_torch_cache", None)
        if caches is None:
            caches = {}
            object.__setattr__(self, "_torch_cache", caches)
        cached = caches.get(device)
        if cached is None:
            base = caches.get(torch.device("cpu"))
            if base is None:
                with np.errstate(divide="ignore"):
                    table = PRECISION - np.log2(np.maximum(self.freqs, 1))
                base = (
                    torch.from_numpy(table.ravel()),
                    torch.from_numpy(self.lengths),
                    torch.from_numpy(self.offsets),
                )
                caches[torch.device("cpu")] = base
            cached = base if device.type == "cpu" else tuple(t.to(device) for t in base)
            caches[device] = cached
        return cached


def escape_payload_bits(distance: Tensor) -> Tensor:
    """Bits of the escape payload for a non-negative distance beyond the row's range."""
    exponent = torch.floor(torch.log2((distance + 1).double()))
    return np.log2(EXPONENT_SYMBOLS) + exponent + 1.0
