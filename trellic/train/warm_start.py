"""Partial warm start: a model initialised from the tensors another architecture shares with it.

A new entropy model is trained from a shipped one of another architecture
(say a channel-conditional model from a mean-scale hyperprior with the same
g_a, g_s, h_a, h_s and factorized prior): every tensor whose name and shape
match is loaded, the model's other tensors (its new networks) start as
initialised. What would silently mix two unrelated models is refused: a
tensor of the same name and another shape, a file sharing no tensor with the
model, a file holding tensors the model lacks (warm-starting an older
architecture from a newer one, or the wrong file). ``--train-params new`` then
trains only the new tensors (:func:`frozen_parameters`).

The factorized prior's widths are the file's (:func:`with_prior_of`): a model
imported from CompressAI has a density network of widths (3, 3, 3, 3) where
trellic's models have (3, 3, 3), and the run's model must be built with the
widths of the file it starts from (or resumes) to take its prior.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from trellic.errors import TrellicError
from trellic.models.config import ModelConfig
from trellic.models.state_check import state_mismatch

# A training checkpoint's prior matrices (``model.`` + today's or version 1's name).
_PRIOR_MATRIX = re.compile(r"^model\.(latent_codec\.)?entropy_bottleneck\.matrices\.(\d+)$")


def prior_filters_of(path: Path) -> tuple[int, ...] | None:
    """The hidden widths of the factorized prior of the model in ``path`` (a weights file:
    its config; a training checkpoint: its prior matrices' shapes), None if it has none.

    Raises:
        TrellicError: an unreadable file or config.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if "config" in metadata:
                return ModelConfig.from_dict(json.loads(metadata["config"])).prior_filters
            shapes = {int(m[2]): handle.get_slice(key).get_shape()
                      for key in handle.keys() if (m := _PRIOR_MATRIX.match(key))}
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise TrellicError(f"cannot read warm-start file {path}: {error}") from None
    if not shapes:
        return None
    return tuple(int(shapes[i][1]) for i in range(len(shapes) - 1))  # matrix i: (C, f_i+1, f_i)


def with_prior_of(config: ModelConfig, path: Path | None) -> ModelConfig:
    """``config`` with the prior widths of the model in ``path`` (the warm start, or the
    checkpoint a run resumes), so that the file's prior loads; ``config`` itself when
    ``path`` is None or holds no prior.

    Build the run's model from this: ``CodecModel(with_prior_of(ModelConfig(...), path))``.
    """
    filters = None if path is None else prior_filters_of(Path(path))
    if filters is None or filters == config.prior_filters:
        return config
    try:
        return dataclasses.replace(config, prior_filters=filters)
    except ValueError as error:
        raise TrellicError(f"cannot warm-start from {path}: {error}") from None


def load_matching(model: torch.nn.Module, state: dict[str, Tensor], source: str) -> tuple[str, ...]:
    """Load the tensors of ``state`` into ``model``; returns the names of the model's others.

    Args:
        state: tensors by today's names (legacy names already upgraded).
        source: how error messages name the file.

    Raises:
        TrellicError: a tensor of the model's name with another shape, a tensor
            the model lacks, or no tensor in common (one line naming the tensors).
    """
    expected = model.state_dict()
    architecture = model.config.architecture
    if not set(state) & set(expected):
        raise TrellicError(f"{source} shares no tensor with the {architecture} model: "
                           "not a warm start for it")
    mismatch = state_mismatch(model, {**expected, **state})  # the file's gaps are allowed
    if mismatch:
        raise TrellicError(f"{source} cannot warm-start the {architecture} model: {mismatch}")
    model.load_state_dict(state, strict=False)
    return tuple(name for name in expected if name not in state)


def fresh_prefixes(names: Iterable[str], new: Collection[str]) -> list[str]:
    """The shortest module prefixes of ``names`` under which every tensor is in ``new``.

    Example: the names of a model and its new tensors ``latent_codec.mean_nets.0.weight``,
    ``latent_codec.mean_nets.0.bias`` -> ``["latent_codec.mean_nets"]``.
    """
    names = list(names)
    prefixes: list[str] = []
    for key in (name for name in names if name in new):
        parts = key.split(".")
        for length in range(1, len(parts) + 1):
            prefix = ".".join(parts[:length])
            under = [n for n in names if n == prefix or n.startswith(prefix + ".")]
            if all(n in new for n in under):
                if prefix not in prefixes:
                    prefixes.append(prefix)
                break
    return prefixes


def summary(model: torch.nn.Module, new: Collection[str], source: str) -> str:
    """The line a warm start prints: how many tensors came from ``source``, which start fresh."""
    names = list(model.state_dict())
    line = f"warm start: {len(names) - len(new)} tensors from {source}"
    return f"{line}; new: {', '.join(fresh_prefixes(names, new))}" if new else line


def check_train_params(train_params: str, warm_start: object) -> None:
    """``--train-params new`` needs a warm start: what it loads is what stays fixed."""
    if train_params == "new" and warm_start is None:
        raise TrellicError("--train-params new needs --warm-start (what it loads stays fixed)")


def frozen_parameters(model: torch.nn.Module, new: Collection[str]) -> list[str]:
    """The parameters ``--train-params new`` keeps as warm-started: all but the new ones.

    Raises:
        TrellicError: the warm start provided every parameter (nothing would train).
    """
    frozen = [name for name, _ in model.named_parameters() if name not in new]
    if len(frozen) == len(list(model.parameters())):
        raise TrellicError("--train-params new: the warm start provided every parameter of "
                           "the model, so nothing would train (use --train-params all)")
    return frozen


def freeze(model: torch.nn.Module, frozen: Collection[str]) -> None:
    """Exclude the parameters named in ``frozen`` from training (requires_grad False)."""
    unknown = set(frozen) - {name for name, _ in model.named_parameters()}
    if unknown:
        raise TrellicError(f"the run froze parameters this model lacks: {sorted(unknown)[:3]}")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
