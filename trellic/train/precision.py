"""Mixed precision for training: the transforms in bfloat16, the entropy models in float32.

With ``precision="bf16"`` the transforms (g_a, g_s and the latent codec's,
h_a and h_s for the hyperprior: the convolutions, nearly all the time of a
step) run under ``torch.autocast`` with
bfloat16 and hand float32 outputs on. The factorized prior, the quantizer
proxy and the rate stay float32: their likelihoods are differences of erfc or
sigmoid values, which bfloat16's 8-bit mantissa would blur. Parameters,
gradients and optimizer states stay float32. On CPUs with AVX512-BF16 this
more than halves the step time (see docs/training.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from trellic.models import CodecModel

PRECISIONS = ("fp32", "bf16")


@contextlib.contextmanager
def transforms_in_bf16(model: CodecModel, device_type: str) -> Iterator[None]:
    """While open, the transforms of ``model`` compute in bfloat16 (forward hooks)."""
    active: list[torch.autocast] = []

    def enter(module, args):
        context = torch.autocast(device_type, dtype=torch.bfloat16)
        context.__enter__()
        active.append(context)

    def leave(module, args, output):
        active.pop().__exit__(None, None, None)
        return output.float()

    handles = []
    for transform in model.transforms():
        handles += [transform.register_forward_pre_hook(enter),
                    transform.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while active:  # a forward that raised inside a transform
            active.pop().__exit__(None, None, None)


def precision_context(model: CodecModel, precision: str,
                      device_type: str) -> contextlib.AbstractContextManager:
    """The context a training run with ``precision`` computes in."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return transforms_in_bf16(model, device_type)
    raise ValueError(f"unknown precision {precision!r}: expected one of {PRECISIONS}")
