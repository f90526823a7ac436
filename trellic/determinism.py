"""Coding that never depends on the thread count."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_threaded():
    """Run a block with one intra-op thread so its floats never depend on the thread count.

    oneDNN convolutions block their work by thread count, so their last bits
    differ between 1 and 2 threads. compress() and decompress() therefore run
    single-threaded: the bytes and the decoded image never depend on torch's
    thread setting (measured: g_a 0.41 s, g_s 0.48 s at 768x512, N=128/M=192).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
