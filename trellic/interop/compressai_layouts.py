"""How each CompressAI 1.2.8 architecture's state_dict maps onto trellic's model of that name.

One :class:`Layout` per architecture, keyed by CompressAI's zoo/registry name
(which is also trellic's architecture name), is all the importer and the
exporter know about it: prefix renames, the tensors whose layout differs, how
N, M (and ELIC's groups) are read from the checkpoint, and which keys name
the family. Nothing else is written by hand: the CompressAI keys and shapes
an architecture expects are derived by BUILDING trellic's model at the
checkpoint's N and M and mapping each of its tensors back
(:func:`compressai_keys`), plus the buffers CompressAI's layers hold and
trellic's do not:

- GDN / IGDN (every :class:`~trellic.models.gdn.GDN` found in the model):
  ``*.{beta,gamma}_reparam.pedestal`` and ``*.lower_bound.bound``, constants;
- each entropy bottleneck (:class:`~trellic.entropy.factorized.FactorizedPrior`):
  ``target`` and ``likelihood_lower_bound.bound``, constants, and its coding
  tables ``_offset``, ``_quantized_cdf``, ``_cdf_length`` (derived data);
- each Gaussian conditional (named in the layout: trellic computes the
  Gaussian in the latent codec, it has no module): ``scale_bound``,
  ``lower_bound_scale.bound``, ``likelihood_lower_bound.bound``, constants, and
  ``scale_table``, ``_offset``, ``_quantized_cdf``, ``_cdf_length`` (derived);
- masked convolutions (``context_prediction``, ELIC's spatial context): the
  ``mask`` buffer exists on both sides and is checked, never copied.

Adding an architecture is its trellic registry entry and one :data:`LAYOUTS`
entry here. A template's ``{k}`` stands for a group index (ELIC's groups).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

from torch import Tensor, nn

from trellic.entropy.factorized import LIKELIHOOD_BOUND, TAIL_MASS, FactorizedPrior
from trellic.entropy.gaussian import SCALE_MIN
from trellic.errors import TrellicError
from trellic.models.blocks import MaskedConv2d
from trellic.models.gdn import GDN, PEDESTAL

# CompressAI's derived data: coding tables each update() rebuilds from the parameters.
BOTTLENECK_TABLES = ("_offset", "_quantized_cdf", "_cdf_length")
GAUSSIAN_TABLES = ("scale_table", "_offset", "_quantized_cdf", "_cdf_length")
PRIOR_FILTERS = (3, 3, 3, 3)  # CompressAI's EntropyBottleneck widths, in all ten models


@dataclass(frozen=True)
class Key:
    """One tensor of a CompressAI state_dict and where its value lives in trellic.

    kind: ``param`` (copied), ``mask`` (checked against trellic's, which is kept),
    ``constant`` (checked against ``value``, which trellic's layer assumes) or
    ``table`` (CompressAI's derived coding tables: ignored on import, computed on export).
    trellic: the trellic state key (param, mask); mask: the trellic mask key of a masked
    convolution's weight (its masked-out entries export as 0).
    """

    kind: str
    shape: tuple[int, ...] = ()
    trellic: str | None = None
    value: tuple[float, ...] | None = None
    mask: str | None = None


@dataclass(frozen=True)
class Layout:
    """One CompressAI architecture in trellic's terms.

    Attributes:
        renames: (CompressAI prefix, trellic prefix) pairs; every trellic parameter must
            fall under one. ``{k}`` in both stands for the same group index.
        channels: (config field, CompressAI key, dimension): N and M read from shapes.
        marks: keys every checkpoint of this family holds; unmarks: keys none holds.
            Together they name a checkpoint's architecture where trellic cannot build it.
        prior: CompressAI's path of the entropy bottleneck (its widths give
            ``prior_filters``).
        gaussians: CompressAI's paths of the Gaussian conditionals (``{k}``: one per group).
        groups: a key whose dimension 1 is group k's width (``{k}`` = 0, 1, ...), for
            codecs that code y in channel groups (ELIC); None: no groups.
        swapped: CompressAI keys whose two output halves trellic keeps in the other
            order (mbt2018-mean's h_s ends with (scales, means), trellic's with (means, scales)).
    """

    renames: tuple[tuple[str, str], ...]
    channels: tuple[tuple[str, str, int], ...]
    marks: tuple[str, ...]
    unmarks: tuple[str, ...] = ()
    prior: str = "entropy_bottleneck"
    gaussians: tuple[str, ...] = ("gaussian_conditional",)
    groups: str | None = None
    swapped: tuple[str, ...] = ()

    def marked(self, state: dict) -> bool:
        """Whether a checkpoint's keys are this family's (by :attr:`marks`, :attr:`unmarks`)."""
        return all(k in state for k in self.marks) and not any(k in state for k in self.unmarks)

    def to_compressai(self, trellic_key: str) -> str | None:
        """CompressAI's name of a trellic key (or module path + "."), None if unmapped."""
        for theirs, pattern in _rules(self.renames):
            match = pattern.match(trellic_key)
            if match:
                return _fill(theirs, match) + trellic_key[match.end():]
        return None


def _fill(template: str, match: re.Match) -> str:
    return template.replace("{k}", match.group("k")) if "{k}" in template else template


@cache
def _rules(renames: tuple[tuple[str, str], ...]) -> tuple[tuple[str, re.Pattern], ...]:
    """Each (CompressAI template, regex of the trellic template) with ``{k}`` as digits."""
    return tuple(
        (theirs, re.compile(re.escape(ours).replace(re.escape("{k}"), r"(?P<k>\d+)")))
        for theirs, ours in renames
    )


# -- the ten architectures ------------------------------------------------------------------
_TRANSFORMS = (("g_a.", "g_a."), ("g_s.", "g_s."))


def _under_codec(source: str, *names: str) -> tuple[tuple[str, str], ...]:
    """``{source}{name}.`` -> ``latent_codec.{name}.``: networks trellic's latent codec owns."""
    return tuple((f"{source}{name}.", f"latent_codec.{name}.") for name in names)


_HYPER = ("h_a", "h_s", "entropy_bottleneck")
_SERIAL = _TRANSFORMS + _under_codec("", *_HYPER, "context_prediction", "entropy_parameters")
_CODEC_HYPER = _under_codec("latent_codec.hyper.", *_HYPER)
_ELIC = _TRANSFORMS + _CODEC_HYPER + (
    ("latent_codec.y.channel_context.y{k}.", "latent_codec.channel_context.y{k}."),
    ("latent_codec.y.latent_codec.y{k}.context_prediction.", "latent_codec.spatial_context.{k}."),
    ("latent_codec.y.latent_codec.y{k}.entropy_parameters.",
     "latent_codec.param_aggregation.{k}."),
)
_GDN_CHANNELS = (("N", "g_a.0.weight", 0), ("M", "g_a.6.weight", 0))
_CHENG_CHANNELS = (("N", "g_a.0.conv1.weight", 0), ("M", "g_a.0.conv1.weight", 0))  # M = N
_ELIC_CHANNELS = (("N", "g_a.0.weight", 0), ("M", "latent_codec.hyper.h_a.0.weight", 1))
_ATTENTION = "g_a.3.conv_a.0.conv.0.weight"  # cheng2020-attn's first attention block
_CODEC_PRIOR = "latent_codec.hyper.entropy_bottleneck"
_ELIC_LAYOUT = {
    "renames": _ELIC, "channels": _ELIC_CHANNELS,
    "marks": ("latent_codec.y.channel_context.y1.0.weight",), "prior": _CODEC_PRIOR,
    "gaussians": ("latent_codec.y.latent_codec.y{k}.y.gaussian_conditional",),
    "groups": "latent_codec.y.latent_codec.y{k}.context_prediction.weight",
}

LAYOUTS: dict[str, Layout] = {
    "mbt2018-mean": Layout(
        _TRANSFORMS + _under_codec("", *_HYPER), _GDN_CHANNELS,
        marks=("g_a.1.beta", "h_s.4.weight"), unmarks=("context_prediction.weight",),
        swapped=("h_s.4.weight", "h_s.4.bias")),
    "bmshj2018-hyperprior": Layout(
        _TRANSFORMS + _under_codec("", *_HYPER), _GDN_CHANNELS,
        marks=("g_a.1.beta", "h_s.4.weight"), unmarks=("context_prediction.weight",)),
    "bmshj2018-factorized": Layout(
        _TRANSFORMS + _under_codec("", "entropy_bottleneck"), _GDN_CHANNELS,
        marks=("g_a.1.beta", "entropy_bottleneck.quantiles"), unmarks=("h_a.0.weight",),
        gaussians=()),
    "bmshj2018-factorized-relu": Layout(
        _TRANSFORMS + _under_codec("", "entropy_bottleneck"), _GDN_CHANNELS,
        marks=("g_a.0.weight", "entropy_bottleneck.quantiles"),
        unmarks=("h_a.0.weight", "g_a.1.beta"), gaussians=()),
    "mbt2018": Layout(_SERIAL, _GDN_CHANNELS, marks=("g_a.1.beta", "context_prediction.weight")),
    "cheng2020-anchor": Layout(
        _SERIAL, _CHENG_CHANNELS, marks=("g_a.0.conv1.weight", "context_prediction.weight"),
        unmarks=(_ATTENTION,)),
    "cheng2020-attn": Layout(
        _SERIAL, _CHENG_CHANNELS,
        marks=("g_a.0.conv1.weight", "context_prediction.weight", _ATTENTION)),
    "cheng2020-anchor-checkerboard": Layout(
        _TRANSFORMS + _CODEC_HYPER + _under_codec(
            "latent_codec.y.", "context_prediction", "entropy_parameters"),
        _CHENG_CHANNELS, marks=("latent_codec.y.context_prediction.weight",),
        prior=_CODEC_PRIOR, gaussians=("latent_codec.y.y.gaussian_conditional",)),
    "elic2022-official": Layout(**_ELIC_LAYOUT),
    "elic2022-chandelier": Layout(**_ELIC_LAYOUT),
}


def layout(arch: str) -> Layout:
    """The layout of ``arch``; an architecture CompressAI does not have is a TrellicError."""
    if arch not in LAYOUTS:
        raise TrellicError(f"architecture {arch!r} has no CompressAI counterpart "
                           f"(CompressAI's: {', '.join(LAYOUTS)})")
    return LAYOUTS[arch]


# -- the CompressAI keys of a built model ---------------------------------------------------
def _module_key(spec: Layout, path: str) -> str:
    """CompressAI's path of trellic's module ``path`` (its tensors' prefix, without the dot)."""
    mapped = spec.to_compressai(path + ".")
    if mapped is None:
        raise TrellicError(f"trellic's {path} has no CompressAI name in this layout")
    return mapped[:-1]


def gdn_constants(module: GDN) -> dict[str, tuple[float, ...]]:
    """The four buffers CompressAI's GDN holds, by name under the layer, as trellic's GDN
    assumes them: pedestal 2**-36, bounds sqrt(beta_min + pedestal) and sqrt(pedestal)."""
    return {
        "beta_reparam.pedestal": (PEDESTAL,),
        "beta_reparam.lower_bound.bound": (module.beta_bound,),
        "gamma_reparam.pedestal": (PEDESTAL,),
        "gamma_reparam.lower_bound.bound": (PEDESTAL**0.5,),
    }


_TARGET = math.log(2 / TAIL_MASS - 1)  # the quantiles' logits at tail / 2, 1/2, 1 - tail / 2
BOTTLENECK_CONSTANTS = {
    "target": (-_TARGET, 0.0, _TARGET),
    "likelihood_lower_bound.bound": (LIKELIHOOD_BOUND,),
}


GAUSSIAN_CONSTANTS = {
    "scale_bound": (SCALE_MIN,),
    "lower_bound_scale.bound": (SCALE_MIN,),
    "likelihood_lower_bound.bound": (LIKELIHOOD_BOUND,),
}


@dataclass(frozen=True)
class Keys:
    """Every key of an architecture's CompressAI state_dict, from a built trellic model.

    keys: CompressAI key -> :class:`Key` (tables without shapes: they depend on values).
    bottlenecks, gaussians: CompressAI's paths of the entropy bottlenecks (with the
    trellic path of each) and of the Gaussian conditionals.
    """

    keys: dict[str, Key]
    bottlenecks: dict[str, str]
    gaussians: tuple[str, ...]


def compressai_keys(model: nn.Module, arch: str) -> Keys:
    """The CompressAI state_dict of ``model``'s architecture at its N, M: keys and shapes.

    Every tensor of ``model.state_dict()`` maps by :attr:`Layout.renames` (a parameter
    without a CompressAI name is an error in the layout; an unmapped buffer, such as
    ``latent_codec.scale_table``, is trellic's own derived data); GDN, entropy
    bottleneck and Gaussian conditional buffers are added as the module docstring says.
    """
    spec = layout(arch)
    state = model.state_dict()
    parameters = {name for name, _ in model.named_parameters()}
    masked = {path for path, m in model.named_modules() if isinstance(m, MaskedConv2d)}
    keys: dict[str, Key] = {}
    groups = 0
    for name, tensor in state.items():
        theirs = spec.to_compressai(name)
        if theirs is None:
            if name in parameters:
                raise TrellicError(f"{arch}: trellic's {name} has no CompressAI name "
                                   "(trellic/interop/compressai_layouts.py)")
            continue
        groups = max([groups, *(int(k) + 1 for k in _group_indices(spec, name))])
        path, _, leaf = name.rpartition(".")
        if path in masked and leaf == "mask":
            keys[theirs] = Key("mask", tuple(tensor.shape), name)
        else:
            mask = f"{path}.mask" if path in masked and leaf == "weight" else None
            keys[theirs] = Key("param", tuple(tensor.shape), name, mask=mask)
    bottlenecks = {}
    for path, module in model.named_modules():
        if isinstance(module, GDN):
            constants = gdn_constants(module)
        elif isinstance(module, FactorizedPrior):
            constants = BOTTLENECK_CONSTANTS
            bottlenecks[_module_key(spec, path)] = path
            for table in BOTTLENECK_TABLES:
                keys[f"{_module_key(spec, path)}.{table}"] = Key("table")
        else:
            continue
        base = _module_key(spec, path)
        for leaf, value in constants.items():
            keys[f"{base}.{leaf}"] = Key("constant", (len(value),), value=value)
    gaussians = tuple(
        template.replace("{k}", str(k))
        for template in spec.gaussians
        for k in (range(groups) if "{k}" in template else (None,))
    )
    for path in gaussians:
        for leaf, value in GAUSSIAN_CONSTANTS.items():
            keys[f"{path}.{leaf}"] = Key("constant", (len(value),), value=value)
        for table in GAUSSIAN_TABLES:
            keys[f"{path}.{table}"] = Key("table")
    return Keys(keys, bottlenecks, gaussians)


def _group_indices(spec: Layout, trellic_key: str) -> list[str]:
    """The group index ``{k}`` a trellic key matched under, if any (ELIC)."""
    for _, pattern in _rules(spec.renames):
        match = pattern.match(trellic_key)
        if match:
            return [match.group("k")] if "k" in pattern.groupindex else []
    return []


def swap_halves(tensor: Tensor) -> Tensor:
    """(2C, ...) -> its two halves along dimension 0 exchanged (its own inverse)."""
    return tensor.roll(tensor.shape[0] // 2, 0)
