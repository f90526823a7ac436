"""CompressAI's coding tables (``_offset``, ``_quantized_cdf``, ``_cdf_length``), recomputed.

An exported checkpoint carries the tables CompressAI's ``update()`` would
store, so that ``load_state_dict(strict=True)`` accepts it and the model codes
at once. They are computed as CompressAI 1.2.8 computes them, step for step
and in the same float32 torch operations (``compressai/entropy_models/
entropy_models.py``: ``EntropyBottleneck.update``, ``GaussianConditional.update``,
``EntropyModel._pmf_to_cdf``), with its C++ ``pmf_to_quantized_cdf``
(``compressai/cpp_exts/ops/ops.cpp``) reimplemented in numpy: 16-bit
frequencies ``round(p * 2**16)`` (half away from zero, in float32), rescaled
to the total with integer division, accumulated, the last entry set to 2**16,
then every zero frequency given one count stolen from the smallest frequency
above 1 (the first such, scanning from the start).

Equal bits need equal floats: on the machine and torch build that made
CompressAI's own tables the result is identical (tests/test_compressai_export.py
compares the fixtures' stored tables); elsewhere a pmf value at a rounding
boundary may land on the other side. CompressAI's ``net.update(force=True)``
rebuilds them from the exported parameters in any case.
"""

from __future__ import annotations

import math
import statistics
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

PRECISION = 16  # CompressAI's entropy_coder_precision
TAIL_MASS = 1e-9
# CompressAI's default scale table (compressai.models.base.get_scale_table): 64 levels
# log-spaced from 0.11 to 256.
SCALES_MIN, SCALES_MAX, SCALES_LEVELS = 0.11, 256.0, 64


def pmf_to_quantized_cdf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """A pmf (float32, n values, the last the tail mass) -> its quantized cdf (n + 1 ints,
    0 .. 2**precision, strictly increasing), as CompressAI's C++ ``pmf_to_quantized_cdf``.

    Raises:
        ValueError: a negative or non-finite value, all zero after rounding, or more
            symbols than ``2**precision``.
    """
    pmf = np.asarray(pmf, dtype=np.float32)
    if (pmf < 0).any() or not np.isfinite(pmf).all():
        raise ValueError("pmf has a negative or non-finite value")
    scaled = pmf.astype(np.float64) * float(1 << precision)  # exact: float32 * 2**16
    freq = np.floor(scaled + 0.5).astype(np.int64)  # std::round: half away from zero
    total = int(freq.sum())
    if total == 0:
        raise ValueError("pmf rounds to zero everywhere")
    freq = ((1 << precision) * freq) // total
    cdf = np.concatenate(([0], np.cumsum(freq)))
    cdf[-1] = 1 << precision
    freq = np.diff(cdf)
    for i in np.flatnonzero(freq == 0):  # each zero in turn, as the C++ loop meets them
        candidates = np.where(freq > 1, freq, np.iinfo(np.int64).max)
        steal = int(candidates.argmin())  # the first of the smallest frequencies above 1
        if freq[steal] <= 1:
            raise ValueError("pmf has more symbols than the precision can give a count each")
        freq[steal] -= 1
        freq[i] += 1
    return np.concatenate(([0], np.cumsum(freq)))


def _pmf_to_cdf(pmf: Tensor, tail_mass: Tensor, pmf_length: Tensor, max_length: int) -> Tensor:
    """CompressAI's ``EntropyModel._pmf_to_cdf``: one quantized cdf per row, zero-padded to
    ``max_length + 2`` (int32)."""
    cdf = torch.zeros((len(pmf_length), max_length + 2), dtype=torch.int32)
    for i, p in enumerate(pmf):
        prob = torch.cat((p[: pmf_length[i]], tail_mass[i]), dim=0)
        row = pmf_to_quantized_cdf(prob.numpy())
        cdf[i, : len(row)] = torch.from_numpy(row.astype(np.int32))
    return cdf


def _logits_cumulative(inputs: Tensor, matrices, biases, factors) -> Tensor:
    """CompressAI's ``EntropyBottleneck._logits_cumulative``: (C, 1, L) -> (C, 1, L)."""
    logits = inputs
    for i, matrix in enumerate(matrices):
        logits = torch.matmul(F.softplus(matrix), logits)
        logits = logits + biases[i]
        if i < len(factors):
            logits = logits + torch.tanh(factors[i]) * torch.tanh(logits)
    return logits


@torch.no_grad()
def bottleneck_tables(
    quantiles: Tensor, matrices: list[Tensor], biases: list[Tensor], factors: list[Tensor]
) -> dict[str, Tensor]:
    """An entropy bottleneck's tables from its parameters (CompressAI's names, float32):
    quantiles (C, 1, 3), matrices[i] (C, f_{i+1}, f_i), biases[i] (C, f_{i+1}, 1),
    factors[i] (C, f_{i+1}, 1) -> ``_offset`` (C,), ``_quantized_cdf`` (C, L + 2),
    ``_cdf_length`` (C,), int32."""
    medians = quantiles[:, 0, 1]
    minima = torch.clamp(torch.ceil(medians - quantiles[:, 0, 0]).int(), min=0)
    maxima = torch.clamp(torch.ceil(quantiles[:, 0, 2] - medians).int(), min=0)
    pmf_start = medians - minima
    pmf_length = maxima + minima + 1
    max_length = int(pmf_length.max().item())
    samples = torch.arange(max_length)[None, :] + pmf_start[:, None, None]
    lower = _logits_cumulative(samples - 0.5, matrices, biases, factors)
    upper = _logits_cumulative(samples + 0.5, matrices, biases, factors)
    pmf = (torch.sigmoid(upper) - torch.sigmoid(lower))[:, 0, :]
    tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
    return {
        "_offset": -minima,
        "_quantized_cdf": _pmf_to_cdf(pmf, tail_mass, pmf_length, max_length),
        "_cdf_length": pmf_length + 2,
    }


def scale_table() -> Tensor:
    """CompressAI's default scale table (64,), float32."""
    return torch.exp(torch.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), SCALES_LEVELS))


def _standardized_cumulative(inputs: Tensor) -> Tensor:
    return 0.5 * torch.erfc(float(-(2**-0.5)) * inputs)


@cache
def _gaussian_tables() -> dict[str, Tensor]:
    table = scale_table()
    # -scipy.stats.norm.ppf(tail / 2) in CompressAI; the same double from the standard library
    multiplier = -statistics.NormalDist().inv_cdf(TAIL_MASS / 2)
    pmf_center = torch.ceil(table * multiplier).int()
    pmf_length = 2 * pmf_center + 1
    max_length = int(torch.max(pmf_length).item())
    samples = torch.abs(torch.arange(max_length).int() - pmf_center[:, None]).float()
    scales = table.unsqueeze(1).float()
    upper = _standardized_cumulative((0.5 - samples) / scales)
    lower = _standardized_cumulative((-0.5 - samples) / scales)
    pmf = upper - lower
    tail_mass = 2 * lower[:, :1]
    return {
        "scale_table": table,
        "_offset": -pmf_center,
        "_quantized_cdf": _pmf_to_cdf(pmf, tail_mass, pmf_length, max_length),
        "_cdf_length": pmf_length + 2,
    }


def gaussian_tables() -> dict[str, Tensor]:
    """A Gaussian conditional's buffers after CompressAI's ``update_scale_table(
    get_scale_table())``: ``scale_table`` (64,) float32, ``_offset`` (64,),
    ``_quantized_cdf`` (64, 3133), ``_cdf_length`` (64,) int32 (fresh copies)."""
    return {key: value.clone() for key, value in _gaussian_tables().items()}
