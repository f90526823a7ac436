"""Reading whole files with clear errors, without torch or numpy (``trellic info`` starts light)."""

from __future__ import annotations

from pathlib import Path

from trellic.errors import TrellicError


def check_readable(path: Path) -> None:
    """A regular file that exists, or a one-line error saying what the path is instead."""
    if not path.exists():
        raise TrellicError(f"file not found: {path}")
    if path.is_dir():
        raise TrellicError(f"expected a file, got a directory: {path}")
    if not path.is_file():
        raise TrellicError(f"not a regular file: {path}")


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """A file's bytes; more than ``limit`` bytes is an error (read no further than that)."""
    path = Path(path)
    check_readable(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read() if limit is None else handle.read(limit + 1)
    except OSError as error:
        raise TrellicError(f"cannot read {path}: {error.strerror or error}") from None
    if limit is not None and len(data) > limit:
        raise TrellicError(f"file too large (more than {limit} bytes): {path}")
    return data
