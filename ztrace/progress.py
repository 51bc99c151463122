"""A small progress bar for long replays, sweeps, captures and exports.

It writes to **stderr only**, so stdout stays clean for ``--json``/``--csv`` pipelines, and
``quiet=True`` (the commands' ``--quiet``) turns it off. Off a terminal it stays silent too:
a log file full of redraws helps nobody. Usage::

    from ztrace.progress import progress

    with progress(total=n_events, desc="replay", quiet=quiet, unit="events") as bar:
        for batch in batches:
            ...
            bar.advance(batch.num_rows)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, TypeVar

import click

T = TypeVar("T")

#: Set to 1 to force the bar on even when stderr is not a terminal (tests, CI logs).
FORCE_ENV = "ZTRACE_PROGRESS"


class Progress:
    """Handle returned by :func:`progress`; ``advance`` is cheap enough to call per batch."""

    def __init__(self, bar: Any | None, task: Any | None) -> None:
        self._bar = bar
        self._task = task
        self.completed = 0

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def advance(self, n: int = 1) -> None:
        self.completed += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)

    def set_total(self, total: int | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def set_description(self, desc: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=desc)


def _should_show(quiet: bool, stream: TextIO) -> bool:
    if quiet:
        return False
    if os.environ.get(FORCE_ENV) == "1":
        return True
    return hasattr(stream, "isatty") and stream.isatty()


@contextmanager
def progress(
    total: int | None = None,
    *,
    desc: str = "",
    quiet: bool = False,
    unit: str = "",
    stream: TextIO | None = None,
) -> Iterator[Progress]:
    """A progress bar on stderr (or ``stream``) for the duration of the ``with`` block."""
    stream = stream or sys.stderr
    if not _should_show(quiet, stream):
        yield Progress(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    console = Console(file=stream, force_terminal=os.environ.get(FORCE_ENV) == "1" or None)
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with RichProgress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(desc, total=total)
        yield Progress(bar, task)


def track(items: list[T] | tuple[T, ...], *, desc: str = "", quiet: bool = False) -> Iterator[T]:
    """Iterate ``items`` with a bar; a convenience for loops over designs or pool limits."""
    with progress(len(items), desc=desc, quiet=quiet) as bar:
        for item in items:
            yield item
            bar.advance()


def quiet_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The shared ``-q/--quiet`` click option: hides progress output on stderr."""
    return click.option(
        "-q",
        "--quiet",
        is_flag=True,
        default=False,
        help="No progress bar on stderr (stdout is never used for progress).",
    )(f)
