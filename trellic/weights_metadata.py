"""What a weights file says beside its tensors: file hashes, identity aliases, operating points.

A weights file's safetensors metadata holds JSON strings: ``config``, ``info``,
``base`` (variants), ``operating_points`` (the encoder settings measured for these
weights, see :func:`check_operating_points`) and ``previous_sha256`` (the file's
earlier sha256s: files that name the weights by one of them still decode). The
metadata is written with sorted keys (:func:`metadata_json`) so that the same
content always gives the same bytes, and read through :mod:`trellic.jsonio`.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from trellic import jsonio
from trellic.errors import TrellicError
from trellic.io import write_atomic
from trellic.quant.registry import quantizer_names
from trellic.safetensors_io import safetensors_bytes


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB blocks), hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def metadata_json(value) -> str:
    """Metadata JSON with sorted keys: the same content, the same bytes."""
    return json.dumps(value, sort_keys=True)


def read_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's metadata (its header only is read)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise TrellicError(f"cannot read weights {path}: {error}") from None


def previous_sha256(metadata: dict) -> list[str]:
    """The ``previous_sha256`` a weights file's metadata records (its earlier versions)."""
    previous = jsonio.loads(metadata.get("previous_sha256", "[]"),
                            "weights metadata 'previous_sha256'")
    if not (isinstance(previous, list) and all(isinstance(p, str) for p in previous)):
        raise TrellicError("weights metadata: previous_sha256 is not a list of sha256 strings")
    return previous


def stored_operating_points(metadata: dict, where: str | Path) -> dict:
    """The operating points a weights file's metadata stores ({} if none)."""
    if "operating_points" not in metadata:
        return {}
    points = jsonio.loads(metadata["operating_points"],
                          f"weights {where}: metadata 'operating_points'")
    return check_operating_points(points, str(where))


def check_operating_points(points, where: str) -> dict:
    """Operating points checked: {QUANTIZER[+linear]: {lambda_t, linear_weight: finite >= 0}}.

    Raises:
        TrellicError: naming ``where`` (a model or a file).
    """
    settings = ("lambda_t", "linear_weight")
    names = {*quantizer_names(), *(f"{name}+linear" for name in quantizer_names())}
    if not (isinstance(points, dict) and set(points) <= names and all(
            isinstance(point, dict) and set(point) <= set(settings)
            and all(isinstance(v, int | float) and not isinstance(v, bool)
                    and math.isfinite(v) and v >= 0 for v in point.values())
            for point in points.values())):
        raise TrellicError(f"{where}: bad operating_points "
                           f"(expected {{QUANTIZER[+linear]: "
                           f"{{{', '.join(settings)}: finite number >= 0}}}})")
    return points


def store_operating_points(path: Path, points: dict) -> str:
    """Rewrite a weights file with ``points`` as its measured operating points (atomic).

    Returns the new file's sha256 (see :func:`with_operating_points`).
    """
    path = Path(path)
    write_atomic(path, with_operating_points(path, points), force=True)
    return sha256_of(path)


def with_operating_points(path: Path, points: dict) -> bytes:
    """The bytes of weights file ``path`` with ``points`` as its operating points.

    The tensors and the identity stay as they are; the file's present sha256 joins its
    metadata's ``previous_sha256`` (files naming it still decode).
    """
    path = Path(path)
    check_operating_points(points, str(path))
    metadata = read_metadata(path)
    tensors = load_file(str(path))
    previous = previous_sha256(metadata)
    metadata["previous_sha256"] = metadata_json(sorted({*previous, sha256_of(path)}))
    metadata["operating_points"] = metadata_json(points)
    return safetensors_bytes(tensors, metadata)
