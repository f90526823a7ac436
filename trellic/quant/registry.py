"""Quantizers by name: the one list of them.

Every quantizer name a user or a file can give comes from :data:`QUANTIZERS`:
the ``--quantizer`` choices of every command, the quantizer byte of the
bitstream header, and the coding tables a model builds. Adding a quantizer is
its class (a :class:`~trellic.quant.base.Quantizer`) plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from trellic.errors import TrellicError
from trellic.quant.base import Quantizer
from trellic.quant.tcq import TCQ
from trellic.quant.trellis import ECM8, VVC4
from trellic.quant.usq import RDOQ, USQ


@dataclass(frozen=True)
class QuantizerSpec:
    """One quantizer as the rest of trellic knows it.

    Attributes:
        name: what users and headers call it.
        code: its byte in the bitstream header (part of the format: never reuse one).
        tables: the key of the model's coding tables for it; quantizers built
            from the same sub-quantizers (TCQ-4 and TCQ-8) share their tables.
        step: the model config field that holds its step delta.
        build: ``build(delta=...)`` makes one; without delta, the default step.
    """

    name: str
    code: int
    tables: str
    step: str
    build: Callable[..., Quantizer]


QUANTIZERS: dict[str, QuantizerSpec] = {
    spec.name: spec
    for spec in (
        QuantizerSpec("usq", 0, "usq", "usq_delta", USQ),
        QuantizerSpec("tcq4", 1, "tcq", "tcq_delta", partial(TCQ, VVC4)),
        QuantizerSpec("tcq8", 2, "tcq", "tcq_delta", partial(TCQ, ECM8)),
        QuantizerSpec("rdoq", 3, "usq", "usq_delta", RDOQ),
    )
}


def quantizer_names() -> tuple[str, ...]:
    """Every quantizer name, in registry order (the CLI's choices)."""
    return tuple(QUANTIZERS)


def quantizer_spec(name: str) -> QuantizerSpec:
    """The registry entry of a name; an unknown name is a TrellicError."""
    spec = QUANTIZERS.get(name)
    if spec is None:
        raise TrellicError(
            f"unknown quantizer {name!r}: expected one of {', '.join(quantizer_names())}"
        )
    return spec


def make_quantizer(name: str, delta: float | None = None) -> Quantizer:
    """Quantizer by name, with step ``delta`` (default: the quantizer's own default step)."""
    build = quantizer_spec(name).build
    return build() if delta is None else build(delta=delta)
