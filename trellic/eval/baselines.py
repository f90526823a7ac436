"""Classical codecs as quality sweeps: JPEG, WebP, AVIF (Pillow), JPEG XL and HEVC (tools).

=========  ==================================================================  ==============
name       encoder and settings                                                sweep (range)
=========  ==================================================================  ==============
jpeg       Pillow/libjpeg-turbo, 4:2:0, optimized Huffman tables               quality 1-100
jpeg444    Pillow/libjpeg-turbo, 4:4:4, optimized Huffman tables               quality 1-100
webp       Pillow/libwebp lossy (always 4:2:0), method 6 (slowest, best)       quality 0-100
avif       Pillow/libavif (aom), 4:4:4, speed 4, full range, one thread        quality 0-100
avif420    Pillow/libavif (aom), 4:2:0, speed 4, full range, one thread        quality 0-100
jxl        cjxl/djxl (libjxl-tools), effort 7 (cjxl 0.7 accepts -q >= 5)        -q 5-100
x265       ffmpeg libx265 intra, 4:4:4 BT.601 full-range YCbCr, preset slow,   QP 0-51
           raw HEVC stream without the encoder-info SEI (a BPG stand-in)
=========  ==================================================================  ==============

Each sweep's qualities cover about 0.1 to 1.5 bpp on Kodak. The ranges are what the encoders
accept (Pillow's JPEG takes 0 as 1 and -1 as its default 75, so JPEG starts at 1). AVIF at
speed 4 with one thread takes about 0.9 s per Kodak image on this CPU; the whole sweep is in
docs/evaluation.md.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, features

from trellic.errors import TrellicError
from trellic.eval.runner import Setting


class PillowCodec:
    """A Pillow image format at one quality; ``options`` go to ``Image.save``."""

    def __init__(self, image_format: str, quality: int, options: dict[str, Any]):
        self.image_format, self.quality, self.options = image_format, quality, options

    def encode(self, image: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=self.image_format, quality=self.quality,
                                    **self.options)
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))


def _run_tool(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise TrellicError(f"{command[0]} failed (exit {result.returncode}): {tail[0]}")


class ToolCodec:
    """A codec behind command-line tools that read and write files (cjxl, ffmpeg)."""

    suffix = ""

    def encode_command(self, source: Path, target: Path) -> list[str]:
        raise NotImplementedError

    def decode_command(self, source: Path, target: Path) -> list[str]:
        raise NotImplementedError

    def encode(self, image: np.ndarray) -> bytes:
        with tempfile.TemporaryDirectory(prefix="trellic-") as folder:
            source, target = Path(folder) / "in.png", Path(folder) / f"out{self.suffix}"
            Image.fromarray(image).save(source)
            _run_tool(self.encode_command(source, target))
            return target.read_bytes()

    def decode(self, data: bytes) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="trellic-") as folder:
            source, target = Path(folder) / f"in{self.suffix}", Path(folder) / "out.png"
            source.write_bytes(data)
            _run_tool(self.decode_command(source, target))
            with Image.open(target) as image:
                return np.asarray(image.convert("RGB"))


class JxlCodec(ToolCodec):
    suffix = ".jxl"

    def __init__(self, quality: int, effort: int):
        self.quality, self.effort = quality, effort

    def encode_command(self, source: Path, target: Path) -> list[str]:
        return ["cjxl", str(source), str(target), "-q", str(self.quality),
                "-e", str(self.effort), "--quiet"]

    def decode_command(self, source: Path, target: Path) -> list[str]:
        return ["djxl", str(source), str(target), "--quiet"]


class X265Codec(ToolCodec):
    suffix = ".hevc"
    _FFMPEG = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]

    def __init__(self, qp: int, preset: str):
        self.qp, self.preset = qp, preset

    def encode_command(self, source: Path, target: Path) -> list[str]:
        params = f"qp={self.qp}:keyint=1:info=0:log-level=error"
        return [*self._FFMPEG, "-i", str(source), "-frames:v", "1",
                "-vf", "scale=out_color_matrix=bt601:out_range=full,format=yuv444p",
                "-color_range", "pc", "-colorspace", "smpte170m", "-c:v", "libx265",
                "-preset", self.preset, "-x265-params", params, "-f", "hevc", str(target)]

    def decode_command(self, source: Path, target: Path) -> list[str]:
        return [*self._FFMPEG, "-i", str(source), "-frames:v", "1",
                "-vf", "scale=in_color_matrix=bt601:in_range=full,format=rgb24", str(target)]


@dataclass(frozen=True)
class Baseline:
    """A named sweep: codec class, fixed options, the qualities swept, required tools, and
    the range of qualities the encoder accepts."""

    title: str
    codec: type
    options: dict[str, Any]
    qualities: tuple[int, ...]
    image_format: str | None = None
    tools: tuple[str, ...] = field(default=())
    quality_name: str = "quality"
    quality_range: tuple[int, int] = (0, 100)


_AVIF = {"speed": 4, "max_threads": 1, "range": "full"}
BASELINES: dict[str, Baseline] = {
    "jpeg": Baseline("JPEG 4:2:0", PillowCodec, {"subsampling": "4:2:0", "optimize": True},
                     (3, 5, 8, 12, 18, 26, 36, 50, 65, 78, 85), "JPEG", quality_range=(1, 100)),
    "jpeg444": Baseline("JPEG 4:4:4", PillowCodec, {"subsampling": "4:4:4", "optimize": True},
                        (3, 5, 8, 12, 18, 26, 36, 50, 65, 78), "JPEG", quality_range=(1, 100)),
    "webp": Baseline("WebP", PillowCodec, {"method": 6},
                     (0, 2, 5, 10, 18, 28, 40, 55, 70, 80, 88), "WEBP"),
    "avif": Baseline("AVIF 4:4:4", PillowCodec, {"subsampling": "4:4:4", **_AVIF},
                     (4, 10, 16, 22, 28, 35, 42, 50, 58, 66, 74), "AVIF"),
    "avif420": Baseline("AVIF 4:2:0", PillowCodec, {"subsampling": "4:2:0", **_AVIF},
                        (4, 10, 16, 22, 28, 35, 42, 50, 58, 66, 74), "AVIF"),
    "jxl": Baseline("JPEG XL", JxlCodec, {"effort": 7},
                    (5, 12, 20, 30, 45, 58, 68, 76, 82, 88), tools=("cjxl", "djxl"),
                    quality_range=(5, 100)),
    "x265": Baseline("HEVC intra (x265)", X265Codec, {"preset": "slow"},
                     (50, 47, 44, 41, 38, 35, 32, 30, 28, 26, 24), tools=("ffmpeg",),
                     quality_name="qp", quality_range=(0, 51)),
}


def get_baseline(name: str) -> Baseline:
    if name not in BASELINES:
        raise TrellicError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    baseline = BASELINES[name]
    missing = [tool for tool in baseline.tools if shutil.which(tool) is None]
    if missing:
        raise TrellicError(f"baseline {name!r} needs {' and '.join(baseline.tools)} on PATH; "
                           f"not found: {', '.join(missing)}")
    return baseline


def check_qualities(name: str, qualities: list[int]) -> None:
    """Refuse qualities outside what baseline ``name``'s encoder accepts, or repeated ones."""
    baseline = BASELINES[name]
    low, high = baseline.quality_range
    for quality in qualities:
        if isinstance(quality, bool) or not isinstance(quality, int) or not low <= quality <= high:
            raise TrellicError(f"{name} {baseline.quality_name} must be an integer in "
                               f"[{low}, {high}], got {quality!r}")
    if len(set(qualities)) != len(qualities):
        raise TrellicError(f"{name}: a {baseline.quality_name} is given twice")


def make_codec(name: str, quality: int) -> PillowCodec | ToolCodec:
    """The codec of baseline ``name`` at one quality (or QP): picklable via partial."""
    baseline = get_baseline(name)
    check_qualities(name, [quality])
    if baseline.image_format:
        return PillowCodec(baseline.image_format, quality, dict(baseline.options))
    return baseline.codec(quality, **baseline.options)


def settings(name: str, qualities: list[int] | None = None) -> list[Setting]:
    """The sweep of baseline ``name`` as runner settings (default qualities if None)."""
    baseline = get_baseline(name)
    qualities = list(qualities or baseline.qualities)
    check_qualities(name, qualities)
    return [
        Setting(label=f"{baseline.quality_name}{quality}",
                factory=functools.partial(make_codec, name, quality),
                fields={"quality": quality, "options": dict(baseline.options)})
        for quality in qualities
    ]


def encoder_version(name: str) -> str:
    """Library and tool versions behind baseline ``name``."""
    pillow = f"Pillow {PIL.__version__}"
    if name in ("jpeg", "jpeg444"):
        return f"{pillow}, libjpeg-turbo {features.version_feature('libjpeg_turbo')}"
    if name == "webp":
        return f"{pillow}, libwebp {features.version_module('webp')}"
    if name in ("avif", "avif420"):
        from PIL import AvifImagePlugin

        return (f"{pillow}, libavif {features.version_module('avif')}, "
                f"aom {AvifImagePlugin.get_codec_version('aom')}")
    tool = {"jxl": ["cjxl", "--version"], "x265": ["ffmpeg", "-hide_banner", "-version"]}[name]
    output = subprocess.run(tool, capture_output=True, text=True).stdout.strip()
    return output.splitlines()[0].split(" Copyright")[0] if output else tool[0]
