"""Architectures by name: the whole model a config's ``architecture`` builds.

An architecture is its analysis and synthesis transforms g_a / g_s, its
latent codec (:mod:`trellic.latent`) and, where they differ from the
codec's own, its hyper-transforms h_a / h_s: one :class:`Architecture` entry
here. Builders are named as ``module:attribute`` and imported only when a
model is built. Adding a model is its modules plus one entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from trellic.errors import TrellicError

Builder = Callable[[int, int], tuple[nn.Module, nn.Module]]


@dataclass(frozen=True)
class Architecture:
    """One model family.

    Attributes:
        source: the paper (and CompressAI's name for it, where it has one).
        transforms: ``module:function``, ``(N, M) -> (g_a, g_s)``.
        latent_codec: ``module:Class`` of the :class:`~trellic.latent.base.LatentCodec`.
        hyper: ``module:function``, ``(N, M) -> (h_a, h_s)``; None: the codec's own.
        min_latent_channels: the fewest latent channels M its latent codec can split.
        latent_is_inner: M must equal N (Cheng 2020's transforms end with N channels).
    """

    source: str
    transforms: str
    latent_codec: str
    hyper: str | None = None
    min_latent_channels: int = 1
    latent_is_inner: bool = False

    def channel_problem(self, N: int, M: int) -> str | None:
        """Why this architecture cannot have N and M channels, or None."""
        if M < self.min_latent_channels:
            return f"needs M >= {self.min_latent_channels}"
        if self.latent_is_inner and M != N:
            return f"needs M = N (its transforms end with N channels), got N={N}, M={M}"
        return None

    def build_transforms(self, N: int, M: int) -> tuple[nn.Module, nn.Module]:
        """(g_a, g_s) with N inner and M latent channels."""
        return _resolve(self.transforms)(N, M)

    def build_latent_codec(self, config) -> nn.Module:
        """The latent codec of a :class:`~trellic.models.config.ModelConfig`."""
        codec = _resolve(self.latent_codec)
        return codec(config) if self.hyper is None else codec(config, _resolve(self.hyper))


GDN_TRANSFORMS = "trellic.models.transforms:gdn_transforms"
CHENG = "trellic.models.cheng2020:"
SERIAL = "trellic.latent.serial_context:SerialContext"

ARCHITECTURES: dict[str, Architecture] = {
    "mbt2018-mean": Architecture(
        "Minnen, Balle, Toderici 2018 without the context model (CompressAI's mbt2018-mean)",
        GDN_TRANSFORMS, "trellic.latent.hyperprior:MeanScaleHyperprior"),
    "bmshj2018-hyperprior": Architecture(
        "Balle, Minnen, Singh, Hwang, Johnston 2018: scales only "
        "(CompressAI's bmshj2018-hyperprior)",
        GDN_TRANSFORMS, "trellic.latent.scale_hyperprior:ScaleHyperprior"),
    "ms2020-channel": Architecture(
        "Minnen & Singh 2020: slices of y conditioned on the hyperprior and earlier slices",
        GDN_TRANSFORMS, "trellic.latent.channel_conditional:ChannelConditional",
        min_latent_channels=16),
    "cheng2020-anchor-checkerboard": Architecture(
        "He et al. 2021's checkerboard context on Cheng et al. 2020's anchor "
        "(CompressAI's cheng2020-anchor-checkerboard)",
        CHENG + "anchor_transforms", "trellic.latent.checkerboard:Checkerboard",
        hyper=CHENG + "hyper_transforms", latent_is_inner=True),
    "mbt2018": Architecture(
        "Minnen, Balle, Toderici 2018: the mean-scale hyperprior and a serial spatial context "
        "(CompressAI's mbt2018)",
        GDN_TRANSFORMS, SERIAL),
    "cheng2020-anchor": Architecture(
        "Cheng et al. 2020's residual transforms with mbt2018's context model "
        "(CompressAI's cheng2020-anchor)",
        CHENG + "anchor_transforms", SERIAL, hyper=CHENG + "hyper_transforms",
        latent_is_inner=True),
    "cheng2020-attn": Architecture(
        "Cheng et al. 2020 with attention blocks (CompressAI's cheng2020-attn)",
        CHENG + "attention_transforms", SERIAL, hyper=CHENG + "hyper_transforms",
        latent_is_inner=True),
    "mbt2018-checkerboard": Architecture(
        "He et al. 2021's checkerboard context on the zoo's mean-scale hyperprior and transforms",
        GDN_TRANSFORMS, "trellic.latent.checkerboard:Checkerboard"),
    "elic2022-official": Architecture(
        "He et al. 2022, ELIC: uneven channel groups with a checkerboard in each "
        "(CompressAI's elic2022-official)",
        "trellic.models.elic:elic_transforms", "trellic.latent.elic:ElicOfficial",
        hyper="trellic.models.elic:official_hyper"),
    "elic2022-chandelier": Architecture(
        "ELIC with Chandelier's channel context (first and latest group) "
        "(CompressAI's elic2022-chandelier)",
        "trellic.models.elic:elic_transforms", "trellic.latent.elic:ElicChandelier",
        hyper="trellic.models.elic:chandelier_hyper"),
    "bmshj2018-factorized": Architecture(
        "Balle, Minnen, Singh, Hwang, Johnston 2018's factorized-prior baseline: a learned "
        "density per channel of y, no side information (CompressAI's bmshj2018-factorized)",
        GDN_TRANSFORMS, "trellic.latent.factorized_prior:FactorizedPriorCodec"),
    "bmshj2018-factorized-relu": Architecture(
        "bmshj2018-factorized with ReLU for GDN (CompressAI's bmshj2018-factorized-relu)",
        "trellic.models.transforms:relu_transforms",
        "trellic.latent.factorized_prior:FactorizedPriorCodec"),
}


def architecture_names() -> tuple[str, ...]:
    return tuple(ARCHITECTURES)


def architecture(name: str) -> Architecture:
    """The registry entry of ``name``; an unknown name is a TrellicError naming the choices."""
    if name not in ARCHITECTURES:
        raise TrellicError(
            f"unknown architecture {name!r}: expected one of {', '.join(architecture_names())}"
        )
    return ARCHITECTURES[name]


def latent_codec_class(name: str) -> type:
    """The :class:`~trellic.latent.base.LatentCodec` subclass of an architecture."""
    return _resolve(architecture(name).latent_codec)


def _resolve(target: str):
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)
