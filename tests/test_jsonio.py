"""trellic.jsonio: every failure of a JSON parse is one TrellicError line, never a traceback."""

from __future__ import annotations

import json

import pytest

from trellic import jsonio
from trellic.errors import TrellicError

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text", [DEEP, '{"points": ' + DEEP + "}", DEEP.encode()])
def test_deep_nesting_is_one_line_error(text):
    expected = (r"^cannot read weights w: metadata 'info': nested too deeply "
                r"\(10000[01] levels; trellic reads at most 64\)$")
    with pytest.raises(TrellicError, match=expected):
        jsonio.loads(text, "weights w: metadata 'info'")


def test_nesting_past_the_limit_but_under_python_recursion():
    with pytest.raises(TrellicError, match="nested too deeply"):
        jsonio.loads("[" * 65 + "]" * 65, "x")
    assert jsonio.loads("[" * 64 + "]" * 64, "x") is not None


def test_recursion_error_without_the_depth_limit_is_caught():
    with pytest.raises(TrellicError, match="^cannot read x: nested too deeply$"):
        jsonio.loads(DEEP, "x", max_depth=10**9)


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"name": "[" * 500 + "{" * 500, "esc": '\\"[[[', "v": [[1, 2], {"a": "]"}]})
    assert jsonio.nesting_depth(text) == 3
    assert jsonio.loads(text, "x") == json.loads(text)


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"a": 1,}', r"not valid JSON \(Expecting property name .*: line 1 column 9\)"),
        ('["abc\\', r"not valid JSON \(Unterminated string"),
        ("", r"not valid JSON \(Expecting value: line 1 column 1\)"),
        (b"\xff\xfe[]", "not UTF-8 text"),
        (None, "expected JSON text, got NoneType"),
    ],
)
def test_malformed_documents(text, reason):
    with pytest.raises(TrellicError, match="^cannot read doc: " + reason):
        jsonio.loads(text, "doc")


def test_hostile_unterminated_escapes_are_linear():
    # many escaped quotes and no closing one: a backtracking string pattern would be quadratic
    text = "[" * 70 + '"' + '\\"' * 400_000
    with pytest.raises(TrellicError, match="cannot read doc"):
        jsonio.loads(text, "doc")


def test_read_file(tmp_path):
    good = tmp_path / "m.json"
    good.write_text('{"default": "x", "models": {}}')
    assert jsonio.read(good) == {"default": "x", "models": {}}
    bad = tmp_path / "deep.json"
    bad.write_text(DEEP)
    with pytest.raises(TrellicError, match=f"^cannot read manifest {bad}: nested too deeply"):
        jsonio.read(bad, f"manifest {bad}")
    with pytest.raises(TrellicError, match="file not found"):
        jsonio.read(tmp_path / "missing.json")
    with pytest.raises(TrellicError, match="file too large"):
        jsonio.read(good, limit=4)
