"""Many files in one call: inputs and outputs of compress / decompress, workers, stdin/stdout.

    trellic compress IN OUT                 one file (the second of two paths is the output)
    trellic compress IN [IN ...]            each next to its input: in.png -> in.trl
    trellic compress IN... -o OUTDIR        several inputs, or a folder, into a folder
    trellic compress INDIR [-o OUTDIR]      every image of the folder (not its sub-folders)
    trellic compress - OUT < in.png         stdin; OUT may be - (stdout) or /dev/null

The plan (:func:`plan_jobs`) is checked before any coding: duplicate outputs, stdin or
stdout with several files, a missing output folder's parent. Each job then checks its
output (trellic.io.check_output), codes, and writes atomically; with several jobs a
failing one is reported as ``trellic: error: FILE: ...`` and the others still run
(:func:`run_jobs`, exit 1 if any failed); a single job's error is the command's error.
Jobs share one loaded model and run on ``--jobs`` threads (torch's kernels release the
GIL); the only character device written is /dev/null, and ``-`` is stdout.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trellic.argtypes import usable_cpus
from trellic.errors import TrellicError
from trellic.files import read_bytes

STDIO = "-"
TRL_SUFFIX = ".trl"


@dataclass(frozen=True)
class Job:
    """One file to code: ``source`` / ``target`` are paths, or ``STDIO`` for stdin / stdout."""

    source: str
    target: str

    @property
    def to_stdout(self) -> bool:
        return self.target == STDIO


def is_devnull(path: str | Path) -> bool:
    """Whether ``path`` is the null device (the one character device trellic writes to)."""
    try:
        return (os.path.realpath(path) == os.path.realpath(os.devnull)
                and stat.S_ISCHR(os.stat(path).st_mode))
    except OSError:
        return False


def _input_suffixes(command: str) -> tuple[str, ...]:
    if command == "compress":
        from trellic.io import IMAGE_SUFFIXES

        return IMAGE_SUFFIXES
    return (TRL_SUFFIX,)


def _file_suffixes(command: str) -> tuple[str, ...]:
    """Suffixes of the files a command writes: an output so named is no folder."""
    return _input_suffixes("decompress" if command == "compress" else "compress")


def _looks_like_input(path: str, command: str) -> bool:
    """For ``A B`` without -o: whether B is a second input rather than the output."""
    return Path(path).suffix.lower() in _input_suffixes(command) and Path(path).is_file()


def _folder_files(folder: Path, command: str) -> list[str]:
    if command == "compress":
        from trellic.io import list_images

        return [str(path) for path in list_images(folder)]
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() == TRL_SUFFIX
                   and not path.name.startswith(".") and path.is_file())
    if not files:
        raise TrellicError(f"no {TRL_SUFFIX} files in {folder}")
    return [str(path) for path in files]


def plan_jobs(paths: list[str], output: str | None, command: str) -> list[Job]:
    """The (input, output) pairs of one call: see the module docstring for the forms.

    Raises:
        TrellicError: an impossible plan (stdin or stdout with several files, two inputs
            writing one output, an output folder that cannot be made).
    """
    suffix = TRL_SUFFIX if command == "compress" else ".png"
    make = None  # an output folder to make once the plan holds
    from_option = output is not None
    if output is None and len(paths) == 2 and (
        paths[0] == paths[1] or not _looks_like_input(paths[1], command)
    ):
        paths, output = paths[:1], paths[1]
    if STDIO in paths and len(paths) > 1:
        raise TrellicError("- (stdin) must be the only input")
    if paths == [STDIO] and output is None:
        raise TrellicError("reading stdin needs an output: a file, or - for stdout")
    sources: list[str] = []
    folder_input = False
    for path in paths:
        if path != STDIO and Path(path).is_dir():
            folder_input = True
            sources += _folder_files(Path(path), command)
        else:
            sources.append(path)
    many = len(sources) > 1 or folder_input
    if output is None:
        targets = [str(Path(source).with_suffix(suffix)) for source in sources]
    elif output == STDIO or is_devnull(output):
        if output == STDIO and many:
            raise TrellicError(f"- (stdout) takes one input, got {len(sources)}")
        targets = [output] * len(sources)
    elif many or (from_option and Path(output).is_dir()):
        folder = Path(output)
        if not folder.is_dir() and folder.suffix.lower() in _file_suffixes(command):
            raise TrellicError(f"{len(sources)} inputs need an output folder, and {output} "
                               "names a file (a folder is made when missing)")
        if not folder.is_dir():
            if folder.exists():
                raise TrellicError(f"output folder is not a folder: {folder}")
            if not folder.parent.is_dir():
                raise TrellicError(f"output folder's parent does not exist: {folder.parent}")
            make = folder
        targets = [str(folder / Path(source).with_suffix(suffix).name) for source in sources]
    else:
        if Path(output).is_dir():
            raise TrellicError(f"output is a directory: {output} (-o {output} writes into it)")
        targets = [output]
    seen: dict[str, str] = {}
    for source, target in zip(sources, targets, strict=True):
        if target == STDIO or is_devnull(target):
            continue
        key = os.path.abspath(target)
        if key in seen:
            raise TrellicError(f"{seen[key]} and {source} would both write {target}")
        seen[key] = source
    if make is not None:
        try:
            make.mkdir()
        except OSError as error:
            raise TrellicError(f"cannot make output folder {make}: "
                               f"{error.strerror or error}") from None
    return [Job(s, t) for s, t in zip(sources, targets, strict=True)]


def workers_for(jobs: int, files: int) -> int:
    """``--jobs`` capped at the files and the usable CPUs."""
    return max(1, min(jobs, files, usable_cpus()))


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads for a block (None: unchanged), restored after it."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def read_input(source: str, limit: int) -> bytes:
    """A file's bytes, or stdin's for ``-`` (refused from a terminal); at most ``limit``."""
    if source != STDIO:
        return read_bytes(source, limit)
    if sys.stdin is None or sys.stdin.isatty():
        raise TrellicError("refusing to read binary data from a terminal: redirect stdin")
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise TrellicError(f"stdin holds more than {limit} bytes")
    if not data:
        raise TrellicError("stdin is empty")
    return data


def read_image_input(source: str):
    """uint8 RGB (H, W, 3) of an image file or of stdin, by trellic.io's input policy."""
    from trellic.codec import MAX_PIXELS
    from trellic.io import read_image, read_image_data

    if source != STDIO:
        return read_image(source, MAX_PIXELS)
    return read_image_data(read_input(STDIO, 1 << 28), "stdin", MAX_PIXELS)


def check_target(job: Job, force: bool, inputs: tuple[str | None, ...]) -> None:
    """trellic.io.check_output for a file; stdout and /dev/null need no check."""
    if job.to_stdout:
        if sys.stdout.isatty():
            raise TrellicError("refusing to write binary data to a terminal: redirect stdout")
        return
    if is_devnull(job.target):
        return
    from trellic.io import check_output

    check_output(Path(job.target), force,
                 tuple(Path(p) for p in inputs if p is not None and p != STDIO))


def write_output(job: Job, data: bytes, force: bool) -> None:
    """Atomic write of a file; stdout (``-``) and /dev/null are written as they are."""
    if job.to_stdout:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    elif is_devnull(job.target):
        with open(os.devnull, "wb") as handle:
            handle.write(data)
    else:
        from trellic.io import write_atomic

        write_atomic(job.target, data, force=force)


def run_jobs(jobs: list[Job], work: Callable[[Job], dict], describe: Callable[[dict], str],
             workers: int, as_json: bool, verbose: bool,
             detail: Callable[[dict], str] | None = None) -> int:
    """Run ``work`` on every job and report each: a line (``describe``) or a JSON object,
    and with ``verbose`` a line of ``detail`` on stderr.

    Reports go to stdout, or to stderr when a job writes its data there. With one job
    its error is raised (after its JSON object under --json); with several, each
    failure is one ``trellic: error: FILE: ...`` line (and a JSON object with
    ``error`` under --json), and the rest still run.

    Returns:
        0, or 1 if any job failed.
    """
    from tqdm import tqdm

    if len(jobs) == 1:
        try:
            record = work(jobs[0])
        except TrellicError as error:
            if as_json and not jobs[0].to_stdout:  # the machine reader gets its object too
                print(json.dumps({"input": jobs[0].source, "output": jobs[0].target,
                                  "error": str(error)}), flush=True)
            raise
        _report(describe, record, as_json, jobs[0].to_stdout, None, detail if verbose else None)
        return 0
    failed = 0
    lock = threading.Lock()
    bar = tqdm(total=len(jobs), unit="file", file=sys.stderr, dynamic_ncols=True,
               disable=not (verbose or sys.stderr.isatty()))

    def attempt(job: Job) -> tuple[dict | None, str | None]:
        try:
            return work(job), None
        except TrellicError as error:
            return None, str(error)
        finally:
            with lock:
                bar.update()

    with bar, ThreadPoolExecutor(workers) as pool:
        for job, (record, error) in zip(jobs, pool.map(attempt, jobs), strict=True):
            if error is not None:
                failed += 1
                _write(f"trellic: error: {job.source}: {error}", sys.stderr, bar)
                if as_json:
                    _write(json.dumps({"input": job.source, "output": job.target,
                                       "error": error}), sys.stdout, bar)
            else:
                _report(describe, record, as_json, False, bar, detail if verbose else None)
    return 1 if failed else 0


def _report(describe: Callable[[dict], str], record: dict, as_json: bool, to_stderr: bool,
            bar, detail: Callable[[dict], str] | None) -> None:
    line = json.dumps(record) if as_json else describe(record)
    _write(line, sys.stderr if to_stderr else sys.stdout, bar)
    if detail is not None:
        _write(detail(record), sys.stderr, bar)


def _write(line: str, stream, bar) -> None:
    if bar is not None and not bar.disable:
        bar.write(line, file=stream)
    else:
        print(line, file=stream, flush=True)
