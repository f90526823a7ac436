"""Command-line value types: every option value is checked against its domain at parse time.

Each factory returns a callable for argparse's ``type=``; a value outside its
domain raises :class:`argparse.ArgumentTypeError`, which argparse turns into a
one-line usage error and exit code 2. Non-finite numbers (nan, inf) are always
refused. Use these in every command instead of bare ``int`` / ``float``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{left}{low_text}, {high_text}{right}"


def float_in(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """A finite float in the interval [low, high] (ends open where asked, None = unbounded)."""
    domain = _interval(low, high, low_open, high_open)

    def parse(text: str) -> float:
        value = _parse_float(text)
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            raise argparse.ArgumentTypeError(f"must be in {domain}, got {text}")
        return value

    parse.__name__ = f"number in {domain}"
    return parse


def int_in(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer in the closed interval [low, high] (None = unbounded)."""
    domain = _interval(low, high, False, False)

    def parse(text: str) -> int:
        value = _parse_int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be in {domain}, got {text}")
        return value

    parse.__name__ = f"integer in {domain}"
    return parse


positive_float = float_in(0.0, low_open=True)
non_negative_float = float_in(0.0)
positive_int = int_in(1)
non_negative_int = int_in(0)


def int_multiple_of(
    step: int, low: int | None = None, high: int | None = None
) -> Callable[[str], int]:
    """An integer in [low, high] (None = unbounded) that is a multiple of ``step``."""
    bounded = int_in(low, high)

    def parse(text: str) -> int:
        value = bounded(text)
        if value % step:
            raise argparse.ArgumentTypeError(f"must be a multiple of {step}, got {text}")
        return value

    parse.__name__ = f"multiple of {step} in {_interval(low, high, False, False)}"
    return parse


def word_or_int(words: tuple[str, ...], low: int | None = None,
                high: int | None = None) -> Callable[[str], str | int]:
    """One of ``words`` (returned as is) or an integer in [low, high] (None = unbounded)."""
    bounded = int_in(low, high)

    def parse(text: str) -> str | int:
        if text in words:
            return text
        try:
            return bounded(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"must be one of {', '.join(words)} or an integer in "
                f"{_interval(low, high, False, False)}, got {text}"
            ) from None

    parse.__name__ = f"{' | '.join(words)} | integer in {_interval(low, high, False, False)}"
    return parse


seed = int_in(0, 2**32 - 1)  # what numpy's and torch's generators take


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads(text: str) -> int:
    """A thread count in [1, usable CPUs]: more threads than CPUs only slow torch down,
    and tens of thousands exhaust the OS (a segfault inside torch, not an error)."""
    return int_in(1, usable_cpus())(text)


threads.__name__ = "thread count"
