"""The checkerboard context model: two passes, anchors first, exact on every kernel set."""


import torch

from tests.test_architectures import seeded_model
from trellic.latent.checkerboard import embed, unembed

ARCHITECTURE = "mbt2018-checkerboard"


def test_parts_are_compressais_checkerboard_colours_and_embed_inverts_unembed():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    anchors, others = unembed(x)
    assert anchors.shape == others.shape == (2, 3, 4, 3)
    assert torch.equal(anchors[0, 0, 0], x[0, 0, 0, 0::2])  # even rows: even columns
    assert torch.equal(anchors[0, 0, 1], x[0, 0, 1, 1::2])  # odd rows: odd columns
    assert torch.equal(others[0, 0, 1], x[0, 0, 1, 0::2])
    assert torch.equal(embed(anchors, others), x)


def test_anchors_ignore_the_other_colour_and_non_anchors_read_the_anchors():
    model = seeded_model(ARCHITECTURE)
    codec, quantizer = model.latent_codec, model.quantizer("tcq4")
    generator = torch.Generator().manual_seed(3)
    y = 5 * torch.randn(1, 32, 8, 12, generator=generator)
    z = 2 * torch.randn(1, 16, 2, 3, generator=generator)
    base = codec.decide(y, quantizer, side=z)
    anchors, others = unembed(y)
    moved = codec.decide(embed(anchors, others + 7), quantizer, side=z)
    assert torch.equal(moved.parts[0].quantized.k, base.parts[0].quantized.k)
    assert torch.equal(moved.parts[0].scales, base.parts[0].scales)
    shifted = codec.decide(embed(anchors + 7, others), quantizer, side=z)
    assert not torch.equal(shifted.parts[1].scales, base.parts[1].scales)
