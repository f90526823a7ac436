"""The transforms and context networks have CompressAI 1.2.8's state_dict keys and shapes.

The expectations below are written from CompressAI's code (layers/layers.py,
models/google.py, waseda.py, sensetime.py), one small rule per block, and were checked
once against CompressAI itself (equal keys, shapes and order; equal outputs at equal
weights). CompressAI is not needed here. Its GDN also stores four constant buffers
(``*.beta_reparam.pedestal`` ...) that trellic's GDN holds as constants: they are not
in these expectations (the importer checks and drops them).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trellic.models import cheng2020, elic, transforms
from trellic.models.blocks import CheckerboardMaskedConv2d, MaskedConv2d

Shapes = dict[str, tuple[int, ...]]


# -- CompressAI's layout, block by block ----------------------------------------------------
def conv(name: str, cin: int, cout: int, k: int) -> Shapes:
    return {f"{name}.weight": (cout, cin, k, k), f"{name}.bias": (cout,)}


def deconv(name: str, cin: int, cout: int, k: int) -> Shapes:
    return {f"{name}.weight": (cin, cout, k, k), f"{name}.bias": (cout,)}


def gdn(name: str, c: int) -> Shapes:
    return {f"{name}.beta": (c,), f"{name}.gamma": (c, c)}


def residual_block(p: str, cin: int, cout: int) -> Shapes:
    skip = conv(f"{p}.skip", cin, cout, 1) if cin != cout else {}
    return {**conv(f"{p}.conv1", cin, cout, 3), **conv(f"{p}.conv2", cout, cout, 3), **skip}


def residual_block_with_stride(p: str, cin: int, cout: int) -> Shapes:
    return {**conv(f"{p}.conv1", cin, cout, 3), **conv(f"{p}.conv2", cout, cout, 3),
            **gdn(f"{p}.gdn", cout), **conv(f"{p}.skip", cin, cout, 1)}


def residual_block_upsample(p: str, cin: int, cout: int) -> Shapes:
    return {**conv(f"{p}.subpel_conv.0", cin, cout * 4, 3), **conv(f"{p}.conv", cout, cout, 3),
            **gdn(f"{p}.igdn", cout), **conv(f"{p}.upsample.0", cin, cout * 4, 3)}


def attention(p: str, n: int) -> Shapes:
    shapes = {}
    for branch in ("conv_a", "conv_b"):
        for unit in range(3):
            u = f"{p}.{branch}.{unit}.conv"
            shapes |= conv(f"{u}.0", n, n // 2, 1) | conv(f"{u}.2", n // 2, n // 2, 3)
            shapes |= conv(f"{u}.4", n // 2, n, 1)
    return shapes | conv(f"{p}.conv_b.3", n, n, 1)


def bottleneck(p: str, n: int) -> Shapes:
    return {**conv(f"{p}.conv1", n, n // 2, 1), **conv(f"{p}.conv2", n // 2, n // 2, 3),
            **conv(f"{p}.conv3", n // 2, n, 1)}


def shapes_of(module: nn.Module) -> Shapes:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def merged(*parts: Shapes) -> Shapes:
    return {key: shape for part in parts for key, shape in part.items()}


# -- the architectures ----------------------------------------------------------------------
def cheng_expected(N: int, attend: bool) -> tuple[Shapes, Shapes]:
    """g_a, g_s of Cheng2020Anchor (attend=False) / Cheng2020Attention (waseda.py)."""
    a = [("rbs", 3, N), ("rb",), ("rbs", N, N)] + [("attn",)] * attend
    a += [("rb",), ("rbs", N, N), ("rb",), ("conv",)] + [("attn",)] * attend
    s = [("attn",)] * attend + [("rb",), ("rbu",), ("rb",), ("rbu",)] + [("attn",)] * attend
    s += [("rb",), ("rbu",), ("rb",), ("subpel",)]
    rules = {
        "rbs": lambda p, cin, cout: residual_block_with_stride(p, cin, cout),
        "rb": lambda p: residual_block(p, N, N),
        "rbu": lambda p: residual_block_upsample(p, N, N),
        "attn": lambda p: attention(p, N),
        "conv": lambda p: conv(p, N, N, 3),
        "subpel": lambda p: conv(f"{p}.0", N, 3 * 4, 3),
    }
    g_a = merged(*(rules[kind](f"{i}", *args) for i, (kind, *args) in enumerate(a)))
    g_s = merged(*(rules[kind](f"{i}", *args) for i, (kind, *args) in enumerate(s)))
    return g_a, g_s


def elic_expected_transforms(N: int, M: int) -> tuple[Shapes, Shapes]:
    """g_a, g_s of Elic2022Official and Elic2022Chandelier (sensetime.py): the same."""
    g_a = merged(
        conv("0", 3, N, 5), *(bottleneck(f"{i}", N) for i in (1, 2, 3)), conv("4", N, N, 5),
        *(bottleneck(f"{i}", N) for i in (5, 6, 7)), attention("8", N), conv("9", N, N, 5),
        *(bottleneck(f"{i}", N) for i in (10, 11, 12)), conv("13", N, M, 5), attention("14", M),
    )
    g_s = merged(
        attention("0", M), deconv("1", M, N, 5), *(bottleneck(f"{i}", N) for i in (2, 3, 4)),
        deconv("5", N, N, 5), attention("6", N), *(bottleneck(f"{i}", N) for i in (7, 8, 9)),
        deconv("10", N, N, 5), *(bottleneck(f"{i}", N) for i in (11, 12, 13)),
        deconv("14", N, 3, 5),
    )
    return g_a, g_s


@pytest.mark.parametrize("N", [8, 12])
@pytest.mark.parametrize("attend", [False, True], ids=["anchor", "attention"])
def test_cheng2020_transforms_have_compressais_keys_and_shapes(N, attend):
    g_a, g_s = cheng2020.cheng2020_transforms(N, attend)
    expected_a, expected_s = cheng_expected(N, attend)
    assert shapes_of(g_a) == expected_a
    assert shapes_of(g_s) == expected_s


def test_cheng2020_anchor_at_n8_written_out():
    g_a, g_s = cheng2020.cheng2020_transforms(8, attention=False)
    a, s = shapes_of(g_a), shapes_of(g_s)
    assert (len(a), len(s)) == (38, 42)  # CompressAI's, less 4 GDN constants per GDN
    assert list(a)[:10] == [
        "0.conv1.weight", "0.conv1.bias", "0.conv2.weight", "0.conv2.bias", "0.gdn.beta",
        "0.gdn.gamma", "0.skip.weight", "0.skip.bias", "1.conv1.weight", "1.conv1.bias",
    ]
    assert a["0.skip.weight"] == (8, 3, 1, 1) and a["6.weight"] == (8, 8, 3, 3)
    assert s["1.subpel_conv.0.weight"] == (32, 8, 3, 3) and s["1.igdn.gamma"] == (8, 8)
    assert s["7.0.weight"] == (12, 8, 3, 3)
    attention_a, _ = cheng2020.cheng2020_transforms(8, attention=True)
    assert len(shapes_of(attention_a)) == 114
    assert shapes_of(attention_a)["3.conv_a.0.conv.2.weight"] == (4, 4, 3, 3)


@pytest.mark.parametrize("N", [8, 12])
def test_cheng2020_hyper_networks_have_compressais_keys_and_shapes(N):
    h_a, h_s = cheng2020.cheng2020_hyper(N)
    wide = N * 3 // 2
    assert shapes_of(h_a) == merged(*(conv(f"{i}", N, N, 3) for i in (0, 2, 4, 6, 8)))
    assert shapes_of(h_s) == merged(
        conv("0", N, N, 3), conv("2.0", N, N * 4, 3), conv("4", N, wide, 3),
        conv("6.0", wide, wide * 4, 3), conv("8", wide, 2 * N, 3),
    )
    for masked in (MaskedConv2d, CheckerboardMaskedConv2d):  # context_prediction
        assert shapes_of(masked(N, 2 * N, kernel_size=5, padding=2)) == {
            "weight": (2 * N, N, 5, 5), "bias": (2 * N,), "mask": (2 * N, N, 5, 5)
        }


def test_relu_factorized_transforms_have_compressais_keys_and_shapes():
    N, M = 8, 12
    convs = ((3, N), (N, N), (N, N), (N, M))
    assert shapes_of(transforms.relu_analysis_transform(N, M)) == merged(
        *(conv(f"{2 * i}", cin, cout, 5) for i, (cin, cout) in enumerate(convs))
    )
    deconvs = ((M, N), (N, N), (N, N), (N, 3))
    assert shapes_of(transforms.relu_synthesis_transform(N, M)) == merged(
        *(deconv(f"{2 * i}", cin, cout, 5) for i, (cin, cout) in enumerate(deconvs))
    )


@pytest.mark.parametrize(("N", "M"), [(16, 32), (12, 40)])
def test_elic_transforms_have_compressais_keys_and_shapes(N, M):
    g_a, g_s = elic.elic_transforms(N, M)
    expected_a, expected_s = elic_expected_transforms(N, M)
    assert shapes_of(g_a) == expected_a
    assert shapes_of(g_s) == expected_s
    assert len(expected_a) == len(expected_s) == 138


@pytest.mark.parametrize("variant", elic.VARIANTS)
def test_elic_hyper_networks_have_compressais_keys_and_shapes(variant):
    N, M = 16, 32
    h_a, h_s = elic.elic_hyper(N, M, variant)
    assert shapes_of(h_a) == merged(conv("0", M, N, 3), conv("2", N, N, 5), conv("4", N, N, 5))
    last = deconv("4", 24, 2 * N, 3) if variant == "official" else conv("4", 24, 2 * M, 3)
    assert shapes_of(h_s) == merged(deconv("0", N, N, 5), deconv("2", N, 24, 5), last)


# Default groups 16, 16, 32, 64, 192 at N = 192, M = 320, widths read from CompressAI:
# channel context inputs (k = 1..4) and param aggregation widths (k = 0..4).
ELIC_DEFAULTS = {
    "official": ([16, 32, 64, 128], [[416, 384, 384, 32], [448, 384, 384, 32],
                                     [512, 384, 384, 64], [640, 469, 384, 128],
                                     [1152, 896, 640, 384]]),
    "chandelier": ([16, 32, 48, 80], [[672, 640, 512, 32], [704, 640, 512, 32],
                                      [768, 640, 512, 64], [896, 640, 512, 128],
                                      [1408, 640, 512, 384]]),
}


@pytest.mark.parametrize("variant", elic.VARIANTS)
def test_elic_context_networks_have_compressais_keys_and_shapes(variant):
    groups = elic.elic_groups(320)
    assert groups == [16, 16, 32, 64, 192]
    inputs, widths = ELIC_DEFAULTS[variant]
    channel = elic.elic_channel_context(groups, variant)  # latent_codec.y.channel_context.
    assert shapes_of(channel) == merged(*(
        conv(f"y{k}.0", inputs[k - 1], 224, 5) | conv(f"y{k}.2", 224, 128, 5)
        | conv(f"y{k}.4", 128, 2 * groups[k], 5)
        for k in range(1, 5)
    ))
    # latent_codec.y.latent_codec.y{k}.context_prediction. / .entropy_parameters.
    spatial = elic.elic_spatial_context(groups)
    aggregation = elic.elic_param_aggregation(192, 320, groups, variant)
    for k, g in enumerate(groups):
        assert isinstance(spatial[k], CheckerboardMaskedConv2d)
        assert shapes_of(spatial[k]) == {
            "weight": (2 * g, g, 5, 5), "bias": (2 * g,), "mask": (2 * g, g, 5, 5)
        }
        w = widths[k]
        assert shapes_of(aggregation[k]) == merged(
            conv("0", w[0], w[1], 1), conv("2", w[1], w[2], 1), conv("4", w[2], w[3], 1)
        )


def test_elic_builders_refuse_what_compressai_cannot_build():
    with pytest.raises(ValueError, match="variant"):
        elic.elic_hyper(16, 32, "reimplementation")
    with pytest.raises(ValueError, match="add up"):
        elic.elic_param_aggregation(16, 32, [8, 8, 8], "official")
    with pytest.raises(ValueError, match="M > 128"):
        elic.elic_groups(128)


# -- what the networks compute ---------------------------------------------------------------
@pytest.mark.parametrize("build", [
    lambda: (cheng2020.cheng2020_transforms(8, False), 8),
    lambda: (cheng2020.cheng2020_transforms(8, True), 8),
    lambda: (elic.elic_transforms(8, 16), 16),
    lambda: ((transforms.relu_analysis_transform(8, 12),
              transforms.relu_synthesis_transform(8, 12)), 12),
], ids=["cheng2020-anchor", "cheng2020-attn", "elic2022", "bmshj2018-factorized-relu"])
def test_transforms_divide_and_restore_the_image_size_by_16(build):
    torch.manual_seed(0)
    (g_a, g_s), M = build()
    with torch.no_grad():
        y = g_a(torch.rand(1, 3, 64, 64))
        assert y.shape == (1, M, 4, 4)
        assert g_s(y).shape == (1, 3, 64, 64)


def test_hyper_networks_map_y_to_z_and_back_to_the_gaussian_parameters():
    torch.manual_seed(0)
    y = torch.randn(1, 8, 8, 8)
    h_a, h_s = cheng2020.cheng2020_hyper(8)
    with torch.no_grad():
        assert h_a(y).shape == (1, 8, 2, 2)
        assert h_s(h_a(y)).shape == (1, 16, 8, 8)
    for variant, params in (("official", 2 * 8), ("chandelier", 2 * 16)):
        h_a, h_s = elic.elic_hyper(8, 16, variant)
        with torch.no_grad():
            z = h_a(torch.randn(1, 16, 8, 8))
            assert z.shape == (1, 8, 2, 2)
            assert h_s(z).shape == (1, params, 8, 8)


def _support(conv: nn.Conv2d, size: tuple[int, int], at: tuple[int, int]) -> set[tuple[int, int]]:
    """The input positions that the output at ``at`` depends on (its gradient's support)."""
    x = torch.randn(1, conv.in_channels, *size, requires_grad=True)
    conv(x)[0, :, at[0], at[1]].sum().backward()
    return {tuple(p) for p in (x.grad[0].abs().sum(0) > 0).nonzero().tolist()}


@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_masked_convolution_sees_only_positions_before_in_raster_order(mask_type):
    torch.manual_seed(0)
    layer = MaskedConv2d(3, 4, kernel_size=5, padding=2, mask_type=mask_type)
    for at in [(0, 0), (0, 3), (2, 0), (3, 4), (5, 6)]:
        seen = _support(layer, (6, 7), at)
        before = {(i, j) for i, j in seen if (i, j) < at}
        assert seen == before | ({at} if mask_type == "B" else set())
        # and everything before it within the kernel's reach is seen
        reach = {(i, j) for i in range(6) for j in range(7)
                 if abs(i - at[0]) <= 2 and abs(j - at[1]) <= 2 and (i, j) < at}
        assert before == reach


def test_masks_are_the_papers():
    a = MaskedConv2d(1, 1, kernel_size=5, padding=2).mask[0, 0].int().tolist()
    assert a == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0] * 5, [0] * 5]
    b = MaskedConv2d(1, 1, kernel_size=5, padding=2, mask_type="B").mask[0, 0].int().tolist()
    assert b[2] == [1, 1, 1, 0, 0]
    board = CheckerboardMaskedConv2d(1, 1, kernel_size=5, padding=2).mask[0, 0].int().tolist()
    assert board == [[0, 1, 0, 1, 0], [1, 0, 1, 0, 1], [0, 1, 0, 1, 0],
                     [1, 0, 1, 0, 1], [0, 1, 0, 1, 0]]
    with pytest.raises(ValueError, match="mask_type"):
        MaskedConv2d(1, 1, kernel_size=5, mask_type="C")


def test_checkerboard_convolution_sees_only_the_other_colour():
    torch.manual_seed(0)
    layer = CheckerboardMaskedConv2d(2, 4, kernel_size=5, padding=2)
    for at in [(0, 0), (2, 3), (4, 4)]:
        seen = _support(layer, (6, 6), at)
        assert seen and all((i + j - at[0] - at[1]) % 2 == 1 for i, j in seen)


def test_masked_convolution_leaves_its_stored_weight_alone():
    torch.manual_seed(0)
    layer = MaskedConv2d(2, 3, kernel_size=3, padding=1)
    stored = layer.weight.detach().clone()
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        out = layer(x)
    assert torch.equal(layer.weight, stored)
    plain = nn.functional.conv2d(x, stored * layer.mask, layer.bias, padding=1)
    assert torch.equal(out, plain)
