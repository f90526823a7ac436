"""Markdown table helpers shared by the docs' table generators (scripts/doc_tables.py)."""

from __future__ import annotations

import json
from pathlib import Path


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: header, separator, rows."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
