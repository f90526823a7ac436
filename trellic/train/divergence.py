"""Stopping a diverging run: a non-finite loss, gradient or weight ends it before it is saved.

A learning rate or lambda far too large makes the loss overflow; one NaN then
spreads to every weight in the next update, and a model made of NaNs codes
nothing. Training and retraining check the loss before the backward pass and
the gradient norm before the optimizer step, so the weights in memory (and in
every checkpoint) are the last finite ones, and check the weights before
writing them. Under torchrun the loss is averaged over the ranks first, so all
ranks stop at the same step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from trellic.errors import TrellicError


class Diverged(TrellicError):
    """A loss, gradient norm or weight that is NaN or infinite."""


def check_finite(name: str, value: Tensor) -> None:
    """Raise :class:`Diverged` naming ``name`` if the scalar ``value`` is not finite."""
    if not bool(torch.isfinite(value).all()):
        raise Diverged(f"the {name} is not finite ({value.detach().float().max().item()})")


def check_finite_weights(model: torch.nn.Module) -> None:
    """Raise :class:`Diverged` naming the first tensor of ``model`` that holds a NaN or inf."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Diverged(f"the weights are not finite ({key})")
