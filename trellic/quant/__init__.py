"""Quantizers: uniform scalar (USQ, RDOQ) and trellis-coded (TCQ), behind one interface.

``make_quantizer(name, delta)`` builds one by its name in the registry
(:mod:`trellic.quant.registry`); see
:class:`~trellic.quant.base.Quantizer` for what every quantizer provides.
"""

from trellic.quant.base import (
    GaussianRate,
    ProxyKind,
    Quantizer,
    RateModel,
    gaussian_mass,
)
from trellic.quant.registry import QUANTIZERS, make_quantizer, quantizer_names
from trellic.quant.tcq import TCQ
from trellic.quant.trellis import ECM8, USQ_TRELLIS, VVC4, Trellis, from_sequences, to_sequences
from trellic.quant.usq import RDOQ, USQ

__all__ = [
    "ECM8",
    "QUANTIZERS",
    "RDOQ",
    "TCQ",
    "USQ",
    "USQ_TRELLIS",
    "VVC4",
    "GaussianRate",
    "ProxyKind",
    "Quantizer",
    "RateModel",
    "Trellis",
    "from_sequences",
    "gaussian_mass",
    "make_quantizer",
    "quantizer_names",
    "to_sequences",
]
