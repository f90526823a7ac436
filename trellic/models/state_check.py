"""Why a state dict does not load into a model: missing, unexpected, mis-shaped or mis-typed
tensors, named in one short line (weights files, checkpoints, warm starts)."""

from __future__ import annotations

import torch


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
        problems.append("missing " + some("key", missing))
    if unexpected:
        hint = ""
        if all(k.startswith("module.") for k in unexpected):
            hint = " (saved from a DataParallel wrapper? strip the 'module.' prefix)"
        problems.append("unexpected " + some("key", unexpected) + hint)
    if shapes:
        problems.append("wrong shape of " + some("key", shapes))
    return "; ".join(problems) or None


def dtype_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """Tensors stored in a dtype the model's would silently be cast from, named; else None.

    Float tensors may be stored as float32 or float16 (shipped files); anything
    else must have the model's own dtype (an int64 weight is truncated garbage).
    """
    expected = model.state_dict()
    wrong = [
        f"{k} is {v.dtype}, expected "
        + ("float16/float32" if expected[k].is_floating_point() else str(expected[k].dtype))
        for k, v in state.items()
        if k in expected and not (
            v.dtype == expected[k].dtype
            or (expected[k].dtype == torch.float32 and v.dtype == torch.float16))
    ]
    return ("wrong dtype: " + some("key", wrong)) if wrong else None


def some(noun: str, items: list[str], shown: int = 3) -> str:
    """'key a' / 'keys a, b, c (+4 more)': a list named in one short line."""
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return f"{noun}{'s' if len(items) > 1 else ''} {', '.join(items[:shown])}{more}"
