"""Float work that must not depend on the thread count (encoder-side latent refinement)."""

from __future__ import annotations

import contextlib

import torch


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
