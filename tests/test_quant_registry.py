"""The quantizer registry: the one list of quantizer names, codes and table keys."""

import dataclasses

import pytest
import torch

from tests.conftest import make_tiny_model, synthetic_image
from trellic.cli import build_parser
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.errors import TrellicError
from trellic.models import CodecModel
from trellic.quant.registry import QUANTIZERS, make_quantizer, quantizer_names
from trellic.zoo import LoadedModel


def test_every_quantizer_has_its_own_header_code_and_builds_under_its_name():
    codes = [spec.code for spec in QUANTIZERS.values()]
    assert len(set(codes)) == len(codes)
    assert bitstream.QUANTIZER_CODES == {name: spec.code for name, spec in QUANTIZERS.items()}
    for name in quantizer_names():
        assert make_quantizer(name).kind == name


def test_quantizers_with_the_same_sub_quantizers_share_their_tables():
    assert QUANTIZERS["tcq4"].tables == QUANTIZERS["tcq8"].tables != QUANTIZERS["usq"].tables
    assert QUANTIZERS["rdoq"].tables == QUANTIZERS["usq"].tables


def test_an_rdoq_stream_decodes_with_the_usq_tables_to_the_encoders_latents():
    model = make_tiny_model()
    y = model.g_a(torch.rand(1, 3, 64, 128)).detach()
    rdoq, usq = model.quantizer("rdoq"), model.quantizer("usq")
    coded = model.latent_codec.compress(y, rdoq)
    plain = model.latent_codec.compress(y, usq)
    assert coded.estimated_bits < plain.estimated_bits
    assert not torch.equal(coded.y_hat, plain.y_hat)
    shape = tuple(y.shape[-2:])
    for quantizer in (rdoq, usq):
        assert torch.equal(model.latent_codec.decompress(coded.streams, shape, quantizer),
                           coded.y_hat)


@pytest.mark.parametrize("command", ["compress", "eval", "train", "retrain"])
def test_every_command_offers_exactly_the_registry_quantizers(command):
    subparsers = build_parser()._subparsers._group_actions[0]
    options = {a.dest: a for a in subparsers.choices[command]._actions}
    assert tuple(options["quantizer"].choices) == quantizer_names()


def test_a_model_builds_one_table_set_per_registry_key_with_the_step_it_codes():
    model = make_tiny_model()
    assert set(model.latent_codec.tables) == {"z"} | {spec.tables for spec in QUANTIZERS.values()}
    assert model.quantizer("tcq8").delta == model.config.tcq_delta
    assert model.quantizer("usq").delta == 1.0


@pytest.mark.parametrize("name", ["usq", "rdoq"])
def test_a_model_with_another_usq_step_codes_real_files_at_that_step(tiny_model, name):
    coarse = CodecModel(dataclasses.replace(tiny_model.config, usq_delta=1.5))
    coarse.load_state_dict(tiny_model.state_dict())
    coarse.eval().update()
    loaded = LoadedModel(coarse, "file:coarse", "ab" * 32, {})
    codec = Codec(loaded, coarse.quantizer(name))
    image = synthetic_image(64, 96)
    data = codec.encode(image).data
    assert bitstream.unpack(data).header.delta == pytest.approx(1.5)
    assert codec.decode(data).shape == image.shape
    y = coarse.g_a(torch.rand(1, 3, 64, 128)).detach()
    coded = coarse.latent_codec.compress(y, coarse.quantizer(name))
    assert torch.equal(coarse.latent_codec.decompress(coded.streams, tuple(y.shape[-2:]),
                                                      coarse.quantizer(name)), coded.y_hat)
    fine = Codec(LoadedModel(tiny_model, "file:coarse", "ab" * 32, {}), tiny_model.quantizer(name))
    assert len(fine.encode(image).data) > len(data)  # the coarser grid costs fewer bits
    with pytest.raises(TrellicError, match=f"file uses {name} delta 1.5; this model codes 1"):
        fine.decode(data)
