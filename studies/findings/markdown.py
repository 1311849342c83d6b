"""Markdown pieces the findings' sections share."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(columns: Sequence[str], rows: list[str], empty: str) -> list[str]:
    """A Markdown table; a table without rows says why in its first cell."""
    blank = " |" * (len(columns) - 1)
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *(rows or [f"| ({empty}) |{blank}"]),
    ]
