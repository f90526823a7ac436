"""Atomic, reproducible safetensors writes shared by weights, training checkpoints and shards.

The safetensors library writes its metadata from a hash map, so the same tensors
and metadata give different bytes in different processes; a weights file's
bytes must depend on its content only (the same model written twice is the same
file). :func:`safetensors_bytes` therefore lays the format out itself: an 8-byte
little-endian header length, the header JSON with sorted keys (padded with
spaces to a multiple of 8), then every tensor's bytes, largest alignment first
and by name, as the safetensors library orders them; its reader loads the result.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from torch import Tensor

from trellic.io import write_atomic

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def safetensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors file of ``tensors`` and ``metadata``, byte-identical for equal inputs.

    Raises:
        ValueError: a dtype the format does not have.
    """
    unknown = sorted(k for k, v in tensors.items() if v.dtype not in DTYPES)
    if unknown:
        raise ValueError(f"cannot store {tensors[unknown[0]].dtype} tensor {unknown[0]}")
    names = sorted(tensors, key=lambda k: (-tensors[k].element_size(), k))
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs, offset = [], 0
    for name in names:
        tensor = tensors[name].detach().cpu().contiguous()
        blob = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def save_safetensors_atomic(
    path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]
) -> None:
    """Write through ``trellic.io.write_atomic`` (temp file, fsync, rename; a crash never
    leaves half a file), replacing an existing regular file only; parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, safetensors_bytes(tensors, metadata), force=True)
