"""Checks of results files as read from disk: field types, ranges, units and lengths.

Everything that reads results (bdrate, plot, report) goes through
:func:`trellic.eval.results.read_results`, which runs these checks first, so a malformed
or hand-made file ends in one line naming the file and the field, e.g.
``c.json: results.ms-ssim[0] = 10.2 is outside [0, 1] (MS-SSIM is linear, not in dB)``,
never in a traceback or a nonsense plot. Domains:

- bpp > 0 (a curve is drawn and integrated on log rate); estimated bpp >= 0;
- PSNR-RGB in [0, 120] dB (0: the largest 8-bit error; 120: identical images, by the MSE
  floor of :mod:`trellic.eval.metrics`); MS-SSIM-RGB in [0, 1] (linear);
- seconds >= 0; image sizes >= 1; byte counts >= 1; a curve has at least one point;
- a point's per-image entries name exactly the dataset's files, in order;
- a CompressAI file's columns are lists of numbers as long as its ``bpp`` column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from trellic.errors import TrellicError
from trellic.eval.metrics import PSNR_MAX

Check = Callable[[Any, str], None]

_MS_SSIM_HINT = " (MS-SSIM is linear, not in dB)"


def _show(value: Any) -> str:
    return "null" if value is None else type(value).__name__ if isinstance(
        value, list | dict) else repr(value)


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           integer: bool = False, hint: str = "") -> Check:
    """A finite number (an integer if asked) in [low, high] (low open if asked)."""
    domain = f"{'(' if low_open else '['}{'-inf' if low is None else f'{low:g}'}, " \
             f"{'inf' if high is None else f'{high:g}'}]"

    def check(value: Any, where: str) -> None:
        kinds = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise TrellicError(f"{where} must be {'an integer' if integer else 'a number'}, "
                               f"got {_show(value)}")
        if not math.isfinite(value):
            raise TrellicError(f"{where} must be finite, got {value}")
        below = low is not None and (value <= low if low_open else value < low)
        if below or (high is not None and value > high):
            raise TrellicError(f"{where} = {value:g} is outside {domain}{hint}")

    return check


def text(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise TrellicError(f"{where} must be a string, got {_show(value)}")


def mapping(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise TrellicError(f"{where} must be an object, got {_show(value)}")


def _list(value: Any, where: str) -> None:
    if not isinstance(value, list):
        raise TrellicError(f"{where} must be a list, got {_show(value)}")


def optional(check: Check) -> Check:
    """``check``, or null."""
    def check_or_null(value: Any, where: str) -> None:
        if value is not None:
            check(value, where)

    return check_or_null


BPP = number(0, low_open=True)
PSNR = number(0, PSNR_MAX)
MS_SSIM = number(0, 1, hint=_MS_SSIM_HINT)
SECONDS = number(0)

_TOP: dict[str, Check] = {
    "schema": text, "schema_version": number(1, integer=True), "name": text, "codec": text,
    "encoder": text, "source": optional(text), "dataset": mapping, "device": optional(text),
    "torch_version": optional(text), "git_commit": optional(text), "created": optional(text),
    "workers": optional(number(1, integer=True)), "wall_seconds": optional(SECONDS),
    "points": _list,
}
_TOP_REQUIRED = ("name", "codec", "encoder", "dataset", "points")
_DATASET: dict[str, Check] = {"name": text, "files": _list,
                              "count": optional(number(1, integer=True))}
_POINT: dict[str, Check] = {
    "label": text, "bpp": BPP, "psnr_rgb": PSNR, "ms_ssim_rgb": optional(MS_SSIM),
    "estimated_bpp": optional(number(0)), "encode_seconds": optional(SECONDS),
    "decode_seconds": optional(SECONDS), "quality": optional(number()),
    "model": optional(text), "checkpoint_sha256": optional(text), "quantizer": optional(mapping),
    "lambda": optional(number(0)), "options": mapping,
    "images": _list,
}
_IMAGE: dict[str, Check] = {
    "name": text, "width": number(1, integer=True), "height": number(1, integer=True),
    "bytes": number(1, integer=True), "bpp": BPP, "psnr_rgb": PSNR, "ms_ssim_rgb": MS_SSIM,
    "encode_seconds": SECONDS, "decode_seconds": SECONDS, "estimated_bpp": optional(number(0)),
}
_IMAGE_REQUIRED = tuple(key for key in _IMAGE if key != "estimated_bpp")


def _fields(data: Any, checks: dict[str, Check], required: tuple[str, ...], path: str,
            name: str = "") -> None:
    """Check the fields of the object ``name`` (e.g. ``points[0]``; "" for the file's top):
    no unknown ones, the required ones present, each in its domain."""
    prefix = f"{path}: {name}." if name else f"{path}: "
    mapping(data, f"{path}: {name or 'the file'}")
    for key, value in data.items():
        if key not in checks:
            raise TrellicError(f"{prefix}{key} is not a field of the results schema")
        checks[key](value, f"{prefix}{key}")
    missing = [key for key in required if key not in data]
    if missing:
        raise TrellicError(f"{path}: {name or 'the file'} has no {missing[0]!r}")


def check_trellic(data: dict[str, Any], path: str) -> None:
    """Check a trellic results file (the parsed JSON object); raise TrellicError on a fault."""
    _fields(data, _TOP, _TOP_REQUIRED, path)
    dataset = data["dataset"]
    _fields(dataset, _DATASET, ("name",), path, "dataset")
    files = dataset.get("files", [])
    for index, name in enumerate(files):
        text(name, f"{path}: dataset.files[{index}]")
    if len(set(files)) != len(files):
        raise TrellicError(f"{path}: dataset.files names an image twice")
    count = dataset.get("count")
    if files and count is not None and count != len(files):
        raise TrellicError(f"{path}: dataset.count is {count} but dataset.files has {len(files)}")
    if not data["points"]:
        raise TrellicError(f"{path}: the curve has no points")
    for p, point in enumerate(data["points"]):
        _fields(point, _POINT, ("label", "bpp", "psnr_rgb"), path, f"points[{p}]")
        images = point.get("images", [])
        for i, image in enumerate(images):
            _fields(image, _IMAGE, _IMAGE_REQUIRED, path, f"points[{p}].images[{i}]")
        if images and [image["name"] for image in images] != files:
            raise TrellicError(f"{path}: points[{p}].images name other images than "
                               "dataset.files")


_COMPRESSAI_COLUMNS = {  # our field: (CompressAI column names, preferred first; check)
    "psnr_rgb": (("psnr-rgb", "psnr"), PSNR),
    "ms_ssim_rgb": (("ms-ssim-rgb", "ms-ssim"), MS_SSIM),
    "encode_seconds": (("encoding_time",), SECONDS),
    "decode_seconds": (("decoding_time",), SECONDS),
}


def compressai_columns(data: dict[str, Any], path: str) -> dict[str, list[float] | None]:
    """The checked columns of a CompressAI results file, by trellic field name (None: absent).

    ``bpp`` and a PSNR column are required; every column present must be a list of numbers
    in its domain, as long as ``bpp``.
    """
    columns = data["results"]
    name = data.get("name")
    if name is not None:
        text(name, f"{path}: name")
    _list(columns["bpp"], f"{path}: results.bpp")
    length = len(columns["bpp"])
    if not length:
        raise TrellicError(f"{path}: the curve has no points (results.bpp is empty)")
    found: dict[str, list[float] | None] = {}
    for field, (keys, check) in {"bpp": (("bpp",), BPP), **_COMPRESSAI_COLUMNS}.items():
        key = next((key for key in keys if key in columns), None)
        if key is None:
            if field == "psnr_rgb":
                raise TrellicError(f"{path}: results has no PSNR column ('psnr-rgb' or 'psnr')")
            found[field] = None
            continue
        values = columns[key]
        _list(values, f"{path}: results.{key}")
        if len(values) != length:
            raise TrellicError(f"{path}: results.{key} has {len(values)} values, "
                               f"results.bpp has {length}")
        for index, value in enumerate(values):
            check(value, f"{path}: results.{key}[{index}]")
        found[field] = [float(value) for value in values]
    return found
