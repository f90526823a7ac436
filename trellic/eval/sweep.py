"""What eval and baseline share: the input check, the worker count, the sweep that keeps
finished points, and the ``--json`` summary.

    list_images(DATA_DIR, limit) -> every image read and size-checked up front (checked_images)
    -> workers capped at the tasks and CPUs (worker_count) -> run, rewriting the results file
       after every finished point (sweep) -> one line, or a JSON summary (summary)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from trellic.argtypes import usable_cpus
from trellic.errors import TrellicError, warn
from trellic.eval.metrics import PSNR_MAX
from trellic.eval.results import Dataset, Point, Results, provenance, write_results
from trellic.eval.runner import Setting, check_images, run
from trellic.io import list_images


def checked_images(args: argparse.Namespace) -> list[Path]:
    """The first ``--limit`` images directly in DATA_DIR, each read and checked before any
    coding starts (a bad one is an error naming it, or with ``--skip-bad`` a warning)."""
    files = list_images(args.data_dir, limit=args.limit)
    files, skipped = check_images(files, args.skip_bad)
    for fault in skipped:
        warn(f"skipped {fault}")
    return files


def worker_count(requested: int, tasks: int) -> int:
    """``requested`` capped at the (setting, image) tasks and the usable CPUs; a warning
    says so when it is (more processes than either only wait, and thousands exhaust the OS)."""
    cpus = usable_cpus()
    workers = max(1, min(requested, tasks, cpus))
    if workers < requested:
        warn(f"--workers {requested} capped at {workers} ({tasks} image task(s), {cpus} usable "
              "CPU(s))")
    return workers


def dataset_of(folder: str, files: list[Path]) -> Dataset:
    return Dataset(name=Path(folder).resolve().name, files=[path.name for path in files],
                   count=len(files))


def sweep(args: argparse.Namespace, settings: list[Setting], files: list[Path],
          output: Path, **curve: str) -> Results:
    """Run the settings over the files, writing the results after every finished point.

    ``curve``: the name, codec and encoder of the Results. A failure or an interrupt leaves
    the finished points in ``output`` (a valid, shorter curve) and the error says so.
    """
    workers = worker_count(args.workers, len(settings) * len(files))
    threads = getattr(args, "threads", None)
    if threads and workers * threads > usable_cpus():
        warn(f"{workers} worker(s) x {threads} thread(s) exceed the {usable_cpus()} usable "
              "CPU(s): the timings will suffer")
    start, measured = time.perf_counter(), provenance()
    kept: list[Results] = []

    def keep(points: list[Point]) -> None:
        results = Results(**curve, dataset=dataset_of(args.data_dir, files), points=points,
                          workers=workers,
                          wall_seconds=round(time.perf_counter() - start, 1), **measured)
        write_results(results, output, args.force or bool(kept))
        kept[:] = [results]

    try:
        run(settings, files, workers, description=curve["name"], on_point=keep, threads=threads)
    except TrellicError as error:
        if not kept:
            raise
        raise TrellicError(f"{error} ({len(kept[0].points)} of {len(settings)} points "
                           f"finished, kept in {output})") from None
    except KeyboardInterrupt:
        if kept:
            print(f"trellic: {len(kept[0].points)} of {len(settings)} points finished, kept in "
                  f"{output}", file=sys.stderr)
        raise
    lossless = sorted({image.name for point in kept[0].points for image in point.images
                       if image.psnr_rgb == PSNR_MAX})
    if lossless:
        warn(f"{', '.join(lossless)} decoded identical to the original at some point(s): "
              f"PSNR {PSNR_MAX:.0f} dB by the MSE floor (trellic.eval.metrics), which weighs "
              "on the mean")
    return kept[0]


def summary(results: Results, output: Path) -> str:
    """``--json``: the run as one JSON object (the curve's means per point, no per-image
    entries; the results file has those)."""
    points: list[dict[str, Any]] = []
    for point in results.points:
        fields = dataclasses.asdict(point)
        fields.pop("images")
        fields["lambda"] = fields.pop("lambda_")
        points.append(fields)
    data = {"output": str(output), "name": results.name, "codec": results.codec,
            "encoder": results.encoder, "dataset": results.dataset.name,
            "images": results.dataset.size(), "workers": results.workers,
            "wall_seconds": results.wall_seconds, "points": points}
    return json.dumps(data, indent=1, allow_nan=False)
