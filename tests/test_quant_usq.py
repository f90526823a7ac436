"""USQ and RDOQ: rounding, the per-element RD optimum, exact reconstruction, normalised
likelihoods, and the factory."""

from __future__ import annotations

import pytest
import torch

from trellic.errors import TrellicError
from trellic.quant import RDOQ, TCQ, USQ, GaussianRate, make_quantizer
from trellic.quant.registry import quantizer_names


def test_usq_quantize_is_rounding_and_dequantize_is_exact():
    torch.manual_seed(0)
    q = make_quantizer("usq", delta=0.5)
    r = torch.randn(2, 3, 4, 6) * 3
    k = q.quantize(r, torch.ones_like(r))
    assert k.dtype == torch.long
    assert torch.equal(k, torch.round(r / 0.5).long())
    assert torch.equal(q.dequantize(k), k.float() * 0.5)
    assert torch.equal(q.quantizer_ids(k), torch.zeros_like(k))


def test_usq_likelihood_sums_to_one_over_k_for_a_fixed_scale():
    q = make_quantizer("usq")
    k = torch.arange(-300, 301).reshape(1, 1, 1, -1)
    for scale in (0.11, 1.0, 20.0):
        total = q.likelihood(k, torch.full(k.shape, scale)).sum().item()
        # Each mass is lower-bounded by 1e-9: 601 of them add at most 6e-7.
        assert total == pytest.approx(1.0, abs=1e-5)


def test_likelihood_is_differentiable_with_respect_to_scales():
    q = make_quantizer("usq")
    scales = torch.full((1, 1, 1, 5), 2.0, requires_grad=True)
    q.likelihood(torch.tensor([[[[-2, -1, 0, 1, 2]]]]), scales).log().sum().backward()
    assert scales.grad is not None and torch.isfinite(scales.grad).all()


def test_rdoq_picks_each_elements_cheapest_of_floor_ceiling_and_zero():
    torch.manual_seed(1)
    q = make_quantizer("rdoq")
    r = torch.randn(1, 4, 8, 16, dtype=torch.float64) * 3
    scales = torch.rand(r.shape, dtype=torch.float64) * 4 + 0.11
    lam = 0.4
    k = q.quantize(r, scales, lam)
    options = torch.stack([torch.floor(r), torch.ceil(r), torch.zeros_like(r)]).long()
    cost = (options - r) ** 2 + lam * GaussianRate(q).bits(options, 0, scales)
    best = cost.min(dim=0).values
    chosen = (k - r) ** 2 + lam * GaussianRate(q).bits(k, 0, scales)
    torch.testing.assert_close(chosen, best, rtol=0, atol=1e-12)
    assert (k != torch.round(r).long()).any()  # the rate moved some elements
    assert k.abs().sum() < torch.round(r).abs().sum()  # towards zero


def test_rdoq_is_usq_with_a_positive_default_rate_weight():
    rdoq, usq = make_quantizer("rdoq"), make_quantizer("usq")
    assert isinstance(rdoq, RDOQ) and isinstance(rdoq, USQ)
    assert (rdoq.kind, rdoq.delta, rdoq.trellis) == ("rdoq", usq.delta, usq.trellis)
    assert rdoq.default_lambda_t > 0
    r = torch.randn(1, 2, 3, 5) * 4
    scales = torch.ones_like(r)
    assert torch.equal(rdoq.quantize(r, scales, 0.0), usq.quantize(r, scales))
    assert torch.equal(rdoq.quantize(r, scales), usq.quantize(r, scales, rdoq.default_lambda_t))


@pytest.mark.parametrize("kind", quantizer_names())
def test_pmf_rows_sum_to_one_for_every_quantizer(kind):
    q = make_quantizer(kind)
    scales = torch.logspace(-0.96, 1.31, 12, dtype=torch.float64)[:, None]  # 0.11 .. 20
    k = torch.arange(-200, 201)[None, :]
    for qid in range(q.num_quantizers):
        pmf = q.pmf(qid, scales, k)
        assert pmf.shape == (12, 401)
        torch.testing.assert_close(
            pmf.sum(dim=1), torch.ones(12, dtype=torch.float64), atol=1e-5, rtol=0
        )


def test_make_quantizer_builds_each_kind_with_its_default_step():
    usq, tcq4, tcq8 = (make_quantizer(kind) for kind in ("usq", "tcq4", "tcq8"))
    assert isinstance(usq, USQ) and (usq.kind, usq.delta, usq.default_lambda_t) == ("usq", 1.0, 0.0)
    assert isinstance(tcq4, TCQ) and (tcq4.kind, tcq4.trellis.num_states) == ("tcq4", 4)
    assert (tcq8.kind, tcq8.trellis.num_states, tcq8.delta) == ("tcq8", 8, 0.6)
    assert tcq8.default_lambda_t == pytest.approx(0.3 * 0.6**2)
    assert make_quantizer("tcq8", delta=0.9).delta == 0.9


def test_make_quantizer_rejects_an_unknown_kind_or_a_bad_step():
    with pytest.raises(TrellicError, match="unknown quantizer 'foo'"):
        make_quantizer("foo")
    with pytest.raises(TrellicError, match="positive"):
        make_quantizer("usq", delta=0.0)
