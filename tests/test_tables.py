import numpy as np
import torch

from trellic.entropy.tables import TOTAL, PmfTables, escape_payload_bits


def _tables():
    pmf = np.array([[0.25, 0.5, 0.25, 0.0], [0.1, 0.2, 0.3, 0.3]])
    return PmfTables.from_probabilities(pmf, np.array([3, 4]), np.array([-1, -2]))


def test_rows_sum_to_total_and_every_symbol_is_codable():
    tables = _tables()
    assert (tables.freqs.sum(axis=1) == TOTAL).all()
    for row in range(tables.num_rows):
        assert (tables.freqs[row, : tables.lengths[row]] >= 1).all()


def test_values_outside_a_row_map_to_its_escape_symbol():
    tables = _tables()
    symbols, escaped = tables.symbols(np.array([0, 0, 0, 1]), np.array([-1, 1, 2, -3]))
    assert symbols.tolist() == [0, 2, 3, 4]
    assert escaped.tolist() == [False, False, True, True]


def test_bits_of_an_escape_include_its_payload():
    tables = _tables()
    inside = tables.bits(torch.tensor([0]), torch.tensor([0]))
    assert torch.allclose(
        inside, torch.tensor([16 - np.log2(tables.freqs[0, 1])], dtype=torch.float64)
    )
    far = tables.bits(torch.tensor([0]), torch.tensor([100]))
    escape = 16 - np.log2(tables.freqs[0, 3])
    assert torch.allclose(far, escape + escape_payload_bits(torch.tensor([98])))


def test_tables_round_trip_through_tensors():
    tables = _tables()
    again = PmfTables.from_tensors(tables.to_tensors("t"), "t")
    assert np.array_equal(again.freqs, tables.freqs)
    assert np.array_equal(again.offsets, tables.offsets)
