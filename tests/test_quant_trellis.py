"""Trellis tables, their validation, and the split of latents into sequences."""

from __future__ import annotations

import pytest
import torch

from trellic.quant.trellis import (
    ECM8,
    USQ_TRELLIS,
    VVC4,
    Trellis,
    from_sequences,
    to_sequences,
    walk,
)


def test_tables_follow_the_published_state_machines():
    assert VVC4.next_state_table().tolist() == [[0, 2], [2, 0], [1, 3], [3, 1]]
    assert VVC4.quantizer_table().tolist() == [s >> 1 for s in range(4)]
    assert ECM8.next_state_table().shape == (8, 2)
    assert ECM8.quantizer_table().tolist() == [s & 1 for s in range(8)]
    assert (USQ_TRELLIS.num_states, USQ_TRELLIS.num_quantizers) == (1, 1)
    assert (VVC4.num_states, VVC4.num_quantizers) == (4, 2)
    assert (ECM8.num_states, ECM8.num_quantizers) == (8, 2)


@pytest.mark.parametrize("trellis", [USQ_TRELLIS, VVC4, ECM8], ids=lambda t: t.name)
def test_incoming_edges_list_every_branch_once_at_its_destination(trellis):
    incoming = trellis.incoming_edges()
    assert sorted(incoming.flatten().tolist()) == list(range(2 * trellis.num_states))
    for dest, edges in enumerate(incoming.tolist()):
        assert edges == sorted(edges)
        for edge in edges:
            assert trellis.next_state[edge // 2][edge % 2] == dest


def test_parity_of_negative_indices_is_the_parity_of_their_magnitude():
    k = torch.tensor([-4, -3, -2, -1, 0, 1, 2, 3], dtype=torch.long)
    assert (k & 1).tolist() == [abs(v) % 2 for v in k.tolist()]


def test_trellis_where_a_state_is_entered_once_is_rejected():
    with pytest.raises(ValueError, match="two branches"):
        Trellis("bad", ((0, 1), (1, 1)), (0, 1))


def test_sequences_are_the_rows_of_the_latent_scanned_left_to_right():
    t = torch.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    seq = to_sequences(t)
    assert seq.shape == (24, 5)
    assert seq[1 * 12 + 2 * 4 + 3].tolist() == t[1, 2, 3].tolist()
    assert torch.equal(from_sequences(seq, t.shape), t)


@pytest.mark.parametrize("trellis", [USQ_TRELLIS, VVC4, ECM8], ids=lambda t: t.name)
def test_walk_visits_the_coding_steps_in_order_and_replays_the_states(trellis):
    k = torch.randint(-4, 5, (6, 5), generator=torch.Generator().manual_seed(1))
    visited = []

    def step(positions, qid):
        visited.append((positions.start, positions.stop))
        return k[:, positions]

    k_out, qid = walk(trellis, tuple(k.shape), step)
    assert torch.equal(k_out, k)
    steps = [(0, 5)] if trellis.num_states == 1 else [(t, t + 1) for t in range(5)]
    assert visited == steps
    for row_k, row_qid in zip(k.tolist(), qid.tolist(), strict=True):
        state = 0
        for k_t, qid_t in zip(row_k, row_qid, strict=True):
            assert qid_t == trellis.quantizer_of_state[state]
            state = trellis.next_state[state][k_t & 1]
    passed = []
    walk(trellis, tuple(k.shape), lambda p, q: passed.append(q) or k[:, p], qid=qid)
    assert torch.equal(torch.cat(passed, dim=1), qid), "known ids are passed on, not replayed"
