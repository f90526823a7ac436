"""CompressAI checkpoints (``mbt2018-mean``, ``bmshj2018-hyperprior``) as trellic models.

A checkpoint is read with ``torch.load(weights_only=True)`` only: plain tensors
in dicts, never an object that needs code to be unpickled. It may be a bare
state_dict or wrapped in ``{"state_dict": ...}`` / ``{"model": ...}`` (the
rest of the wrapper, e.g. optimizer state, is ignored), with DataParallel's
``module.`` prefix on every key, saved before or after CompressAI's
``update()``. Nothing is inferred silently: N and M are read from
``g_a.0.weight`` and ``g_a.6.weight`` and every other tensor's shape is checked
against the architecture at that N and M; a missing or unexpected key, a
wrong shape, a non-finite value, or a layer built with other constants (GDN's
beta_min and reparametrisation offset, the likelihood bounds, the tail mass,
the scale bound) is an error naming it.

What maps to what (docs/compressai.md has the table):

- convolutions, GDN/IGDN ``beta`` and ``gamma``: copied. Both store the same
  reparametrisation ``sqrt(value + 2**-36)`` and bound it below the same way,
  so the conversion is the identity on the stored tensors;
- ``h_a``, ``h_s``: under the latent codec (``latent_codec.``) of the same
  architecture (mbt2018-mean: the mean-scale hyperprior; bmshj2018-hyperprior:
  the scale hyperprior, means 0). For mbt2018-mean, CompressAI splits the
  output of ``h_s``'s last convolution as (scales, means), trellic as (means,
  scales): its two output halves swap;
- ``entropy_bottleneck.{matrices,biases,factors}.i`` and ``quantiles``: the
  same density network (trellic's FactorizedPrior with CompressAI's filters
  (3, 3, 3, 3)); the old names ``_matrices.0`` (published zoo checkpoints) and
  ``_matrix0`` (and their biases, factors) are read;
- CompressAI's own coding tables (``_offset``, ``_quantized_cdf``,
  ``_cdf_length``, ``scale_table``) are derived data: ignored, whether present
  or not. trellic builds its own tables (``update()``) for USQ and for TCQ at
  the chosen delta.
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from trellic.entropy.factorized import LIKELIHOOD_BOUND, TAIL_MASS
from trellic.entropy.gaussian import SCALE_MIN
from trellic.errors import TrellicError
from trellic.models import CodecModel, ModelConfig
from trellic.models.config import MAX_CHANNELS
from trellic.models.gdn import BETA_MIN, PEDESTAL
from trellic.models.model import LATENT_PREFIX
from trellic.zoo import sha256_of

ARCHITECTURES = ("mbt2018-mean", "bmshj2018-hyperprior")
WRAPPERS = ("state_dict", "model")
PREFIX = "module."
TRANSFORMS = ("g_a.", "g_s.")  # the model's; every other tensor belongs to its latent codec
PRIOR_FILTERS = (3, 3, 3, 3)  # CompressAI's EntropyBottleneck default, used by both models
DERIVED = (
    "entropy_bottleneck._offset",
    "entropy_bottleneck._quantized_cdf",
    "entropy_bottleneck._cdf_length",
    "gaussian_conditional._offset",
    "gaussian_conditional._quantized_cdf",
    "gaussian_conditional._cdf_length",
    "gaussian_conditional.scale_table",
)
_OLD_PRIOR_KEY = re.compile(
    r"^entropy_bottleneck\._(matrix|bias|factor|matrices|biases|factors)\.?(\d+)$"
)
_OLD_PRIOR_NAMES = {"matrix": "matrices", "bias": "biases", "factor": "factors"}
_TARGET = math.log(2 / TAIL_MASS - 1)


@dataclass
class Checkpoint:
    """A CompressAI state_dict as read: tensors by CompressAI's key, and how they were stored."""

    state: dict[str, Tensor]
    wrapper: str | None  # "state_dict", "model", or None for a bare state_dict
    prefix: str  # "module." or ""
    sha256: str


def read_checkpoint(path: Path) -> Checkpoint:
    """Load a ``.pth.tar`` without unpickling objects; unwrap it and strip ``module.``."""
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
    prefixed = [key.startswith(PREFIX) for key in state]
    prefix = PREFIX if prefixed and all(prefixed) else ""
    state = {_new_prior_key(key[len(prefix) :]): value for key, value in state.items()}
    return Checkpoint(state, wrapper, prefix, sha256_of(path))


def _new_prior_key(key: str) -> str:
    """Today's name of a prior parameter named the old ways: ``_matrices.0`` (CompressAI's
    published zoo checkpoints) or ``_matrix0`` (CompressAI < 1.1)."""
    match = _OLD_PRIOR_KEY.match(key)
    if match is None:
        return key
    return f"entropy_bottleneck.{_OLD_PRIOR_NAMES.get(match[1], match[1])}.{match[2]}"


# -- the architectures, as CompressAI 1.2.8 builds them ------------------------------------
def _conv(name: str, cin: int, cout: int, kernel: int = 5) -> dict[str, tuple]:
    return {f"{name}.weight": (cout, cin, kernel, kernel), f"{name}.bias": (cout,)}


def _deconv(name: str, cin: int, cout: int, kernel: int = 5) -> dict[str, tuple]:
    return {f"{name}.weight": (cin, cout, kernel, kernel), f"{name}.bias": (cout,)}


def _gdn(name: str, channels: int) -> dict[str, tuple]:
    shapes = {f"{name}.beta": (channels,), f"{name}.gamma": (channels, channels)}
    for part in ("beta_reparam", "gamma_reparam"):
        shapes[f"{name}.{part}.pedestal"] = (1,)
        shapes[f"{name}.{part}.lower_bound.bound"] = (1,)
    return shapes


def expected_shapes(arch: str, N: int, M: int) -> dict[str, tuple]:
    """Every key of the architecture's CompressAI state_dict (DERIVED aside) and its shape."""
    shapes = {}
    for i, (cin, cout) in enumerate(((3, N), (N, N), (N, N), (N, M))):
        shapes.update(_conv(f"g_a.{2 * i}", cin, cout))
        if i < 3:
            shapes.update(_gdn(f"g_a.{2 * i + 1}", N))
    for i, (cin, cout) in enumerate(((M, N), (N, N), (N, N), (N, 3))):
        shapes.update(_deconv(f"g_s.{2 * i}", cin, cout))
        if i < 3:
            shapes.update(_gdn(f"g_s.{2 * i + 1}", N))
    shapes.update({**_conv("h_a.0", M, N, 3), **_conv("h_a.2", N, N), **_conv("h_a.4", N, N)})
    if arch == "mbt2018-mean":
        hidden = M * 3 // 2
        shapes.update({**_deconv("h_s.0", N, M), **_deconv("h_s.2", M, hidden)})
        shapes.update(_conv("h_s.4", hidden, 2 * M, 3))
    else:
        shapes.update({**_deconv("h_s.0", N, N), **_deconv("h_s.2", N, N)})
        shapes.update(_conv("h_s.4", N, M, 3))
    widths = (1, *PRIOR_FILTERS, 1)
    for i in range(len(widths) - 1):
        shapes[f"entropy_bottleneck.matrices.{i}"] = (N, widths[i + 1], widths[i])
        shapes[f"entropy_bottleneck.biases.{i}"] = (N, widths[i + 1], 1)
        if i < len(PRIOR_FILTERS):
            shapes[f"entropy_bottleneck.factors.{i}"] = (N, widths[i + 1], 1)
    shapes["entropy_bottleneck.quantiles"] = (N, 1, 3)
    shapes["entropy_bottleneck.target"] = (3,)
    for name in ("entropy_bottleneck", "gaussian_conditional"):
        shapes[f"{name}.likelihood_lower_bound.bound"] = (1,)
    shapes["gaussian_conditional.lower_bound_scale.bound"] = (1,)
    shapes["gaussian_conditional.scale_bound"] = (1,)
    return shapes


def constant(key: str) -> list[float] | None:
    """The value trellic's layers assume for a CompressAI constant buffer (None: a parameter)."""
    suffixes = {
        ".pedestal": [PEDESTAL],
        "beta_reparam.lower_bound.bound": [(BETA_MIN + PEDESTAL) ** 0.5],
        "gamma_reparam.lower_bound.bound": [PEDESTAL**0.5],
        "likelihood_lower_bound.bound": [LIKELIHOOD_BOUND],
        "lower_bound_scale.bound": [SCALE_MIN],
        "scale_bound": [SCALE_MIN],
        "entropy_bottleneck.target": [-_TARGET, 0.0, _TARGET],
    }
    return next((value for suffix, value in suffixes.items() if key.endswith(suffix)), None)


def check_state(state: dict[str, Tensor], arch: str) -> tuple[int, int]:
    """Check keys, shapes, values and constants against ``arch``; returns (N, M)."""
    if arch not in ARCHITECTURES:
        choices = ", ".join(ARCHITECTURES)
        raise TrellicError(f"unknown architecture {arch!r} (choose from {choices})")
    for key in ("g_a.0.weight", "g_a.6.weight"):
        if key not in state:
            raise TrellicError(f"not a {arch} checkpoint: missing key {key}")
    N, M = (int(state[key].shape[0]) for key in ("g_a.0.weight", "g_a.6.weight"))
    if not (1 <= N <= MAX_CHANNELS and 1 <= M <= MAX_CHANNELS):
        raise TrellicError(f"N={N}, M={M} outside 1..{MAX_CHANNELS}")
    shapes = expected_shapes(arch, N, M)
    other = [a for a in ARCHITECTURES if a != arch and _fits(state, expected_shapes(a, N, M))]
    hint = f" (it is a {other[0]} checkpoint)" if other else ""
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes) - set(DERIVED))
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise TrellicError(f"not a {arch} checkpoint: {label} key {keys[0]}{more}{hint}")
    for key, shape in shapes.items():
        tensor = state[key]
        if tuple(tensor.shape) != shape:
            raise TrellicError(
                f"not a {arch} checkpoint with N={N}, M={M}: {key} has shape "
                f"{list(tensor.shape)}, expected {list(shape)}{hint}"
            )
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise TrellicError(f"{key} is not a finite floating-point tensor ({tensor.dtype})")
        wanted = constant(key)
        if wanted is not None and not torch.allclose(
            tensor.double(), torch.tensor(wanted, dtype=torch.float64), rtol=1e-6, atol=0.0
        ):
            found, needed = (", ".join(f"{v:.6g}" for v in x) for x in (tensor.tolist(), wanted))
            raise TrellicError(
                f"{key} = [{found}] but trellic's layer needs [{needed}]: "
                "a model built with other settings cannot be converted exactly"
            )
    return N, M


def _fits(state: dict[str, Tensor], shapes: dict[str, tuple]) -> bool:
    keys = set(state) - set(DERIVED)
    return keys == set(shapes) and all(tuple(state[k].shape) == s for k, s in shapes.items())


def to_trellic_state(state: dict[str, Tensor], arch: str, M: int) -> dict[str, Tensor]:
    """CompressAI's parameters under trellic's names (constants and derived tables dropped):
    g_a, g_s as they are, the entropy model's under ``latent_codec.``."""
    converted = {
        key if key.startswith(TRANSFORMS) else LATENT_PREFIX + key: value.float().clone()
        for key, value in state.items()
        if key not in DERIVED and constant(key) is None
    }
    if arch == "mbt2018-mean":  # h_s's output halves: (scales, means) -> (means, scales)
        for name in ("h_s.4.weight", "h_s.4.bias"):
            tensor = converted[LATENT_PREFIX + name]
            converted[LATENT_PREFIX + name] = torch.cat((tensor[M:], tensor[:M]))
    return converted


def import_checkpoint(
    path: Path, arch: str, tcq_delta: float = 0.6, lmbda: float | None = None
) -> tuple[CodecModel, dict]:
    """A CompressAI checkpoint -> (trellic model with its coding tables built, info to save).

    Args:
        tcq_delta: the TCQ step the model's TCQ tables are built for.
        lmbda: the rate-distortion weight the checkpoint was trained with, if
            known (CompressAI does not store it); retraining and refinement use it.
    """
    checkpoint = read_checkpoint(path)
    N, M = check_state(checkpoint.state, arch)
    try:  # the config bounds the steps: no table is sized by an unchecked value
        config = ModelConfig(architecture=arch, N=N, M=M, tcq_delta=tcq_delta,
                             prior_filters=PRIOR_FILTERS)
    except ValueError as error:
        raise TrellicError(f"cannot import {path}: {error}") from None
    model = CodecModel(config)
    converted = to_trellic_state(checkpoint.state, arch, M)
    converted.update({k: v for k, v in model.state_dict().items() if k.endswith("scale_table")})
    model.load_state_dict(converted, strict=True)
    model.eval()
    model.update()
    info = {
        "source": {
            "format": "compressai",
            "checkpoint": Path(path).name,
            "sha256": checkpoint.sha256,
            "wrapper": checkpoint.wrapper,
            "prefix": checkpoint.prefix,
            "ignored": sorted(set(DERIVED) & set(checkpoint.state)),
        },
    }
    if lmbda is not None:
        info["training"] = {"lmbda": lmbda}
    return model, info
