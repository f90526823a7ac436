"""The quantizer registry: the one list of quantizer names, codes and table keys."""

import pytest

from tests.conftest import make_tiny_model
from trellic.cli import build_parser
from trellic.coding import bitstream
from trellic.quant.registry import QUANTIZERS, make_quantizer, quantizer_names


def test_every_quantizer_has_its_own_header_code_and_builds_under_its_name():
    codes = [spec.code for spec in QUANTIZERS.values()]
    assert len(set(codes)) == len(codes)
    assert bitstream.QUANTIZER_CODES == {name: spec.code for name, spec in QUANTIZERS.items()}
    for name in quantizer_names():
        assert make_quantizer(name).kind == name


def test_tcq4_and_tcq8_share_the_tables_of_their_sub_quantizers():
    assert QUANTIZERS["tcq4"].tables == QUANTIZERS["tcq8"].tables != QUANTIZERS["usq"].tables


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
