"""Training proxies: gradients flow, noise stays in its width, MIXED decodes true values."""

from __future__ import annotations

import pytest
import torch

from trellic.quant import ProxyKind, make_quantizer
from trellic.quant.registry import quantizer_names
from trellic.quant.tcq import TCQ_NOISE_WIDTH


def residuals(seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.empty(2, 4, 3, 8).uniform_(-2.2, 3.0, generator=g))
    return torch.randn(scales.shape, generator=g) * scales, scales


@pytest.mark.parametrize("kind", quantizer_names())
@pytest.mark.parametrize("proxy_kind", list(ProxyKind), ids=lambda k: k.name)
def test_gradients_flow_to_residuals_and_scales(kind, proxy_kind):
    q = make_quantizer(kind)
    r, scales = residuals()
    r.requires_grad_(True)
    scales.requires_grad_(True)
    r_tilde, likelihood = q.proxy(r, scales, proxy_kind)
    assert r_tilde.shape == likelihood.shape == r.shape
    assert ((likelihood >= 1e-9) & (likelihood <= 1)).all()
    (r_tilde.square().sum() - likelihood.log2().sum()).backward()
    for grad in (r.grad, scales.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(("kind", "width"), [("usq", 1.0), ("tcq8", TCQ_NOISE_WIDTH * 0.6)])
def test_noise_stays_within_the_documented_width(kind, width):
    torch.manual_seed(1)
    r, scales = residuals()
    r_tilde, _ = make_quantizer(kind).proxy(r, scales, ProxyKind.NOISE)
    offset = r_tilde - r
    assert offset.abs().max() <= width / 2 + 1e-6
    assert offset.abs().max() > 0.4 * width


def test_usq_noise_likelihood_is_the_mass_of_a_unit_interval_around_r_tilde():
    torch.manual_seed(2)
    r, scales = residuals()
    r_tilde, likelihood = make_quantizer("usq").proxy(r, scales, ProxyKind.NOISE)
    normal = torch.distributions.Normal(0.0, scales)
    expected = normal.cdf(r_tilde + 0.5) - normal.cdf(r_tilde - 0.5)
    torch.testing.assert_close(likelihood, expected.clamp_min(1e-9), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_mixed_decoder_value_is_the_true_reconstruction(kind):
    q = make_quantizer(kind)
    r, scales = residuals(3)
    r_tilde, _ = q.proxy(r, scales, ProxyKind.MIXED)
    torch.testing.assert_close(r_tilde, q.dequantize(q.quantize(r, scales)), rtol=0, atol=1e-6)
    if kind == "usq":
        assert torch.equal(r_tilde, torch.round(r))


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_ste_likelihood_equals_the_likelihood_of_the_true_indices(kind):
    q = make_quantizer(kind)
    r, scales = residuals(4)
    _, likelihood = q.proxy(r, scales, ProxyKind.STE)
    torch.testing.assert_close(likelihood, q.likelihood(q.quantize(r, scales), scales))


@pytest.mark.parametrize("kind", ["rdoq", "tcq4"])
def test_ste_trains_through_the_true_search(kind):
    """The search's reconstruction forward, the identity backward to r (g_a and the means),
    and a rate whose gradient reaches both r and the scales (issue 16, training with the
    true search)."""
    q = make_quantizer(kind)
    r, scales = residuals(5)
    r = r.clone().requires_grad_(True)
    scales = scales.clone().requires_grad_(True)
    r_tilde, likelihood = q.proxy(r, scales, ProxyKind.STE)
    searched = q.search(r.detach(), scales.detach())
    torch.testing.assert_close(r_tilde.detach(), q.level(*searched), rtol=0, atol=1e-6)
    (grad_r,) = torch.autograd.grad(r_tilde.sum(), [r])
    assert torch.equal(grad_r, torch.ones_like(r))
    grad_r, grad_scales = torch.autograd.grad(-torch.log2(likelihood).sum(), [r, scales])
    assert grad_r.abs().sum() > 0 and grad_scales.abs().sum() > 0
