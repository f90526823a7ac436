"""Rate-distortion Viterbi search over a trellis of scalar quantizers.

Minimises, independently for every sequence, ``sum_t (r_t - r_hat_t)^2 +
lambda_t * bits_t`` over the index paths that the trellis allows (start in
state 0, any end state). Candidates at each step, for each quantizer q: the
level of q at or below r, the one above, and index 0 (the first two have
opposite parities, so they are kept as the even and the odd candidate).

Since the next state only depends on the parity of k, the search first keeps,
for every (step, quantizer, parity), the cheapest candidate: that is the
branch metric, computed for all steps at once. The loop over time then only
does add-compare-select over the 2 * num_states branches, vectorised over all
sequences and states; each state is entered by exactly two branches, so the
backpointer is one bool per (step, state, sequence). Ties go to the
lower-numbered branch (then the lower state at the end): the result is
deterministic and, up to float rounding of equal costs, optimal.

Tensors are laid out time-major with the sequences last, (T, ..., S), so that
every step of the loop reads and writes contiguous rows.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from trellic.quant.trellis import Trellis

BLOCK_ELEMENTS = 1 << 17


class RateModel(Protocol):
    """Code length of quantization indices, as the trellis search sees it."""

    def bits(self, k: Tensor, qid: int, scales: Tensor) -> Tensor:
        """Bits to code integer index ``k`` with quantizer ``qid`` at Gaussian scale ``scales``.

        ``k`` and ``scales`` broadcast elementwise; the result has their broadcast shape.
        """
        ...


class Quantizer(Protocol):
    """What the search needs of a quantizer (:class:`trellic.quant.base.Quantizer` has it)."""

    trellis: Trellis
    delta: float

    @property
    def num_quantizers(self) -> int: ...

    def level_units(self, k: Tensor, qid: Tensor | int) -> Tensor: ...

    def index_below(self, r: Tensor, qid: Tensor | int) -> Tensor: ...


def candidates(quantizer: Quantizer, r: Tensor, qid: int) -> Tensor:
    """Candidate indices of quantizer qid: the even and the odd neighbour of r, and zero.

    The neighbours are the levels at or below r and above r, which have
    consecutive indices, hence one even and one odd.

    Args:
        r: (T, S) residuals.

    Returns:
        (3, T, S) int64: even, odd, zero.
    """
    below = quantizer.index_below(r, qid)
    return torch.stack([(below + 1) & -2, below | 1, torch.zeros_like(below)])


def branch_metrics(
    quantizer: Quantizer, r: Tensor, scales: Tensor, lambda_t: float, rate: RateModel
) -> tuple[Tensor, Tensor]:
    """Cheapest candidate per (quantizer, parity) and its cost.

    The odd branch has one candidate; the even branch takes zero only if it is
    strictly cheaper than the even neighbour of r.

    Args:
        r: (T, S) residuals; the search runs in r's dtype.
        scales: (T, S) Gaussian scales.

    Returns:
        (cost, k), both (T, 2 * Q, S) indexed [t, 2 * q + parity, s]: cost in
        r's dtype, k int64.
    """
    costs, indices = [], []
    for q in range(quantizer.num_quantizers):
        k = candidates(quantizer, r, q)
        error = quantizer.level_units(k.to(r.dtype), q).mul_(quantizer.delta).sub_(r)
        cost = error.square()
        if lambda_t != 0.0:
            cost.add_(rate.bits(k, q, scales).to(r.dtype), alpha=lambda_t)
        keep_even = cost[0] <= cost[2]
        costs += [torch.minimum(cost[0], cost[2]), cost[1]]
        indices += [k[0] * keep_even, k[1]]
    return torch.stack(costs, dim=1), torch.stack(indices, dim=1)


def viterbi_search(
    quantizer: Quantizer, r: Tensor, scales: Tensor, lambda_t: float, rate: RateModel
) -> tuple[Tensor, Tensor, Tensor]:
    """Best index path of every sequence, its quantizer ids and its cost.

    Sequences are searched in blocks of about BLOCK_ELEMENTS elements: the
    temporaries stay in cache and memory stays bounded for large images.

    Args:
        quantizer: supplies the trellis, levels and candidate indices.
        r: (S, T) residuals, one sequence per row.
        scales: (S, T) Gaussian scales.
        lambda_t: weight of the bits against squared error.
        rate: code length model.

    Returns:
        (k, qid, cost): (S, T) int64 indices, (S, T) int64 quantizer ids along
        the path (the states' quantizers, as the decoder replays them) and (S,)
        the sum of squared error plus lambda_t * bits, in r's dtype.
    """
    block = max(1, BLOCK_ELEMENTS // max(1, r.shape[1]))
    results = [
        search_block(quantizer, r_block, s_block, lambda_t, rate)
        for r_block, s_block in zip(r.split(block), scales.split(block), strict=True)
    ]
    return tuple(torch.cat(parts) for parts in zip(*results, strict=True))


def search_block(
    quantizer: Quantizer, r: Tensor, scales: Tensor, lambda_t: float, rate: RateModel
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`viterbi_search` on one block of sequences."""
    trellis = quantizer.trellis
    num_seq, num_steps = r.shape
    cost, best_k = branch_metrics(
        quantizer, r.t().contiguous(), scales.t().contiguous(), lambda_t, rate
    )
    # Branch e = 2 * state + parity enters state j for e in incoming[j]; it costs
    # the best candidate of (quantizer of its state, its parity), row 2 * q + parity.
    incoming = trellis.incoming_edges().to(r.device)  # (N, 2)
    qtab = trellis.quantizer_table().to(r.device)
    row = 2 * qtab[incoming // 2] + incoming % 2  # (N, 2)
    metric_a = cost.index_select(1, row[:, 0])  # (T, N, S)
    metric_b = cost.index_select(1, row[:, 1])
    from_a, from_b = incoming[:, 0] // 2, incoming[:, 1] // 2

    path = torch.full((trellis.num_states, num_seq), torch.inf, dtype=r.dtype, device=r.device)
    path[0] = 0.0
    took_b = torch.empty(num_steps, trellis.num_states, num_seq, dtype=torch.bool, device=r.device)
    for t in range(num_steps):
        a = path.index_select(0, from_a).add_(metric_a[t])
        b = path.index_select(0, from_b).add_(metric_b[t])
        torch.lt(b, a, out=took_b[t])
        path = torch.minimum(a, b)

    seq = torch.arange(num_seq, device=r.device)
    best_cost, state = path.min(dim=0)
    k = torch.empty(num_steps, num_seq, dtype=torch.long, device=r.device)
    qid = torch.empty_like(k)
    for t in range(num_steps - 1, -1, -1):
        branch = 2 * state + took_b[t].flatten().take(state * num_seq + seq)
        k[t] = best_k[t].flatten().take(row.flatten()[branch] * num_seq + seq)
        state = incoming.flatten()[branch] // 2  # the state that coded position t
        qid[t] = qtab[state]
    return k.t(), qid.t(), best_cost
