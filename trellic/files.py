"""Reading whole files with clear errors, without torch or numpy (``trellic info`` starts light)."""

from __future__ import annotations

import re
from pathlib import Path

from trellic.errors import TrellicError

# PyTorch checkpoints (pickles): never loaded as weights; CompressAI's are imported.
TORCH_CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")


def refuse_torch_checkpoint(model: str | None) -> None:
    """A PyTorch checkpoint given where a trellic weights file belongs: a one-line error
    naming the import command, before anything tries to read it."""
    if model is None or not model.lower().endswith(TORCH_CHECKPOINT_SUFFIXES):
        return
    stem = re.sub(r"(\.pth\.tar|\.pth|\.pt|\.tar|\.ckpt)$", "", model, flags=re.IGNORECASE)
    raise TrellicError(
        f"{model} is a PyTorch checkpoint, not a trellic weights file: import it first "
        f"(trellic import-compressai {model} -o {stem}.safetensors; docs/compressai.md) and "
        "pass the .safetensors"
    )


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
