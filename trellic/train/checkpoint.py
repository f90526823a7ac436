"""Training checkpoints in safetensors: model, optimizers and progress, no pickles.

Optimizer state tensors are flattened to ``opt.<name>.<param index>.<field>``;
the step counter and hyper-parameters of each optimizer go to the metadata as
JSON, and so does the run's progress (step, elapsed seconds, config with its
architecture, the parameters it keeps frozen). Writes are atomic (temp file +
rename), so an interrupted save never destroys the previous checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from trellic import jsonio
from trellic.errors import TrellicError
from trellic.models import CodecModel, ModelConfig
from trellic.models.config import VERSION_1_ARCHITECTURE
from trellic.models.model import upgrade_legacy_keys
from trellic.safetensors_io import save_safetensors_atomic
from trellic.train.warm_start import load_matching, with_prior_of
from trellic.zoo import load_model_file


def save_training_state(path: Path, model: torch.nn.Module,
                        optimizers: dict[str, torch.optim.Optimizer], progress: dict) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    groups = {}
    for name, optimizer in optimizers.items():
        state = optimizer.state_dict()
        groups[name] = state["param_groups"]
        for index, fields in state["state"].items():
            for field, value in fields.items():
                tensors[f"opt.{name}.{index}.{field}"] = torch.as_tensor(value).contiguous()
    metadata = {"progress": json.dumps(progress), "param_groups": json.dumps(groups)}
    save_safetensors_atomic(path, tensors, metadata)


def load_training_state(path: Path, model: torch.nn.Module,
                        optimizers: dict[str, torch.optim.Optimizer]) -> dict:
    """Restore model and optimizers in place; returns the saved progress dict.

    Raises:
        TrellicError: no such file, or one that is not a readable training checkpoint of
            this model (one line).
    """
    if not path.is_file():
        raise TrellicError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        groups = json.loads(metadata["param_groups"])
        progress = json.loads(metadata["progress"])
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as error:
        raise TrellicError(f"{path} is not a readable training checkpoint "
                           f"({type(error).__name__}: {error})"[:300]) from None
    _load_strict(model, {k[len("model."):]: v for k, v in tensors.items()
                         if k.startswith("model.")}, path)
    try:
        for name, optimizer in optimizers.items():
            state: dict[int, dict] = {}
            prefix = f"opt.{name}."
            for key, value in tensors.items():
                if key.startswith(prefix):
                    index, field = key[len(prefix):].split(".", 1)
                    state.setdefault(int(index), {})[field] = value
            optimizer.load_state_dict({"state": state, "param_groups": groups[name]})
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise TrellicError(f"{path}: the optimizer state does not match this run "
                           f"({type(error).__name__}: {error})"[:300]) from None
    return progress


def read_progress(path: Path) -> dict:
    """The progress dict of a training checkpoint (step, elapsed, config, frozen)."""
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {})["progress"])
    except (SafetensorError, OSError, KeyError, ValueError, RecursionError) as error:
        raise TrellicError(f"{path} is not a training checkpoint ({error})"[:300]) from None


def checkpoint_architecture(progress: dict) -> str:
    """The architecture a checkpoint's run trained (runs before the field: mbt2018-mean)."""
    return progress["config"].get("architecture", VERSION_1_ARCHITECTURE)


def load_model_weights(path: Path, model: CodecModel) -> tuple[str, ...]:
    """Warm start: the model tensors of a training checkpoint or a weights file.

    A file of the model's architecture loads strictly. A file of another
    architecture loads every tensor whose name and shape match and leaves the
    others as initialised (:func:`~trellic.train.warm_start.load_matching`).
    Weights files go through the zoo loader (fp16 storage, variant files).

    Returns:
        The names of the model's tensors that the file did not provide (empty
        when it loaded strictly).

    Raises:
        TrellicError: no such file; a mismatch (one line naming the tensors).
    """
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"warm-start file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise TrellicError(f"cannot read warm-start file {path}: {error}") from None
    if "progress" in metadata:  # a training checkpoint
        tensors = load_file(str(path))
        state = upgrade_legacy_keys(
            {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        progress = jsonio.loads(metadata["progress"], f"warm-start file {path}: 'progress'")
        architecture = checkpoint_architecture(progress)
    else:
        source = load_model_file(path)[0]
        state, architecture = source.state_dict(), source.config.architecture
    if architecture == model.config.architecture:
        _load_strict(model, state, path)
        return ()
    return load_matching(model, state, f"{path} ({architecture})")


def model_from_checkpoint(
    path: Path, tcq_delta: float | None = None
) -> tuple[CodecModel, dict]:
    """The model of a training checkpoint (eval mode, coding tables built) and its progress.

    Args:
        tcq_delta: the TCQ step to build the tables for (default: the model's default).
    """
    progress = read_progress(path)
    config = progress["config"]
    extra = {} if tcq_delta is None else {"tcq_delta": tcq_delta}
    try:
        model_config = with_prior_of(ModelConfig(architecture=checkpoint_architecture(progress),
                                                 N=config["N"], M=config["M"], **extra), path)
    except ValueError as error:
        raise TrellicError(f"cannot read checkpoint {path}: {error}") from None
    model = CodecModel(model_config)
    load_model_weights(path, model)
    model.eval()
    model.update()
    return model, progress


def _load_strict(model: torch.nn.Module, state: dict, path: Path) -> None:
    """load_state_dict(strict=True), a mismatch reported as one line."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[-1].strip()[:200]
        raise TrellicError(f"{path} does not match the model ({detail})") from None
