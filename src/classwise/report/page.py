"""The pieces a report page is made of: sections of figures (PNG, embedded) and tables. The page
template escapes everything it is given; tables are the one piece of ready HTML, and every
string in them is escaped when they are built."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup


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


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Markup:
    """An HTML table; every cell and header is escaped (class, run and grid names are user data)."""

    def cell(v: object) -> str:
        return html.escape(f"{100 * v:.1f}" if isinstance(v, float) and 0 <= v <= 1 else str(v))

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return Markup(f"<table><tr>{head}</tr>{body}</table>")  # built from escaped pieces only


def fig(png: bytes, caption: str, tbl: str = "") -> Figure:
    return Figure(base64.b64encode(png).decode(), caption, tbl)
