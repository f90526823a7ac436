"""Operating points measured on your own photos: ``trellic tune MODEL --data DIR``.

An operating point is an encoder setting measured per model and quantizer: the
search's rate weight ``lambda_t`` (the weight of the bits against the squared
latent error in the quantizer's search) for the plain encoder, and for the
linearised mode (``--refine linear``, key ``QUANTIZER+linear``) its ``lambda_t``
and ``linear_weight`` (the fraction of the measured linearised shift taken).
Each is the grid point with the lowest mean RD cost ``lambda * 255^2 * MSE + bpp``
(MSE of [0, 1] pixels, bits per pixel from the real files' bytes, ``lambda``
the model's training lambda) over the photos, coded through the real codec.
This is the method of ``experiments/operating_points.py``, which calls
:func:`sweep` for the zoo (docs/quantization.md, "Operating points")::

    photos -> per quantizer: plain lambda_t grid -> lowest mean RD cost
           -> linearised (lambda_t, weight) grid -> lowest -> TCQ-8 takes TCQ-4's
    -> a copy of the weights file with the points in its metadata (same identity)

``compress``, ``eval`` and ``retrain`` take a weights file's points by default
(``trellic.zoo.LoadedModel.operating_points``). Photos of Kodak are refused:
Kodak is the reporting set, never tuned on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trellic.argtypes import positive_float, positive_int, threads
from trellic.codec import Codec
from trellic.errors import TrellicError
from trellic.eval.metrics import mse
from trellic.eval.runner import round_trip
from trellic.io import list_images, read_image, write_atomic
from trellic.models.refine import refine_config
from trellic.rd import rd_cost
from trellic.weights_metadata import with_operating_points
from trellic.zoo import LoadedModel


@dataclasses.dataclass(frozen=True)
class Grids:
    """The settings tried, per quantizer name.

    lambda_t: the plain encoder's lambda_t values. linear_weight: the linearised
    mode's weights (0-1). linear_lambda_t: its lambda_t values, swept jointly with
    the weight, or None to take the plain encoder's choice. shared: quantizers that
    take another's points instead of being measured.
    """

    lambda_t: dict[str, tuple[float, ...]]
    linear_weight: dict[str, tuple[float, ...]]
    linear_lambda_t: dict[str, tuple[float, ...] | None]
    shared: dict[str, str]

    def configs(self) -> int:
        """How many settings a sweep measures (each on every photo)."""
        return sum(len(grid) + len(self.linear_lambda_t.get(name) or (None,))
                   * len(self.linear_weight[name]) for name, grid in self.lambda_t.items())


# The zoo's grids (docs/quantization.md). TCQ-8 takes TCQ-4's points: a first sweep
# of five models chose the same for both.
GRIDS = Grids(
    lambda_t={"usq": (0.0,), "rdoq": (0.005, 0.01, 0.02), "tcq4": (0.03, 0.05, 0.108)},
    linear_weight={"usq": (0.125, 0.25, 0.375), "rdoq": (0.25, 0.375, 0.5),
                   "tcq4": (0.5, 0.75, 1.0)},
    linear_lambda_t={"usq": None, "rdoq": None, "tcq4": (0.03, 0.05, 0.108)},
    shared={"tcq8": "tcq4"},
)


@dataclasses.dataclass
class Sweep:
    """A sweep's result: every setting's measurement (by :func:`config_text`), the
    chosen points, and which setting each point is (shared points name their source's)."""

    configs: dict[str, dict]
    operating_points: dict[str, dict]
    chosen: dict[str, str]


def config_text(quantizer: str, lambda_t: float, linear_weight: float | None = None) -> str:
    """``usq:0.0`` or ``tcq4:0.05~0.75+linear``: experiments/quant_study.py's config syntax."""
    if linear_weight is None:
        return f"{quantizer}:{lambda_t}"
    return f"{quantizer}:{lambda_t}~{linear_weight}+linear"


def codec_for(loaded: LoadedModel, quantizer: str, lambda_t: float,
              linear_weight: float | None = None) -> Codec:
    """The plain encoder at ``lambda_t``, or with ``linear_weight`` the linearised mode."""
    refine = refine_config("linear") if linear_weight is not None else None
    codec = Codec.load_from(loaded, quantizer, lambda_t, refine)
    if linear_weight is not None:
        codec.quantizer.linear_weight = linear_weight
    return codec


def measure(codec: Codec, images: list[np.ndarray], lmbda: float,
            on_image: Callable[[], object] | None = None) -> dict:
    """Means over the images of bpp (the real file's bytes), MSE ([0, 1] pixels), RD cost
    (at ``lmbda``) and encode seconds, and the same per image under ``images``."""
    rows = []
    for image in images:
        result = round_trip(codec, image)
        bpp = 8 * len(result.data) / (image.shape[0] * image.shape[1])
        error = mse(image, result.reconstruction) / 255**2
        rows.append({"bpp": bpp, "mse": error, "rd_cost": rd_cost(error, bpp, lmbda),
                     "encode_s": result.encode_seconds})
        if on_image is not None:
            on_image()
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} | {"images": rows}


def sweep(loaded: LoadedModel, images: list[np.ndarray], lmbda: float, grids: Grids = GRIDS,
          log: Callable[[str, dict], object] | None = None,
          on_image: Callable[[], object] | None = None) -> Sweep:
    """Measure every setting of ``grids`` on ``images`` and choose each quantizer's points.

    Per quantizer: the plain lambda_t with the lowest mean RD cost at ``lmbda``, then the
    linearised mode's (lambda_t, weight) pair with the lowest (the first in grid order on
    a tie). ``log(text, measurement)`` after each setting, ``on_image()`` after each image.
    """
    result = Sweep({}, {}, {})

    def best(name: str, settings: list[tuple]) -> tuple:
        costs = {}
        for setting in settings:
            text = config_text(name, *setting)
            point = measure(codec_for(loaded, name, *setting), images, lmbda, on_image)
            result.configs[text] = {k: v for k, v in point.items() if k != "images"}
            costs[setting] = point["rd_cost"]
            if log is not None:
                log(text, result.configs[text])
        choice = min(settings, key=costs.__getitem__)
        result.chosen[name + ("+linear" if len(choice) == 2 else "")] = config_text(name, *choice)
        return choice

    for name, grid in grids.lambda_t.items():
        (lambda_t,) = best(name, [(t,) for t in grid])
        result.operating_points[name] = {"lambda_t": lambda_t}
        joint = [(t, w) for t in (grids.linear_lambda_t.get(name) or [lambda_t])
                 for w in grids.linear_weight[name]]
        best_t, best_w = best(name, joint)
        result.operating_points[f"{name}+linear"] = {"lambda_t": best_t, "linear_weight": best_w}
    for name, source in grids.shared.items():
        if source in result.operating_points:
            for suffix in ("", "+linear"):
                result.operating_points[name + suffix] = result.operating_points[source + suffix]
                result.chosen[name + suffix] = result.chosen[source + suffix]
    return result


def write_tuned(source: Path, out: Path, points: dict, force: bool = False) -> None:
    """``source``'s weights with ``points`` stored (same tensors and identity) written to
    ``out`` atomically: ``source`` is untouched unless it is ``out`` (with ``force``)."""
    write_atomic(out, with_operating_points(source, points), force)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune", help="measure a model's operating points on your photos",
        description="Measure each quantizer's operating point (the search's lambda_t, and "
        "the linearised mode's lambda_t and weight) on your photos, as the zoo's were, and "
        "write the weights with them stored: compress, eval and retrain then use them. "
        f"Codes each photo {GRIDS.configs()} times; never tune on Kodak (the reporting set).")
    p.add_argument("model", metavar="MODEL", help="zoo model name or .safetensors path")
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="folder of photos (sub-folders too), not Kodak")
    p.add_argument("--images", type=positive_int, default=4, metavar="N",
                   help="photos measured: the first N by path")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="tuned weights file (default: MODEL-tuned.safetensors next to a "
                        "MODEL path; a zoo name needs -o)")
    p.add_argument("--lambda", dest="lmbda", type=positive_float, default=None, metavar="LAMBDA",
                   help="the RD cost's lambda (default: the model's training lambda)")
    p.add_argument("--force", action="store_true",
                   help="overwrite OUT; MODEL itself only when OUT is MODEL")
    p.add_argument("--json", action="store_true",
                   help="print the points and every measurement as one JSON object")
    p.add_argument("--threads", type=threads, default=None, metavar="N",
                   help="torch threads (default: torch's own, all usable CPUs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from trellic.batch import torch_threads
    from trellic.io import check_output
    from trellic.zoo import load, record_operating_points

    files = photos(args.data, args.images)
    out = args.out or _default_out(args.model)
    loaded = load(args.model)
    source = Path(args.model) if _is_path(args.model) else _zoo_file(loaded)
    same = out.resolve() == source.resolve()
    if same and not args.force:
        raise TrellicError(f"output is MODEL itself: {out} (use --force to store the points in it)")
    check_output(out, args.force, inputs=() if same else (source,))
    training = loaded.info.get("training")
    lmbda = args.lmbda or (training.get("lmbda") if isinstance(training, dict) else None)
    if lmbda is None:
        raise TrellicError(f"model {loaded.model_id} records no training lambda: pass --lambda")
    training = {**(training if isinstance(training, dict) else {}), "lmbda": lmbda}
    loaded = dataclasses.replace(loaded, info={**loaded.info, "training": training})
    images = [read_image(path) for path in files]
    with torch_threads(args.threads), tqdm(
            total=GRIDS.configs() * len(images), desc="tune", unit="img", file=sys.stderr,
            dynamic_ncols=True, disable=None) as bar:
        result = sweep(loaded, images, lmbda, on_image=bar.update)
    if same and source.resolve() == _zoo_file(loaded):  # keep its manifest entry in step
        record_operating_points(loaded.model_id, result.operating_points)
    else:
        write_tuned(source, out, result.operating_points, args.force)
    if args.json:
        print(json.dumps({"model": loaded.model_id, "sha256": loaded.sha256, "out": str(out),
                          "lambda": lmbda, "images": [str(path) for path in files],
                          **dataclasses.asdict(result)}, indent=1))
        return 0
    print(f"{out}: operating points of {loaded.model_id} at lambda {lmbda:g} "
          f"on {len(files)} photo(s)")
    print(f"{'point':12s} {'lambda_t':>8s} {'weight':>6s} {'bpp':>7s} {'rd cost':>8s}")
    for name, point in result.operating_points.items():
        measured = result.configs[result.chosen[name]]
        weight = point.get("linear_weight")
        print(f"{name:12s} {point['lambda_t']:8g} {'-' if weight is None else f'{weight:g}':>6s} "
              f"{measured['bpp']:7.4f} {measured['rd_cost']:8.4f}")
    return 0


def photos(folder: Path, count: int) -> list[Path]:
    """The first ``count`` images under ``folder`` (sub-folders too) by path; Kodak is
    refused: the reporting set."""
    _refuse_kodak(folder, folder.resolve())
    files = list_images(folder, recursive=True, limit=count)
    for path in files:
        _refuse_kodak(folder, path.resolve().parent)
    return files


def _refuse_kodak(folder: Path, place: Path) -> None:
    """A TrellicError if ``place`` is named kodak or is (inside) the data folder's kodak/."""
    from trellic.paths import kodak_dir

    try:
        kodak = kodak_dir().resolve()
    except TrellicError:  # installed without TRELLIC_DATA: no Kodak folder to know of
        kodak = None
    if place.name.lower() == "kodak" or (kodak is not None and kodak in (place, *place.parents)):
        raise TrellicError(f"{folder} holds Kodak, the reporting set: tune on other photos")


def _is_path(model: str) -> bool:
    """Whether ``trellic.zoo.load`` takes MODEL as a path (else a zoo name)."""
    return Path(model).suffix == ".safetensors" or os.sep in model


def _zoo_file(loaded: LoadedModel) -> Path | None:
    """The weights folder's file of the zoo model ``loaded`` is (resolved), else None."""
    from trellic import paths
    from trellic.zoo import read_manifest

    try:
        entry = read_manifest()["models"].get(loaded.model_id)
    except TrellicError:
        return None
    return (paths.weights_dir() / str(entry["file"])).resolve() if entry else None


def _default_out(model: str) -> Path:
    """``<stem>-tuned.safetensors`` next to a MODEL path; a zoo name has none."""
    if not _is_path(model):
        raise TrellicError(f"'{model}' is a zoo model: name the tuned file with "
                           "-o TUNED.safetensors")
    path = Path(model)
    return path.with_name(f"{path.stem}-tuned.safetensors")
