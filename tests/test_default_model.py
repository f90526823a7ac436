"""The shipped default model on real Kodak images: rate honesty and TCQ against USQ."""

import pytest

from tests.conftest import kodak_images
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.eval.runner import rate_point
from trellic.io import read_image
from trellic.quant.registry import quantizer_names
from trellic.zoo import load

QUANTIZERS = quantizer_names()


@pytest.fixture(scope="module")
def default_model():
    return load("default")


@pytest.fixture(scope="module")
def first_four():
    return [read_image(path) for path in kodak_images(4)]


def _code(codec, images):
    """Per image: real file bits, header bits, estimated stream bits."""
    rows = []
    for image in images:
        encoded = codec.encode(image)
        rows.append(
            {
                "file_bits": 8 * len(encoded.data),
                "header_bits": 8 * bitstream.unpack(encoded.data).header_bytes,
                "estimated_bits": encoded.estimated_bits,
            }
        )
    return rows


@pytest.fixture(scope="module")
def measured(default_model, first_four):
    return {kind: _code(Codec.load_from(default_model, kind), first_four) for kind in QUANTIZERS}


@pytest.mark.parametrize("kind", QUANTIZERS)
def test_file_bits_minus_header_match_sum_of_code_lengths_within_one_percent(measured, kind):
    for row in measured[kind]:
        coded = row["file_bits"] - row["header_bits"]
        assert abs(coded - row["estimated_bits"]) <= 0.01 * row["estimated_bits"]


def test_retraining_on_true_tcq_latents_recovers_most_of_tcqs_rd_loss(first_four):
    """D + lambda R on decoded images and real file sizes, first 4 Kodak images.

    With the decoder of ``mbt-mean-n64-l0067`` trained on USQ noise, TCQ-4 codes
    ~12% fewer bits but loses ~0.9 dB: its RD cost is ~5% above USQ's
    (docs/retraining.md). Retraining on true TCQ-4 latents recovers most of that,
    decoder-only (``-tcq4dec``: same encoder, same bitstreams) and hyperprior plus
    decoder online (``-tcq4hyper``): this is the method's point. (Neither beats
    USQ at this model's 84,000 steps of USQ noise; the v2 hyper+decoder one did.)
    """
    base = load("mbt-mean-n64-l0067")
    lmbda = base.info["training"]["lmbda"]

    def cost(model, kind):
        # the search the decoders were retrained on: the quantizer's own lambda_t, not
        # the operating points measured since (the base model's is lower)
        lambda_t = model.model.quantizer(kind).default_lambda_t
        return rate_point(Codec.load_from(model, kind, lambda_t), first_four).rd_cost(lmbda)

    usq, tcq = cost(base, "usq"), cost(base, "tcq4")
    decoder_only = cost(load("mbt-mean-n64-l0067-tcq4dec"), "tcq4")
    hyper = cost(load("mbt-mean-n64-l0067-tcq4hyper"), "tcq4")
    assert tcq > usq
    assert decoder_only < usq + 0.25 * (tcq - usq)
    assert hyper < usq + 0.25 * (tcq - usq)
