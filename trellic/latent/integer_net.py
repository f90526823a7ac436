"""Integer hyper-synthesis: entropy parameters that are bit-identical on every machine.

The decoder picks every pmf row (and, for TCQ, nothing else: states follow from
the decoded indices) from the scales that h_s predicts. In float arithmetic a
convolution's last bit depends on the kernel (AVX-512 or AVX2 oneDNN, plain
ATen, the thread count, a GPU), a scale near a table boundary then selects a
different row on the decoder, and the range decoder desynchronises. Ballé,
Johnston and Minnen, "Integer networks for data compression with latent-variable
models" (ICLR 2019), remove the cause: the entropy-parameter network computes
in integers.

Here h_s (a stack of Conv2d / ConvTranspose2d with LeakyReLU or ReLU after them,
PixelShuffle for sub-pixel upsampling, masked convolutions, nested Sequentials
such as CompressAI's ``subpel_conv3x3``) runs in fixed point (:class:`Precision`):

- activations are integers in units of ``2**-fraction_bits``, clamped to
  ``2**integer_bits`` real units;
- each layer's weights are integers up to ``weight_max`` in magnitude with one
  scale per output channel, the scale a dyadic rational (an integer multiplier
  and a shift);
- a convolution of integer tensors runs in float64 and is exact: every product
  and every partial sum is an integer below ``2**53`` in magnitude (checked for
  each layer from its weights and the activation limit), so no rounding happens
  in any order of summation, on any kernel;
- rescaling (the accumulator times the multiplier, with a right shift first if
  the product would leave int64), bias, LeakyReLU (slope as
  ``LEAKY_NUMERATOR / 2**LEAKY_BITS``) and clamping are int64 operations with
  floor division by powers of two;
- PixelShuffle moves integers and computes nothing. An activation after it is
  applied with the convolution before it: both act on each value alone, so the
  order does not change the result;
- a convolution with a ``mask`` buffer (:class:`trellic.models.blocks.MaskedConv2d`,
  CompressAI's MaskedConv2d) is the convolution with weights ``weight * mask``.

Two precisions: :data:`PRECISION_1` (2**-8 activations, 7-bit weights), in which
every file of the hyperprior codecs is coded, and :data:`PRECISION_2` (2**-16,
up to 15-bit weights, 24-bit scales) of the context models, whose integer means
feed later parts of y and must follow the float model closely.

The integer weights, multipliers and shifts are a deterministic function of the
stored float weights: ``round(w / s)`` with ``s = max|w| / weight_max`` per
output channel uses only correctly rounded IEEE operations (max, division,
rounding, frexp) on the float64 copies of the weights, so every machine derives
the same integers. The output, an integer divided by ``2**fraction_bits``, is an
exact float64 value correctly rounded to float32, so means and scales (and the
scale levels chosen from them by comparison) are the same everywhere.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_BITS = 16
_EXACT_FLOAT64 = 1 << 53
_INT64_HEADROOM = 1 << 61  # products and sums of the rescale stay below this


@dataclass(frozen=True)
class Precision:
    """The fixed point of an integer network.

    Attributes:
        fraction_bits: activations are integers in units of ``2**-fraction_bits``.
        integer_bits: |activation| <= ``2**integer_bits`` real units (clamped).
        weight_max: the largest integer weight; ``adaptive``: halved per layer (to
            ``2**k - 1``) until the layer's float64 convolution is exact.
        multiplier_bits: the channel scale's bits. Fixed point (``adaptive`` False): the
            scale is ``multiplier / 2**multiplier_bits``; floating: a ``multiplier_bits``
            significand and a shift per channel, the accumulator shifted right first (by
            as few bits as keep the product in int64).
    """

    fraction_bits: int
    integer_bits: int
    weight_max: int
    multiplier_bits: int
    adaptive: bool

    @property
    def activation_limit(self) -> int:
        return 1 << (self.fraction_bits + self.integer_bits)


# The hyperprior codecs' (format 2 files of mbt2018-mean, bmshj2018-hyperprior, ms2020-channel):
# every file they wrote depends on it, bit for bit.
PRECISION_1 = Precision(fraction_bits=8, integer_bits=12, weight_max=127, multiplier_bits=20,
                        adaptive=False)
# The context models' (serial, checkerboard, ELIC): their means feed later parts and come from
# the integer networks, so they need float-like accuracy (activations to 2**-16, weights to
# 15 bits, scales to 24 significant bits).
PRECISION_2 = Precision(fraction_bits=20, integer_bits=12, weight_max=(1 << 15) - 1,
                        multiplier_bits=24, adaptive=True)


@dataclass(frozen=True)
class IntegerConv:
    """One convolution in fixed point.

    weight: float64 tensor of integers in the layer's own layout (int64 for an
    ``integer_product``: a 1x1 convolution run as an int64 matrix product);
    multiplier, shift: (C_out,) int64, the channel scale is
    ``multiplier / 2**(shift + pre_shift)``; bias: (C_out,) int64 in units of
    ``2**-(fraction_bits + shift)``; pre_shift: the accumulator's right shift before
    the product; leaky_numerator: the LeakyReLU slope times 2**LEAKY_BITS, or None for
    no activation; limit: the activation limit.
    """

    weight: Tensor
    multiplier: Tensor
    shift: Tensor
    bias: Tensor
    pre_shift: int
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    leaky_numerator: int | None
    limit: int
    integer_product: bool

    @classmethod
    def from_float(
        cls,
        layer: nn.Conv2d | nn.ConvTranspose2d,
        slope: float | None,
        outputs: slice = slice(None),
        precision: Precision = PRECISION_1,
    ) -> IntegerConv:
        """``outputs``: the output channels to compute (each is derived on its own, so a
        subset gives exactly those channels of the whole layer).

        Raises:
            ValueError: a layer too wide for an exact float64 convolution or whose rescale
                would overflow int64.
        """
        transposed = isinstance(layer, nn.ConvTranspose2d)
        _check_runnable(layer)
        weight = layer.weight.detach().to(torch.float64)
        mask = getattr(layer, "mask", None)
        if isinstance(mask, Tensor):
            weight = weight * mask.detach().to(torch.float64)
        out_dim = 1 if transposed else 0
        weight = weight[:, outputs] if transposed else weight[outputs]
        reduce = [d for d in range(weight.dim()) if d != out_dim]
        amax = weight.abs().amax(dim=reduce)
        shape = [1] * weight.dim()
        shape[out_dim] = -1
        limit = precision.activation_limit
        # A 1x1 convolution of the context models runs as an int64 matrix product: exact up
        # to 2**62 instead of float64's 2**53, room for their wide layers' 15-bit weights.
        integer_product = precision.adaptive and _pointwise(layer)
        exact_bound = _INT64_HEADROOM * 2 if integer_product else _EXACT_FLOAT64
        weight_max = precision.weight_max
        while True:
            scale = torch.where(amax > 0, amax / weight_max, torch.ones_like(amax))
            integer_weight = torch.round(weight / scale.view(shape))
            per_output = float(integer_weight.abs().sum(dim=reduce).max())
            if per_output * limit < exact_bound or not precision.adaptive or weight_max < 2:
                break
            weight_max = (weight_max + 1) // 2 - 1
        if per_output * limit >= exact_bound:
            raise ValueError("layer too wide for an exact float64 convolution")
        multiplier, shift, pre_shift = _channel_scales(scale, per_output * limit, precision)
        if integer_product:
            integer_weight = integer_weight.to(torch.int64)
        bias = 0 * amax if layer.bias is None else layer.bias.detach()[outputs].to(torch.float64)
        units = torch.ldexp(torch.ones_like(bias), precision.fraction_bits + shift)
        fixed_bias = torch.round(bias * units).to(torch.int64)
        if float(fixed_bias.abs().max()) >= _INT64_HEADROOM:
            raise ValueError("layer bias would overflow int64")
        return cls(
            integer_weight,
            multiplier,
            shift,
            fixed_bias,
            pre_shift,
            transposed,
            layer.stride[0],
            layer.padding[0],
            layer.output_padding[0] if transposed else 0,
            None if slope is None else round(slope * (1 << LEAKY_BITS)),
            limit,
            integer_product,
        )

    def __call__(self, x: Tensor) -> Tensor:
        """x: int64 (B, C_in, h, w) fixed point -> int64 (B, C_out, h', w') fixed point."""
        if self.integer_product:
            b, _, h, w = x.shape
            product = x.permute(0, 2, 3, 1).reshape(b * h * w, -1) @ self.weight.flatten(1).T
            acc = product.view(b, h, w, -1).permute(0, 3, 1, 2)
        elif self.transposed:
            acc = F.conv_transpose2d(
                x.to(torch.float64),
                self.weight,
                stride=self.stride,
                padding=self.padding,
                output_padding=self.output_padding,
            )
        elif self.padding == 0 and x.shape[-2:] == self.weight.shape[-2:]:
            # The kernel covers the input (a context model's patches): one matrix product,
            # exact in any order of summation like the convolution, and a few times faster.
            product = x.flatten(1).to(torch.float64) @ self.weight.flatten(1).T
            acc = product.view(x.shape[0], -1, 1, 1)
        else:
            acc = F.conv2d(x.to(torch.float64), self.weight, stride=self.stride,
                           padding=self.padding)
        shift = self.shift.view(1, -1, 1, 1)
        scaled = (acc.to(torch.int64) >> self.pre_shift) * self.multiplier.view(1, -1, 1, 1)
        scaled += self.bias.view(1, -1, 1, 1) + (1 << (shift - 1))
        out = scaled >> shift  # floor division: round half up
        if self.leaky_numerator is not None:
            out = torch.where(out >= 0, out, (out * self.leaky_numerator) >> LEAKY_BITS)
        return out.clamp_(-self.limit, self.limit)


def _pointwise(layer: nn.Conv2d | nn.ConvTranspose2d) -> bool:
    """A 1x1 convolution, stride 1, no padding: a matrix product over the channels."""
    return (not isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (1, 1)
            and layer.stride == (1, 1) and layer.padding == (0, 0))


def _channel_scales(
    scale: Tensor, accumulator_bound: float, precision: Precision
) -> tuple[Tensor, Tensor, int]:
    """Each channel's float64 scale as an integer multiplier and shift (see
    :class:`Precision`), and the accumulator's pre-shift; exact float64 operations only."""
    bits = precision.multiplier_bits
    if not precision.adaptive:
        multiplier = torch.round(scale * (1 << bits)).to(torch.int64)
        if accumulator_bound * float(multiplier.max()) >= 2.0**62:
            raise ValueError("layer rescale would overflow int64")
        return multiplier, torch.full_like(multiplier, bits), 0
    significand, exponent = torch.frexp(scale)  # scale = significand * 2**exponent
    multiplier = torch.round(torch.ldexp(significand, torch.full_like(exponent, bits)))
    carry = multiplier >= (1 << bits)  # rounded up to the next power of two
    multiplier = torch.where(carry, multiplier / 2, multiplier).to(torch.int64)
    total = bits - exponent.to(torch.int64) - carry.to(torch.int64)  # scale ~ m / 2**total
    pre_shift = max(0, math.ceil(math.log2(max(accumulator_bound, 1.0))) + bits - 61)
    shift = total - pre_shift
    if int(shift.min()) < 1:
        raise ValueError("layer scale too large for its fixed-point rescale")
    return multiplier, shift, pre_shift


class IntegerSynthesis:
    """A float Sequential of convolutions, activations and PixelShuffles, run exactly in
    fixed point.

    Args:
        network: ``nn.Sequential`` of Conv2d / ConvTranspose2d layers (masked ones too),
            each optionally followed by ``nn.LeakyReLU`` or ``nn.ReLU``, with
            ``nn.PixelShuffle`` anywhere and nested Sequentials opened in place (h_s of the
            hyperprior codecs, Cheng 2020's h_s, 1x1 entropy-parameter stacks).
        outputs: the channels of the network's output to compute (e.g. only the scales of
            an h_s that predicts means and scales: the rest of its work is skipped). Behind
            PixelShuffles, output channel c is made of the last convolution's channels
            c r**2 .. c r**2 + r**2 - 1 (r the product of their factors): a contiguous subset
            maps to those; one with a step is refused.
        precision: the fixed point (:data:`PRECISION_1`, the hyperprior codecs', or
            :data:`PRECISION_2`, the context models').
    Raises:
        ValueError: a layer of another kind, an activation with no convolution before it,
            a convolution too wide for exact arithmetic, or a stepped ``outputs`` behind
            a PixelShuffle.
    """

    def __init__(self, network: nn.Sequential, outputs: slice = slice(None),
                 precision: Precision = PRECISION_1):
        self.precision = precision
        layers = _flatten(network)
        convs = [i for i, layer in enumerate(layers) if isinstance(layer, _CONVOLUTION)]
        last_conv = convs[-1] if convs else -1
        self.layers: list[IntegerConv | nn.PixelShuffle] = []
        for index, layer in enumerate(layers):
            if isinstance(layer, nn.PixelShuffle):
                self.layers.append(layer)  # moves int64 values as it moves floats
                continue
            if isinstance(layer, _ACTIVATION):
                if not isinstance(_neighbour(layers, index, -1), _CONVOLUTION):
                    raise ValueError(f"integer synthesis runs a {type(layer).__name__} only "
                                     "after a convolution (PixelShuffles between allowed)")
                continue
            if not isinstance(layer, _CONVOLUTION):
                raise ValueError(f"integer synthesis cannot run a {type(layer).__name__}")
            after = _neighbour(layers, index, 1)
            slope = None
            if isinstance(after, _ACTIVATION):
                slope = getattr(after, "negative_slope", 0.0)
            channels = slice(None)
            if index == last_conv:
                channels = _before_shuffles(outputs, layer, layers[index + 1 :])
            self.layers.append(IntegerConv.from_float(layer, slope, channels, precision))

    def to_fixed(self, values: Tensor) -> Tensor:
        """Real values -> int64 fixed point (round half to even, clamped to the limit)."""
        units = 1 << self.precision.fraction_bits
        limit = self.precision.activation_limit
        fixed = torch.round(values.to(torch.float64) * units)
        return fixed.clamp_(-limit, limit).to(torch.int64)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        """x: real input (B, C, h, w) -> real output, float32, the same on every machine
        (an exact float64 value, correctly rounded)."""
        out = self.to_fixed(x)
        for layer in self.layers:
            out = layer(out)
        return (out.to(torch.float64) / (1 << self.precision.fraction_bits)).to(torch.float32)


_CONVOLUTION = nn.Conv2d | nn.ConvTranspose2d
_ACTIVATION = nn.LeakyReLU | nn.ReLU


def _check_runnable(layer: nn.Conv2d | nn.ConvTranspose2d) -> None:
    """Refuse what :class:`IntegerConv` does not implement: it reads one stride, padding and
    output padding for both axes, zero padding, no groups and no dilation."""
    settings = (layer.stride, layer.padding, layer.output_padding, layer.dilation)
    if (
        any(not isinstance(v, tuple) or len(set(v)) != 1 for v in settings)
        or layer.dilation[0] != 1
        or layer.groups != 1
        or layer.padding_mode != "zeros"
    ):
        raise ValueError(
            f"integer synthesis cannot run a {type(layer).__name__} with groups, dilation, a "
            "padding mode other than zeros, or unequal strides / paddings along H and W"
        )


def _flatten(network: nn.Sequential) -> list[nn.Module]:
    """The layers of ``network`` in order, nested Sequentials opened in place."""
    return [
        leaf
        for layer in network
        for leaf in (_flatten(layer) if isinstance(layer, nn.Sequential) else [layer])
    ]


def _neighbour(layers: list[nn.Module], index: int, step: int) -> nn.Module | None:
    """The layer next to ``layers[index]`` (step 1: after, -1: before), past PixelShuffles."""
    index += step
    while 0 <= index < len(layers) and isinstance(layers[index], nn.PixelShuffle):
        index += step
    return layers[index] if 0 <= index < len(layers) else None


def _before_shuffles(outputs: slice, last: nn.Module, after: list[nn.Module]) -> slice:
    """The channels of the last convolution that the network's ``outputs`` come from.

    PixelShuffle(r) makes its output channel c of input channels c r**2 .. c r**2 + r**2 - 1.
    """
    factor = math.prod(layer.upscale_factor**2 for layer in after
                       if isinstance(layer, nn.PixelShuffle))
    if factor == 1 or outputs == slice(None):
        return outputs
    start, stop, step = outputs.indices(last.out_channels // factor)
    if step != 1:
        raise ValueError(f"output channels {outputs} with a step cannot be selected "
                         "behind a PixelShuffle: ask for a contiguous range")
    return slice(start * factor, stop * factor)


class CachedIntegerSynthesis:
    """The :class:`IntegerSynthesis` of a float network, derived again only when the
    network's weights change.

    The cache compares the values of the weights and buffers (a copy kept at derivation), not
    version counters or storage addresses: in-place updates through ``.data``,
    replaced tensors at a reused address and inference-mode tensors all count.
    The comparison costs a pass over the weights, small beside the convolutions.

    Args:
        outputs, precision: as for :class:`IntegerSynthesis`.
    """

    def __init__(self, outputs: slice = slice(None), precision: Precision = PRECISION_1):
        self.outputs = outputs
        self.precision = precision
        self._weights: list[Tensor] = []
        self._synthesis: IntegerSynthesis | None = None

    def _current(self, network: nn.Sequential) -> bool:
        weights = _tensors(network)
        return len(weights) == len(self._weights) and all(
            w.dtype == saved.dtype and w.shape == saved.shape and torch.equal(w, saved)
            for w, saved in zip(weights, self._weights, strict=True)
        )

    def __call__(self, network: nn.Sequential, x: Tensor, check: bool = True) -> Tensor:
        """``IntegerSynthesis(network, outputs)(x)``; ``check=False`` trusts that the weights
        are those of the last call (a decoder's loop over parts, weights untouched)."""
        if self._synthesis is None or (check and not self._current(network)):
            self._weights = [w.detach().clone() for w in _tensors(network)]
            on_cpu = (network if all(w.device.type == "cpu" for w in self._weights)
                      else _cpu_copy(network))
            self._synthesis = IntegerSynthesis(on_cpu, self.outputs, self.precision)
        # Always on the CPU, whatever device the float network runs on: the exactness
        # argument is the CPU's float64 convolution (a GPU's may use Winograd or FFT).
        return self._synthesis(x.cpu()).to(x.device)


def _tensors(network: nn.Sequential) -> list[Tensor]:
    """What the integer layers are derived from: the weights and the buffers (masks)."""
    return [*network.parameters(), *network.buffers()]


def _cpu_copy(network: nn.Sequential) -> nn.Sequential:
    """A CPU copy of ``network`` (the integer layers are derived from it)."""
    return copy.deepcopy(network).cpu()
