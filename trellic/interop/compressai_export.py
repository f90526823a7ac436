"""A trellic model of a CompressAI architecture -> the state_dict CompressAI's model loads.

The inverse of the import (:mod:`trellic.interop.compressai`), through the same
table (:mod:`trellic.interop.compressai_layouts`): every key and shape of the
architecture's CompressAI state_dict after ``update()``, so that
``net.load_state_dict(state, strict=True)`` accepts it in CompressAI 1.2.8:

- parameters: renamed back, float32; mbt2018-mean's h_s output halves swapped
  back to (scales, means); a masked convolution's weight is exported as
  ``weight * mask`` (what CompressAI's own forward leaves in it: the entries
  the mask hides never act, so an import -> export round trip is the identity
  on every parameter except those entries, which become 0);
- masks, GDN reparametrisation buffers, likelihood and scale bounds, the
  prior's ``target``: CompressAI's values (import checked they are trellic's);
- coding tables (``_offset``, ``_quantized_cdf``, ``_cdf_length``,
  ``scale_table``): computed from the exported parameters as CompressAI's
  ``update()`` computes them (:mod:`trellic.interop.compressai_tables`).

The model may be an imported one or trellic's retraining of it: retrained
weights go back unchanged. CompressAI codes y by rounding (USQ), so a model
retrained for TCQ is exported with a warning (:func:`tcq_retrained`).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import Tensor

from trellic.errors import TrellicError
from trellic.interop.compressai_layouts import (
    PRIOR_FILTERS,
    compressai_keys,
    layout,
    swap_halves,
)
from trellic.interop.compressai_tables import bottleneck_tables, gaussian_tables
from trellic.io import write_atomic
from trellic.models import CodecModel

CHECKPOINT_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar")


@torch.no_grad()
def export_state(model: CodecModel) -> dict[str, Tensor]:
    """The CompressAI state_dict of ``model`` (its architecture's keys, shapes, dtypes).

    Raises:
        TrellicError: the architecture has no CompressAI counterpart, or the model's prior
            is not CompressAI's (trellic's own models: widths (3, 3, 3)).
    """
    arch = model.config.architecture
    spec = layout(arch)
    if model.config.prior_filters != PRIOR_FILTERS:  # CompressAI's model would not load it
        raise TrellicError(
            f"the model's factorized prior has widths {list(model.config.prior_filters)}, "
            f"CompressAI's {arch} {list(PRIOR_FILTERS)}: only a model imported from "
            "CompressAI (or retrained from one) exports"
        )
    plan = compressai_keys(model, arch)
    ours = model.state_dict()
    state: dict[str, Tensor] = {}
    for key, entry in plan.keys.items():
        if entry.kind in ("param", "mask"):
            tensor = ours[entry.trellic].detach().float()
            if entry.mask is not None:
                tensor = tensor * ours[entry.mask]
            if key in spec.swapped:
                tensor = swap_halves(tensor)
            state[key] = tensor.contiguous().clone()
        elif entry.kind == "constant":
            state[key] = torch.tensor(entry.value, dtype=torch.float32)
    for path in plan.bottlenecks:
        layers = sum(1 for key in plan.keys if key.startswith(f"{path}.matrices."))
        tables = bottleneck_tables(
            state[f"{path}.quantiles"],
            [state[f"{path}.matrices.{i}"] for i in range(layers)],
            [state[f"{path}.biases.{i}"] for i in range(layers)],
            [state[f"{path}.factors.{i}"] for i in range(layers - 1)],
        )
        state.update({f"{path}.{name}": table for name, table in tables.items()})
    for path in plan.gaussians:
        state.update({f"{path}.{name}": table for name, table in gaussian_tables().items()})
    missing = sorted(set(plan.keys) - set(state))
    if missing:  # a table the layout names but nothing computed: a bug in the layout
        raise TrellicError(f"{arch}: no value for CompressAI's {missing[0]}")
    return state


def tcq_retrained(info: dict) -> str | None:
    """The TCQ quantizer a model was trained or retrained for (from its weights' info), if any."""
    for section in ("retrain", "training"):
        quantizer = (info.get(section) or {}).get("quantizer")
        if isinstance(quantizer, str) and quantizer.startswith("tcq"):
            return quantizer
    return None


def check_checkpoint_name(path: Path) -> None:
    """The output must be named as CompressAI's checkpoints are (``.pth.tar``, ``.pth`` ...)."""
    if not str(path).endswith(CHECKPOINT_SUFFIXES):
        raise TrellicError(f"output must end in {', '.join(CHECKPOINT_SUFFIXES)} "
                           f"(a CompressAI checkpoint): {path}")


def write_checkpoint(state: dict[str, Tensor], path: Path, force: bool = False) -> None:
    """``{"state_dict": state}`` with torch.save, written atomically (CompressAI's layout:
    its ``eval_model -p`` and ``load_state_dict`` read the ``state_dict`` entry)."""
    buffer = io.BytesIO()
    torch.save({"state_dict": state}, buffer)
    write_atomic(path, buffer.getvalue(), force)
