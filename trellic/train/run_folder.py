"""The output folder of ``trellic train`` and ``trellic retrain``: never overwritten unasked.

A training run writes ``LOG``, ``CHECKPOINT`` and ``EXPORT`` into its folder; a
retraining run ``LOG`` and ``EXPORT`` (and offline caches, which are reused only
when their metadata match). Like every other command's output, a run is not
overwritten without ``--force``:

- a folder that holds any file the run writes is refused, in one line, before
  any work (data loading, model loading);
- ``--resume`` (train) continues the run in the folder;
- ``--force`` starts a new run there: the old run's files are removed when the
  new one starts, so nothing of it is mixed with the new one (a log appended
  to, a stale checkpoint resumed later, an old model beside a new log).

Other files in the folder are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trellic.errors import TrellicError
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
    replaced = {(out / name).resolve() for name in outputs}
    for path in filter(None, inputs):
        if Path(path).exists() and Path(path).resolve() in replaced:
            raise TrellicError(f"the run would replace its input {path}: choose another --out")
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
