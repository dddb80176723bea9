"""Progress of long CLI commands, always on stderr (stdout carries the data: JSON, event lines).

On a terminal a rich progress bar (or a spinner when the total is unknown) that disappears when the
command ends; elsewhere (a pipe, a log file, CI) one plain line per ``every_s`` seconds and one per
phase; nothing at all when quiet (``-q``)."""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, label: str, total: Optional[int] = None, unit: str = "", quiet: bool = False,
                 stream: Optional[IO[str]] = None, every_s: float = 2.0, tty: Optional[bool] = None) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.done = 0
        self._phase = ""
        self._tty = self.stream.isatty() if tty is None else tty
        self._next = 0.0  # monotonic time of the next plain line
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if not self.quiet and self._tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
            columns += [BarColumn(), MofNCompleteColumn()] if self.total else [TextColumn("{task.completed:,}")]
            columns.append(TimeElapsedColumn())
            self._rich = RichProgress(*columns, console=Console(file=self.stream), transient=True)
            self._rich.start()
            self._task = self._rich.add_task(self.label, total=self.total)
        self._next = time.monotonic() + self.every_s
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def phase(self, text: str) -> None:
        """A step of a command whose work is not counted (reading a file, a model fit)."""
        self._phase = text
        if self.quiet:
            return
        if self._rich is not None:
            self._rich.update(self._task, description=f"{self.label}: {text}")
        else:
            self._line()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every_s
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done)
        else:
            self._line()

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        for item in items:
            yield item
            self.advance()

    def _line(self) -> None:
        parts = [f"{self.label}:"]
        if self._phase:
            parts.append(self._phase)
        if self.done or self.total:
            count = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "")
            parts.append(count + (f" {self.unit}" if self.unit else ""))
        print(" ".join(parts), file=self.stream, flush=True)
