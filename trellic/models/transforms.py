"""The analysis and synthesis transforms g_a and g_s (Balle et al. 2018; mbt2018's too).

    g_a: x (B, 3, H, W) -> 4 x [conv 5x5 stride 2, GDN between] -> y (B, M, H/16, W/16)
    g_s: y -> 4 x [transposed conv 5x5 stride 2, IGDN between] -> x_hat (B, 3, H, W)

The ReLU variants (CompressAI's bmshj2018-factorized-relu) put ReLU where GDN is:
the convolutions keep their indices (``g_a.0``, ``g_a.2`` ...), so their
state_dict keys are the GDN transforms' without the GDN parameters.
"""

from __future__ import annotations

from torch import nn

from trellic.layers import conv, deconv
from trellic.models.gdn import GDN

LATENT_STRIDE = 16  # g_a halves H and W four times


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a with N channels inside and M latent channels."""
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """g_s, the mirror of :func:`analysis_transform` with inverse GDN."""
    return nn.Sequential(
        deconv(M, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, N),
        GDN(N, inverse=True),
        deconv(N, 3),
    )


def relu_analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a of bmshj2018-factorized-relu: :func:`analysis_transform` with ReLU for GDN."""
    return nn.Sequential(
        conv(3, N), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, M)
    )


def relu_synthesis_transform(N: int, M: int) -> nn.Sequential:
    """g_s of bmshj2018-factorized-relu: :func:`synthesis_transform` with ReLU for IGDN."""
    return nn.Sequential(
        deconv(M, N), nn.ReLU(), deconv(N, N), nn.ReLU(), deconv(N, N), nn.ReLU(), deconv(N, 3)
    )


def gdn_transforms(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(g_a, g_s) of bmshj2018 and mbt2018 (the zoo's models)."""
    return analysis_transform(N, M), synthesis_transform(N, M)


def relu_transforms(N: int, M: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(g_a, g_s) of bmshj2018-factorized-relu."""
    return relu_analysis_transform(N, M), relu_synthesis_transform(N, M)
