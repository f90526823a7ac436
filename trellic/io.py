"""Images in and out: one validated reader, one lister, padding to the model's grid, atomic writes.

Input policy (documented for users, see docs/robustness.md section 2): every
image mode Pillow opens is converted to uint8 RGB by a stated rule, or refused
in one line. PNG, JPEG and the other formats Pillow reads are accepted; of an
animation or a multi-page file, the first frame (with a warning). EXIF orientation
is applied; an ICC profile other than sRGB, or a PNG gAMA other than sRGB's, is
converted to sRGB (:func:`to_srgb_rgb`): trellic codes sRGB. Grayscale, bilevel,
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
the usual permissions (0666 minus the umask). The temp file is named
``.NAME.HOST-PID.XXXXXXXX.tmp``; a write removes the temps of earlier writes of the
same name whose process died (:func:`remove_stale_temps`). Decoded images are
written by extension (:func:`write_image`: PNG, lossless WebP, JPEG).
"""

from __future__ import annotations

import io
import os
import re
import socket
import stat
import tempfile
import time
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, PngImagePlugin
from torch import Tensor

from trellic.colour import srgb_profile, to_srgb_rgb
from trellic.errors import TrellicError
from trellic.files import check_readable, read_bytes  # noqa: F401 - read_bytes: public here

MAX_PIXELS = 100_000_000  # reading bound; the codec's own bound is smaller
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
STALE_TEMP_SECONDS = 3600  # a temp of another machine or an older trellic, untouched this long


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); more than ``max_pixels`` is refused unread."""
    path = Path(path)
    check_readable(path)
    return _decode_image(path, str(path), max_pixels)


def read_image_data(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """:func:`read_image` of an image file's bytes (stdin, say); ``name`` goes in messages."""
    return _decode_image(io.BytesIO(data), name, max_pixels)


def _decode_image(source: Path | io.BytesIO, name: str, max_pixels: int) -> np.ndarray:
    """The input policy applied to what Pillow opens (a path or a file's bytes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise TrellicError(f"image of {width}x{height} pixels exceeds the supported "
                                       f"maximum of {max_pixels} pixels: {name}")
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    warnings.warn(f"{name}: {frames} frames, coding the first", stacklevel=3)
                return to_srgb_rgb(ImageOps.exif_transpose(image), name=name)
    except TrellicError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a decoder on a hostile file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrellicError(f"cannot read image {name}: {message}") from None


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
    exists = os.path.lexists(path)  # refusals --force cannot lift come first
    if exists and not stat.S_ISREG(os.lstat(path).st_mode):
        raise TrellicError(f"output is not a regular file (trellic replaces only regular "
                           f"files, even with --force): {path}")
    for source in inputs:
        if source is not None and os.path.exists(source) and path.resolve() == source.resolve():
            raise TrellicError(f"output would replace an input: {path}")
    if exists and not force:
        raise TrellicError(f"output exists (use --force to overwrite): {path}")
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
    remove_stale_temps(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
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


def _host_tag() -> str:
    """8 hex digits naming this machine (a pid means something on its own machine only)."""
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _temp_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: mkstemp adds 8 random characters and ``.tmp``."""
    return f".{path.name}.{_host_tag()}-{os.getpid()}."


_TEMP_TAIL = re.compile(r"(?:([0-9a-f]{8})-(\d+)\.)?[a-z0-9_]{8}\.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's process (or a pid that cannot be asked: keep it)
    return True


def remove_stale_temps(path: Path, now: float | None = None) -> list[Path]:
    """Remove the temp files of earlier writes of ``path`` whose writer died (a kill between
    the temp file and the rename leaves one); returns what was removed.

    A temp is ``.NAME.HOST-PID.XXXXXXXX.tmp``: one of this machine whose process is gone
    is stale; one of another machine (a shared folder), or of a trellic that did not
    name its temps so (``.NAME.XXXXXXXX.tmp``), once untouched for ``STALE_TEMP_SECONDS``.
    Concurrent writers of the same name are legal: a live writer's temp is never removed.
    Never fails: a temp that cannot be removed is left.
    """
    now = time.time() if now is None else now
    prefix, removed = f".{path.name}.", []
    host = _host_tag()
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)
                   and e.name.endswith(".tmp")]
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_TAIL.fullmatch(entry.name[len(prefix):])
        try:
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            if match[1] == host:
                stale = not _alive(int(match[2]))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


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
    """uint8 RGB (H, W, 3) -> PNG bytes tagged sRGB (an ``sRGB`` chunk, perceptual intent):
    trellic reads every image into sRGB, so that is what a decoded image holds."""
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add(b"sRGB", b"\x00")
    Image.fromarray(image, "RGB").save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
JPEG_QUALITY = 95  # high quality, 4:4:4: the codec's loss dominates the JPEG's


def image_format_for(path: str | Path) -> str:
    """The Pillow format an image output is written in, from its extension.

    Raises:
        TrellicError: an extension trellic does not write.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        known = ", ".join(OUTPUT_FORMATS)
        raise TrellicError(f"cannot write {suffix or 'an image without an extension'} "
                           f"(decoded images are written as {known}): {path}")
    return OUTPUT_FORMATS[suffix]


def encode_image(image: np.ndarray, path: str | Path) -> bytes:
    """uint8 RGB (H, W, 3) encoded in the format of ``path``'s extension (see
    :func:`image_format_for`): PNG (lossless, tagged sRGB); WebP lossless (lossy WebP
    always halves the chroma resolution); JPEG at quality 95 without chroma subsampling,
    a second, small loss on top of the codec's. WebP and JPEG carry the sRGB ICC
    profile."""
    kind = image_format_for(path)
    if kind == "PNG":
        return encode_png(image)
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(srgb_profile()).tobytes()
    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
    if kind == "JPEG":
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0,
                     icc_profile=icc)
    else:
        picture.save(buffer, format="WEBP", lossless=True, icc_profile=icc)
    return buffer.getvalue()


def write_image(path: str | Path, image: np.ndarray, force: bool = False) -> None:
    """Write an image atomically in the format of its extension (:func:`encode_image`); the
    extension is checked first, so an unknown one fails before any work."""
    write_atomic(path, encode_image(image, path), force)
