"""The weights folder's ``manifest.json``: the zoo's names, files, sha256s and results.

Read without torch (``trellic models`` lists it at start-up speed); loading the
weights it names is :mod:`trellic.zoo`'s.
"""

from __future__ import annotations

from pathlib import Path

from trellic import jsonio, paths
from trellic.errors import TrellicError

MANIFEST = "manifest.json"


def read_manifest(weights_dir: Path | None = None) -> dict:
    """The weights folder's manifest.json: {'default': name, 'models': {name: entry}}."""
    path = (weights_dir or paths.weights_dir()) / MANIFEST
    if not path.is_file():
        raise TrellicError(
            f"model manifest not found: {path} ({paths.WEIGHTS_ENV} names the weights folder)"
        )
    try:
        manifest = jsonio.loads(path.read_bytes(), f"model manifest {path}")
        if not isinstance(manifest.get("models"), dict) or manifest.get("default") is None:
            raise ValueError("needs 'default' and a 'models' object")
    except (OSError, ValueError, AttributeError) as error:
        raise TrellicError(f"cannot read model manifest {path}: {error}") from None
    return manifest
