"""Images in and out: validated reading, padding to the model's grid, atomic writes.

Input policy (documented for users, see docs/robustness.md): PNG, JPEG and the
other formats Pillow reads are accepted; of an animation, the first frame.
EXIF orientation is applied. Grayscale, bilevel and palette images become RGB;
16-bit samples (``I;16*`` and 32-bit ``I``, read as 0..65535) are scaled to 8
bits with rounding; CMYK is converted by Pillow; an alpha channel is dropped
with a warning (the codec codes colour only; transparent pixels keep their
stored colour). The pixel count is checked from the file header before any
pixel is decoded. Anything Pillow cannot decode is refused with a one-line
error.

Outputs are checked before the work that makes them (``check_output``: the
folder exists and is writable, no existing file without --force, never anything
but a regular file replaced), then written through a temp file in the
destination folder, fsynced, then renamed (hard-linked when overwriting is not
allowed, so a file that appears meanwhile is still not overwritten); they get
the usual permissions (0666 minus the umask).
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from trellic.errors import TrellicError

MAX_PIXELS = 100_000_000  # reading bound; the codec's own bound is smaller
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise TrellicError(f"file not found: {path}")
    if path.is_dir():
        raise TrellicError(f"expected a file, got a directory: {path}")
    if not path.is_file():
        raise TrellicError(f"not a regular file: {path}")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); more than ``max_pixels`` is refused unread."""
    path = Path(path)
    _check_readable(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise TrellicError(f"image of {width}x{height} pixels exceeds the supported "
                                       f"maximum of {max_pixels} pixels: {path}")
                return to_rgb(ImageOps.exif_transpose(image), name=str(path))
    except TrellicError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a decoder on a hostile file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrellicError(f"cannot read image {path}: {message}") from None


def to_rgb(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any Pillow image to uint8 RGB following the input policy above."""
    if {"A", "a"} & set(image.getbands()) or "transparency" in image.info:
        warnings.warn(f"{name}: alpha channel dropped (trellic codes RGB only)", stacklevel=3)
    if image.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.round(array / 65535.0 * 255.0), 0, 255).astype(np.uint8)
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


def check_output(
    path: str | Path, force: bool = False, inputs: tuple[Path | None, ...] = ()
) -> Path:
    """Pre-flight of an output file: call it before the work that produces the bytes.

    Refuses a directory, an existing output without ``force``, anything but a
    regular file even with ``force`` (a device node, fifo, socket or symbolic
    link is never replaced), an output that is one of ``inputs``, and a missing
    or unwritable folder. Returns the path.

    Raises:
        TrellicError: one line naming the path and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise TrellicError(f"output is a directory: {path}")
    if os.path.lexists(path):
        if not force:
            raise TrellicError(f"output exists (use --force to overwrite): {path}")
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise TrellicError(f"output is not a regular file (trellic replaces only regular "
                               f"files, even with --force): {path}")
    for source in inputs:
        if source is not None and os.path.exists(source) and path.resolve() == source.resolve():
            raise TrellicError(f"output would replace an input: {path}")
    folder = path.parent
    if not folder.is_dir():
        raise TrellicError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrellicError(f"output folder is not writable: {folder}")
    return path


def write_atomic(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write bytes through a temp file + rename; the checks of ``check_output`` first.

    Only a regular file is ever replaced (with ``force``).
    """
    path = check_output(path, force)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        _publish(tmp, path, force)
    except OSError as error:
        raise TrellicError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _publish(tmp: str, path: Path, force: bool) -> None:
    if not force:
        try:
            os.link(tmp, path)  # atomic, and fails if the path exists
            return
        except FileExistsError:
            raise TrellicError(f"output exists (use --force to overwrite): {path}") from None
        except OSError:
            if path.exists():  # a filesystem without hard links: check, then rename
                raise TrellicError(f"output exists (use --force to overwrite): {path}") from None
    os.replace(tmp, path)


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """A file's bytes; more than ``limit`` bytes is an error (read no further than that)."""
    path = Path(path)
    _check_readable(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read() if limit is None else handle.read(limit + 1)
    except OSError as error:
        raise TrellicError(f"cannot read {path}: {error.strerror or error}") from None
    if limit is not None and len(data) > limit:
        raise TrellicError(f"file too large (more than {limit} bytes): {path}")
    return data
