"""Float determinism: one-thread blocks, and a fingerprint of this machine's float kernels."""

from __future__ import annotations

import contextlib
import hashlib

import torch
import torch.nn.functional as F


@contextlib.contextmanager
def single_threaded():
    """Run a block with one intra-op thread so its floats never depend on the thread count.

    oneDNN convolutions block their work by thread count, so their last bits
    differ between 1 and 2 threads. Coding itself no longer needs this: the
    entropy parameters are computed in integers (``trellic.latent.integer_net``),
    so g_a and g_s use every core and any file decodes to the same indices on
    any thread count; refinement keeps one thread so its long optimisation is
    repeatable.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def kernel_fingerprint() -> str:
    """sha256 of a few float32 convolutions (g_a / g_s shapes), one thread, fixed inputs.

    Machines whose convolution kernels round alike (same CPU instruction set,
    same torch build) give the same fingerprint: there, float results recorded
    on another machine (golden files, conformance fixtures) must repeat bit for
    bit; elsewhere they may differ in their last bits.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 64, 64, generator=generator)
    down = torch.randn(64, 3, 5, 5, generator=generator) * 0.1
    mid = torch.randn(64, 64, 5, 5, generator=generator) * 0.03
    up = torch.randn(64, 3, 5, 5, generator=generator) * 0.03
    with single_threaded(), torch.no_grad():
        y = F.conv2d(F.conv2d(x, down, stride=2, padding=2), mid, stride=2, padding=2)
        x_hat = F.conv_transpose2d(y, up, stride=2, padding=2, output_padding=1)
    return hashlib.sha256(y.numpy().tobytes() + x_hat.numpy().tobytes()).hexdigest()
