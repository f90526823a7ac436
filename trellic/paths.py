"""Where weights and image data live: one setting each, TRELLIC_WEIGHTS and TRELLIC_DATA.

Run from a source checkout (the folder above the package holds pyproject.toml
and weights/), the defaults are the checkout's ``weights/`` and
``../shared/data``. Installed from a wheel, the weights default to the folder
inside the package, which holds the default model only (the build puts it there,
see setup.py); the rest of the zoo is one setting away
(``TRELLIC_WEIGHTS=/path/to/trellic/weights``). An installed package has no
data default: ``TRELLIC_DATA`` must be set, never a folder inside site-packages.
"""

from __future__ import annotations

import os
from pathlib import Path

from trellic.errors import TrellicError

WEIGHTS_ENV = "TRELLIC_WEIGHTS"
DATA_ENV = "TRELLIC_DATA"
PACKAGE = Path(__file__).resolve().parent
PACKAGED_WEIGHTS = PACKAGE / "weights"
_CHECKOUT = PACKAGE.parent


def checkout() -> Path | None:
    """The source checkout trellic runs from, or None when it is installed."""
    root = _CHECKOUT
    return root if (root / "pyproject.toml").is_file() and (root / "weights").is_dir() else None


def weights_dir() -> Path:
    """The weights folder (manifest.json + safetensors files).

    ``$TRELLIC_WEIGHTS``, else the checkout's weights/, else the package's own
    folder (the default model only).
    """
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV])
    root = checkout()
    return PACKAGED_WEIGHTS if root is None else root / "weights"


def data_root() -> Path:
    """The data folder (kodak/, train/): ``$TRELLIC_DATA``, else a checkout's ``../shared/data``.

    Raises:
        TrellicError: installed (no checkout) and ``TRELLIC_DATA`` is not set.
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    root = checkout()
    if root is None:
        raise TrellicError(
            f"set {DATA_ENV} to the data folder (with kodak/ and train/): "
            "an installed trellic has no default data folder"
        )
    return root.parent / "shared" / "data"


def kodak_dir() -> Path:
    return data_root() / "kodak"
