"""The results schema: one versioned JSON file for every codec, learned or not.

A file holds one rate-distortion curve measured on one dataset::

    {
      "schema": "trellic-results", "schema_version": 1,
      "name": "AVIF 4:4:4 speed 4",          # label for plots and tables
      "codec": "avif",                        # baseline name, "trellic", or "reference"
      "encoder": "Pillow 13.0.0, libavif 1.4.2, aom [enc]:3.14.1",   # encoder version
      "source": null,                         # where published numbers come from
      "dataset": {"name": "kodak", "files": ["kodim01.png", ...],   # [] = not recorded
                  "count": 24},               # image count (alone: published curves)
      "device": "cpu: AMD EPYC ... (2 cores)", "torch_version": "2.13.0+cpu",
      "git_commit": "e204bbc...", "created": "2025-01-01T12:00:00+00:00",
      "workers": 2, "wall_seconds": 151.2,    # how the whole run was made, how long it took
      "points": [                             # one per setting (quality, or model)
        {"label": "q50", "quality": 50,       # baselines
         "model": null, "checkpoint_sha256": null, "quantizer": null, "lambda": null,
         "options": {"subsampling": "4:4:4", "speed": 4},    # everything else
         "bpp": 0.81, "estimated_bpp": null, "psnr_rgb": 32.1, "ms_ssim_rgb": 0.975,
         "encode_seconds": 0.6, "decode_seconds": 0.02,      # means over images
         "images": [{"name": "kodim01.png", "width": 768, "height": 512, "bytes": 39811,
                     "bpp": 0.81, "estimated_bpp": null, "psnr_rgb": 31.2,
                     "ms_ssim_rgb": 0.98, "encode_seconds": 0.6, "decode_seconds": 0.02}]}
      ]
    }

Conventions: ``bpp`` is 8 * (size of the whole file, header included) / (width * height).
``psnr_rgb`` is measured on the 8-bit reconstruction (clamped, rounded) over the three RGB
channels, finite by the MSE floor of trellic.eval.metrics (identical images: 120 dB);
``ms_ssim_rgb`` is the mean over channels (data range 255). Point means are plain averages over
images of each field (CompressAI style: mean bpp, mean PSNR in dB). For learned codecs the
model, checkpoint sha256, quantizer config and lambda live in each point, since a curve is made
of several models. Published curves (``codec: "reference"``) have empty ``images``.
:func:`read_results` also reads CompressAI's results JSON files, and checks every file it reads
(trellic.eval.validate); :func:`to_compressai` writes one.

Image sets: a curve's images are named in ``dataset.files``. Published curves, which have no
per-image data, record their dataset's name and image count instead (the shipped CompressAI
Kodak curves: ``{"name": "kodak", "files": [], "count": 24}``); CompressAI files record
neither (dataset ``unknown``, no files, no count). :func:`check_image_sets` refuses to
compare curves measured on different image sets.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trellic.errors import TrellicError
from trellic.eval.validate import check_trellic, compressai_columns
from trellic.io import write_atomic
from trellic.jsonio import loads

SCHEMA = "trellic-results"
SCHEMA_VERSION = 1


@dataclass
class ImageResult:
    """One image coded at one setting."""

    name: str
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float
    encode_seconds: float
    decode_seconds: float
    estimated_bpp: float | None = None


@dataclass
class Point:
    """One setting of a codec (a quality, or a model) with its means over images."""

    label: str
    bpp: float
    psnr_rgb: float
    ms_ssim_rgb: float | None = None
    estimated_bpp: float | None = None
    encode_seconds: float | None = None
    decode_seconds: float | None = None
    quality: float | None = None
    model: str | None = None
    checkpoint_sha256: str | None = None
    quantizer: dict[str, Any] | None = None
    lambda_: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    images: list[ImageResult] = field(default_factory=list)

    @classmethod
    def from_images(cls, label: str, images: list[ImageResult], **setting: Any) -> Point:
        """Average per-image results into a point (mean bpp, mean PSNR, ...)."""
        if not images:
            raise TrellicError(f"point {label!r} has no images")

        def mean(name: str) -> float:
            return sum(getattr(image, name) for image in images) / len(images)

        estimated = None
        if all(image.estimated_bpp is not None for image in images):
            estimated = mean("estimated_bpp")
        return cls(
            label=label, bpp=mean("bpp"), psnr_rgb=mean("psnr_rgb"),
            ms_ssim_rgb=mean("ms_ssim_rgb"), estimated_bpp=estimated,
            encode_seconds=mean("encode_seconds"), decode_seconds=mean("decode_seconds"),
            images=images, **setting,
        )


@dataclass
class Dataset:
    """The images a curve was measured on: their names, or (published curves) their count."""

    name: str
    files: list[str] = field(default_factory=list)
    count: int | None = None  # len(files) where files are named; alone for published curves

    def __post_init__(self) -> None:
        if self.files and self.count is None:
            self.count = len(self.files)

    def size(self) -> int | None:
        """The number of images, None where unknown."""
        return len(self.files) if self.files else self.count

    def describe(self) -> str:
        """E.g. ``24 images of kodak``."""
        size = self.size()
        return f"{'an unknown number of' if size is None else size} images of {self.name}"

    def label(self) -> str:
        """E.g. ``kodak (24 images)``; the name alone where the count is unknown."""
        size = self.size()
        return self.name if size is None else f"{self.name} ({size} image{'s' * (size != 1)})"


@dataclass
class Results:
    """A rate-distortion curve: provenance plus points sorted by rate."""

    name: str
    codec: str
    encoder: str
    dataset: Dataset
    points: list[Point]
    source: str | None = None
    device: str | None = None
    torch_version: str | None = None
    git_commit: str | None = None
    created: str | None = None
    workers: int | None = None
    wall_seconds: float | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        self.points.sort(key=lambda point: point.bpp)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["points"] = [{("lambda" if key == "lambda_" else key): value
                           for key, value in point.items()} for point in data["points"]]
        return {"schema": SCHEMA, "schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        data = dict(data)
        data.pop("schema", None)
        points = []
        for raw in data.pop("points"):
            raw = dict(raw)
            raw["lambda_"] = raw.pop("lambda", None)
            images = [ImageResult(**image) for image in raw.pop("images", [])]
            points.append(Point(**raw, images=images))
        dataset = Dataset(**data.pop("dataset"))
        return cls(**data, dataset=dataset, points=points)


def read_results(path: str | Path) -> Results:
    """Read a trellic results file, or a CompressAI results JSON (converted)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise TrellicError(f"results file not found: {path}") from None
    except OSError as error:
        raise TrellicError(f"cannot read results file {path}: {error}") from None
    data = loads(text, f"results file {path}")  # one line on any fault, deep nesting included
    if not isinstance(data, dict):
        raise TrellicError(f"{path} is not a results file (expected a JSON object)")
    if data.get("schema") == SCHEMA:
        version = data.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise TrellicError(f"{path}: results schema version {version} is not supported "
                               f"(this trellic reads up to {SCHEMA_VERSION})")
        check_trellic(data, str(path))
        return Results.from_dict(data)
    if isinstance(data.get("results"), dict) and "bpp" in data["results"]:
        return from_compressai(data, source=str(path))
    raise TrellicError(f"{path} is neither a trellic nor a CompressAI results file")


def from_compressai(data: dict[str, Any], source: str = "CompressAI results") -> Results:
    """Convert CompressAI's ``{"name", "results": {"bpp": [...], "psnr-rgb": [...]}}``.

    Such files do not say which images they were measured on: dataset ``unknown``.
    """
    columns = compressai_columns(data, source)
    points = [
        Point(label=f"p{index}", bpp=bpp,
              **{name: values[index] for name, values in columns.items()
                 if values is not None and name != "bpp"})
        for index, bpp in enumerate(columns["bpp"])
    ]
    return Results(name=data.get("name") or "compressai", codec="reference",
                   encoder=str(data.get("description", "")), dataset=Dataset("unknown"),
                   points=points, source=source)


def to_compressai(results: Results) -> dict[str, Any]:
    """CompressAI's results layout (``python -m compressai.utils.plot`` reads it).

    One column per metric, in rate order; the MS-SSIM and timing columns only
    when every point has them. :func:`from_compressai` reads it back.
    """
    points = results.points
    columns: dict[str, list[float]] = {"bpp": [point.bpp for point in points],
                                       "psnr-rgb": [point.psnr_rgb for point in points]}
    for column, name in (("ms-ssim-rgb", "ms_ssim_rgb"), ("encoding_time", "encode_seconds"),
                         ("decoding_time", "decode_seconds")):
        values = [getattr(point, name) for point in points]
        if all(value is not None for value in values):
            columns[column] = values
    return {"name": results.name, "description": results.encoder, "results": columns}


def _image_set_difference(a: Dataset, b: Dataset) -> str | None:
    """None where two image sets are the same: the same file names where both have them,
    otherwise the same dataset name (any case) and image count. Else the names only in each
    (empty where the sets have no names to compare)."""
    if a.files and b.files:
        only_a, only_b = sorted(set(a.files) - set(b.files)), sorted(set(b.files) - set(a.files))
        if not only_a and not only_b:
            return None
        return " (" + "; ".join(f"{len(only)} only in the {side}, e.g. {only[0]}" for only, side
                                in ((only_a, "first"), (only_b, "second")) if only) + ")"
    if a.name.lower() == b.name.lower() and a.size() == b.size():
        return None
    return ""


def check_image_sets(curves: list[Results], labels: list[str],
                     allow_mixed: bool = False) -> list[str]:
    """Refuse to compare curves measured on different image sets; return one-line warnings.

    Every curve is compared with the first one that records its image set. A mismatch raises
    TrellicError naming both sets (``--allow-mixed-images`` overrides it), or is returned as a
    warning with ``allow_mixed``. Curves recording neither file names nor a count (CompressAI
    files) cannot be checked: a warning names them.
    """
    pairs = list(zip(curves, labels, strict=True))
    known = [(curve, label) for curve, label in pairs if curve.dataset.size() is not None]
    warnings = []
    unknown = [label for curve, label in pairs if curve.dataset.size() is None]
    if unknown and len(curves) > 1:
        warnings.append(f"cannot check that the curves were measured on the same images: "
                        f"{', '.join(unknown)} record{'s' if len(unknown) == 1 else ''} no "
                        "image set")
    mismatches = []
    for curve, label in known[1:]:
        first, first_label = known[0]
        difference = _image_set_difference(first.dataset, curve.dataset)
        if difference is not None:
            mismatches.append(f"{first_label} has {first.dataset.describe()}, {label} has "
                              f"{curve.dataset.describe()}{difference}")
    if mismatches:
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        message = f"curves measured on different image sets: {mismatches[0]}{more}"
        if not allow_mixed:
            raise TrellicError(f"{message}; use --allow-mixed-images to compare them anyway")
        warnings.append(message)
    return warnings


REFERENCE_DIR = Path(__file__).parent / "reference"


def reference_names() -> list[str]:
    """Published curves shipped with trellic (trellic/eval/reference/*.json)."""
    return sorted(path.stem for path in REFERENCE_DIR.glob("*.json"))


def read_reference(name: str) -> Results:
    if name not in reference_names():
        raise TrellicError(f"unknown reference curve {name!r}; "
                           f"choose from {', '.join(reference_names())}")
    return read_results(REFERENCE_DIR / f"{name}.json")


def dumps(results: Results) -> str:
    """Indented JSON with one line per image entry (files stay short and diffable)."""
    data = results.to_dict()
    lines = {}
    try:
        for p, point in enumerate(data["points"]):
            for i, image in enumerate(point["images"]):
                lines[f"@image{p}.{i}@"] = json.dumps(image, allow_nan=False)
                point["images"][i] = f"@image{p}.{i}@"
        text = json.dumps(data, indent=1, allow_nan=False)
    except ValueError:
        raise TrellicError("results hold a non-finite number") from None
    for key, line in lines.items():
        text = text.replace(f'"{key}"', line)
    return text + "\n"


def write_results(results: Results, path: str | Path, force: bool = False) -> None:
    """Write a results file atomically (trellic.io.write_atomic)."""
    write_atomic(path, dumps(results).encode(), force)


def provenance() -> dict[str, str | None]:
    """Device, torch version, git commit and time of a measurement."""
    return {"device": device_description(), "torch_version": _torch_version(),
            "git_commit": git_commit(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def device_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores)"


def git_commit() -> str | None:
    """The commit of the trellic checkout, with ``-dirty`` if files are modified."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty.strip() else "")


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)
