"""Side-by-side crops of one image at a similar rate for each codec, for the HTML report.

For each curve, the point whose rate on that image (or, without per-image results, whose
mean rate) is closest to the target bpp is re-run on the image: baselines through their
quality, trellic through ``Codec.load`` with the arguments recorded by ``trellic eval``.
Published reference curves carry no reconstructions and are left out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trellic.errors import TrellicError
from trellic.eval.baselines import BASELINES, make_codec
from trellic.eval.metrics import psnr, to_uint8
from trellic.eval.results import Point, Results
from trellic.eval.runner import CodecLike
from trellic.io import read_image


@dataclass(frozen=True)
class Crop:
    """One panel: a title, a caption with the measured numbers, PNG bytes or a note."""

    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``X,Y,W,H`` in pixels."""
    try:
        x, y, width, height = (int(part) for part in text.split(","))
    except ValueError:
        raise TrellicError(f"crop must be X,Y,W,H in pixels, got {text!r}") from None
    if min(x, y) < 0 or min(width, height) <= 0:
        raise TrellicError(f"crop {text!r} must have x, y >= 0 and a positive size")
    return x, y, width, height


def detailed_box(image: np.ndarray, size: int = 192, stride: int = 16) -> tuple[int, int, int, int]:
    """The ``size`` square (on a ``stride`` grid) with the most gradient energy: where
    coding artefacts show."""
    gray = image.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    table = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    side = min(size, *gray.shape)
    ys = np.arange(0, gray.shape[0] - side + 1, stride)[:, None]
    xs = np.arange(0, gray.shape[1] - side + 1, stride)[None, :]
    sums = table[ys + side, xs + side] - table[ys, xs + side] - table[ys + side, xs] + table[ys, xs]
    row, column = np.unravel_index(np.argmax(sums), sums.shape)
    return int(xs[0, column]), int(ys[row, 0]), side, side


def _png(image: np.ndarray, box: tuple[int, int, int, int]) -> bytes:
    x, y, width, height = box
    buffer = io.BytesIO()
    Image.fromarray(image[y:y + height, x:x + width]).save(buffer, format="PNG")
    return buffer.getvalue()


def _closest_point(curve: Results, image_name: str, target_bpp: float) -> Point:
    def rate(point: Point) -> float:
        own = [entry.bpp for entry in point.images if entry.name == image_name]
        return own[0] if own else point.bpp

    return min(curve.points, key=lambda point: abs(rate(point) - target_bpp))


def _codec_for(curve: Results, point: Point) -> CodecLike:
    if curve.codec in BASELINES:
        if point.quality is None:
            raise TrellicError("the point has no quality to re-encode with")
        return make_codec(curve.codec, int(point.quality))
    if curve.codec == "trellic":
        load = point.options.get("load")
        if not load:
            raise TrellicError("the point does not record how its model was loaded")
        try:
            from trellic.codec import Codec
        except ImportError as error:
            raise TrellicError(f"trellic.codec is not available: {error}") from None
        return Codec.load(**load)
    raise TrellicError(f"no codec to re-run for {curve.codec!r} curves")


def make_crops(curves: list[Results], image_path: Path, target_bpp: float,
               box: tuple[int, int, int, int] | None = None) -> list[Crop]:
    """The original crop, then one crop per measured curve at the rate nearest ``target_bpp``."""
    image = read_image(image_path)
    box = box or detailed_box(image)
    x, y, width, height = box
    if x + width > image.shape[1] or y + height > image.shape[0]:
        raise TrellicError(f"crop {box} falls outside the {image.shape[1]}x{image.shape[0]} "
                           f"image {image_path.name}")
    crops = [Crop("Original", f"{image_path.name}, crop {width}x{height} at ({x}, {y})",
                  _png(image, box))]
    for curve in curves:
        if curve.codec == "reference":
            continue
        point = _closest_point(curve, image_path.name, target_bpp)
        try:
            codec = _codec_for(curve, point)
            encoded = codec.encode(image)
            data = encoded if isinstance(encoded, bytes) else encoded.data
            reconstruction = to_uint8(np.asarray(codec.decode(data)))
        except TrellicError as error:
            crops.append(Crop(curve.name, point.label, note=str(error)))
            continue
        bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
        caption = f"{point.label}: {bpp:.3f} bpp, {psnr(image, reconstruction):.2f} dB"
        crops.append(Crop(curve.name, caption, _png(reconstruction, box)))
    return crops
