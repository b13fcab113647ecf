"""Progress indication for long work, on stderr so stdout stays machine-readable.

Library functions accept an optional ``progress`` flag and call :func:`track`/:func:`status`;
the CLI decides once (``--quiet``, or stderr not a terminal) whether anything is drawn.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_enabled: bool | None = None  # None: decide from whether stderr is a terminal


def set_enabled(enabled: bool | None) -> None:
    """Force progress display on/off (``None`` restores the terminal auto-detection)."""
    global _enabled
    _enabled = enabled


_notes = True  # "note:" lines on stderr; -q turns them off (errors and warnings stay)


def set_notes(enabled: bool) -> None:
    """Print :func:`note` lines or not (the CLI: not under ``-q``)."""
    global _notes
    _notes = enabled


def note(text: str) -> None:
    """One ``resnet8-onnx: note: …`` line on stderr, unless ``-q``: every note goes through
    here, so ``-q`` leaves only errors and warnings."""
    if _notes:
        print(f"resnet8-onnx: note: {text}", file=sys.stderr)


def is_enabled() -> bool:
    """Whether progress bars are drawn right now."""
    return sys.stderr.isatty() if _enabled is None else _enabled


PIPE_WIDTH = 120  # columns of output that goes to a file or a pipe


def console(*, stderr: bool = False, highlight: bool = False) -> Console:
    """A rich console on stdout (or stderr) that lets a closed pipe end the printing quietly.

    rich's default answer to a closed stdout (``resnet8-onnx data | head -1``) is
    ``SystemExit(1)``, which would end the command before it wrote the files it was asked
    for. This one goes quiet instead (:func:`stdout_closed`): the rest of the page goes to
    ``/dev/null`` and the command carries on, so every requested file is still written and
    the exit code is the command's own, as ``git log | head`` does.

    Written to a file or a pipe (no terminal, no ``COLUMNS``), the page is
    :data:`PIPE_WIDTH` wide rather than rich's 80, so a table of three models keeps its
    figures instead of ending them in "…".
    """
    import os
    import sys

    from rich.console import Console

    class _PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            if not self.stderr:
                _close_stdout()

    stream = sys.stderr if stderr else sys.stdout
    terminal = hasattr(stream, "isatty") and stream.isatty()
    width = None if terminal or os.environ.get("COLUMNS") else PIPE_WIDTH
    return _PipeConsole(stderr=stderr, highlight=highlight, width=width)


_stdout_gone = False


def _close_stdout() -> None:
    """stdout's reader went away: what is still to print goes to ``/dev/null``.

    Only stdout's printing stops; files the command was asked for are still written.
    """
    global _stdout_gone
    _stdout_gone = True
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real descriptor (captured in tests): nothing to redirect
        pass


def stdout_closed() -> bool:
    """Whether stdout's reader went away during this process (a closed pipe)."""
    return _stdout_gone


def write_stdout(text: str) -> None:
    """Print ``text`` on stdout (a JSON record): a closed pipe ends the printing, not the
    command, so the files still to write are written."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _close_stdout()


def flush_stdout() -> None:
    """Flush stdout before exit; a reader gone meanwhile is no error (see :func:`console`)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _close_stdout()
    except (OSError, ValueError):
        pass


def _console() -> Console:
    return console(stderr=True, highlight=True)


@contextlib.contextmanager
def track(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar over ``total`` units; yields ``advance(n)``.

    A no-op when progress is disabled, so callers never branch on it.
    """
    if not is_enabled():
        def ignore(n: int = 1) -> None:
            return None

        yield ignore
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Units per second (images/s), once rich has measured a speed."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), RateColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=_console(), transient=True) as bar:
        task_id = bar.add_task(description, total=total)
        def advance(n: int = 1) -> None:
            bar.advance(task_id, n)

        yield advance


@contextlib.contextmanager
def status(description: str) -> Iterator[None]:
    """A spinner for a slow step of unknown length (importing TensorFlow, tracing)."""
    if not is_enabled():
        yield
        return
    with _console().status(description):
        yield
