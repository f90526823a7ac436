"""Bjontegaard deltas: average rate difference (BD-rate) and quality difference (BD-PSNR).

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves" (VCEG-M33,
2001), and its piecewise cubic update (VCEG-AL22, JCTVC-Q0xxx / JVET CTC spreadsheets)::

    log10(rate) as a function of PSNR, for anchor A and test B
        -> interpolate each curve (pchip: monotone piecewise cubic Hermite; or "cubic":
           one least-squares cubic polynomial, the original VCEG-M33 fit)
        -> integrate both over the PSNR range where the curves overlap
        -> mean difference d of log10(rate);  BD-rate = (10**d - 1) * 100 %

BD-PSNR swaps the axes (PSNR as a function of log10 rate, over the overlapping rate range)
and reports the mean PSNR difference in dB. Negative BD-rate and positive BD-PSNR mean that
B is better than A. The pchip interpolant is computed here with numpy (the Fritsch-Carlson
derivatives of scipy's ``PchipInterpolator``) and integrated exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trellic.errors import TrellicError

METHODS = ("pchip", "cubic")
MIN_POINTS = 4


@dataclass(frozen=True)
class BDResult:
    """Bjontegaard deltas of a test curve against an anchor.

    ``rate_percent``: BD-rate; ``quality_delta``: BD-PSNR in dB (or BD of the quality metric
    used), None when the rate ranges do not overlap; ``low``/``high``: the quality range
    over which the BD-rate was integrated.
    """

    rate_percent: float
    quality_delta: float | None
    method: str
    low: float
    high: float


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots, as in scipy.interpolate.PchipInterpolator."""
    h = np.diff(x)
    m = np.diff(y) / h
    if len(x) == 2:
        return np.array([m[0], m[0]])
    d = np.zeros_like(y)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same_sign = (np.sign(m[:-1]) * np.sign(m[1:])) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = (w1 + w2) / (w1 / m[:-1] + w2 / m[1:])
    d[1:-1] = np.where(same_sign, harmonic, 0.0)
    d[0] = _edge_slope(h[0], h[1], m[0], m[1])
    d[-1] = _edge_slope(h[-1], h[-2], m[-1], m[-2])
    return d


def _edge_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return float(d)


def _pchip_integral(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    """Exact integral of the pchip interpolant of (x, y) from low to high (inside [x0, xn])."""
    d = _pchip_slopes(x, y)
    h = np.diff(x)
    m = np.diff(y) / h
    c2 = (3 * m - 2 * d[:-1] - d[1:]) / h
    c3 = (d[:-1] + d[1:] - 2 * m) / h**2

    def antiderivative(s: np.ndarray) -> np.ndarray:
        return y[:-1] * s + d[:-1] * s**2 / 2 + c2 * s**3 / 3 + c3 * s**4 / 4

    start = np.clip(low, x[:-1], x[1:]) - x[:-1]
    stop = np.clip(high, x[:-1], x[1:]) - x[:-1]
    return float(np.sum(antiderivative(stop) - antiderivative(start)))


def _cubic_integral(x: np.ndarray, y: np.ndarray, low: float, high: float) -> float:
    primitive = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(primitive, high) - np.polyval(primitive, low))


def _prepare(rate, quality, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve; return (log10 rate, quality) sorted by rate."""
    rate, quality = np.asarray(rate, dtype=np.float64), np.asarray(quality, dtype=np.float64)
    if rate.shape != quality.shape or rate.ndim != 1:
        raise TrellicError(f"{role} curve: rates and qualities do not pair up")
    if len(rate) < MIN_POINTS:
        raise TrellicError(f"{role} curve has {len(rate)} points; BD needs at least {MIN_POINTS}")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(quality)) and np.all(rate > 0)):
        raise TrellicError(f"{role} curve has a non-finite quality or a rate <= 0")
    order = np.argsort(rate)
    return np.log10(rate[order]), quality[order]


def _mean_difference(xa, ya, xb, yb, method: str, axis: str) -> tuple[float, float, float]:
    """Mean of f_b - f_a over the overlap of the x ranges (x must increase)."""
    if method not in METHODS:
        raise TrellicError(f"unknown BD method {method!r}; choose from {', '.join(METHODS)}")
    for x in (xa, xb):
        if np.any(np.diff(x) <= 0):
            raise TrellicError(f"a curve is not strictly increasing in {axis}; "
                               "BD needs one rate per quality")
    low, high = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if high <= low:
        raise TrellicError(f"the curves do not overlap in {axis}; BD is undefined")
    integral = _pchip_integral if method == "pchip" else _cubic_integral
    difference = integral(xb, yb, low, high) - integral(xa, ya, low, high)
    return difference / (high - low), low, high


def bd(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip") -> BDResult:
    """BD-rate and BD-PSNR of the test curve against the anchor (rates in bpp or bits).

    Raises TrellicError for fewer than 4 points or curves whose quality ranges do not overlap.
    """
    log_ra, qa = _prepare(anchor_rate, anchor_quality, "anchor")
    log_rb, qb = _prepare(test_rate, test_quality, "test")
    order_a, order_b = np.argsort(qa), np.argsort(qb)
    log_rate_diff, low, high = _mean_difference(
        qa[order_a], log_ra[order_a], qb[order_b], log_rb[order_b], method, "quality")
    try:
        quality_delta, _, _ = _mean_difference(log_ra, qa, log_rb, qb, method, "rate")
    except TrellicError:
        quality_delta = None
    return BDResult(rate_percent=float((10**log_rate_diff - 1) * 100),
                    quality_delta=None if quality_delta is None else float(quality_delta),
                    method=method, low=float(low), high=float(high))


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "pchip") -> float:
    """BD-rate in percent (negative: the test curve needs less rate)."""
    return bd(anchor_rate, anchor_quality, test_rate, test_quality, method).rate_percent


def bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """BD-PSNR in dB (positive: the test curve has higher quality)."""
    log_ra, pa = _prepare(anchor_rate, anchor_psnr, "anchor")
    log_rb, pb = _prepare(test_rate, test_psnr, "test")
    return _mean_difference(log_ra, pa, log_rb, pb, method, "rate")[0]
