"""Progress bars for long work: a live bar on a terminal, and a few plain lines (one every
``interval`` seconds, and one at the end) when output goes to a file, so a log of an hours-long
run holds lines to read rather than thousands of carriage-return updates."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

from tqdm.auto import tqdm


class LineProgress:
    """A tqdm-like counter that writes whole lines: ``desc: done/total unit (rate/s) postfix``."""

    def __init__(self, total: int | None, desc: str, unit: str, stream: TextIO, interval: float) -> None:
        self.total, self.desc, self.unit, self.stream, self.interval = total, desc, unit, stream, interval
        self.n = 0
        self.postfix = ""
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._write()

    def set_postfix(self, values: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in {**(values or {}), **kwargs}.items())

    def _write(self) -> None:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        total = f"/{self.total}" if self.total is not None else ""
        tail = f", {self.postfix}" if self.postfix else ""
        self.stream.write(f"{self.desc}: {self.n}{total} {self.unit} ({self.n / elapsed:.1f} {self.unit}/s{tail})\n")
        self.stream.flush()

    def close(self) -> None:
        if self.n:
            self._write()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def progress_bar(
    total: int | None, desc: str, *, unit: str = "img", enabled: bool = True, interval: float = 30.0
) -> Any:
    """A bar counting ``unit``s: tqdm on a terminal, :class:`LineProgress` when stderr is a file,
    and a silent counter when ``enabled`` is False."""
    if enabled and not sys.stderr.isatty():
        return LineProgress(total, desc, unit, sys.stderr, interval)
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, unit_scale=False)
