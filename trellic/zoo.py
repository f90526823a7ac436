"""Shipped weights: safetensors files plus ``weights/manifest.json``.

A weights file holds the model's tensors, its frozen coding tables (prefix
``tables.``) and, in the safetensors metadata, the JSON ``config`` (architecture)
and ``info`` (training recipe, lambda, data, results). Loading never unpickles,
checks the sha256 listed in the manifest, and fails on any missing or
unexpected key (no silent partial loads). The config is bounds-checked before
the model is built (a weights file cannot size an allocation), and the tables'
row counts are checked against the model (the decoder indexes them).

Shipped files are compact: float parameters are stored as fp16 (the model is
rounded first and its tables rebuilt, so the file holds exactly the model that
was measured), and a retrained *variant* stores only the tensors that differ
from its base model (metadata ``base``: the base's manifest name and sha256);
loading overlays them on the base, whose sha256 must match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from trellic.entropy.tables import PmfTables
from trellic.errors import TrellicError
from trellic.models import MeanScaleHyperprior, ModelConfig
from trellic.safetensors_io import save_safetensors_atomic

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = "manifest.json"
TABLE_PREFIX = "tables."
MAX_CHANNELS = 1024
MAX_PRIOR_LAYERS, MAX_PRIOR_WIDTH = 8, 16  # bounds of the factorized prior's density network


@dataclass
class LoadedModel:
    """A model ready to code, with the identity written into every bitstream."""

    model: MeanScaleHyperprior
    model_id: str
    sha256: str
    info: dict


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_tensors(model: MeanScaleHyperprior) -> dict:
    """Everything a weights file holds: the state dict and the coding tables."""
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for key, tables in model.tables.items():
        tensors.update(tables.to_tensors(TABLE_PREFIX + key))
    return tensors


def save_model(
    model: MeanScaleHyperprior,
    path: Path,
    info: dict,
    half: bool = False,
    base: LoadedModel | None = None,
) -> str:
    """Write weights + tables + config atomically; returns the file's sha256.

    Args:
        half: store float parameters as fp16. The model's own parameters are
            rounded to fp16 first and its tables rebuilt, so the model in memory
            is exactly the one the file loads as.
        base: write a variant file: only the tensors that differ from base's.
    """
    if half:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.half().float())
        model.update()
    elif not model.tables:
        model.update()
    tensors = model_tensors(model)
    metadata = {"config": json.dumps(model.config.to_dict()), "info": json.dumps(info)}
    if base is not None:
        if base.info.get("base") is not None:
            raise TrellicError(f"the base of a variant must be a full model, not {base.model_id}")
        reference = model_tensors(base.model)
        tensors = {
            k: v
            for k, v in tensors.items()
            if k not in reference
            or v.shape != reference[k].shape
            or not torch.equal(v, reference[k])
        }
        metadata["base"] = json.dumps({"model": base.model_id, "sha256": base.sha256})
    if half:
        names = {name for name, _ in model.named_parameters()}
        tensors = {k: v.half() if k in names else v for k, v in tensors.items()}
    save_safetensors_atomic(Path(path), tensors, metadata)
    return sha256_of(Path(path))


def _config(metadata: dict) -> ModelConfig:
    config = ModelConfig.from_dict(json.loads(metadata["config"]))
    for name in ("N", "M"):
        value = getattr(config, name)
        if not isinstance(value, int) or not 1 <= value <= MAX_CHANNELS:
            raise ValueError(f"config {name}={value!r} is not an integer in 1..{MAX_CHANNELS}")
    if not isinstance(config.tcq_delta, float | int) or not 0 < config.tcq_delta < 1e3:
        raise ValueError(f"config tcq_delta={config.tcq_delta!r} out of range")
    filters = config.prior_filters
    if not 1 <= len(filters) <= MAX_PRIOR_LAYERS or not all(
        isinstance(width, int) and 1 <= width <= MAX_PRIOR_WIDTH for width in filters
    ):
        raise ValueError(f"config prior_filters={list(filters)!r} out of range")
    return config


def load_model_file(
    path: Path, weights_dir: Path = WEIGHTS_DIR, allow_variant: bool = True
) -> tuple[MeanScaleHyperprior, dict]:
    """Load a weights file strictly; returns (model in eval mode, info).

    A variant file's base is looked up by name in ``weights_dir``'s manifest;
    the base must be a full model (``allow_variant=False`` when loading it).
    """
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        config = _config(metadata)
        info = json.loads(metadata.get("info", "{}"))
        base = json.loads(metadata["base"]) if "base" in metadata else None
        if not isinstance(info, dict):
            raise ValueError("info is not a JSON object")
        if base is not None and not (
            isinstance(base, dict)
            and isinstance(base.get("model"), str)
            and isinstance(base.get("sha256"), str)
        ):
            raise ValueError("base is not {model, sha256}")
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise TrellicError(f"cannot read weights {path}: {error}") from None
    if base is not None and not allow_variant:
        raise TrellicError(f"weights {path} are a variant and cannot be the base of another")
    if base is not None:
        tensors = _overlay_on_base(path, tensors, base, weights_dir)
        info = {**info, "base": base}
    tensors = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    model = MeanScaleHyperprior(config)
    state = {k: v for k, v in tensors.items() if not k.startswith(TABLE_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
        table_keys = {
            k[len(TABLE_PREFIX) :].split(".")[0] for k in tensors if k.startswith(TABLE_PREFIX)
        }
        model.tables = {
            key: PmfTables.from_tensors(tensors, TABLE_PREFIX + key) for key in sorted(table_keys)
        }
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise TrellicError(f"weights {path} do not match the model: {first_line}") from None
    levels = model.scale_table.numel()
    rows = {"z": config.N, "usq": levels, "tcq": 2 * levels}
    if {key: t.num_rows for key, t in model.tables.items()} != rows:
        raise TrellicError(f"weights {path} lack coding tables or have the wrong row counts")
    return model.eval(), info


def _overlay_on_base(path: Path, tensors: dict, base: dict, weights_dir: Path) -> dict:
    """A variant's tensors laid over those of its base (a full shipped model)."""
    loaded = load_named(base["model"], weights_dir, allow_variant=False)
    if loaded.sha256 != base["sha256"]:
        raise TrellicError(
            f"weights {path} were made from another version of '{base['model']}' (sha256 mismatch)"
        )
    full = model_tensors(loaded.model)
    unknown = sorted(set(tensors) - set(full))
    if unknown:
        raise TrellicError(f"weights {path} do not match the model: unexpected key {unknown[0]}")
    return {**full, **tensors}


def read_manifest(weights_dir: Path = WEIGHTS_DIR) -> dict:
    path = weights_dir / MANIFEST
    if not path.is_file():
        raise TrellicError(f"model manifest not found: {path}")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("models"), dict) or manifest.get("default") is None:
            raise ValueError("needs 'default' and a 'models' object")
    except (OSError, ValueError, AttributeError) as error:
        raise TrellicError(f"cannot read model manifest {path}: {error}") from None
    return manifest


def load(name_or_path: str = "default", weights_dir: Path = WEIGHTS_DIR) -> LoadedModel:
    """A shipped model by name (``default`` = the manifest's default) or a weights file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or os.sep in name_or_path:
        model, info = load_model_file(candidate)
        stem = re.sub(r"[^A-Za-z0-9._+-]", "_", candidate.stem)[:59]  # a valid bitstream model id
        return LoadedModel(model, f"file:{stem}", sha256_of(candidate), info)
    return load_named(name_or_path, weights_dir)


def load_named(
    name: str, weights_dir: Path = WEIGHTS_DIR, allow_variant: bool = True
) -> LoadedModel:
    """A shipped model by manifest name only (never a path): what a file's header may name."""
    manifest = read_manifest(weights_dir)
    resolved = manifest["default"] if name == "default" else name
    entry = manifest["models"].get(resolved)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(manifest["models"]))
        raise TrellicError(f"unknown model '{name}' (available: {known})")
    path = weights_dir / str(entry.get("file"))
    if not path.is_file():
        raise TrellicError(f"weights file of model '{resolved}' is missing: {path}")
    digest = sha256_of(path)
    if digest != entry.get("sha256"):
        raise TrellicError(f"weights file {path} is corrupt or tampered (sha256 mismatch)")
    model, info = load_model_file(path, weights_dir, allow_variant)
    return LoadedModel(model, resolved, digest, info)
