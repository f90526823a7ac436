"""Differentiable tensor operations shared by the networks and the probability models."""

from __future__ import annotations

import torch
from torch import Tensor


class _LowerBoundGrad(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it pushes x up from below the bound."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes, None


def lower_bound(x: Tensor, bound: float) -> Tensor:
    """Clamp from below without killing the gradient that would lift x over the bound.

    Used by GDN's reparametrisation and by the entropy models' scale bound.
    """
    return _LowerBoundGrad.apply(x, bound)
