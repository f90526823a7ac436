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
A weights file loaded by path gets the model id ``file:<label>-<sha256 prefix>``
(label: the file's stem, or its run folder's name for the ``model.safetensors``
that train and retrain write), so files coded with two runs' models differ in
their headers.
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

from trellic import paths
from trellic.entropy.tables import PmfTables
from trellic.errors import TrellicError
from trellic.models import CodecModel, ModelConfig
from trellic.models.model import upgrade_legacy_keys
from trellic.quant.registry import quantizer_names
from trellic.safetensors_io import save_safetensors_atomic

MANIFEST = "manifest.json"
TABLE_PREFIX = "tables."
RUN_EXPORT = "model.safetensors"  # what train and retrain write into their run folder
WEIGHTS_DIR = paths.weights_dir()  # the weights folder when imported, for scripts; code calls paths
_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,63}")  # a manifest name: never a path


@dataclass
class LoadedModel:
    """A model ready to code, with the identity written into every bitstream.

    operating_points: the manifest's encoder settings measured for this model, per
    quantizer name (the plain encoder) and ``<quantizer>+linear`` (the linearised mode):
    ``lambda_t`` and ``linear_weight`` (experiments/operating_points.py); empty for a
    weights file given by path.
    """

    model: CodecModel
    model_id: str
    sha256: str
    info: dict
    operating_points: dict = field(default_factory=dict)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
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
    elif not model.latent_codec.tables:
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
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        info = json.loads(metadata.get("info", "{}"))
        base = json.loads(metadata["base"]) if "base" in metadata else None
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
        tensors = _overlay_on_base(path, tensors, base, weights_dir)
        info = {**info, "base": base}
    tensors = {k: v.float() if v.dtype == torch.float16 else v for k, v in tensors.items()}
    model = CodecModel(config)
    codec = model.latent_codec
    state = {k: v for k, v in tensors.items() if not k.startswith(TABLE_PREFIX)}
    mismatch = state_mismatch(model, state)
    if mismatch:
        raise TrellicError(f"weights {path} do not match the model: {mismatch}")
    not_finite = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if not_finite:
        raise TrellicError(f"weights {path} hold non-finite values (NaN or inf): "
                           f"{_some('key', not_finite)}")
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
    if {key: t.num_rows for key, t in codec.tables.items()} != codec.table_rows():
        raise TrellicError(f"weights {path} lack coding tables or have the wrong row counts")
    return model.eval(), info


def state_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """Why ``state`` does not load strictly into ``model``, naming the keys; None if it does."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = sorted(k for k in state if k not in expected)
    shapes = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append("missing " + _some("key", missing))
    if unexpected:
        hint = ""
        if all(k.startswith("module.") for k in unexpected):
            hint = " (saved from a DataParallel wrapper? strip the 'module.' prefix)"
        problems.append("unexpected " + _some("key", unexpected) + hint)
    if shapes:
        problems.append("wrong shape of " + _some("key", shapes))
    return "; ".join(problems) or None


def _some(noun: str, items: list[str], shown: int = 3) -> str:
    """'key a' / 'keys a, b, c (+4 more)': a list named in one short line."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return f"{noun}{'s' if len(items) > 1 else ''} {', '.join(items[:shown])}{more}"


def _overlay_on_base(
    path: Path, tensors: dict, base: dict, weights_dir: Path | None
) -> dict:
    """A variant's tensors laid over those of its base (a full model, found by _find_base)."""
    loaded = _find_base(path, base, weights_dir)
    full = model_tensors(loaded.model)
    unknown = sorted(set(tensors) - set(full))
    if unknown:
        raise TrellicError(
            f"weights {path} do not match the model: unexpected {_some('key', unknown)}"
        )
    return {**full, **tensors}


def _find_base(path: Path, base: dict, weights_dir: Path | None) -> LoadedModel:
    """The base of a variant: ``<name>.safetensors`` next to it, else the weights folder's entry.

    Either must have the sha256 that the variant records.
    """
    name, expected = base["model"], base["sha256"]
    folder = weights_dir or paths.weights_dir()
    other_versions = []
    beside = path.parent / f"{name}.safetensors"
    if beside.is_file() and beside.resolve() != path.resolve():
        digest = sha256_of(beside)
        if digest == expected:
            model, info = load_model_file(beside, allow_variant=False)
            return LoadedModel(model, name, digest, info)
        other_versions.append(digest)
    entry = (read_manifest(folder)["models"] if (folder / MANIFEST).is_file() else {}).get(name)
    if isinstance(entry, dict):
        if entry.get("sha256") == expected:
            return load_named(name, folder, allow_variant=False)
        other_versions.append(str(entry.get("sha256")))
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


def read_manifest(weights_dir: Path | None = None) -> dict:
    """The weights folder's manifest.json: {'default': name, 'models': {name: entry}}."""
    path = (weights_dir or paths.weights_dir()) / MANIFEST
    if not path.is_file():
        raise TrellicError(
            f"model manifest not found: {path} ({paths.WEIGHTS_ENV} names the weights folder)"
        )
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("models"), dict) or manifest.get("default") is None:
            raise ValueError("needs 'default' and a 'models' object")
    except (OSError, ValueError, AttributeError) as error:
        raise TrellicError(f"cannot read model manifest {path}: {error}") from None
    return manifest


def load(name_or_path: str = "default", weights_dir: Path | None = None) -> LoadedModel:
    """A shipped model by name (``default`` = the manifest's default) or a weights file path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".safetensors" or os.sep in name_or_path:
        model, info = load_model_file(candidate, weights_dir)
        digest = sha256_of(candidate)
        return LoadedModel(model, file_model_id(candidate, digest), digest, info)
    return load_named(name_or_path, weights_dir)


def file_model_id(path: Path, sha256: str) -> str:
    """``file:<label>-<sha256 prefix>``: the label is the stem, or the run folder's name."""
    path = Path(path).resolve()
    label = path.parent.name if path.name == RUN_EXPORT and path.parent.name else path.stem
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", label)[:46]  # the id stays a valid bitstream id
    return f"file:{label}-{sha256[:12]}"


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
    return LoadedModel(model, resolved, digest, info, _operating_points(resolved, entry))


def _operating_points(name: str, entry: dict) -> dict:
    """A manifest entry's ``operating_points``, checked: {quantizer: {setting: number >= 0}}."""
    points = entry.get("operating_points", {})
    settings = ("lambda_t", "linear_weight")
    names = {*quantizer_names(), *(f"{name}+linear" for name in quantizer_names())}
    if not (isinstance(points, dict) and set(points) <= names and all(
            isinstance(point, dict) and set(point) <= set(settings)
            and all(isinstance(v, int | float) and v >= 0 for v in point.values())
            for point in points.values())):
        raise TrellicError(f"model '{name}': bad operating_points in the manifest "
                           f"(expected {{QUANTIZER[+linear]: "
                           f"{{{', '.join(settings)}: number >= 0}}}})")
    return points
