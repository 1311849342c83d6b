"""The pieces a report page is made of: sections of figures (PNG, embedded) and tables."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Figure:
    png: str
    caption: str
    table: str = ""


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return html.escape(f"{100 * v:.1f}" if isinstance(v, float) and 0 <= v <= 1 else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def fig(png: bytes, caption: str, tbl: str = "") -> Figure:
    return Figure(base64.b64encode(png).decode(), caption, tbl)
