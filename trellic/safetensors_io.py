"""Atomic safetensors writes shared by weights, training checkpoints and latent shards."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save
from torch import Tensor

from trellic.io import write_atomic


def save_safetensors_atomic(
    path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]
) -> None:
    """Write through ``trellic.io.write_atomic`` (temp file, fsync, rename; a crash never
    leaves half a file), replacing an existing regular file only; parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    write_atomic(path, data, force=True)
