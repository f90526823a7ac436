"""Exact arithmetic for the entropy parameters: what every latent codec's coding path shares.

A decoder picks table rows (and trellis states) from the entropy parameters,
so the encoder's and every decoder's parameters must agree to the last bit.
The networks that compute them run in integer arithmetic when coding
(:mod:`trellic.latent.integer_net`), and the reconstructions that feed later
parts of y (context models) are float32 sums of exact values:

- :class:`Arithmetic`: how a network runs (float, exact, or exact values with
  the float network's gradients);
- :class:`ExactNetworks`: each network's integer version, derived once per weights;
- :func:`levels`: a part's reconstructed residuals, the same float32 on every machine.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from trellic.latent.integer_net import PRECISION_1, CachedIntegerSynthesis, Precision
from trellic.quant.base import Quantized, Quantizer


class Arithmetic(enum.Enum):
    """How a codec computes its entropy parameters.

    FLOAT: the float networks (training, refinement, format-1 files). EXACT:
    their integer versions (coding). STRAIGHT: the exact values with the float
    networks' gradients (retraining on what the coder codes).
    """

    FLOAT = "float"
    EXACT = "exact"
    STRAIGHT = "straight"


class ExactNetworks:
    """Runs a codec's float networks in a given :class:`Arithmetic`; each network's
    integer version (in the codec's :class:`~trellic.latent.integer_net.Precision`) is kept
    (by the network's id) and derived again only when its weights change."""

    def __init__(self, precision: Precision = PRECISION_1) -> None:
        self.precision = precision
        self._integer: dict[int, CachedIntegerSynthesis] = {}
        self._checked: set[int] | None = None

    @contextlib.contextmanager
    def fixed_weights(self) -> Iterator[None]:
        """Within: each network's integer version is checked against its weights once, not
        at every call (a loop over many parts whose networks do not change meanwhile)."""
        self._checked = set()
        try:
            yield
        finally:
            self._checked = None

    def __call__(self, net: nn.Module, x: Tensor, arithmetic: Arithmetic) -> Tensor:
        """``net(x)`` in float32, computed as ``arithmetic`` says (``net``: a Sequential or
        one layer that :mod:`trellic.latent.integer_net` runs)."""
        if arithmetic is Arithmetic.FLOAT:
            return net(x).float()
        layers = net if isinstance(net, nn.Sequential) else nn.Sequential(net)
        check = self._checked is None or id(net) not in self._checked
        integer = self._integer.setdefault(id(net),
                                           CachedIntegerSynthesis(precision=self.precision))
        exact = integer(layers, x.detach(), check)
        if self._checked is not None:
            self._checked.add(id(net))
        if arithmetic is Arithmetic.EXACT:
            return exact
        approx = net(x).float()
        return exact + (approx - approx.detach())


def levels(quantizer: Quantizer, quantized: Quantized) -> Tensor:
    """The reconstructed residuals in float32 whatever torch's default dtype: y_hat, which
    later parts of y may be predicted from, is the same float32 sum on every machine."""
    return quantizer.level_units(quantized.k.to(torch.float32), quantized.qid) * quantizer.delta
