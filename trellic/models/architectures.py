"""Architectures by name: what a model config's ``architecture`` builds.

Every architecture is the transforms g_a / g_s (:mod:`trellic.models.transforms`)
around a latent codec (:mod:`trellic.latent`); the entry names the latent
codec's class as ``module:Class``, imported when a model is built. Adding an
entropy model is its module plus one entry here.
"""

from __future__ import annotations

import importlib

from trellic.errors import TrellicError

ARCHITECTURES: dict[str, str] = {
    # Minnen, Balle, Toderici 2018 without the context model (CompressAI's mbt2018-mean).
    "mbt2018-mean": "trellic.latent.hyperprior:MeanScaleHyperprior",
    # Balle, Minnen, Singh, Hwang, Johnston 2018: scales only (CompressAI's bmshj2018-hyperprior).
    "bmshj2018-hyperprior": "trellic.latent.scale_hyperprior:ScaleHyperprior",
    # Minnen & Singh 2020: slices of y conditioned on the hyperprior and earlier slices.
    "ms2020-channel": "trellic.latent.channel_conditional:ChannelConditional",
}


# The fewest latent channels an architecture can split (its config is refused below).
MIN_LATENT_CHANNELS: dict[str, int] = {"ms2020-channel": 16}


def architecture_names() -> tuple[str, ...]:
    return tuple(ARCHITECTURES)


def latent_codec_class(architecture: str) -> type:
    """The :class:`~trellic.latent.base.LatentCodec` subclass of an architecture."""
    if architecture not in ARCHITECTURES:
        raise TrellicError(
            f"unknown architecture {architecture!r}: expected one of "
            f"{', '.join(architecture_names())}"
        )
    module, name = ARCHITECTURES[architecture].split(":")
    return getattr(importlib.import_module(module), name)
