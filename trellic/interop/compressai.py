"""CompressAI checkpoints as trellic models: the ten architectures of CompressAI 1.2.8's zoo.

Typical workflow::

    model, info = import_checkpoint("mbt2018-q3.pth.tar")   # architecture inferred
    save_model(model, Path("mbt2018-q3.safetensors"), info)  # --model PATH everywhere

Reading the file (wrappers, prefixes, old names, float16) is
:mod:`trellic.interop.compressai_checkpoint`; what maps to what is one
:class:`~trellic.interop.compressai_layouts.Layout` per architecture. The
import, for an architecture given or inferred (:func:`identify`):

1. N, M (Cheng 2020: M = N; ELIC: its groups) from the layout's keys, the
   prior's widths from the entropy bottleneck's matrices;
2. trellic's model built at those sizes and mapped back to CompressAI's keys
   and shapes (:func:`~trellic.interop.compressai_layouts.compressai_keys`):
   a missing or unexpected key, a wrong shape, a non-finite or non-float
   tensor, a constant other than trellic's layer assumes, a mask other than
   trellic's is an error naming it (and, where the keys tell, the
   architecture the checkpoint is);
3. parameters copied as float32 (mbt2018-mean's h_s halves swapped), masked
   convolutions' weights as stored (trellic masks them in forward, as
   CompressAI does), CompressAI's tables ignored; trellic builds its own.

Constants are compared at the stored precision: a float16 checkpoint holds
GDN's pedestal 2**-36 and the likelihood bound 1e-9 as 0 (both are below
float16's smallest subnormal, 2**-24), and trellic's values rounded to
float16 are 0 too, so it is recognised as the same layer. trellic's layers
hold these constants themselves; the stored values are only checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from trellic.errors import TrellicError
from trellic.interop.compressai_checkpoint import Checkpoint, read_checkpoint
from trellic.interop.compressai_layouts import (
    LAYOUTS,
    Keys,
    Layout,
    compressai_keys,
    swap_halves,
)
from trellic.models import CodecModel, ModelConfig
from trellic.models.architectures import ARCHITECTURES

__all__ = ["Checkpoint", "identify", "import_checkpoint", "read_checkpoint"]


@dataclass
class Plan:
    """A checkpoint's architecture at its sizes: trellic's model and CompressAI's keys."""

    arch: str
    config: ModelConfig
    model: CodecModel
    keys: Keys

    @property
    def sizes(self) -> str:
        groups = f", groups={list(self.config.groups)}" if self.config.groups else ""
        return f"N={self.config.N}, M={self.config.M}{groups}"


def registered(arch: str) -> bool:
    """Whether this trellic can build ``arch`` (its registry has it)."""
    return arch in ARCHITECTURES


def plan(state: dict[str, Tensor], arch: str, tcq_delta: float = 0.6) -> Plan:
    """Read ``arch``'s sizes from ``state``, build trellic's model, derive CompressAI's keys.

    Raises:
        TrellicError: a key the sizes are read from is missing, or the sizes are invalid.
    """
    spec = LAYOUTS[arch]
    sizes = {}
    for field, key, dim in spec.channels:
        _need(state, key, arch)
        sizes[field] = int(state[key].shape[dim])
    layers = 0
    while f"{spec.prior}.matrices.{layers}" in state:
        layers += 1
    if layers < 2:  # a density network has an input and an output layer at least
        _need(state, f"{spec.prior}.matrices.{layers}", arch)
    filters = tuple(int(state[f"{spec.prior}.matrices.{i}"].shape[1]) for i in range(layers - 1))
    extra = {"groups": _groups(state, spec, arch)} if spec.groups else {}
    try:  # the config bounds every size: no model is sized by an unchecked value
        config = ModelConfig(architecture=arch, tcq_delta=tcq_delta, prior_filters=filters,
                             **sizes, **extra)
        model = CodecModel(config)
    except ValueError as error:
        raise TrellicError(f"not a {arch} checkpoint trellic can build: {error}") from None
    return Plan(arch, config, model, compressai_keys(model, arch))


def _need(state: dict, key: str, arch: str) -> None:
    if key not in state or state[key].dim() < 2:
        raise TrellicError(f"not a {arch} checkpoint: missing key {key}")


def _groups(state: dict, spec: Layout, arch: str) -> tuple[int, ...]:
    """ELIC's channel groups: group k's width from the layout's per-group key."""
    widths = []
    while spec.groups.replace("{k}", str(len(widths))) in state:
        widths.append(int(state[spec.groups.replace("{k}", str(len(widths)))].shape[1]))
    if not widths:
        _need(state, spec.groups.replace("{k}", "0"), arch)
    return tuple(widths)


# -- which architecture a checkpoint is ---------------------------------------------------
def identify(state: dict[str, Tensor]) -> list[str]:
    """The architectures ``state`` is a checkpoint of: those this trellic builds whose keys
    and shapes it matches exactly, else those whose keys mark it (:attr:`Layout.marks`)
    and that this trellic cannot build; empty if neither."""
    marked = [arch for arch, spec in LAYOUTS.items() if spec.marked(state)]
    fits = [arch for arch in marked if registered(arch) and _fits(state, arch)]
    return fits or [arch for arch in marked if not registered(arch)]


def _fits(state: dict[str, Tensor], arch: str) -> bool:
    try:
        keys = plan(state, arch).keys.keys
    except TrellicError:
        return False
    expected = {k for k, entry in keys.items() if entry.kind != "table"}
    return expected <= set(state) <= set(keys) and all(
        tuple(state[k].shape) == keys[k].shape for k in expected)


def hint(state: dict[str, Tensor], arch: str | None = None) -> str:
    """`` (it is a X checkpoint)`` where the keys say it is another architecture, else ''."""
    others = [a for a in identify(state) if a != arch]
    if not others:
        return ""
    missing = [a for a in others if not registered(a)]
    tail = (f"; this trellic's registry has no {' or '.join(missing)}" if missing else "")
    return f" (it is a {' or '.join(others)} checkpoint{tail})"


def choose_architecture(state: dict[str, Tensor], arch: str | None) -> str:
    """``arch`` checked, or the one the keys identify.

    Raises:
        TrellicError: an architecture CompressAI lacks, one this trellic cannot build, or
            keys that identify none (or several).
    """
    if arch is not None:
        if arch not in LAYOUTS:
            raise TrellicError(f"unknown architecture {arch!r} (CompressAI's: "
                               f"{', '.join(LAYOUTS)})")
        if not registered(arch):
            raise TrellicError(f"{arch} is not in this trellic's registry: it cannot be "
                               "imported yet")
        return arch
    found = identify(state)
    buildable = [a for a in found if registered(a)]
    if len(buildable) == 1:
        return buildable[0]
    if found and not buildable:
        raise TrellicError(f"a {' or '.join(found)} checkpoint: not in this trellic's "
                           "registry, so it cannot be imported yet")
    if len(buildable) > 1:
        raise TrellicError(f"the checkpoint fits {' and '.join(buildable)}: give --arch")
    marked = [a for a, spec in LAYOUTS.items() if spec.marked(state)]
    if len(marked) == 1:
        return marked[0]  # checked next: the error names what does not fit
    if marked:
        raise TrellicError(f"the keys are those of {' or '.join(marked)} but the checkpoint "
                           "fits neither: give --arch to see what does not fit")
    raise TrellicError("not a checkpoint of a CompressAI architecture trellic reads "
                       f"({', '.join(LAYOUTS)})")


# -- checking and converting ---------------------------------------------------------------
def check_state(state: dict[str, Tensor], found: Plan) -> None:
    """Keys, shapes, values, constants and masks of ``state`` against ``found``'s.

    Raises:
        TrellicError: the first fault, named (key, shape, value), in one line.
    """
    arch, keys = found.arch, found.keys.keys
    expected = [k for k, entry in keys.items() if entry.kind != "table"]  # the model's order
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(keys))
    for label, names in (("missing", missing), ("unexpected", unexpected)):
        if names:
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise TrellicError(f"not a {arch} checkpoint: {label} key {names[0]}{more}"
                               f"{hint(state, arch)}")
    for key in expected:
        if tuple(state[key].shape) != keys[key].shape:
            raise TrellicError(
                f"not a {arch} checkpoint with {found.sizes}: {key} has shape "
                f"{list(state[key].shape)}, expected {list(keys[key].shape)}{hint(state, arch)}"
            )
    ours = found.model.state_dict()
    for key in expected:
        tensor, entry = state[key], keys[key]
        if not tensor.is_floating_point() or not torch.isfinite(tensor).all():
            raise TrellicError(f"{key} is not a finite floating-point tensor ({tensor.dtype})")
        if entry.kind == "constant" and not same_constant(tensor, entry.value):
            found_values, needed = (", ".join(f"{v:.6g}" for v in values)
                                    for values in (tensor.double().tolist(), entry.value))
            raise TrellicError(
                f"{key} = [{found_values}] but trellic's layer needs [{needed}]: "
                "a model built with other settings cannot be converted exactly"
            )
        if entry.kind == "mask" and not torch.equal(tensor.float(), ours[entry.trellic]):
            raise TrellicError(f"{key} is not the mask of trellic's {entry.trellic}: a "
                               "context model of another shape cannot be converted")


def same_constant(tensor: Tensor, value: tuple[float, ...]) -> bool:
    """Whether a stored constant is ``value`` at the tensor's own precision: trellic's value
    rounded to the stored dtype, within two units of its last place (float16 stores 2**-36
    and 1e-9 as 0, and so does this rounding)."""
    # float16's smallest subnormal is 2**-24: GDN's pedestal 2**-36 and the likelihood bound
    # 1e-9 are stored as 0 by a .half() model. Rounded to float16, trellic's values are 0 as
    # well, so the layer is accepted as the same one (trellic's layers hold the constants).
    wanted = torch.tensor(value, dtype=torch.float64).to(tensor.dtype).double()
    eps = torch.finfo(tensor.dtype).eps
    return torch.allclose(tensor.double(), wanted, rtol=2 * eps, atol=0.0)


def to_trellic_state(state: dict[str, Tensor], found: Plan) -> dict[str, Tensor]:
    """CompressAI's parameters under trellic's names, float32; masks and trellic's own
    buffers (``scale_table``) from the built model."""
    spec = LAYOUTS[found.arch]
    converted = dict(found.model.state_dict())
    for key, entry in found.keys.keys.items():
        if entry.kind == "param":
            tensor = state[key].detach().float().clone()
            converted[entry.trellic] = swap_halves(tensor) if key in spec.swapped else tensor
    return converted


def import_checkpoint(
    path: Path, arch: str | None = None, tcq_delta: float = 0.6, lmbda: float | None = None
) -> tuple[CodecModel, dict]:
    """A CompressAI checkpoint -> (trellic model with its coding tables built, info to save).

    Args:
        arch: CompressAI's name of the architecture; None: inferred from the keys.
        tcq_delta: the TCQ step the model's TCQ tables are built for.
        lmbda: the rate-distortion weight the checkpoint was trained with, if
            known (CompressAI does not store it); retraining and refinement use it.

    Raises:
        TrellicError: an unreadable file or a checkpoint that does not fit (one line).
    """
    checkpoint = read_checkpoint(path)
    state = checkpoint.state
    chosen = choose_architecture(state, arch)
    try:
        found = plan(state, chosen, tcq_delta)
    except TrellicError as error:
        raise TrellicError(f"{error}{hint(state, chosen)}") from None
    check_state(state, found)
    model = found.model
    model.load_state_dict(to_trellic_state(state, found), strict=True)
    model.eval()
    model.update()
    tables = sorted(k for k, entry in found.keys.keys.items()
                    if entry.kind == "table" and k in state)
    info = {
        "source": {
            "format": "compressai",
            "architecture": chosen,
            "inferred": arch is None,
            "checkpoint": Path(path).name,
            "sha256": checkpoint.sha256,
            "wrapper": checkpoint.wrapper,
            "prefix": checkpoint.prefix,
            "dtype": checkpoint.dtype,
            "ignored": tables,
        },
    }
    if lmbda is not None:
        info["training"] = {"lmbda": lmbda}
    return model, info
