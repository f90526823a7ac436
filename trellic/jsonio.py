"""Parsing JSON that trellic did not write itself: one-line errors, never a traceback.

Every JSON document trellic reads (weights metadata ``config`` / ``info`` / ``base``,
the weights folder's ``manifest.json``, results files, checkpoint metadata) goes
through :func:`loads` or :func:`read`. Python's ``json`` recurses once per level of
nesting, so a document nested thousands of levels deep ends in a ``RecursionError``,
which is not a ``ValueError``; here nesting is bounded before parsing (cheaply:
strings are skipped with one regular expression, the brackets counted with numpy),
and every way the parse can fail becomes ``TrellicError("cannot read WHAT: ...")``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from trellic.errors import TrellicError

MAX_DEPTH = 64  # trellic's own documents nest at most a handful of levels
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)  # never fails: linear
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = np.zeros(256, dtype=np.int64)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings
    do not count; on malformed text an estimate, the parser reports the malformation)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    steps = _STEP[np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)]
    return int(np.cumsum(steps).max())


def loads(text: str | bytes, what: str, max_depth: int = MAX_DEPTH) -> object:
    """Parse a JSON document; ``what`` names it in the error (e.g. ``"weights X: metadata
    'info'"``, ``"results file R"``).

    Raises:
        TrellicError: ``cannot read WHAT: ...``: not UTF-8, not valid JSON (with line and
            column), or nested deeper than ``max_depth`` levels.
    """
    try:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8-sig")
        if not isinstance(text, str):
            raise TrellicError(f"cannot read {what}: expected JSON text, got "
                               f"{type(text).__name__}")
        opening = text.count("[") + text.count("{")  # an upper bound of the depth
        depth = nesting_depth(text) if opening > max_depth else opening
        if depth > max_depth:
            raise TrellicError(f"cannot read {what}: nested too deeply ({depth} levels; "
                               f"trellic reads at most {max_depth})")
        return json.loads(text)
    except TrellicError:
        raise
    except json.JSONDecodeError as error:
        raise TrellicError(f"cannot read {what}: not valid JSON ({error.msg}: line "
                           f"{error.lineno} column {error.colno})") from None
    except UnicodeDecodeError:
        raise TrellicError(f"cannot read {what}: not UTF-8 text") from None
    except RecursionError:
        raise TrellicError(f"cannot read {what}: nested too deeply") from None
    except (ValueError, TypeError, MemoryError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TrellicError(f"cannot read {what}: not valid JSON ({message})") from None


def read(path: str | Path, what: str | None = None, limit: int | None = None,
         max_depth: int = MAX_DEPTH) -> object:
    """Read and parse a JSON file; ``what`` defaults to the path, ``limit`` bounds its size
    in bytes (None: no bound).

    Raises:
        TrellicError: the file is missing or unreadable, too large, or not valid JSON.
    """
    from trellic.io import read_bytes

    path = Path(path)
    return loads(read_bytes(path, limit), what or str(path), max_depth)
