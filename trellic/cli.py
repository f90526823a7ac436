"""The ``trellic`` command: one entry point, one subcommand per task.

Each subcommand lives in the module that owns its concept and registers itself
through ``register(subparsers)``; its handler takes the parsed arguments and
returns an exit code. ``main(argv)`` is callable in-process (tests do so).

The parser is built lazily: :data:`COMMANDS` names each subcommand's module and
one-line help without importing it, so ``trellic --version``, ``trellic --help``
and a subcommand whose module is light (``info``) start without torch; only the
module of the command being run is imported (``build_parser(command)``).

Exit codes: 0 success; 1 a :class:`~trellic.errors.TrellicError` (bad input,
corrupt bitstream, missing file, bad value), printed as one line on stderr;
2 a command-line usage error (argparse); 141 stdout closed early (a broken pipe,
as in ``trellic models | head -3``: quiet, like coreutils); 130 interrupted.

Every subcommand's ``--help`` shows each option's default (``show_defaults``),
so the help text stays the documentation without repeating values by hand.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import sys

from trellic import __version__
from trellic.errors import TrellicError

# Subcommand -> (the module whose register() adds it, its one-line help), in help order.
# tests/test_cli_batch.py checks this table against what the modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "compress": ("trellic.commands", "code images into .trl files"),
    "decompress": ("trellic.commands", "decode .trl files into images (PNG, WebP, JPEG)"),
    "info": ("trellic.catalog", "print the header of .trl files"),
    "models": ("trellic.catalog", "list the models of the weights folder"),
    "train": ("trellic.train.commands", "train a model end to end"),
    "eval": ("trellic.eval.commands", "evaluate the learned codec on a folder"),
    "baseline": ("trellic.eval.commands", "quality sweep of a classical codec"),
    "bdrate": ("trellic.eval.commands", "BD-rate / BD-PSNR of B against A"),
    "plot": ("trellic.eval.commands", "RD curves (PSNR, MS-SSIM) to a PNG, SVG or PDF"),
    "report": ("trellic.eval.commands", "static HTML report: plots, BD, crops"),
    "convert-results": ("trellic.eval.commands",
                        "a results JSON in trellic's or CompressAI's layout"),
    "retrain": ("trellic.retrain.commands",
                "retrain decoder / hyperprior on truly quantized latents"),
    "import-compressai": ("trellic.interop.commands",
                          "convert a CompressAI checkpoint into a trellic weights file"),
    "export-compressai": ("trellic.interop.commands", "write a trellic model of a CompressAI "
                          "architecture as a CompressAI checkpoint"),
    "tune": ("trellic.tune", "measure a model's operating points on your photos"),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))
BROKEN_PIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for `seq 1 1e9 | head -1`


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser (every module imported), or only ``command``'s module imported.

    With ``command`` given, the other subcommands are placeholders that carry their
    help line only: enough for ``trellic --help`` and for argparse's choice check.
    ``command`` may be ``""``: no module is imported at all (``--version``, ``--help``).
    """
    parser = argparse.ArgumentParser(
        prog="trellic",
        description="Learned image codec with uniform and trellis-coded quantization.",
        epilog="`trellic COMMAND --help` lists a command's options with their defaults.",
    )
    parser.add_argument("--version", action="version", version=f"trellic {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = COMMAND_MODULES if command is None else (
        (COMMANDS[command][0],) if command in COMMANDS else ()
    )
    placeholders = set()
    for module in COMMAND_MODULES:
        if module in wanted:
            importlib.import_module(module).register(subparsers)
            continue
        for name, (owner, help_text) in COMMANDS.items():
            if owner == module:
                subparsers.add_parser(name, help=help_text, add_help=False)
                placeholders.add(name)
    for name, subparser in subparsers.choices.items():
        if name not in placeholders:
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


def _command_of(argv: list[str]) -> str:
    """The subcommand named in argv ("" when none: only top-level options)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return ""


# A value argparse would take for an option: -inf, -nan, -1e-3 (its own rule admits
# only -5 and -.5). Attached to the option before it (``--lambda-t=-inf``), it reaches
# the option's type, which says why it is refused.
_NEGATIVE_VALUE = re.compile(r"-(inf|infinity|nan|(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)",
                             re.IGNORECASE)


def attach_negative_values(argv: list[str]) -> list[str]:
    """``--opt -inf`` -> ``--opt=-inf`` for numbers argparse would read as options."""
    out: list[str] = []
    for token in argv:
        previous = out[-1] if out else ""
        if (_NEGATIVE_VALUE.fullmatch(token) and previous.startswith("--")
                and "=" not in previous and previous != "--"):
            out[-1] = f"{previous}={token}"
        else:
            out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = attach_negative_values(sys.argv[1:] if argv is None else list(argv))
    try:
        parser = build_parser(_command_of(argv))
        args = parser.parse_args(argv)
        try:
            code = int(args.func(args) or 0)
        except TrellicError as error:
            print(f"trellic: error: {error}", file=sys.stderr)
            code = 1
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("trellic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE_EXIT


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


if __name__ == "__main__":
    sys.exit(main())
