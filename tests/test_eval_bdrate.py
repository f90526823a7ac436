"""BD-rate and BD-PSNR: exact cases, errors, and agreement with the bjontegaard package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trellic.errors import TrellicError
from trellic.eval.bdrate import _pchip_integral, bd, bd_psnr, bd_rate
from trellic.eval.results import read_reference, read_results

BASELINES = Path(__file__).resolve().parents[1] / "docs" / "baselines"
RATE = np.array([0.12, 0.2, 0.31, 0.46, 0.66, 0.91, 1.23, 1.62])
PSNR = np.array([27.7, 29.4, 31.1, 33.0, 35.0, 36.9, 38.8, 40.6])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_rate_of_a_curve_against_itself_is_zero(method):
    assert bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0, abs=1e-12)
    assert bd_psnr(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_every_rate_scaled_by_0_9_gives_minus_ten_percent(method):
    assert bd_rate(RATE, PSNR, 0.9 * RATE, PSNR, method) == pytest.approx(-10.0, abs=1e-9)
    assert bd_rate(0.9 * RATE, PSNR, RATE, PSNR, method) == pytest.approx(100 / 9, abs=1e-9)


def test_a_constant_psnr_gain_gives_that_bd_psnr():
    assert bd_psnr(RATE, PSNR, RATE, PSNR + 0.5) == pytest.approx(0.5, abs=1e-12)


def test_curves_that_do_not_overlap_raise_a_clear_error():
    with pytest.raises(TrellicError, match="do not overlap"):
        bd(RATE, PSNR, RATE * 4, PSNR + 20)


def test_fewer_than_four_points_raise_a_clear_error():
    with pytest.raises(TrellicError, match="at least 4"):
        bd(RATE[:3], PSNR[:3], RATE, PSNR)


def test_unknown_method_and_bad_rates_are_refused():
    with pytest.raises(TrellicError, match="unknown BD method"):
        bd(RATE, PSNR, RATE, PSNR, "akima")
    with pytest.raises(TrellicError, match="rate <= 0"):
        bd(-RATE, PSNR, RATE, PSNR)


def test_pchip_integral_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = np.sort(rng.uniform(0, 10, 9))
        y = rng.normal(size=9)
        low, high = np.sort(rng.uniform(x[0], x[-1], 2))
        expected = interpolate.PchipInterpolator(x, y).integrate(low, high)
        assert _pchip_integral(x, y, low, high) == pytest.approx(expected, abs=1e-12)


def _curves():
    """The measured Kodak baselines and a published curve (real RD data)."""
    files = sorted(BASELINES.glob("*.json"))
    if len(files) < 2:
        pytest.skip(f"no baseline results in {BASELINES}")
    return [read_results(path) for path in files] + [read_reference("mbt2018-mean")]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bdrate_agrees_with_the_bjontegaard_package_on_kodak_baselines(method):
    bjontegaard = pytest.importorskip("bjontegaard")
    curves = _curves()
    for anchor in curves:
        for test in curves:
            ours = bd([p.bpp for p in anchor.points], [p.psnr_rgb for p in anchor.points],
                      [p.bpp for p in test.points], [p.psnr_rgb for p in test.points], method)
            theirs = bjontegaard.bd_rate(
                [p.bpp for p in anchor.points], [p.psnr_rgb for p in anchor.points],
                [p.bpp for p in test.points], [p.psnr_rgb for p in test.points],
                method, require_matching_points=False, min_overlap=0)
            assert ours.rate_percent == pytest.approx(theirs, abs=0.1)
