"""TCQ: the Viterbi search is optimal, the decoder replays it, and it beats rounding."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from trellic.quant import GaussianRate, make_quantizer
from trellic.quant.registry import quantizer_names
from trellic.quant.tcq import TCQ_NOISE_WIDTH
from trellic.quant.viterbi import viterbi_search

RD_LAMBDA = 0.1155  # the slope at which DESIGN.md compares TCQ-8 (delta 0.6) with rounding


class ToyRate:
    """A rate that depends on k and on the quantizer, to check that both reach the search."""

    def bits(self, k, qid, scales):
        return 1.0 + 0.7 * k.abs() + 0.3 * qid + 0.0 * scales


def gaussian_residuals(shape, seed):
    """r ~ N(0, s^2) with s log-uniform in [0.11, 20] (the DESIGN.md simulation)."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.empty(shape).uniform_(math.log(0.11), math.log(20.0), generator=g))
    return torch.randn(shape, generator=g) * scales, scales


def python_level(k, qid, num_q, delta):
    return (num_q * k - (k > 0) * qid + (k < 0) * qid) * delta


def python_candidates(r, qid, num_q, delta):
    """Levels of quantizer qid at or below r, above r, and zero, found by scanning."""
    span = int(abs(r) / delta) + 3
    below = max(k for k in range(-span, span + 1) if python_level(k, qid, num_q, delta) <= r)
    return (below, below + 1, 0)


def python_states(trellis, ks):
    state, states = 0, []
    for k in ks:
        states.append(state)
        state = trellis.next_state[state][abs(k) % 2]
    return states


def brute_force(q, r, scales, lambda_t, rate):
    """Minimum cost over every path that picks one candidate of the current state's quantizer."""
    num_q, delta = q.num_quantizers, q.delta

    def step_cost(t, qid, k):
        error = python_level(k, qid, num_q, delta) - r[t]
        bits = rate.bits(torch.tensor(k), qid, torch.tensor(scales[t], dtype=torch.float64))
        return error**2 + lambda_t * float(bits)

    table = {
        (t, qid): [(k, step_cost(t, qid, k)) for k in python_candidates(r[t], qid, num_q, delta)]
        for t in range(len(r))
        for qid in range(num_q)
    }
    best = math.inf
    for choice in itertools.product(range(3), repeat=len(r)):
        state, total = 0, 0.0
        for t, c in enumerate(choice):
            k, cost = table[t, q.trellis.quantizer_of_state[state]][c]
            total += cost
            state = q.trellis.next_state[state][k & 1]
        best = min(best, total)
    return best, table


@pytest.mark.parametrize("kind", quantizer_names())
@pytest.mark.parametrize("num_steps", [5, 6])
@pytest.mark.parametrize("gaussian", [True, False], ids=["gaussian_rate", "toy_rate"])
def test_viterbi_cost_equals_brute_force_minimum(kind, num_steps, gaussian):
    g = torch.Generator().manual_seed(num_steps * 10 + len(kind))
    q = make_quantizer(kind, delta=0.4 + 0.8 * torch.rand(1, generator=g).item())
    rate = GaussianRate(q) if gaussian else ToyRate()
    r, scales = gaussian_residuals((6, num_steps), seed=num_steps)
    r, scales = r.double(), scales.double()
    r[0, 2] = 9.0  # far out in the tail, where index 0 can win
    for lambda_t in (0.05, 0.5 * torch.rand(1, generator=g).item(), 1.0):
        k, qid, cost = viterbi_search(q, r, scales, lambda_t, rate)
        assert torch.equal(qid, q.quantizer_ids(k)), "the search's ids are the decoder's replay"
        for s in range(r.shape[0]):
            best, table = brute_force(q, r[s].tolist(), scales[s].tolist(), lambda_t, rate)
            path = k[s].tolist()
            states = python_states(q.trellis, path)
            path_cost = 0.0
            for t, (k_t, state) in enumerate(zip(path, states, strict=True)):
                options = dict(table[t, q.trellis.quantizer_of_state[state]])
                assert k_t in options, "the path picks a candidate of its state's quantizer"
                path_cost += options[k_t]
            assert path_cost == pytest.approx(best, rel=1e-6)
            assert cost[s].item() == pytest.approx(best, rel=1e-6)


@pytest.mark.parametrize("kind", ["tcq4", "tcq8"])
def test_tcq_dequantize_reproduces_encoder_reconstruction(kind):
    """The decoder's r_hat and states give exactly the cost the encoder's search minimised."""
    q = make_quantizer(kind)
    r, scales = gaussian_residuals((2, 3, 4, 16), seed=1)
    r, scales = r.double(), scales.double()
    k, _, cost = viterbi_search(
        q, r.reshape(-1, 16), scales.reshape(-1, 16), 0.2, GaussianRate(q)
    )
    k = k.reshape(r.shape)
    assert torch.equal(k, q.quantize(r, scales, lambda_t=0.2))
    bits = -torch.log2(q.likelihood(k, scales))
    replayed = ((r - q.dequantize(k)) ** 2 + 0.2 * bits).reshape(-1, 16).sum(dim=1)
    torch.testing.assert_close(replayed, cost, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["tcq4", "tcq8"])
def test_tcq_state_sequence_replays(kind):
    q = make_quantizer(kind)
    k = torch.randint(-5, 6, (2, 2, 3, 7), generator=torch.Generator().manual_seed(3))
    ids = q.quantizer_ids(k)
    r_hat = q.dequantize(k)
    for row_k, row_ids, row_hat in zip(
        k.reshape(-1, 7).tolist(),
        ids.reshape(-1, 7).tolist(),
        r_hat.reshape(-1, 7).tolist(),
        strict=True,
    ):
        qids = [q.trellis.quantizer_of_state[s] for s in python_states(q.trellis, row_k)]
        assert row_ids == qids
        expected = [python_level(kk, qq, 2, q.delta) for kk, qq in zip(row_k, qids, strict=True)]
        assert row_hat == pytest.approx(expected, abs=1e-6)


def test_tcq8_beats_rounding_in_rate_distortion_on_gaussian_residuals():
    r, scales = gaussian_residuals((1, 64, 32, 48), seed=4)

    def rd_cost(q, lambda_t=None):
        k = q.quantize(r, scales, lambda_t=lambda_t)
        distortion = ((r - q.dequantize(k)) ** 2).mean()
        return distortion + RD_LAMBDA * -torch.log2(q.likelihood(k, scales)).mean()

    usq = rd_cost(make_quantizer("usq", delta=1.0))
    assert rd_cost(make_quantizer("tcq8", delta=0.6)) < usq
    assert rd_cost(make_quantizer("tcq8", delta=0.6), lambda_t=RD_LAMBDA) < usq


def test_switching_perturbation_noise_has_the_mse_of_real_tcq():
    q = make_quantizer("tcq8")
    r, scales = gaussian_residuals((1, 64, 32, 48), seed=5)
    mse = ((r - q.dequantize(q.quantize(r, scales))) ** 2).mean().item()
    assert mse == pytest.approx((TCQ_NOISE_WIDTH * q.delta) ** 2 / 12, rel=0.03)


def test_tcq_indices_do_not_depend_on_thread_count():
    q = make_quantizer("tcq8")
    r, scales = gaussian_residuals((1, 32, 8, 48), seed=6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        k1 = q.quantize(r, scales)
        torch.set_num_threads(2)
        k2 = q.quantize(r, scales)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(k1, k2)
