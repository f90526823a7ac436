"""The model: analysis transform, latent codec, synthesis transform (CompressAI's contract).

    x -> g_a -> y -> latent codec (entropy model, tables, coding order) -> y_hat -> g_s -> x_hat

Typical workflow: train ``forward()`` with a quantizer's differentiable proxy
(loss = lambda * 255^2 * MSE + bpp), call ``update()`` to freeze the integer
coding tables, then ``compress()`` / ``decompress()`` for real bitstreams. The
model knows no tables and no coding order: the latent codec
(:mod:`trellic.latent`), chosen by the config's architecture, does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trellic.latent.base import LatentCodec, LatentCompressed
from trellic.models.architectures import architecture
from trellic.models.config import ModelConfig
from trellic.models.transforms import LATENT_STRIDE
from trellic.quant.base import ProxyKind, Quantizer

LATENT_PREFIX = "latent_codec."
# The entropy model's top-level tensor names in files written before the latent-codec layer.
VERSION_1_LATENT_NAMES = ("h_a", "h_s", "entropy_bottleneck", "scale_table")


@dataclass
class ForwardOutput:
    """Training outputs: reconstruction (B, 3, H, W) and the likelihoods of every coded value
    by stream name (``"y"``, ``"z"``)."""

    x_hat: Tensor
    likelihoods: dict[str, Tensor]


def upgrade_legacy_keys(state: dict) -> dict:
    """Tensor names of files written before the latent-codec layer, moved to today's.

    Those files named the entropy model's tensors at the top level (``h_a.*``,
    ``h_s.*``, ``entropy_bottleneck.*``, ``scale_table``); they now live under
    ``latent_codec.``. Every other name is kept.
    """
    return {
        LATENT_PREFIX + key if key.split(".")[0] in VERSION_1_LATENT_NAMES else key: value
        for key, value in state.items()
    }


class CodecModel(nn.Module):
    """g_a -> latent codec -> g_s, built from a :class:`ModelConfig`.

    Args:
        config: architecture (transforms and latent codec), N and M channels, quantizer steps.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        family = architecture(config.architecture)
        self.g_a, self.g_s = family.build_transforms(config.N, config.M)
        self.latent_codec: LatentCodec = family.build_latent_codec(config)
        self.register_load_state_dict_pre_hook(_upgrade_hook)

    @property
    def pad_multiple(self) -> int:
        """Image sides must be multiples of this (g_a's stride times the latent codec's)."""
        return LATENT_STRIDE * self.latent_codec.downscale

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of y for an image of this size, padded to :attr:`pad_multiple`."""
        multiple = self.pad_multiple
        return tuple(-(-side // multiple) * multiple // LATENT_STRIDE for side in (height, width))

    def transforms(self) -> list[nn.Module]:
        """Every convolutional network by role: g_a, the latent codec's, g_s."""
        return [self.g_a, *self.latent_codec.transforms(), self.g_s]

    def quantizer(self, name: str) -> Quantizer:
        """The registry's quantizer ``name`` with the step this model's tables code."""
        return self.latent_codec.quantizer(name)

    # -- training -------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> ForwardOutput:
        """Differentiable training pass. x (B, 3, H, W) in [0, 1], H and W multiples of
        :attr:`pad_multiple`; ``lambda_t`` only for ``ProxyKind.TRUE``."""
        return self.forward_latents(self.g_a(x), quantizer, proxy, lambda_t)

    def forward_latents(
        self,
        y: Tensor,
        quantizer: Quantizer,
        proxy: ProxyKind = ProxyKind.NOISE,
        lambda_t: float | None = None,
    ) -> ForwardOutput:
        """The pass after g_a, from latents y (B, M, H/16, W/16) (retraining freezes g_a)."""
        out = self.latent_codec(y, quantizer, proxy, lambda_t)
        return ForwardOutput(self.g_s(out.y_hat), out.likelihoods)

    def aux_loss(self) -> Tensor:
        return self.latent_codec.aux_loss()

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the latent codec's integer coding tables."""
        self.latent_codec.update()

    # -- bitstreams -----------------------------------------------------------------
    @torch.no_grad()
    def compress(
        self, x: Tensor, quantizer: Quantizer, lambda_t: float | None = None
    ) -> LatentCompressed:
        """x (1, 3, H, W), H and W multiples of :attr:`pad_multiple` -> coded streams."""
        if x.shape[0] != 1:
            raise ValueError("compress codes one image at a time")
        return self.latent_codec.compress(self.g_a(x), quantizer, lambda_t)

    @torch.no_grad()
    def decompress(
        self,
        streams: tuple[bytes, bytes],
        latent_shape: tuple[int, int],
        quantizer: Quantizer,
        checksum: int | None = None,
        exact: bool = True,
    ) -> Tensor:
        """Coded streams of a y grid of ``latent_shape`` -> x_hat (1, 3, H, W), unclamped.

        ``checksum``, ``exact``: see :meth:`LatentCodec.decompress`.
        """
        y_hat = self.latent_codec.decompress(streams, latent_shape, quantizer, checksum, exact)
        return self.synthesize(y_hat)

    @torch.no_grad()
    def synthesize(self, y_hat: Tensor) -> Tensor:
        """g_s on decoded latents y_hat (1, M, h, w) -> x_hat (1, 3, 16h, 16w), unclamped.

        g_s runs on a channels-last y_hat: oneDNN's NHWC transposed convolutions decode
        about a third faster than NCHW on a 2-core CPU (``bench/codec_speed.py``).
        """
        return self.g_s(y_hat.contiguous(memory_format=torch.channels_last))


def _upgrade_hook(module, state_dict, prefix, *args) -> None:
    """load_state_dict accepts the tensor names of older files and checkpoints."""
    own = {k[len(prefix) :]: state_dict.pop(k) for k in list(state_dict) if k.startswith(prefix)}
    state_dict.update({prefix + k: v for k, v in upgrade_legacy_keys(own).items()})
