"""Side-by-side crops of one image at similar rates, with error maps, for the HTML report.

A crop is only a fair comparison where every codec reaches the rate shown, so the
targets lie inside the range of rates *every* measured curve covers on that image
(its per-image results; the mean rates where the curve has none for it)::

    rates of each curve on the image -> common range [max of minima, min of maxima]
    -> targets (given, or one per half of the log range: the measured rate that every
       curve has a point nearest to) -> per curve, its point closest to each target
    -> re-run that point on the image (baselines: their quality; trellic: the recorded
       model and settings, ``codec_from_point``) -> crop, |x - x_hat| map, real bpp, PSNR

Published reference curves carry no reconstructions and are left out.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from trellic.errors import TrellicError
from trellic.eval.baselines import BASELINES, make_codec
from trellic.eval.learned import codec_from_point
from trellic.eval.metrics import psnr, to_uint8
from trellic.eval.results import Point, Results
from trellic.eval.runner import CodecLike
from trellic.io import read_image

TARGETS = 2  # crop rows chosen when no target rate is given
_MIN_BPP = 1e-6  # rates are floored here before taking logs


@dataclass(frozen=True)
class Crop:
    """One panel: a title, a caption with the measured numbers, PNGs (crop, error map) or a note."""

    title: str
    caption: str
    png: bytes | None = None
    error_png: bytes | None = None
    note: str | None = None


@dataclass(frozen=True)
class CropRow:
    """Every measured codec near one target rate; error maps share ``error_scale`` (levels)."""

    target_bpp: float
    crops: list[Crop]
    error_scale: int


@dataclass(frozen=True)
class CropSet:
    """The original crop, the rate range every codec reaches on the image, one row per target."""

    original: Crop
    rate_range: tuple[float, float]
    rows: list[CropRow] = field(default_factory=list)
    warning: str | None = None  # e.g. the image is not one the curves were measured on


def unmeasured_warning(curves: list[Results], image_name: str) -> str | None:
    """A warning where some measured curve has no per-image result for the image: its
    targets then come from that curve's mean rates, which the image's own rates may be far
    from (an image outside the curves' set)."""
    missing = [curve.name for curve in curves
               if not any(entry.name == image_name for p in curve.points for entry in p.images)]
    if not missing:
        return None
    return (f"{image_name} is not among the images {', '.join(missing)} "
            f"{'was' if len(missing) == 1 else 'were'} measured on: the crop rates come from "
            "their mean rates, and this image's own rates may differ (pass one of the "
            "measured images with --image)")


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


def image_rate(point: Point, image_name: str) -> float:
    """The point's rate on that image (bpp), or its mean rate without a per-image entry."""
    own = [entry.bpp for entry in point.images if entry.name == image_name]
    return own[0] if own else point.bpp


def common_range(curves: list[Results], image_name: str) -> tuple[float, float]:
    """The rates (bpp) every curve reaches on the image: TrellicError if they do not overlap."""
    rates = [[image_rate(p, image_name) for p in curve.points] for curve in curves]
    low, high = max(min(r) for r in rates), min(max(r) for r in rates)
    if low > high:
        spans = ", ".join(f"{curve.name} {min(r):.3f}-{max(r):.3f}"
                          for curve, r in zip(curves, rates, strict=True))
        raise TrellicError(f"no rate is reached by every curve on {image_name} ({spans} bpp)")
    return low, high


def choose_targets(curves: list[Results], image_name: str, count: int = TARGETS) -> list[float]:
    """``count`` target rates inside the common range, one per equal part of its log span:
    in each part, the measured rate to which every curve's nearest point is closest
    (the smallest worst-case rate ratio)."""
    low, high = common_range(curves, image_name)
    low, high = max(low, _MIN_BPP), max(high, _MIN_BPP)
    rates = [[max(image_rate(p, image_name), _MIN_BPP) for p in curve.points] for curve in curves]

    def mismatch(target: float) -> float:
        return max(min(abs(math.log(rate / target)) for rate in curve) for curve in rates)

    candidates = sorted({rate for curve in rates for rate in curve if low <= rate <= high})
    edges = [low * (high / low) ** (i / count) for i in range(count + 1)]
    targets: list[float] = []
    for start, end in zip(edges, edges[1:], strict=False):
        part = [rate for rate in candidates if start <= rate <= end]
        best = min(part, key=lambda t: (mismatch(t), abs(math.log(t / math.sqrt(start * end)))))
        if best not in targets:
            targets.append(best)
    return targets


def check_targets(curves: list[Results], image_name: str, targets: list[float]) -> None:
    """Refuse a target rate that some curve does not reach on the image."""
    low, high = common_range(curves, image_name)
    outside = [f"{target:g}" for target in targets if not low <= target <= high]
    if outside:
        raise TrellicError(f"crop rate {', '.join(outside)} bpp is outside the rates every curve "
                           f"reaches on {image_name}: {low:.3f} to {high:.3f} bpp")


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _cut(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, width, height = box
    return image[y:y + height, x:x + width]


def abs_error(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """|x - x_hat| per pixel, averaged over the RGB channels, in 8-bit levels (H, W)."""
    difference = original.astype(np.int16) - reconstruction.astype(np.int16)
    return np.abs(difference).mean(axis=2)


def heat_map(error: np.ndarray, scale: float) -> np.ndarray:
    """Errors as a black-red-yellow-white ("hot") uint8 RGB image; white at ``scale`` or more."""
    t = np.clip(error / scale, 0, 1)[..., None] * 3
    rgb = np.clip(np.concatenate([t, t - 1, t - 2], axis=2), 0, 1)
    return np.rint(255 * rgb).astype(np.uint8)


@dataclass
class _Coded:
    """A point re-run on the image: its rate, PSNR and reconstruction, or why not."""

    label: str
    bpp: float = 0.0
    psnr: float = 0.0
    reconstruction: np.ndarray | None = None
    note: str | None = None


def _codec_for(curve: Results, point: Point) -> CodecLike:
    if curve.codec in BASELINES:
        if point.quality is None:
            raise TrellicError("the point has no quality to re-encode with")
        return make_codec(curve.codec, int(point.quality))
    if curve.codec == "trellic":
        return codec_from_point(point)
    raise TrellicError(f"no codec to re-run for {curve.codec!r} curves")


def _code(curve: Results, point: Point, image: np.ndarray, progress: bool) -> _Coded:
    try:
        codec = _codec_for(curve, point)
        # trellic's encoder counts its refinement steps (minutes per image on a slow CPU)
        encoded = (codec.encode(image, progress=progress) if curve.codec == "trellic"
                   else codec.encode(image))
        data = encoded if isinstance(encoded, bytes) else encoded.data
        reconstruction = to_uint8(np.asarray(codec.decode(data)))
    except TrellicError as error:
        return _Coded(point.label, note=str(error))
    bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
    return _Coded(point.label, bpp, psnr(image, reconstruction), reconstruction)


def _row(target: float, curves: list[Results], coded: list[_Coded], image: np.ndarray,
         box: tuple[int, int, int, int]) -> CropRow:
    original = _cut(image, box)
    errors = [abs_error(original, _cut(c.reconstruction, box)) if c.reconstruction is not None
              else None for c in coded]
    shown = [error for error in errors if error is not None]
    scale = max(1, math.ceil(max((np.percentile(e, 99) for e in shown), default=1)))
    crops = []
    for curve, c, error in zip(curves, coded, errors, strict=True):
        if error is None:
            crops.append(Crop(curve.name, c.label, note=c.note))
            continue
        crop_psnr = psnr(original, _cut(c.reconstruction, box))
        caption = (f"{c.label}: {c.bpp:.3f} bpp, {c.psnr:.2f} dB on the image; "
                   f"{crop_psnr:.2f} dB in the crop")
        crops.append(Crop(curve.name, caption, _png(_cut(c.reconstruction, box)),
                          _png(heat_map(error, scale))))
    return CropRow(target, crops, scale)


def make_crops(curves: list[Results], image_path: Path, targets: list[float] | None = None,
               box: tuple[int, int, int, int] | None = None, progress: bool = False) -> CropSet:
    """The original crop and, per target rate (chosen if None), every measured curve's point
    closest to it, re-run on the image. TrellicError when no rate is common to all curves."""
    image = read_image(image_path)
    box = box or detailed_box(image)
    x, y, width, height = box
    if x + width > image.shape[1] or y + height > image.shape[0]:
        raise TrellicError(f"crop {box} falls outside the {image.shape[1]}x{image.shape[0]} "
                           f"image {image_path.name}")
    measured = [curve for curve in curves if curve.codec != "reference"]
    original = Crop("Original", f"{image_path.name}, crop {width}x{height} at ({x}, {y})",
                    _png(_cut(image, box)))
    if not measured:
        return CropSet(original, (0.0, 0.0))
    name = image_path.name
    warning = unmeasured_warning(measured, name)
    rate_range = common_range(measured, name)
    if targets is None:
        targets = choose_targets(measured, name)
    check_targets(measured, name, targets)
    chosen = [[min(curve.points, key=lambda p: abs(image_rate(p, name) - target))
               for curve in measured] for target in targets]
    done: dict[int, _Coded] = {}  # by id(point): a point nearest to two targets runs once
    tasks = {id(point): (curve, point) for row in chosen
             for curve, point in zip(measured, row, strict=True)}
    for key, (curve, point) in tqdm(tasks.items(), desc="report crops", unit="codec",
                                    disable=not progress):
        done[key] = _code(curve, point, image, progress)
    rows = [_row(target, measured, [done[id(point)] for point in row], image, box)
            for target, row in zip(targets, chosen, strict=True)]
    return CropSet(original, rate_range, rows, warning)
