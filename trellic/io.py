"""Images in and out: validated reading, padding to the model's grid, atomic writes.

Input policy (documented for users): PNG, JPEG and the other formats Pillow
reads are accepted. EXIF orientation is applied. Grayscale and palette images
are converted to RGB; 16-bit images are scaled to 8 bits; CMYK is converted to
RGB; an alpha channel is dropped with a warning (the codec codes colour only).
Anything Pillow cannot decode is refused with a one-line error.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from trellic.errors import TrellicError

MAX_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise TrellicError(f"file not found: {path}")
    if path.is_dir():
        raise TrellicError(f"expected a file, got a directory: {path}")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3)."""
    path = Path(path)
    _check_readable(path)
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return to_rgb(image, name=str(path))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise TrellicError(f"cannot read image {path}: {error}") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise TrellicError(f"cannot read image {path}: {error}") from None


def to_rgb(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any Pillow image to uint8 RGB following the input policy above."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        warnings.warn(f"{name}: alpha channel dropped (trellic codes RGB only)", stacklevel=3)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(np.round(array / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise TrellicError(f"{name}: unsupported image layout {array.shape}")
    return array


def image_to_tensor(image: np.ndarray) -> Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255.0


def tensor_to_image(x: Tensor) -> np.ndarray:
    """float (1, 3, H, W) -> uint8 (H, W, 3): clamp to [0, 1], scale, round."""
    x = x[0].clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad right and bottom so H and W are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def write_atomic(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write bytes through a temp file + rename; refuse to overwrite unless ``force``."""
    path = Path(path)
    if path.is_dir():
        raise TrellicError(f"output is a directory: {path}")
    if path.exists() and not force:
        raise TrellicError(f"output exists (use --force to overwrite): {path}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise TrellicError(f"output folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as error:
        raise TrellicError(f"cannot write {path}: {error}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    _check_readable(path)
    try:
        return path.read_bytes()
    except OSError as error:
        raise TrellicError(f"cannot read {path}: {error}") from None
