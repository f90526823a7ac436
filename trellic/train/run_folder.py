"""The output folder of ``trellic train`` and ``trellic retrain``: never overwritten unasked.

A training run writes ``LOG``, ``CHECKPOINT`` and ``EXPORT`` into its folder; a
retraining run ``LOG`` and ``EXPORT`` (and offline caches, which are reused only
when their metadata match). Like every other command's output, a run is not
overwritten without ``--force``:

- a folder that holds any file the run writes is refused, in one line, before
  any work (data loading, model loading);
- ``--resume`` (train) continues the run in the folder, which must hold its
  checkpoint (``nothing to resume in RUN`` otherwise); the log is first cut
  back to the checkpoint's step (:func:`truncate_log`): the records a killed
  run wrote after its last checkpoint are written again by the resumed one;
- ``--force`` starts a new run there: the old run's files are removed when the
  new one starts, so nothing of it is mixed with the new one (a log appended
  to, a stale checkpoint resumed later, an old model beside a new log).

Other files in the folder are left alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from trellic.errors import TrellicError
from trellic.io import write_atomic
from trellic.zoo import RUN_EXPORT

LOG = "log.jsonl"
CHECKPOINT = "checkpoint.safetensors"
EXPORT = RUN_EXPORT
TRAIN_OUTPUTS = (LOG, CHECKPOINT, EXPORT)
RETRAIN_OUTPUTS = (LOG, EXPORT)


def check_run_folder(out: Path, outputs: Sequence[str], force: bool, resume: bool | None = None,
                     inputs: Sequence[Path | str | None] = ()) -> None:
    """Refuse ``out`` if it is not a folder or holds one of ``outputs``, unless force or resume.

    ``resume`` is None for a command that cannot resume (the message then offers --force only).
    An input file (a model to start from) that is one of the outputs is refused even with force.
    """
    if out.exists() and not out.is_dir():
        raise TrellicError(f"run folder is not a folder: {out}")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if not out.exists() and parent is not None and not (
            parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
        raise TrellicError(f"cannot create run folder {out}: {parent} is not a writable folder")
    replaced = {(out / name).resolve() for name in outputs}
    for path in filter(None, inputs):
        if Path(path).exists() and Path(path).resolve() in replaced:
            raise TrellicError(f"the run would replace its input {path}: choose another --out")
    if force and resume:
        raise TrellicError("--force starts a new run and --resume continues one: give one of them")
    if resume and not (out / CHECKPOINT).is_file():
        kept = [name for name in outputs if (out / name).exists()]
        held = f" (it holds {', '.join(kept)} but no {CHECKPOINT})" if kept else ""
        raise TrellicError(f"nothing to resume in {out}{held}: start a run there without "
                           f"--resume{' and with --force' if kept else ''}")
    found = [name for name in outputs if (out / name).exists()]
    if found and not (force or resume):
        continuing = "" if resume is None else " or --resume to continue it"
        raise TrellicError(f"run folder {out} holds an earlier run ({', '.join(found)}): "
                           f"use --force to overwrite it{continuing}")


def clear_run_folder(out: Path, outputs: Sequence[str]) -> None:
    """Remove the files of an earlier run from ``out``: a new run starts there."""
    for name in outputs:
        path = out / name
        if path.exists() and not path.is_file():
            raise TrellicError(f"not a regular file: {path}")
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            raise TrellicError(f"cannot remove {path}: {error.strerror or error}") from None


def truncate_log(out: Path, step: int) -> int:
    """Cut ``out/LOG`` back to the records of steps up to ``step`` (atomically); the number dropped.

    A run killed after its last checkpoint logged steps past it; the resumed run starts from
    the checkpoint and logs them again. Lines that are not a JSON record with a step (half a
    line written when the process was killed) are dropped too.
    """
    path = out / LOG
    if not path.is_file():
        return 0
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise TrellicError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}"
                           ) from None
    kept = [line for line in lines if _logged_step(line) is not None
            and _logged_step(line) <= step]
    if len(kept) != len(lines):
        write_atomic(path, "".join(line + "\n" for line in kept).encode(), force=True)
    return len(lines) - len(kept)


def _logged_step(line: str) -> int | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


def make_run_folder(out: Path) -> None:
    """Create ``out`` (and its parents); a failure is one line."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrellicError(f"cannot create run folder {out}: {error.strerror or error}") from None


def io_error_line(error: OSError) -> str:
    """An OSError of a running job as the one line the CLI prints (disk full, say)."""
    where = f" {error.filename}" if error.filename else ""
    return f"cannot write{where}: {error.strerror or error}"
