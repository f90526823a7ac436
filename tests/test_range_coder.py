import numpy as np
import pytest
import torch

from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.gaussian import build_gaussian_tables, default_scale_table
from trellic.errors import TrellicError
from trellic.quant import make_quantizer


@pytest.fixture(scope="module")
def tables():
    return build_gaussian_tables(make_quantizer("tcq4"), default_scale_table())


def test_steps_round_trip_with_escapes(tables):
    rng = np.random.default_rng(1)
    steps = []
    for _ in range(5):
        rows = rng.integers(0, tables.num_rows, 300)
        values = np.round(rng.normal(0, 4, 300)).astype(np.int64)
        values[:3] = [5000, -70000, 3]  # far outside every row: escapes
        steps.append((values, rows))
    encoder = SymbolEncoder(tables)
    for values, rows in steps:
        encoder.encode_step(values, rows)
    decoder = SymbolDecoder(encoder.finish(), tables)
    for values, rows in steps:
        assert np.array_equal(decoder.decode_step(rows), values)


def test_coded_size_matches_table_bits(tables):
    rng = np.random.default_rng(2)
    rows = rng.integers(0, tables.num_rows, 20000)
    values = np.round(rng.normal(0, 2, rows.size)).astype(np.int64)
    encoder = SymbolEncoder(tables)
    encoder.encode_step(values, rows)
    coded_bits = 8 * len(encoder.finish())
    estimate = float(tables.bits(torch.from_numpy(rows), torch.from_numpy(values)).sum())
    assert abs(coded_bits - estimate) <= 0.005 * estimate + 64


def test_stream_that_is_not_whole_words_is_rejected(tables):
    with pytest.raises(TrellicError):
        SymbolDecoder(b"\x00\x01\x02", tables)
