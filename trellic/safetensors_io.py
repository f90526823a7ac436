"""Atomic safetensors writes shared by weights, training checkpoints and latent shards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from safetensors.torch import save_file
from torch import Tensor

from trellic.io import check_output, umask


def save_safetensors_atomic(
    path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]
) -> None:
    """Write through a temp file in the same folder + rename: a crash never leaves half a file.

    Replaces an existing regular file only (``trellic.io.check_output``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_output(path, force=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
