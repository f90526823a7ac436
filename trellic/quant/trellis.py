"""Trellis state machines and the split of latents into independent sequences.

A trellis is a finite-state machine driven by the parity of the coded index:
in state ``s`` the element is coded with quantizer ``quantizer_of_state[s]``,
and index ``k`` moves the machine to ``next_state[s][k & 1]``. ``k & 1`` on a
(two's complement) int64 is the parity of ``|k|``, so ``-1`` and ``1`` branch
alike. USQ is the 1-state case (one quantizer, both parities loop back).

The scan order is part of the bitstream format (see :mod:`trellic.quant.tcq`):
every row of a (B, M, H, W) latent is one sequence, i.e. ``t.reshape(-1, W)``.
:func:`walk` visits the coding steps of those sequences in the bitstream's
order; it is the one place that replays the states from decoded indices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Trellis:
    """A trellis whose states are each entered by exactly two branches.

    Attributes:
        name: short identifier ("usq", "vvc4", "ecm8").
        next_state: ``next_state[state][k & 1]``, the state after coding index k.
        quantizer_of_state: quantizer id used in each state (ids 0..Q-1).
    """

    name: str
    next_state: tuple[tuple[int, int], ...]
    quantizer_of_state: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.next_state)
        if len(self.quantizer_of_state) != n:
            raise ValueError(f"trellis {self.name}: one quantizer id per state needed")
        if any(not 0 <= s < n for row in self.next_state for s in row):
            raise ValueError(f"trellis {self.name}: next state out of range")
        if sorted(set(self.quantizer_of_state)) != list(range(self.num_quantizers)):
            raise ValueError(f"trellis {self.name}: quantizer ids must be 0..Q-1")
        entered = [sum(row.count(s) for row in self.next_state) for s in range(n)]
        if entered != [2] * n:
            raise ValueError(f"trellis {self.name}: every state must be entered by two branches")

    @property
    def num_states(self) -> int:
        return len(self.next_state)

    @property
    def num_quantizers(self) -> int:
        return max(self.quantizer_of_state) + 1

    def next_state_table(self) -> Tensor:
        """(num_states, 2) int64: next state indexed by [state, k & 1]."""
        return torch.tensor(self.next_state, dtype=torch.long)

    def quantizer_table(self) -> Tensor:
        """(num_states,) int64: quantizer id of each state."""
        return torch.tensor(self.quantizer_of_state, dtype=torch.long)

    def incoming_edges(self) -> Tensor:
        """(num_states, 2) int64: the two branches entering each state.

        A branch is numbered ``2 * from_state + parity``; each row lists the
        branches into that state in increasing order (the Viterbi tie order).
        """
        edges = [[] for _ in range(self.num_states)]
        for s, row in enumerate(self.next_state):
            for parity, dest in enumerate(row):
                edges[dest].append(2 * s + parity)
        return torch.tensor(edges, dtype=torch.long)


USQ_TRELLIS = Trellis("usq", ((0, 0),), (0,))
VVC4 = Trellis("vvc4", ((0, 2), (2, 0), (1, 3), (3, 1)), (0, 0, 1, 1))
ECM8 = Trellis(
    "ecm8",
    ((0, 2), (5, 7), (1, 3), (6, 4), (2, 0), (4, 6), (3, 1), (7, 5)),
    (0, 1, 0, 1, 0, 1, 0, 1),
)


def to_sequences(t: Tensor) -> Tensor:
    """Split latents into the independent coding sequences.

    Args:
        t: (B, M, H, W) latents or indices.

    Returns:
        (B * M * H, W): row ``(b, m, h)`` is one sequence, scanned left to right.
    """
    return t.flatten(0, -2)


def from_sequences(s: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of :func:`to_sequences`: (S, W) back to ``shape`` (B, M, H, W)."""
    return s.reshape(shape)


CodingStep = Callable[[slice, Tensor], Tensor]
"""``step(positions, qid) -> k``: codes or decodes the indices at sequence ``positions``.

``qid`` (S, n) holds the quantizer id of each element of those positions; the
step returns their (S, n) int64 indices.
"""


def walk(
    trellis: Trellis,
    shape: tuple[int, int],
    step: CodingStep,
    qid: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Visit the coding steps of (S, T) sequences in the bitstream's order.

    A one-state trellis (USQ) is one step over all positions. Otherwise each
    position is a step (lockstep over all sequences, from state 0), and its
    quantizer ids follow from the parities of the indices before it:
    ``state = next_state[state][k & 1]``. Given ``qid`` (the encoder's: the
    search already knows its path) the ids are passed on as they are; without
    it they are replayed from the indices each step returns (the decoder).

    Args:
        shape: (S, T), sequences and positions.
        step: see :data:`CodingStep`.
        qid: optional (S, T) int64 quantizer ids of the whole path.
        device: where the replayed states live (the indices' device).

    Returns:
        (k, qid), both (S, T) int64.
    """
    num_sequences, num_positions = shape
    if trellis.num_states == 1:
        if qid is None:
            qid = torch.zeros(shape, dtype=torch.long, device=device)
        return step(slice(0, num_positions), qid), qid
    if qid is not None:
        k = [step(slice(t, t + 1), qid[:, t : t + 1]) for t in range(num_positions)]
        return torch.cat(k, dim=1), qid
    next_state = trellis.next_state_table().to(device)
    quantizer_of = trellis.quantizer_table().to(device)
    state = torch.zeros(num_sequences, dtype=torch.long, device=device)
    k, ids = [], []
    for t in range(num_positions):
        ids.append(quantizer_of[state].unsqueeze(1))
        k.append(step(slice(t, t + 1), ids[-1]))
        state = next_state[state, k[-1][:, 0] & 1]
    return torch.cat(k, dim=1), torch.cat(ids, dim=1)
