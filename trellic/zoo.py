"""Shipped weights: safetensors files plus ``weights/manifest.json``.

A weights file holds the model's tensors, its frozen coding tables (prefix
``tables.``) and, in the safetensors metadata, the JSON ``config`` (architecture)
and ``info`` (training recipe, lambda, data, results). Loading never unpickles,
checks the sha256 listed in the manifest, and fails on any missing or
unexpected key (no silent partial loads).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from trellic.entropy.tables import PmfTables
from trellic.errors import TrellicError
from trellic.models import MeanScaleHyperprior, ModelConfig

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MANIFEST = "manifest.json"
TABLE_PREFIX = "tables."


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_of(path)


def load_model_file(path: Path) -> tuple[MeanScaleHyperprior, dict]:
    """Load a weights file strictly; returns (model in eval mode, info)."""
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        info = json.loads(metadata.get("info", "{}"))
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise TrellicError(f"cannot read weights {path}: {error}") from None
    model = MeanScaleHyperprior(config)
    state = {k: v for k, v in tensors.items() if not k.startswith(TABLE_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
        table_keys = {k[len(TABLE_PREFIX):].split(".")[0] for k in tensors if k.startswith(TABLE_PREFIX)}
        model.tables = {
            key: PmfTables.from_tensors(tensors, TABLE_PREFIX + key) for key in sorted(table_keys)
        }
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise TrellicError(f"weights {path} do not match the model: {first_line}") from None
    if set(model.tables) != {"z", "usq", "tcq"}:
        raise TrellicError(f"weights {path} lack coding tables (have {sorted(model.tables)})")
    return model.eval(), info


def read_manifest(weights_dir: Path = WEIGHTS_DIR) -> dict:
    path = weights_dir / MANIFEST
    if not path.is_file():
        raise TrellicError(f"model manifest not found: {path}")
    return json.loads(path.read_text())


def available_models(weights_dir: Path = WEIGHTS_DIR) -> list[str]:
    return sorted(read_manifest(weights_dir)["models"])


def load(name_or_path: str = "default", weights_dir: Path = WEIGHTS_DIR) -> LoadedModel:
    """A shipped model by name (``default`` = the manifest's default) or a weights file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or os.sep in name_or_path:
        model, info = load_model_file(candidate)
        return LoadedModel(model, f"file:{candidate.stem}", sha256_of(candidate), info)
    manifest = read_manifest(weights_dir)
    name = manifest["default"] if name_or_path == "default" else name_or_path
    entry = manifest["models"].get(name)
    if entry is None:
        known = ", ".join(sorted(manifest["models"]))
        raise TrellicError(f"unknown model '{name_or_path}' (available: {known})")
    path = weights_dir / entry["file"]
    if not path.is_file():
        raise TrellicError(f"weights file of model '{name}' is missing: {path}")
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise TrellicError(f"weights file {path} is corrupt or tampered (sha256 mismatch)")
    model, info = load_model_file(path)
    return LoadedModel(model, name, digest, info)
