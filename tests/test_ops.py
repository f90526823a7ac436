"""lower_bound: the clamp whose gradient still lifts values that sit below the bound."""

import torch

from trellic.ops import lower_bound


def test_lower_bound_clamps_and_passes_only_the_gradient_that_lifts_x():
    x = torch.tensor([0.05, 0.05, 0.5], requires_grad=True)
    y = lower_bound(x, 0.11)
    assert torch.equal(y.detach(), torch.tensor([0.11, 0.11, 0.5]))
    # d(loss)/dy: negative lifts y (descent raises it), positive would push it further down
    y.backward(torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0]))
