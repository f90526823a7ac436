"""Option values are checked against their domain at parse time (usage error, exit 2)."""

import argparse

import pytest

from trellic.argtypes import (
    float_in,
    int_in,
    int_multiple_of,
    non_negative_int,
    positive_float,
    seed,
)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "abc", "0", "-1"])
def test_positive_float_refuses_outside_its_domain(text):
    with pytest.raises(argparse.ArgumentTypeError):
        positive_float(text)


def test_float_in_bounds_and_open_ends():
    parse = float_in(0.0, 1.0, high_open=True)
    assert parse("0") == 0.0 and parse("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\)"):
        parse("1")


def test_int_in_refuses_out_of_range_and_non_integers():
    quality = int_in(0, 100)
    assert quality("100") == 100
    for text in ["150", "-5", "2.5", "x"]:
        with pytest.raises(argparse.ArgumentTypeError):
            quality(text)
    assert non_negative_int("0") == 0


def test_cli_reports_a_bad_value_as_usage_error(capsys):
    from trellic.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "a.png", "b.trl", "--refine", "-3"])
    assert exit_info.value.code == 2
    expected = "must be one of linear, cheap, full or an integer in [0, 10000]"
    assert expected in capsys.readouterr().err


def test_int_multiple_of_needs_the_grid_and_the_bounds():
    crop = int_multiple_of(64, 64)
    assert crop("64") == 64 and crop("256") == 256
    for text in ["100", "0", "-64", "64.0"]:
        with pytest.raises(argparse.ArgumentTypeError):
            crop(text)


def test_seed_is_what_the_generators_take():
    assert seed("0") == 0 and seed(str(2**32 - 1)) == 2**32 - 1
    for text in ["-1", str(2**32)]:
        with pytest.raises(argparse.ArgumentTypeError):
            seed(text)


@pytest.mark.parametrize("value, message", [
    ("-inf", "must be a finite number, got -inf"), ("-NaN", "must be a finite number"),
    ("-1e-3", "must be in [0, 1e+06), got -1e-3"), ("-2", "must be in [0, 1e+06), got -2"),
])
def test_a_negative_number_after_an_option_reaches_its_type(capsys, value, message):
    """argparse itself reads -inf or -1e-3 as an option ("expected one argument")."""
    from trellic.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["compress", "a.png", "b.trl", "--quantizer", "tcq4", "--lambda-t", value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
