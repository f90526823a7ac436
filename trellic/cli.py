"""The ``trellic`` command: one entry point, one subcommand per task.

Each subcommand lives in the module that owns its concept and registers itself
through ``register(subparsers)``; its handler takes the parsed arguments and
returns an exit code. ``main(argv)`` is callable in-process (tests do so).

Exit codes: 0 success; 1 a :class:`~trellic.errors.TrellicError` (bad input,
corrupt bitstream, missing file, bad value), printed as one line on stderr;
2 a command-line usage error (argparse).

Every subcommand's ``--help`` shows each option's default (``show_defaults``),
so the help text stays the documentation without repeating values by hand.
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
    for subparser in subparsers.choices.values():
        show_defaults(subparser)
    return parser


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append "(default: X)" to the help of each option that has a default worth showing.

    Skipped: flags (their default is "off"), options without a default (None),
    and help texts that already say what the default is.
    """
    for action in parser._actions:
        if (
            not action.option_strings
            or action.default is None
            or action.default is argparse.SUPPRESS
            or action.nargs == 0
            or "default" in (action.help or "")
        ):
            continue
        action.help = f"{action.help} (default: %(default)s)" if action.help else (
            "default: %(default)s"
        )


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
