"""Where the image data lives: one setting, ``TRELLIC_DATA``, defaulting to ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "TRELLIC_DATA"
_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_root() -> Path:
    """The data folder (Kodak, training photos): ``$TRELLIC_DATA`` or ``../shared/data``."""
    return Path(os.environ.get(DATA_ENV, _DEFAULT_DATA))


def kodak_dir() -> Path:
    return data_root() / "kodak"
