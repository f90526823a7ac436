"""The ``trellic`` command: one entry point, one subcommand per task.

Each subcommand lives in the module that owns its concept and registers itself
through ``register(subparsers)``; its handler takes the parsed arguments and
returns an exit code. ``main(argv)`` is callable in-process (tests do so).

Exit codes: 0 success; 1 a :class:`~trellic.errors.TrellicError` (bad input,
corrupt bitstream, missing file, bad value), printed as one line on stderr;
2 a command-line usage error (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from trellic import __version__
from trellic.errors import TrellicError

COMMAND_MODULES = (
    "trellic.commands",
    "trellic.train.commands",
    "trellic.eval.commands",
    "trellic.retrain.commands",
    "trellic.interop.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trellic",
        description="Learned image codec with uniform and trellis-coded quantization.",
    )
    parser.add_argument("--version", action="version", version=f"trellic {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrellicError as error:
        print(f"trellic: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("trellic: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
