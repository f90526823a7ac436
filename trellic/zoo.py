"""Shipped weights: safetensors files plus ``weights/manifest.json``.

A weights file holds the model's tensors, its latent codec's frozen coding
tables (prefix ``tables.``) and, in the safetensors metadata, the JSON
``config`` (versioned, see :mod:`trellic.models.config`) and ``info``
(training recipe, lambda, data, results). Loading never unpickles, checks the
sha256 listed in the manifest, and fails on any missing or unexpected key (no
silent partial loads); files written before the latent-codec layer have their
tensor names upgraded first. The config is bounds-checked before the model is
built (a weights file cannot size an allocation), and the tables' row counts
are checked against the latent codec's (the decoder indexes them).

Shipped files are compact: float parameters are stored as fp16 (the model is
rounded first and its tables rebuilt, so the file holds exactly the model that
was measured), and a retrained *variant* stores only the tensors that differ
from its base model (metadata ``base``: the base's manifest name and sha256);
loading overlays them on the base, whose sha256 must match. The base is found
by name in the weights folder's manifest, or, for a variant loaded by path, as
``<base>.safetensors`` next to it first.

Where the weights folder is: ``trellic.paths.weights_dir`` (``TRELLIC_WEIGHTS``).

A model's identity is its content (:func:`weights_sha256`: the config and every
tensor it codes with), never the file's name, bytes or metadata: the same
weights by zoo name, by path, as a copy, rewritten with other metadata or
re-imported code the same files and decode each other's. A weights file that the
weights folder's manifest lists (by content) codes under its zoo name; any other
gets the model id ``file:<sha256 prefix>``. Files written before this identity
carry the weights *file's* sha256; the decoder still accepts those
(``LoadedModel.aliases``: the file's sha256 and the ``previous_sha256`` its
metadata records). Measured encoder settings (``operating_points``) live in the
weights file's metadata (the manifest keeps a copy), so they follow the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from trellic import jsonio, paths
from trellic.entropy.tables import PmfTables
from trellic.errors import TrellicError
from trellic.files import refuse_torch_checkpoint
from trellic.io import write_atomic
from trellic.manifest import MANIFEST, read_manifest
from trellic.models import CodecModel, ModelConfig
from trellic.models.model import upgrade_legacy_keys
from trellic.models.state_check import dtype_mismatch, some, state_mismatch
from trellic.safetensors_io import save_safetensors_atomic
from trellic.weights_metadata import (
    check_operating_points,
    metadata_json,
    previous_sha256,
    read_metadata,
    sha256_of,
    store_operating_points,
    stored_operating_points,
)

TABLE_PREFIX = "tables."
RUN_EXPORT = "model.safetensors"  # what train and retrain write into their run folder
WEIGHTS_DIR = paths.weights_dir()  # the weights folder when imported, for scripts; code calls paths
_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}")  # a manifest name: never a path


@dataclass
class LoadedModel:
    """A model ready to code, with the identity written into every bitstream.

    sha256: the weights' identity (:func:`weights_sha256`), written into every file.
    operating_points: the encoder settings measured for these weights, per quantizer
    name (the plain encoder) and ``<quantizer>+linear`` (the linearised mode):
    ``lambda_t`` and ``linear_weight`` (experiments/operating_points.py), from the
    weights file's metadata, else its manifest entry; empty if never measured.
    aliases: other sha256s under which older files name these weights (the file's
    own sha256 and earlier versions of it), accepted by the decoder.
    """

    model: CodecModel
    model_id: str
    sha256: str
    info: dict
    operating_points: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def identities(self) -> tuple[str, ...]:
        """Every sha256 that names these weights: the content's first."""
        return (self.sha256, *self.aliases)


def weights_sha256(model: CodecModel) -> str:
    """The model's identity: sha256 of its config and of every tensor it codes with.

    Tensors are hashed by sorted name, dtype, shape and bytes as the model holds
    them (float32 after loading, whatever the file stored), so the same weights
    give the same sha256 whatever file, name, storage or metadata they came from.
    """
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model_tensors(model).items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"\n{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_tensors(model: CodecModel) -> dict:
    """Everything a weights file holds: the state dict and the coding tables."""
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for key, tables in model.latent_codec.tables.items():
        tensors.update(tables.to_tensors(TABLE_PREFIX + key))
    return tensors


def save_model(
    model: CodecModel,
    path: Path,
    info: dict,
    half: bool = False,
    base: LoadedModel | None = None,
    operating_points: dict | None = None,
) -> str:
    """Write weights + tables + config atomically; returns the weights' identity
    (:func:`weights_sha256`). The same model and metadata always give the same bytes.

    Args:
        half: store float parameters as fp16. The model's own parameters are
            rounded to fp16 first and its tables rebuilt, so the model in memory
            is exactly the one the file loads as.
        base: write a variant file: only the tensors that differ from base's.
        operating_points: measured encoder settings to store with the weights
            (checked as :func:`check_operating_points` does).
    """
    if half:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.copy_(parameter.half().float())
        model.update()
    elif not model.latent_codec.tables:
        model.update()
    tensors = model_tensors(model)
    metadata = {"config": metadata_json(model.config.to_dict()), "info": metadata_json(info)}
    if operating_points:
        checked = check_operating_points(operating_points, str(path))
        metadata["operating_points"] = metadata_json(checked)
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
        metadata["base"] = metadata_json({"model": base.model_id, "sha256": base.sha256})
    if half:
        names = {name for name, _ in model.named_parameters()}
        tensors = {k: v.half() if k in names else v for k, v in tensors.items()}
    save_safetensors_atomic(Path(path), tensors, metadata)
    return weights_sha256(model)


def record_operating_points(name: str, points: dict, weights_dir: Path | None = None) -> None:
    """Store a zoo model's measured operating points in its weights file and manifest entry.

    The manifest entry gets the file's new sha256, the weights' identity
    (``weights_sha256``) and a copy of the points; the manifest is rewritten atomically.
    """
    folder = weights_dir or paths.weights_dir()
    loaded = load_named(name, folder)
    manifest = read_manifest(folder)
    entry = manifest["models"][loaded.model_id]
    entry["sha256"] = store_operating_points(folder / entry["file"], points)
    entry["weights_sha256"] = loaded.sha256
    entry["operating_points"] = points
    write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), force=True)


def _upgraded(tensors: dict) -> dict:
    """A file's tensors with the model's tensor names of today (tables keep theirs)."""
    tables = {k: v for k, v in tensors.items() if k.startswith(TABLE_PREFIX)}
    state = {k: v for k, v in tensors.items() if not k.startswith(TABLE_PREFIX)}
    return {**upgrade_legacy_keys(state), **tables}


def load_model_file(
    path: Path, weights_dir: Path | None = None, allow_variant: bool = True
) -> tuple[CodecModel, dict]:
    """Load a weights file strictly; returns (model in eval mode, info).

    A variant file's base is ``<base>.safetensors`` next to it or the base's
    manifest entry in ``weights_dir`` (default: ``paths.weights_dir()``); the
    base must be a full model (``allow_variant=False`` when loading it).

    Raises:
        TrellicError: unreadable file, a training checkpoint, missing, unexpected
            or mis-shaped keys (named), non-finite values, a missing base.
    """
    path = Path(path)
    if not path.is_file():
        raise TrellicError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if "config" not in metadata and "progress" in metadata:
            raise TrellicError(
                f"{path} is a training checkpoint, not a model: pass the run's {RUN_EXPORT} "
                "(written when training ends) or ship it with scripts/ship_model.py"
            )
        tensors = _upgraded(load_file(str(path)))
        what = f"weights {path}: metadata"
        config = ModelConfig.from_dict(jsonio.loads(metadata["config"], f"{what} 'config'"))
        info = jsonio.loads(metadata.get("info", "{}"), f"{what} 'info'")
        base = jsonio.loads(metadata["base"], f"{what} 'base'") if "base" in metadata else None
        if not isinstance(info, dict):
            raise ValueError("info is not a JSON object")
        if base is not None and not (
            isinstance(base, dict)
            and isinstance(base.get("model"), str)
            and _NAME.fullmatch(base["model"])
            and isinstance(base.get("sha256"), str)
        ):
            raise ValueError("base is not {model, sha256}")
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as error:
        raise TrellicError(f"cannot read weights {path}: {error}") from None
    if base is not None and not allow_variant:
        raise TrellicError(f"weights {path} are a variant and cannot be the base of another")
    if base is not None:
        loaded_base = _find_base(path, base, weights_dir)
        tensors = _overlay_on_base(path, tensors, loaded_base)
        info = {**info, "base": {**base, "identities": list(loaded_base.identities)}}
    model = CodecModel(config)
    codec = model.latent_codec
    state = {k: v for k, v in tensors.items() if not k.startswith(TABLE_PREFIX)}
    mismatch = state_mismatch(model, state) or dtype_mismatch(model, state)
    if mismatch:
        raise TrellicError(f"weights {path} do not match the model: {mismatch}")
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if not_finite:
        raise TrellicError(f"weights {path} hold non-finite values (NaN or inf): "
                           f"{some('key', not_finite)}")
    try:
        model.load_state_dict(state, strict=True)
        table_keys = {
            k[len(TABLE_PREFIX) :].split(".")[0] for k in tensors if k.startswith(TABLE_PREFIX)
        }
        codec.tables = {
            key: PmfTables.from_tensors(tensors, TABLE_PREFIX + key) for key in sorted(table_keys)
        }
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise TrellicError(f"weights {path} do not match the model: {first_line}") from None
    problem = codec.table_problem()
    if problem is not None:
        raise TrellicError(f"weights {path} do not match the model: {problem}")
    return model.eval(), info


def _overlay_on_base(path: Path, tensors: dict, base: LoadedModel) -> dict:
    """A variant's tensors laid over those of its base (a full model, found by _find_base)."""
    full = model_tensors(base.model)
    unknown = sorted(set(tensors) - set(full))
    if unknown:
        raise TrellicError(
            f"weights {path} do not match the model: unexpected {some('key', unknown)}"
        )
    return {**full, **tensors}


def _find_base(path: Path, base: dict, weights_dir: Path | None) -> LoadedModel:
    """The base of a variant: ``<name>.safetensors`` next to it, else the weights folder's entry.

    Either must be the weights the variant records (its sha256 among their identities).
    """
    name, expected = base["model"], base["sha256"]
    folder = weights_dir or paths.weights_dir()
    other_versions = []
    beside = path.parent / f"{name}.safetensors"
    if beside.is_file() and beside.resolve() != path.resolve():
        model, info = load_model_file(beside, allow_variant=False)
        sha256 = weights_sha256(model)
        aliases = _unique((sha256_of(beside), *previous_sha256(read_metadata(beside))), sha256)
        if expected in (sha256, *aliases):
            return LoadedModel(model, name, sha256, info, aliases=aliases)
        other_versions.append(sha256)
    entry = (read_manifest(folder)["models"] if (folder / MANIFEST).is_file() else {}).get(name)
    if isinstance(entry, dict):
        loaded = load_named(name, folder, allow_variant=False)
        if expected in loaded.identities:
            return loaded
        other_versions.append(loaded.sha256)
    if other_versions:
        raise TrellicError(
            f"weights {path} were made from another version of '{name}' "
            f"(sha256 {expected[:12]}... expected, found {other_versions[0][:12]}...)"
        )
    raise TrellicError(
        f"weights {path} are a variant of '{name}' (sha256 {expected[:12]}...), which is "
        f"neither next to it as {name}.safetensors nor in the weights folder {folder} "
        f"(set {paths.WEIGHTS_ENV} to a weights folder that holds it)"
    )


def load(name_or_path: str = "default", weights_dir: Path | None = None) -> LoadedModel:
    """A shipped model by name (``default`` = the manifest's default) or a weights file path.

    Weights given by path that the weights folder's manifest lists (by content) are
    that zoo model: same model id, same operating points, same files.
    """
    refuse_torch_checkpoint(name_or_path)
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or os.sep in name_or_path:
        return _load_path(candidate, weights_dir)
    return load_named(name_or_path, weights_dir)


def _load_path(path: Path, weights_dir: Path | None) -> LoadedModel:
    model, info = load_model_file(path, weights_dir)
    metadata = read_metadata(path)
    sha256 = weights_sha256(model)
    name, entry = manifest_entry_of(sha256, weights_dir)
    points = stored_operating_points(metadata, path) or _manifest_points(name, entry)
    model_id = name or f"file:{sha256[:16]}"
    aliases = (sha256_of(path), *previous_sha256(metadata), *_entry_aliases(entry, weights_dir))
    return LoadedModel(model, model_id, sha256, info, points, _unique(aliases, sha256))


def manifest_entry_of(sha256: str, weights_dir: Path | None = None) -> tuple[str | None, dict]:
    """(name, entry) of the weights folder's model whose identity (``weights_sha256``) is
    or starts with ``sha256`` (a file header's prefix), else (None, {})."""
    folder = weights_dir or paths.weights_dir()
    if not (folder / MANIFEST).is_file():
        return None, {}
    try:
        models = read_manifest(folder)["models"]
    except TrellicError:
        return None, {}
    for name, entry in models.items():
        if isinstance(entry, dict) and str(entry.get("weights_sha256")).startswith(sha256):
            return name, entry
    return None, {}


def _entry_aliases(entry: dict, weights_dir: Path | None) -> list[str]:
    """The sha256s older files name a zoo model by: its file's, and the file's earlier ones."""
    if not isinstance(entry.get("sha256"), str):
        return []
    shipped = (weights_dir or paths.weights_dir()) / str(entry.get("file"))
    earlier = previous_sha256(read_metadata(shipped)) if shipped.is_file() else []
    return [entry["sha256"], *earlier]


def _unique(aliases, sha256: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a for a in aliases if a != sha256))


def _manifest_points(name: str | None, entry: dict) -> dict:
    return check_operating_points(entry.get("operating_points", {}), f"model '{name}'")


def load_named(
    name: str, weights_dir: Path | None = None, allow_variant: bool = True
) -> LoadedModel:
    """A shipped model by manifest name only (never a path): what a file's header may name."""
    folder = weights_dir or paths.weights_dir()
    manifest = read_manifest(folder)
    resolved = manifest["default"] if name == "default" else name
    entry = manifest["models"].get(resolved)
    if not isinstance(entry, dict):
        known = ", ".join(sorted(manifest["models"]))
        raise TrellicError(
            f"unknown model '{name}' (weights folder {folder} has: {known}; "
            f"{paths.WEIGHTS_ENV} names another folder, `trellic models` lists them)"
        )
    path = folder / str(entry.get("file"))
    if not path.is_file():
        raise TrellicError(f"weights file of model '{resolved}' is missing: {path}")
    digest = sha256_of(path)
    if digest != entry.get("sha256"):
        raise TrellicError(
            f"weights file {path} is corrupt or tampered (sha256 mismatch: "
            f"{digest[:12]}..., the manifest lists {str(entry.get('sha256'))[:12]}...)"
        )
    model, info = load_model_file(path, folder, allow_variant)
    metadata = read_metadata(path)
    sha256 = weights_sha256(model)
    points = stored_operating_points(metadata, path) or _manifest_points(resolved, entry)
    aliases = _unique((digest, *previous_sha256(metadata)), sha256)
    return LoadedModel(model, resolved, sha256, info, points, aliases)
