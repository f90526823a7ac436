"""Where the networks run: the ``--device`` option every network-running command takes.

    --device auto   this rank's GPU (LOCAL_RANK) when CUDA is available, else the CPU
    --device cpu    the CPU
    --device cuda   the GPU; refused (one line, before any work) where CUDA is not available

Only the networks follow the device (g_a, g_s, the float h_s, the training passes).
The entropy coder, the integer coding tables and the exact integer entropy-parameter
path (``trellic.latent.integer_net``) always run on the CPU, so a file never depends on
the device that wrote it or reads it (docs/codec.md, "Devices").
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from trellic.errors import TrellicError

if TYPE_CHECKING:  # torch is imported when a device is resolved: the CLI starts without it
    import torch

DEVICES = ("auto", "cpu", "cuda")
DEVICE_HELP = ("where the networks run: auto (the GPU if CUDA is available, else the CPU), "
               "cpu or cuda; the entropy coding stays on the CPU (default: auto)")


def add_device_option(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    """The ``--device {auto,cpu,cuda}`` option (default auto)."""
    parser.add_argument("--device", choices=DEVICES, default="auto", help=help)


def resolve_device(requested: str) -> torch.device:
    """"auto": this rank's GPU (LOCAL_RANK) when CUDA is available, else the CPU.

    Raises:
        TrellicError: an unknown name, or "cuda" where CUDA is not available.
    """
    import torch

    if requested not in DEVICES:
        raise TrellicError(f"unknown device {requested!r}: expected one of {', '.join(DEVICES)}")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrellicError("--device cuda requested but CUDA is not available")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
