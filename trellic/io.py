"""Images in and out: one validated reader, one lister, padding to the model's grid, atomic writes.

Input policy (documented for users, see docs/robustness.md section 2): every
image mode Pillow opens is converted to uint8 RGB by a stated rule, or refused
in one line. PNG, JPEG and the other formats Pillow reads are accepted; of an
animation, the first frame. EXIF orientation is applied. Grayscale, bilevel,
palette, CMYK, YCbCr, LAB and HSV images are converted to RGB by Pillow;
16-bit samples (``I;16*``) and 32-bit integer ``I`` samples are read as
0..65535 and scaled to 8 bits with rounding (``I`` values outside 0..65535
are refused); 32-bit float ``F`` samples are read as 0..1 and scaled to 8 bits
with rounding (values outside [0, 1] or not finite are refused); an alpha
channel is dropped with a warning (the codec codes colour only; transparent
pixels keep their stored colour). The pixel count is checked from the file
header before any pixel is decoded. Anything Pillow cannot decode is refused
with a one-line error.

Every command that reads images from disk (compress, eval, training,
retraining, validation) reads them with :func:`read_image`, and finds them in
folders with :func:`list_images`.

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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from trellic.errors import TrellicError

MAX_PIXELS = 100_000_000  # reading bound; the codec's own bound is smaller
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
COLOUR_MODES = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")  # Pillow converts
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # alpha dropped, colour converted by Pillow
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
FULL_SCALE = {**dict.fromkeys(SIXTEEN_BIT_MODES, 65535), "I": 65535, "F": 1}  # sample -> 255


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
    """Convert a Pillow image to uint8 RGB (H, W, 3) following the input policy above.

    Raises:
        TrellicError: a mode outside the policy, or samples outside the range of their mode.
    """
    if {"A", "a"} & set(image.getbands()) or "transparency" in image.info:
        warnings.warn(f"{name}: alpha channel dropped (trellic codes RGB only)", stacklevel=3)
    if image.mode in FULL_SCALE:
        gray = _scale_to_8_bits(np.asarray(image), FULL_SCALE[image.mode], image.mode, name)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "La":  # premultiplied: Pillow converts it to RGB only through LA
        image = image.convert("LA")
    if image.mode not in COLOUR_MODES + ALPHA_MODES:
        raise TrellicError(f"cannot read image {name}: unsupported image mode {image.mode}")
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise TrellicError(f"cannot read image {name}: unsupported image layout {array.shape}")
    return array


def _scale_to_8_bits(samples: np.ndarray, full_scale: float, mode: str, name: str) -> np.ndarray:
    """Single-channel samples in [0, full_scale] -> uint8 by round(v / full_scale * 255)."""
    samples = samples.astype(np.float64)
    if samples.size and not (np.isfinite(samples).all() and samples.min() >= 0
                             and samples.max() <= full_scale):
        finite = samples[np.isfinite(samples)]
        found = f"{finite.min():g} to {finite.max():g}" if finite.size else "none finite"
        if finite.size < samples.size:
            found += ", and non-finite values"
        raise TrellicError(f"cannot read image {name}: mode {mode} samples must lie in "
                           f"[0, {full_scale:g}] (found {found})")
    return np.round(samples / full_scale * 255.0).astype(np.uint8)


def list_images(folders: str | Path | Sequence[str | Path], recursive: bool = False,
                limit: int | None = None) -> list[Path]:
    """The image files (by suffix, ``IMAGE_SUFFIXES``) in one or more folders, sorted by path.

    Args:
        folders: a folder or a list of folders.
        recursive: also look in sub-folders (training folders hold data sets in sub-folders).
        limit: keep the first ``limit`` files (None or 0: all).

    Hidden files (names starting with a dot) are skipped.

    Raises:
        TrellicError: a folder does not exist, or no image is found.
    """
    folders = [Path(folders)] if isinstance(folders, str | Path) else [Path(f) for f in folders]
    files: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise TrellicError(f"image folder not found: {folder}")
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        files += [path for path in candidates if path.suffix.lower() in IMAGE_SUFFIXES
                  and not path.name.startswith(".") and path.is_file()]
    if not files:
        raise TrellicError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in "
                           f"{', '.join(map(str, folders))}")
    files.sort()
    return files[:limit] if limit else files


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
