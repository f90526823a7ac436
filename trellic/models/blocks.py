"""Building blocks of the residual transforms (Cheng 2020, ELIC) and of the context models.

Every block registers its layers under the names CompressAI 1.2.8 gives them
(``compressai/layers/layers.py``, ``compressai/models/sensetime.py``), so a
block's ``state_dict()`` has CompressAI's keys and shapes and weights copy by
name. GDN's reparametrisation constants are the exception: CompressAI stores
them as buffers (``gdn.beta_reparam.pedestal`` ...), trellic as constants
(:mod:`trellic.models.gdn`).

All convolutions keep H and W ('same' padding) unless a stride or an
upsampling factor says otherwise; inputs and outputs are (B, C, H, W).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trellic.models.gdn import GDN


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1: (B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution (a per-position linear map of the channels)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride)


def subpel_conv3x3(in_ch: int, out_ch: int, r: int = 1) -> nn.Sequential:
    """Sub-pixel upsampling (Shi et al. 2016, "Real-time single image and video
    super-resolution"): a 3x3 convolution to ``out_ch * r**2`` channels, then PixelShuffle(r).
    (B, in_ch, H, W) -> (B, out_ch, r H, r W)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch * r**2, kernel_size=3, padding=1), nn.PixelShuffle(r)
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with LeakyReLU and a skip connection (a 1x1 convolution when
    the width changes); Cheng et al. 2020, "Learned image compression with discretized
    Gaussian mixture likelihoods and attention modules", Fig. 2."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch)
        self.leaky_relu = nn.LeakyReLU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.leaky_relu(self.conv2(self.leaky_relu(self.conv1(x))))
        return out + (x if self.skip is None else self.skip(x))


class ResidualBlockWithStride(nn.Module):
    """Cheng 2020's downsampling block: 3x3 convolution with ``stride``, LeakyReLU, 3x3
    convolution, GDN, plus a strided 1x1 skip. (B, in_ch, H, W) -> (B, out_ch, H/s, W/s)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2):
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride=stride)
        self.leaky_relu = nn.LeakyReLU()
        self.conv2 = conv3x3(out_ch, out_ch)
        self.gdn = GDN(out_ch)
        self.skip = conv1x1(in_ch, out_ch, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.gdn(self.conv2(self.leaky_relu(self.conv1(x))))
        return out + (x if self.skip is None else self.skip(x))


class ResidualBlockUpsample(nn.Module):
    """Cheng 2020's upsampling block: sub-pixel convolution, LeakyReLU, 3x3 convolution,
    inverse GDN, plus a sub-pixel skip. (B, in_ch, H, W) -> (B, out_ch, r H, r W)."""

    def __init__(self, in_ch: int, out_ch: int, upsample: int = 2):
        super().__init__()
        self.subpel_conv = subpel_conv3x3(in_ch, out_ch, upsample)
        self.leaky_relu = nn.LeakyReLU()
        self.conv = conv3x3(out_ch, out_ch)
        self.igdn = GDN(out_ch, inverse=True)
        self.upsample = subpel_conv3x3(in_ch, out_ch, upsample)

    def forward(self, x: Tensor) -> Tensor:
        out = self.igdn(self.conv(self.leaky_relu(self.subpel_conv(x))))
        return out + self.upsample(x)


class AttentionUnit(nn.Module):
    """The residual unit of :class:`AttentionBlock`: ReLU(x + 1x1 -> 3x3 -> 1x1 at N/2 inside)."""

    def __init__(self, N: int):
        super().__init__()
        self.conv = nn.Sequential(
            conv1x1(N, N // 2),
            nn.ReLU(),
            conv3x3(N // 2, N // 2),
            nn.ReLU(),
            conv1x1(N // 2, N),
        )
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.conv(x))


class AttentionBlock(nn.Module):
    """Cheng 2020's simplified attention module (no non-local block):
    ``x + trunk(x) * sigmoid(mask(x))``, the trunk three residual units, the mask branch
    three more and a 1x1 convolution. Shape-preserving, N channels."""

    def __init__(self, N: int):
        super().__init__()
        self.conv_a = nn.Sequential(AttentionUnit(N), AttentionUnit(N), AttentionUnit(N))
        self.conv_b = nn.Sequential(
            AttentionUnit(N), AttentionUnit(N), AttentionUnit(N), conv1x1(N, N)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_a(x) * torch.sigmoid(self.conv_b(x))


class ResidualBottleneckBlock(nn.Module):
    """ELIC's block (He et al. 2022, "ELIC: efficient learned image compression with
    unevenly grouped space-channel contextual adaptive coding"; the bottleneck of He et al.
    2016, "Deep residual learning"): 1x1 to half width, ReLU, 3x3, ReLU, 1x1 back, plus x."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        mid_ch = min(in_ch, out_ch) // 2
        self.conv1 = conv1x1(in_ch, mid_ch)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(mid_ch, mid_ch)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(mid_ch, out_ch)
        self.skip = conv1x1(in_ch, out_ch) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return out + self.skip(x)


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only positions decoded before the current one in raster
    order (PixelCNN, van den Oord et al. 2016; the context model of Minnen et al. 2018).

    Type "A" hides the current position too (the first layer of a context model), type
    "B" lets it through. The mask is a persistent buffer ``mask`` of the weight's shape
    (CompressAI's checkpoints carry it as ``context_prediction.mask``); the convolution
    runs with ``weight * mask`` and leaves the stored weight as it is. Other arguments
    are nn.Conv2d's (a context model uses an odd kernel with 'same' padding).
    """

    def __init__(self, *args, mask_type: str = "A", **kwargs):
        super().__init__(*args, **kwargs)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', not {mask_type!r}")
        self.register_buffer("mask", self._mask(mask_type))

    def _mask(self, mask_type: str) -> Tensor:
        """Ones on the rows above the centre and left of it (and on it for type B)."""
        mask = torch.ones_like(self.weight.detach())
        _, _, h, w = mask.shape
        mask[:, :, h // 2, w // 2 + (mask_type == "B") :] = 0
        mask[:, :, h // 2 + 1 :] = 0
        return mask

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


class CheckerboardMaskedConv2d(MaskedConv2d):
    """The spatial context of the checkerboard model (He et al. 2021, "Checkerboard context
    model for efficient learned image compression"; ELIC's g_sp): each position sees its
    neighbours of the other colour, those at odd Manhattan distance (and itself for type B)."""

    def _mask(self, mask_type: str) -> Tensor:
        mask = torch.ones_like(self.weight.detach())
        _, _, h, w = mask.shape
        mask[:, :, 0::2, 0::2] = 0
        mask[:, :, 1::2, 1::2] = 0
        mask[:, :, h // 2, w // 2] = float(mask_type == "B")
        return mask
