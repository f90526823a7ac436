"""Gaussian conditional for y: scale levels, coding tables, table-based rate.

The hyper-decoder predicts a scale per latent. Coding snaps it to one of L
log-spaced *scale levels* (the first level >= the scale) and codes the index k
with the integer table of (quantizer id, scale level). The pmf of a table row
is N(0, level) integrated over each level's decision interval of that
quantizer (the quantizer defines the intervals, see ``Quantizer.pmf``). USQ has
one quantizer, TCQ two (Q0, Q1): row = qid * L + level. The rate of such rows
(:class:`RowRate`) serves any level, e.g. a factorized prior's channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from trellic.entropy.tables import PmfTables
from trellic.ops import lower_bound
from trellic.quant.base import Quantizer

SCALE_MIN = 0.11
SCALE_MAX = 64.0
NUM_SCALES = 64
TAIL_SIGMAS = 5.0


def default_scale_table() -> Tensor:
    """(L,) log-spaced scale levels from SCALE_MIN to SCALE_MAX (CompressAI's recipe)."""
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), NUM_SCALES))


def bound_scales(scales: Tensor) -> Tensor:
    """Lower-bound predicted scales (gradient still lifts too-small scales)."""
    return lower_bound(scales, SCALE_MIN)


def scale_levels(scales: Tensor, scale_table: Tensor) -> Tensor:
    """Index of the first scale level >= scale, clamped to the table (int64, same shape)."""
    index = torch.bucketize(scales.float().contiguous(), scale_table.float())
    return index.clamp_(0, scale_table.numel() - 1)


def table_rows(qid: Tensor | int, levels: Tensor, num_levels: int) -> Tensor:
    """The table row of each element: quantizer id * L + scale level (shapes broadcast)."""
    return qid * num_levels + levels


def build_gaussian_tables(quantizer: Quantizer, scale_table: Tensor) -> PmfTables:
    """Integer tables for every (quantizer id, scale level) of this quantizer."""
    levels = scale_table.double()
    one = torch.ones((), dtype=torch.long)
    spacing = float(quantizer.level(2 * one, 0) - quantizer.level(one, 0))
    half_widths = torch.ceil(TAIL_SIGMAS * levels / spacing).long() + 1
    width = 2 * int(half_widths.max()) + 1
    grid = torch.arange(width, dtype=torch.long) - int(half_widths.max())
    rows, lengths, offsets = [], [], []
    for qid in range(quantizer.num_quantizers):
        pmf = quantizer.pmf(qid, levels.view(-1, 1), grid.view(1, -1)).double()
        for level, half in enumerate(half_widths.tolist()):
            start = int(half_widths.max()) - half
            row = np.zeros(width)
            row[: 2 * half + 1] = pmf[level, start : start + 2 * half + 1].numpy()
            rows.append(row)
            lengths.append(2 * half + 1)
            offsets.append(-half)
    return PmfTables.from_probabilities(np.stack(rows), np.array(lengths), np.array(offsets))


class RowRate:
    """RateModel for the Viterbi: exact code lengths from integer tables whose rows are
    (quantizer id, level), row = qid * ``num_levels`` + level.

    Args:
        tables: the integer tables.
        levels: the row selector: what the search calls an element's scale -> its level
            (int64, same shape): a Gaussian scale's level, or a factorized prior's channel.
        num_levels: levels per quantizer id.
    """

    def __init__(self, tables: PmfTables, levels: Callable[[Tensor], Tensor], num_levels: int):
        self.tables = tables
        self.levels = levels
        self.num_levels = num_levels

    def rows(self, qid: int | Tensor, scales: Tensor) -> Tensor:
        return table_rows(qid, self.levels(scales), self.num_levels)

    def bits(self, k: Tensor, qid: int, scales: Tensor) -> Tensor:
        k, scales = torch.broadcast_tensors(k, scales)
        return self.tables.bits(self.rows(qid, scales), k).to(torch.float64)


class TableRate(RowRate):
    """The Gaussian tables' :class:`RowRate`: an element's level is its scale's in
    ``scale_table``."""

    def __init__(self, tables: PmfTables, scale_table: Tensor):
        super().__init__(tables, partial(scale_levels, scale_table=scale_table),
                         scale_table.numel())
        self.scale_table = scale_table
