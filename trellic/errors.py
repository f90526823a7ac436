"""The one exception type that the CLI turns into a one-line message and exit code 1."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator


class TrellicError(Exception):
    """A user-facing error: bad input, corrupt bitstream, missing file, bad option value."""


def warn(message: str) -> None:
    """One ``trellic: warning: MESSAGE`` line on stderr (every command warns this way)."""
    print(f"trellic: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def warnings_as_lines() -> Iterator[None]:
    """While open, every warning is printed when raised as one line on stderr.

    The line reads ``trellic: warning: MESSAGE``, like the CLI's one-line errors.
    """
    def show(message, *args, **kwargs) -> None:
        warn(str(message))

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield
