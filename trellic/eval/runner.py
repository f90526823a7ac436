"""Run any codec over a folder of images: real files, real decode, one point per setting.

A codec is anything with ``encode(image) -> bytes | EncodedImage`` (an object with ``.data``
and optionally ``.estimated_bits``) and ``decode(data) -> image``, images being uint8
(H, W, 3) RGB arrays. Each setting (a quality, a model) gives a factory that builds its
codec; with ``workers > 1`` the images are sharded over spawned processes, each building
the codecs it needs once, so factories must be picklable (``functools.partial`` of a
module-level function)::

    settings -> [(setting, image) tasks] -> pool of workers (1 torch thread each, or threads)
             -> encode, time -> decode, time -> bpp from len(bytes), PSNR, MS-SSIM
             -> ImageResult per task -> Point per setting (means over images)
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from trellic.batch import torch_threads
from trellic.errors import TrellicError
from trellic.eval.metrics import MS_SSIM_MIN_SIDE, ms_ssim, mse, psnr, to_uint8
from trellic.eval.results import ImageResult, Point
from trellic.io import read_image
from trellic.rd import rd_cost


class CodecLike(Protocol):
    def encode(self, image: np.ndarray) -> Any: ...

    def decode(self, data: bytes) -> np.ndarray: ...


@dataclass(frozen=True)
class Setting:
    """One operating point: its label, a codec factory and the Point fields it sets."""

    label: str
    factory: Callable[[], CodecLike]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundTrip:
    """One image through a codec: what the encoder returned, its bytes, the decoded image."""

    encoded: Any
    data: bytes
    reconstruction: np.ndarray  # uint8, the original's shape
    encode_seconds: float
    decode_seconds: float


def round_trip(codec: CodecLike, image: np.ndarray, name: str = "image") -> RoundTrip:
    """Encode then decode one uint8 image, timing both; a decoded shape that differs is an error."""
    start = time.perf_counter()
    encoded = codec.encode(image)
    encoded_at = time.perf_counter()
    data = bytes(encoded if isinstance(encoded, bytes | bytearray) else encoded.data)
    reconstruction = np.asarray(codec.decode(data))
    decoded_at = time.perf_counter()
    if reconstruction.shape != image.shape:
        raise TrellicError(f"{name}: decoded shape {reconstruction.shape} "
                           f"differs from the original {image.shape}")
    return RoundTrip(encoded, data, to_uint8(reconstruction), encoded_at - start,
                     decoded_at - encoded_at)


def image_fault(path: Path) -> str | None:
    """Why ``path`` cannot be evaluated (unreadable, smaller than MS-SSIM needs), else None."""
    try:
        image = read_image(path)
    except TrellicError as error:
        return str(error)
    height, width = image.shape[:2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        return (f"{path}: {width}x{height} is too small: MS-SSIM needs at least "
                f"{MS_SSIM_MIN_SIDE} pixels on each side")
    return None


def check_images(files: list[Path], skip_bad: bool = False) -> tuple[list[Path], list[str]]:
    """Read every image before any is coded: the usable files and, with ``skip_bad``, why
    each other one was left out. Without ``skip_bad`` the first fault is a TrellicError
    naming the file; with it, TrellicError only when no image is left."""
    kept, skipped = [], []
    for path in files:
        fault = image_fault(path)
        if fault is None:
            kept.append(path)
        elif skip_bad:
            skipped.append(fault)
        else:
            raise TrellicError(f"{fault} (use --skip-bad to leave such images out)")
    if not kept:
        raise TrellicError(f"no usable image among {len(files)}: {skipped[0]}"
                           + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
    return kept, skipped


def evaluate_image(codec: CodecLike, path: Path) -> ImageResult:
    """Encode, decode and measure one image; bpp counts every byte the encoder produced."""
    image = read_image(path)
    result = round_trip(codec, image, path.name)
    height, width = image.shape[:2]
    bits = getattr(result.encoded, "estimated_bits", None)
    try:
        quality = psnr(image, result.reconstruction), ms_ssim(image, result.reconstruction)
    except TrellicError as error:
        raise TrellicError(f"{path}: {error}") from None
    return ImageResult(
        name=path.name, width=width, height=height, bytes=len(result.data),
        bpp=8 * len(result.data) / (width * height),
        estimated_bpp=None if bits is None else float(bits) / (width * height),
        psnr_rgb=quality[0], ms_ssim_rgb=quality[1],
        encode_seconds=result.encode_seconds, decode_seconds=result.decode_seconds,
    )


@dataclass(frozen=True)
class RatePoint:
    """Means over in-memory images, without MS-SSIM: the quick measurement of studies."""

    images: int
    bpp: float  # from the real file sizes
    psnr_rgb: float  # mean of the per-image PSNR
    mse: float  # mean of the per-image MSE, pixels in [0, 1]
    seconds_per_image: float  # encode + decode

    def rd_cost(self, lmbda: float) -> float:
        """lambda * 255^2 * MSE + bpp: the training loss, measured on real files."""
        return rd_cost(self.mse, self.bpp, lmbda)


def rate_point(codec: CodecLike, images: list[np.ndarray]) -> RatePoint:
    """Encode and decode each uint8 (H, W, 3) image; rate from the bytes, distortion in RGB."""
    if not images:
        raise TrellicError("rate_point needs at least one image")
    bpp, quality, error, seconds = [], [], [], 0.0
    for image in images:
        result = round_trip(codec, image)
        bpp.append(8 * len(result.data) / (image.shape[0] * image.shape[1]))
        quality.append(psnr(image, result.reconstruction))
        error.append(mse(image, result.reconstruction) / 255**2)
        seconds += result.encode_seconds + result.decode_seconds
    return RatePoint(
        images=len(images),
        bpp=float(np.mean(bpp)),
        psnr_rgb=float(np.mean(quality)),
        mse=float(np.mean(error)),
        seconds_per_image=seconds / len(images),
    )


_worker_factories: list[Callable[[], CodecLike]] = []
_worker_codecs: dict[int, CodecLike] = {}


def _init_worker(factories: list[Callable[[], CodecLike]], threads: int = 1) -> None:
    import torch

    torch.set_num_threads(threads)
    _worker_factories[:] = factories
    _worker_codecs.clear()


def _work(task: tuple[int, int, Path]) -> tuple[int, int, ImageResult]:
    setting, index, path = task
    if setting not in _worker_codecs:
        _worker_codecs[setting] = _worker_factories[setting]()
    return setting, index, evaluate_image(_worker_codecs[setting], path)


def run(settings: list[Setting], files: list[Path], workers: int = 1, progress: bool = True,
        description: str = "eval",
        on_point: Callable[[list[Point]], None] | None = None,
        threads: int | None = None) -> list[Point]:
    """Evaluate every setting on every file; one Point per setting, images in file order.

    Each time a setting's last image is measured, ``on_point`` (if given) gets the points
    finished so far, in setting order, so the caller can keep them before the rest fails.
    ``threads``: torch intra-op threads of each worker process (None: 1 per worker; with
    ``workers == 1`` torch's setting in this process, restored afterwards).
    """
    if workers < 1:
        raise TrellicError(f"--workers must be at least 1, got {workers}")
    tasks = [(s, i, path) for s in range(len(settings)) for i, path in enumerate(files)]
    found: dict[tuple[int, int], ImageResult] = {}
    missing = [len(files)] * len(settings)
    points: dict[int, Point] = {}

    def measured(s: int, i: int, result: ImageResult) -> None:
        found[s, i] = result
        missing[s] -= 1
        bar.update()
        if not missing[s]:
            points[s] = Point.from_images(settings[s].label,
                                          [found[s, k] for k in range(len(files))],
                                          **settings[s].fields)
            if on_point is not None:
                on_point([points[k] for k in sorted(points)])

    with tqdm(total=len(tasks), desc=description, unit="img", disable=not progress) as bar:
        if workers == 1:
            with torch_threads(threads):
                for s, setting in enumerate(settings):
                    codec = setting.factory()
                    for i, path in enumerate(files):
                        measured(s, i, evaluate_image(codec, path))
        else:
            context = multiprocessing.get_context("spawn")
            factories = [setting.factory for setting in settings]
            with context.Pool(workers, _init_worker, (factories, threads or 1)) as pool:
                for s, i, result in pool.imap_unordered(_work, tasks):
                    measured(s, i, result)
    return [points[s] for s in range(len(settings))]
