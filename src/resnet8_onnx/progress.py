"""Progress indication for long work, on stderr so stdout stays machine-readable.

Library functions accept an optional ``progress`` flag and call :func:`track`/:func:`status`;
the CLI decides once (``--quiet``, or stderr not a terminal) whether anything is drawn.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

_enabled: bool | None = None  # None: decide from whether stderr is a terminal


def set_enabled(enabled: bool | None) -> None:
    """Force progress display on/off (``None`` restores the terminal auto-detection)."""
    global _enabled
    _enabled = enabled


def is_enabled() -> bool:
    """Whether progress bars are drawn right now."""
    return sys.stderr.isatty() if _enabled is None else _enabled


def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def track(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar over ``total`` units; yields ``advance(n)``.

    A no-op when progress is disabled, so callers never branch on it.
    """
    if not is_enabled():
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console(), transient=True) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task_id, n)


@contextlib.contextmanager
def status(description: str) -> Iterator[None]:
    """A spinner for a slow step of unknown length (importing TensorFlow, tracing)."""
    if not is_enabled():
        yield
        return
    with _console().status(description):
        yield
