"""The transforms of Cheng et al. 2020, "Learned image compression with discretized Gaussian
mixture likelihoods and attention modules" (CVPR), as CompressAI 1.2.8 builds them.

    g_a: x (B, 3, H, W) -> 3 x [ResidualBlockWithStride, ResidualBlock] -> conv3x3 stride 2
         -> y (B, N, H/16, W/16)                    (M = N: the latent has N channels)
    g_s: y -> 3 x [ResidualBlock, ResidualBlockUpsample] -> ResidualBlock
         -> subpel_conv3x3 -> x_hat (B, 3, H, W)
    h_a: y -> five 3x3 convolutions, two of stride 2, LeakyReLU between -> z (B, N, H/64, W/64)
    h_s: z -> 3x3 and sub-pixel convolutions, LeakyReLU between -> (B, 2N, H/16, W/16)

The attention variant (cheng2020-attn) adds attention blocks to g_a and g_s.
cheng2020-anchor, cheng2020-attn and cheng2020-anchor-checkerboard share h_a and
h_s; the anchor and the checkerboard model also share g_a and g_s. CompressAI's
keys: ``g_a.*``, ``g_s.*``, and ``h_a.*``, ``h_s.*`` (cheng2020-anchor / -attn) or
``latent_codec.hyper.h_a.*``, ``latent_codec.hyper.h_s.*`` (the checkerboard model).
The context model's networks, mbt2018's at M = N, belong to the latent codec.
"""

from __future__ import annotations

from torch import nn

from trellic.models.blocks import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)


def cheng2020_transforms(N: int, attention: bool) -> tuple[nn.Sequential, nn.Sequential]:
    """(g_a, g_s) of cheng2020-attn (``attention=True``) or cheng2020-anchor (and
    cheng2020-anchor-checkerboard): (B, 3, H, W) <-> (B, N, H/16, W/16)."""

    def attend() -> list[nn.Module]:
        return [AttentionBlock(N)] if attention else []

    g_a = nn.Sequential(
        ResidualBlockWithStride(3, N, stride=2),
        ResidualBlock(N, N),
        ResidualBlockWithStride(N, N, stride=2),
        *attend(),
        ResidualBlock(N, N),
        ResidualBlockWithStride(N, N, stride=2),
        ResidualBlock(N, N),
        conv3x3(N, N, stride=2),
        *attend(),
    )
    g_s = nn.Sequential(
        *attend(),
        ResidualBlock(N, N),
        ResidualBlockUpsample(N, N, 2),
        ResidualBlock(N, N),
        ResidualBlockUpsample(N, N, 2),
        *attend(),
        ResidualBlock(N, N),
        ResidualBlockUpsample(N, N, 2),
        ResidualBlock(N, N),
        subpel_conv3x3(N, 3, 2),
    )
    return g_a, g_s


def cheng2020_hyper(N: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(h_a, h_s): y (B, N, h, w) -> z (B, N, h/4, w/4) -> (B, 2N, h, w), the Gaussian
    parameters before the context is added (all three cheng2020 models)."""
    h_a = nn.Sequential(
        conv3x3(N, N),
        nn.LeakyReLU(),
        conv3x3(N, N),
        nn.LeakyReLU(),
        conv3x3(N, N, stride=2),
        nn.LeakyReLU(),
        conv3x3(N, N),
        nn.LeakyReLU(),
        conv3x3(N, N, stride=2),
    )
    wide = N * 3 // 2
    h_s = nn.Sequential(
        conv3x3(N, N),
        nn.LeakyReLU(),
        subpel_conv3x3(N, N, 2),
        nn.LeakyReLU(),
        conv3x3(N, wide),
        nn.LeakyReLU(),
        subpel_conv3x3(wide, wide, 2),
        nn.LeakyReLU(),
        conv3x3(wide, N * 2),
    )
    return h_a, h_s


def anchor_transforms(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The registry's builder of cheng2020-anchor's (g_a, g_s) (M = N)."""
    return cheng2020_transforms(N, attention=False)


def attention_transforms(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The registry's builder of cheng2020-attn's (g_a, g_s) (M = N)."""
    return cheng2020_transforms(N, attention=True)


def hyper_transforms(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The registry's builder of Cheng 2020's (h_a, h_s) (M = N)."""
    return cheng2020_hyper(N)
