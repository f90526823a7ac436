"""Reading a CompressAI ``.pth.tar``: tensors by CompressAI's key, however it was saved.

A checkpoint is read with ``torch.load(weights_only=True)`` only: plain tensors
in dicts, never an object that needs code to be unpickled. Accepted layouts:

- a bare state_dict, or one inside a wrapper: ``state_dict`` (CompressAI's
  examples/train.py), ``model``, ``network``, ``model_state_dict`` (what
  CompressAI's ``eval_model`` and ``update_model`` read); the rest of the
  wrapper (epoch, optimizer state, ``lmbda``) is ignored;
- a prefix on every key, removed, combined in any order: ``module.``
  (DataParallel / DistributedDataParallel), ``_orig_mod.`` (torch.compile),
  ``model.`` (Lightning), e.g. ``module._orig_mod.``;
- older names of CompressAI's published zoo files and versions < 1.1: the
  prior's ``_matrices.0`` / ``_matrix0`` (biases, factors alike), Cheng 2020's
  ``downsample`` (today ``skip``);
- any floating dtype (float16, bfloat16 included): the importer converts the
  parameters to float32 and compares constants at the stored precision.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from trellic.errors import TrellicError
from trellic.weights_metadata import sha256_of

WRAPPERS = ("state_dict", "model", "network", "model_state_dict")
PREFIXES = ("module.", "_orig_mod.", "model.")
_OLD_PRIOR_KEY = re.compile(
    r"^(?P<path>(.*\.)?entropy_bottleneck)\._(?P<name>matrix|bias|factor|matrices|biases|factors)"
    r"\.?(?P<index>\d+)$"
)
_OLD_PRIOR_NAMES = {"matrix": "matrices", "bias": "biases", "factor": "factors"}


@dataclass
class Checkpoint:
    """A CompressAI state_dict as read: tensors by CompressAI's key, and how they were stored.

    wrapper: the wrapper's entry it was under (None: a bare state_dict); prefix: what was
    removed from every key (``""``: nothing); dtype: the floating dtype of its parameters.
    """

    state: dict[str, Tensor]
    wrapper: str | None
    prefix: str
    sha256: str
    dtype: str


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a ``.pth.tar`` without unpickling objects; unwrap it, strip its prefixes.

    Raises:
        TrellicError: no such file, not a torch file, a pickled object, not a state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:
            raise TrellicError(f"cannot read checkpoint {path}: not a torch checkpoint") from None
        raise TrellicError(
            f"checkpoint {path} holds a pickled object ({found[1]}) that needs code execution "
            "to load; refused (save the state_dict alone with torch.save)"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure of torch's reader on a bad file
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrellicError(f"cannot read checkpoint {path}: {message}") from None
    if not isinstance(data, dict):
        raise TrellicError(f"checkpoint {path} holds a {type(data).__name__}, not a state_dict")
    wrapper = next((name for name in WRAPPERS if isinstance(data.get(name), dict)), None)
    state = data[wrapper] if wrapper else data
    not_tensors = sorted(
        repr(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor))
    )
    if not_tensors:
        raise TrellicError(
            f"checkpoint {path} is not a state_dict: entry {not_tensors[0]} is not a named tensor "
            f"(wrappers read: {', '.join(WRAPPERS)})"
        )
    state, prefix = strip_prefixes(state)
    state = {modern_key(key): value for key, value in state.items()}
    floats = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()
                     if v.is_floating_point()})
    return Checkpoint(state, wrapper, prefix, sha256_of(path), "+".join(floats) or "none")


def strip_prefixes(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Remove :data:`PREFIXES` shared by every key, repeatedly; returns (state, what went)."""
    removed = ""
    while state:
        shared = next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)
        if shared is None:
            break
        removed += shared
        state = {key[len(shared):]: value for key, value in state.items()}
    return state, removed


def modern_key(key: str) -> str:
    """Today's name of a key named the old ways (see the module docstring)."""
    match = _OLD_PRIOR_KEY.match(key)
    if match is not None:
        name = _OLD_PRIOR_NAMES.get(match["name"], match["name"])
        return f"{match['path']}.{name}.{match['index']}"
    return key.replace(".downsample.", ".skip.")
