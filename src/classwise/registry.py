"""One generic name → factory registry.

Every pluggable piece (datasets, architectures, attacks, training methods, ...) lives in a
:class:`Registry`. Entries are added with a decorator where they are defined, listed with
shell-style wildcards, and an unknown name fails with the closest registered names.

Example:
    >>> widgets = Registry[object]("widget")
    >>> @widgets.register("round")
    ... def make_round() -> str:
    ...     return "o"
    >>> widgets.get("round")()
    'o'
"""

from __future__ import annotations

import difflib
import fnmatch
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from classwise.errors import UnknownNameError

T = TypeVar("T")
S = TypeVar("S")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered factory with its name and a one-line description."""

    name: str
    factory: T
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass
class Registry(Generic[T]):
    """Maps lowercase names to factories of one kind (``kind`` names it in errors)."""

    kind: str
    _entries: dict[str, Entry[T]] = field(default_factory=dict)

    def register(self, name: str, *, description: str = "", tags: tuple[str, ...] = ()) -> Callable[[S], S]:
        """Decorator: register ``factory`` under ``name`` (lowercase, unique), where it is defined;
        the decorated function or class keeps its own type."""
        if name != name.lower():
            raise ValueError(f"{self.kind} names are lowercase: {name!r}")

        def add(factory: S) -> S:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            own = getattr(factory, "description", None)  # an object that describes itself (a dataset spec)
            doc = description or (own if isinstance(own, str) else _first_line(getattr(factory, "__doc__", None)))
            self._entries[name] = Entry(name, typing.cast(T, factory), doc, tags)
            return factory

        return add

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; unknown names raise with close matches."""
        key = name.lower()
        if key not in self._entries:
            close = difflib.get_close_matches(key, list(self._entries), n=4, cutoff=0.5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._entries))}.")
        return self._entries[key]

    def get(self, name: str) -> T:
        """The factory registered under ``name``."""
        return self.entry(name).factory

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (``resnet*``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern.lower()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _first_line(doc: str | None) -> str:
    """The first sentence of a docstring's first paragraph (its lines joined)."""
    if not doc or not doc.strip():
        return ""
    paragraph = " ".join(line.strip() for line in doc.strip().split("\n\n")[0].splitlines())
    sentence, dot, _ = paragraph.partition(". ")
    return sentence + ("." if dot else "")
