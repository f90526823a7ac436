"""Shipped weights: safetensors files plus ``weights/manifest.json``.

A weights file holds the model's tensors, its frozen coding tables (prefix
``tables.``) and, in the safetensors metadata, the JSON ``config`` (architecture)
and ``info`` (training recipe, lambda, data, results). Loading never unpickles,
checks the sha256 listed in the manifest, and fails on any missing or
unexpected key (no silent partial loads). The config is bounds-checked before
the model is built (a weights file cannot size an allocation), and the tables'
row counts are checked against the model (the decoder indexes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

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


def save_model(model: MeanScaleHyperprior, path: Path, info: dict) -> str:
    """Write weights + tables + config atomically; returns the file's sha256."""
    if not model.tables:
        model.update()
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for key, tables in model.tables.items():
        tensors.update(tables.to_tensors(TABLE_PREFIX + key))
    metadata = {"config": json.dumps(model.config.to_dict()), "info": json.dumps(info)}
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
    return config


def load_model_file(path: Path) -> tuple[MeanScaleHyperprior, dict]:
    """Load a weights file strictly; returns (model in eval mode, info)."""
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        config = _config(metadata)
        info = json.loads(metadata.get("info", "{}"))
        if not isinstance(info, dict):
            raise ValueError("info is not a JSON object")
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise TrellicError(f"cannot read weights {path}: {error}") from None
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


def load_named(name: str, weights_dir: Path = WEIGHTS_DIR) -> LoadedModel:
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
    model, info = load_model_file(path)
    return LoadedModel(model, resolved, digest, info)
