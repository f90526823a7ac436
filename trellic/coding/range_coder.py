"""Range coding of integer values with per-value table rows (constriction backend).

Values are coded in *steps*. Within one step the encoder codes the values
grouped by table row (rows ascending, positions ascending inside a row), then
the escape payloads of that step in position order. The decoder knows every
row of a step before decoding it (rows come from the hyperprior and, for TCQ,
from the trellis states reached by earlier steps), so it replays the same
order. USQ and z use one step for all values; TCQ uses one step per trellis
position (lockstep over all sequences).

constriction's ``RangeEncoder`` is a queue: symbols decode in the order they
were encoded. Its ``Categorical`` models are built from our integer
frequencies (exact in float64) with ``perfect=False``, a deterministic function
of those integers.

Decoding treats the data as hostile. constriction decodes past the end of its
data (as if padded with zeros) and asserts on states no encoder can reach; the
decoder therefore turns coder failures into :class:`TrellicError` and keeps an
*information budget*: the symbols it decodes cost ``-log2 p`` bits each under
the integer tables (escape payloads their exact bits), and their sum can never
exceed the stream's bits by more than the coder's 64-bit final state, which
constriction may leave implicit (trailing zero words are dropped; measured
excess at most 62 bits over 3000 random streams). A stream too short for the
symbols decoded from it, such as a header that claims a large image in front
of tiny streams, fails at the step that overdraws, before the expensive
synthesis runs. The budget is 1.01 * stream bits + 128: twice the state, and
1 % for constriction's 24-bit requantization of the 16-bit tables (at most
0.4 % for any symbol).
"""

from __future__ import annotations

import constriction
import numpy as np

from trellic.entropy.tables import EXPONENT_SYMBOLS, MAX_ESCAPE_EXPONENT, PRECISION, PmfTables
from trellic.errors import TrellicError

# constriction's submodules are attributes of its extension module, not importable packages.
cmodel = constriction.stream.model
cqueue = constriction.stream.queue

BUDGET_SLACK = (1.01, 128.0)  # allowed bits = 1.01 * stream bits + 128
ESCAPE_MIN_BITS = np.log2(EXPONENT_SYMBOLS) + 1  # exponent and side, no mantissa bits
# What constriction raises on data no encoder wrote (an assertion, not a ValueError).
_CODER_ERRORS = (AssertionError, ValueError, RuntimeError, OverflowError)


class _Models:
    """Lazily built constriction models, one per table row."""

    def __init__(self, tables: PmfTables):
        self.tables = tables
        self._rows: dict[int, cmodel.Categorical] = {}
        self.exponent = cmodel.Uniform(EXPONENT_SYMBOLS)
        self.side = cmodel.Uniform(2)

    def row(self, row: int) -> cmodel.Categorical:
        found = self._rows.get(row)
        if found is None:
            freqs = self.tables.freqs[row, : self.tables.lengths[row]].astype(np.float64)
            found = cmodel.Categorical(freqs, perfect=False)
            self._rows[row] = found
        return found


def _groups(rows: np.ndarray):
    """(row, positions) pairs in ascending row order, positions ascending."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    bounds = np.flatnonzero(np.diff(sorted_rows)) + 1
    for part in np.split(order, bounds):
        if part.size:
            yield int(rows[part[0]]), part


class SymbolEncoder:
    """Encodes steps of (values, rows) into one range-coded byte string."""

    def __init__(self, tables: PmfTables):
        self.models = _Models(tables)
        self.encoder = cqueue.RangeEncoder()

    def encode_step(self, values: np.ndarray, rows: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.int64).ravel()
        rows = np.asarray(rows, dtype=np.int64).ravel()
        tables = self.models.tables
        symbols, escaped = tables.symbols(rows, values)
        symbols = symbols.astype(np.int32)
        for row, positions in _groups(rows):
            self.encoder.encode(symbols[positions], self.models.row(row))
        for position in np.flatnonzero(escaped):
            self._encode_escape(int(values[position]), int(rows[position]))

    def _encode_escape(self, value: int, row: int) -> None:
        tables = self.models.tables
        low = int(tables.offsets[row])
        high = low + int(tables.lengths[row]) - 2
        side, distance = (1, low - 1 - value) if value < low else (0, value - high - 1)
        exponent = (distance + 1).bit_length() - 1
        if exponent > MAX_ESCAPE_EXPONENT:
            raise TrellicError(f"latent value {value} is too large to code")
        self.encoder.encode(exponent, self.models.exponent)
        if exponent:
            self.encoder.encode(distance + 1 - (1 << exponent), cmodel.Uniform(1 << exponent))
        self.encoder.encode(side, self.models.side)

    def finish(self) -> bytes:
        return self.encoder.get_compressed().tobytes()


class SymbolDecoder:
    """Decodes the steps written by :class:`SymbolEncoder`, in the same order.

    Raises :class:`TrellicError` as soon as the data is shown corrupt: invalid
    coder states, escape payloads out of range, or an overdrawn information
    budget (see the module docstring).
    """

    def __init__(self, data: bytes, tables: PmfTables):
        if len(data) % 4:
            raise TrellicError("corrupt bitstream: coded section is not a whole number of words")
        self.models = _Models(tables)
        self.decoder = cqueue.RangeDecoder(np.frombuffer(data, dtype=np.uint32).copy())
        with np.errstate(divide="ignore"):
            self.symbol_bits = PRECISION - np.log2(np.maximum(tables.freqs, 1))
        self.cheapest = self.symbol_bits.min(axis=1)  # the most probable symbol of each row
        self.budget = BUDGET_SLACK[0] * 8 * len(data) + BUDGET_SLACK[1]
        self.spent = 0.0

    def decode_step(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).ravel()
        tables = self.models.tables
        self._require(float(self.cheapest[rows].sum()))  # fail before decoding what cannot fit
        symbols = np.empty(rows.shape, dtype=np.int64)
        for row, positions in _groups(rows):
            symbols[positions] = self._decode(self.models.row(row), positions.size)
        escaped = np.flatnonzero(symbols == tables.lengths[rows] - 1)
        self._spend(float(self.symbol_bits[rows, symbols].sum()) + ESCAPE_MIN_BITS * escaped.size)
        values = symbols + tables.offsets[rows]
        for position in escaped:
            values[position] = self._decode_escape(int(rows[position]))
        return values

    def _require(self, bits: float) -> None:
        if self.spent + bits > self.budget:
            raise TrellicError("corrupt bitstream: coded section too short for the image it claims")

    def _spend(self, bits: float) -> None:
        self._require(bits)
        self.spent += bits

    def _decode(self, model, *count: int):
        try:
            return self.decoder.decode(model, *count)
        except _CODER_ERRORS:
            raise TrellicError("corrupt bitstream: invalid range-coded data") from None

    def _decode_escape(self, row: int) -> int:
        tables = self.models.tables
        exponent = int(self._decode(self.models.exponent))
        if exponent > MAX_ESCAPE_EXPONENT:
            raise TrellicError("corrupt bitstream: escape value out of range")
        self._spend(exponent)
        mantissa = int(self._decode(cmodel.Uniform(1 << exponent))) if exponent else 0
        distance = (1 << exponent) + mantissa - 1
        low = int(tables.offsets[row])
        high = low + int(tables.lengths[row]) - 2
        return low - 1 - distance if int(self._decode(self.models.side)) else high + 1 + distance
