"""The networks of ELIC (He et al. 2022, "ELIC: efficient learned image compression with
unevenly grouped space-channel contextual adaptive coding", CVPR), as CompressAI 1.2.8
builds them in its two models, elic2022-official and elic2022-chandelier (Chandelier's
re-implementation).

    g_a: x (B, 3, H, W) -> 4 x [conv 5x5 stride 2, 3 ResidualBottleneckBlocks] with
         attention after the 3rd and 4th stage -> y (B, M, H/16, W/16)
    g_s: the mirror, transposed convolutions         -> x_hat (B, 3, H, W)
    h_a: y -> conv 3x3, conv 5x5 / 2, conv 5x5 / 2 (ReLU between) -> z (B, N, H/64, W/64)
    h_s: z -> (B, P, H/16, W/16) hyper parameters, P = 2N (official) or 2M (chandelier)

y is coded in uneven channel groups (default 16, 16, 32, 64, M - 128). Group k's
Gaussian parameters come from its param aggregation, 1x1 convolutions over
cat(spatial context (2 g_k), channel context (2 g_k, k > 0), hyper parameters (P)):
the channel context g_ch (three 5x5 convolutions) reads the decoded groups (official:
all groups before k; chandelier: group 0 and group k - 1), the spatial context g_sp
is a checkerboard masked 5x5 convolution of group k.

The two models share g_a, g_s and h_a; h_s, the channel context's input and the
param aggregation differ. CompressAI's keys: ``g_a.*``, ``g_s.*``,
``latent_codec.hyper.h_a.*``, ``latent_codec.hyper.h_s.*``,
``latent_codec.y.channel_context.y{k}.*`` (k >= 1),
``latent_codec.y.latent_codec.y{k}.context_prediction.{weight,bias,mask}`` and
``latent_codec.y.latent_codec.y{k}.entropy_parameters.*`` (k >= 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trellic.layers import conv, deconv
from trellic.models.blocks import (
    AttentionBlock,
    CheckerboardMaskedConv2d,
    ResidualBottleneckBlock,
    conv1x1,
)

VARIANTS = ("official", "chandelier")  # elic2022-official, elic2022-chandelier


def elic_groups(M: int) -> list[int]:
    """The default channel groups of y: 16, 16, 32, 64, M - 128 (needs M > 128)."""
    if M <= 128:
        raise ValueError(f"ELIC's default groups need M > 128, not {M}")
    return [16, 16, 32, 64, M - 128]


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"ELIC variant must be one of {VARIANTS}, not {variant!r}")


def _bottlenecks(N: int) -> list[nn.Module]:
    return [ResidualBottleneckBlock(N, N) for _ in range(3)]


def elic_transforms(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(g_a, g_s), the same in both variants: (B, 3, H, W) <-> (B, M, H/16, W/16)."""
    g_a = nn.Sequential(
        conv(3, N),
        *_bottlenecks(N),
        conv(N, N),
        *_bottlenecks(N),
        AttentionBlock(N),
        conv(N, N),
        *_bottlenecks(N),
        conv(N, M),
        AttentionBlock(M),
    )
    g_s = nn.Sequential(
        AttentionBlock(M),
        deconv(M, N),
        *_bottlenecks(N),
        deconv(N, N),
        AttentionBlock(N),
        *_bottlenecks(N),
        deconv(N, N),
        *_bottlenecks(N),
        deconv(N, 3),
    )
    return g_a, g_s


def elic_hyper(N: int, M: int, variant: str = "official") -> tuple[nn.Sequential, nn.Sequential]:
    """(h_a, h_s): y (B, M, h, w) -> z (B, N, h/4, w/4) -> hyper parameters (B, P, h, w).

    The last layer of h_s is a transposed 3x3 convolution to P = 2N in the official model,
    a 3x3 convolution to P = 2M in chandelier's.
    """
    _check_variant(variant)
    h_a = nn.Sequential(
        conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N)
    )
    wide = N * 3 // 2
    last = deconv(wide, N * 2, 3, 1) if variant == "official" else conv(wide, M * 2, 3, 1)
    h_s = nn.Sequential(deconv(N, N), nn.ReLU(), deconv(N, wide), nn.ReLU(), last)
    return h_a, h_s


def official_hyper(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The registry's (h_a, h_s) of elic2022-official (h_s ends at 2N channels)."""
    return elic_hyper(N, M, "official")


def chandelier_hyper(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """The registry's (h_a, h_s) of elic2022-chandelier (h_s ends at 2M channels)."""
    return elic_hyper(N, M, "chandelier")


def elic_channel_context(groups: Sequence[int], variant: str = "official") -> nn.ModuleDict:
    """g_ch: ``"y{k}"`` for k >= 1 -> three 5x5 convolutions (ReLU between, widths 224, 128)
    from the decoded groups to group k's 2 g_k channel-context parameters. Input: groups
    0 .. k-1 (official) or groups 0 and k-1 (chandelier), concatenated in that order."""
    _check_variant(variant)

    def inputs(k: int) -> int:
        if variant == "official":
            return sum(groups[:k])
        return groups[0] + (groups[k - 1] if k > 1 else 0)

    return nn.ModuleDict({
        f"y{k}": nn.Sequential(
            conv(inputs(k), 224, 5, 1),
            nn.ReLU(),
            conv(224, 128, 5, 1),
            nn.ReLU(),
            conv(128, groups[k] * 2, 5, 1),
        )
        for k in range(1, len(groups))
    })


def elic_spatial_context(groups: Sequence[int]) -> nn.ModuleList:
    """g_sp: entry k is a checkerboard masked 5x5 convolution (type A), group k's
    y_hat (B, g_k, h, w) -> (B, 2 g_k, h, w). The same in both variants."""
    return nn.ModuleList(
        CheckerboardMaskedConv2d(g, g * 2, kernel_size=5, stride=1, padding=2) for g in groups
    )


def _ramp(cin: int, cout: int, floor: int) -> list[int]:
    """CompressAI's ``sequential_channel_ramp`` widths for three layers: four points from
    cin to cout by float32 linspace, floored, the inner two raised to ``floor``."""
    widths = torch.linspace(cin, cout, 4).floor().int().tolist()
    return [widths[0], max(widths[1], floor), max(widths[2], floor), widths[3]]


def elic_param_aggregation(
    N: int, M: int, groups: Sequence[int], variant: str = "official"
) -> nn.ModuleList:
    """Entry k: three 1x1 convolutions with ReLU between, cat(spatial context, channel
    context (k > 0), hyper parameters) -> group k's (B, 2 g_k, h, w) Gaussian parameters.

    Widths: official, a linear ramp from the input width to 2 g_k with the inner
    widths at least 2N; chandelier, 2M then 512.
    """
    _check_variant(variant)
    if sum(groups) != M:
        raise ValueError(f"the groups {list(groups)} do not add up to M = {M}")
    hyper = N * 2 if variant == "official" else M * 2
    networks = []
    for k, g in enumerate(groups):
        cin = g * 2 + (g * 2 if k > 0 else 0) + hyper
        widths = _ramp(cin, g * 2, N * 2) if variant == "official" else [cin, M * 2, 512, g * 2]
        networks.append(nn.Sequential(
            conv1x1(widths[0], widths[1]),
            nn.ReLU(),
            conv1x1(widths[1], widths[2]),
            nn.ReLU(),
            conv1x1(widths[2], widths[3]),
        ))
    return nn.ModuleList(networks)
