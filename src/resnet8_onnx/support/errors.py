"""Error types and the exit codes the CLI maps them to.

Every failure a user can cause is a ``ToolError`` subclass with a one-line message that names
the file and the problem; the CLI prints that line and exits with the class's code. Anything
else is a bug and exits with ``INTERNAL``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: The signals an interrupt arrives by (ints, as the handlers' tables keep them).
_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)

# Exit codes (documented in docs/exit-codes.md; tests/test_errors.py keeps the two in step).
OK = 0
USAGE = 2
NOT_FOUND = 3
INVALID_INPUT = 4
UNSAFE_INPUT = 5
VERIFICATION_FAILED = 6
ACCURACY_BELOW_THRESHOLD = 7
OUTPUT_ERROR = 8
DOWNLOAD_FAILED = 9
INTERNAL = 70
INTERRUPTED = 130


class ToolError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""

    exit_code: int = INTERNAL
    #: what would fix it, as a key each CLI command words in its own options (see
    #: :func:`remedied` and :func:`remedies`); ``None``: the message says it all.
    remedy: str | None = None
    cli_remedy: str | None = None

    def cli_message(self) -> str:
        """The message in the command line's words; the library's unless a subclass names a
        library argument that the CLI spells as an option, or the command worded the remedy."""
        if self.cli_remedy:
            return f"{self} ({self.cli_remedy})"
        return str(self)


class UsageError(ToolError):
    """Options that contradict each other or make no sense for the input."""

    exit_code = USAGE


class MissingExtraError(ToolError):
    """An optional dependency (an extra such as ``torch``) that the command needs is missing.

    A usage error: the same command works once the extra is installed.
    """

    exit_code = USAGE


class InputNotFoundError(ToolError):
    """A required input (model, data set, indices file) is not where we looked."""

    exit_code = NOT_FOUND


class InvalidInputError(ToolError):
    """An input exists but is corrupt, truncated, of the wrong format or fails its checksum."""

    exit_code = INVALID_INPUT


class UnsafeInputError(ToolError):
    """An input would execute code if loaded (Lambda layers, custom classes, pickled callables)."""

    exit_code = UNSAFE_INPUT


class VerificationFailedError(ToolError):
    """The converted model does not match its source within tolerance."""

    exit_code = VERIFICATION_FAILED


class AccuracyBelowThresholdError(ToolError):
    """Evaluation ran but accuracy is under the user's ``--min-accuracy``."""

    exit_code = ACCURACY_BELOW_THRESHOLD


class OutputError(ToolError):
    """An output cannot be written: exists without ``--force``, missing or read-only directory."""

    exit_code = OUTPUT_ERROR


class OutputExistsError(OutputError):
    """An output exists and the caller did not ask to overwrite it.

    A library caller is told of the argument (``force=True``), a CLI user of ``--force``.
    """

    def __init__(self, path: object) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: already exists (pass force=True to overwrite)")

    def cli_message(self) -> str:
        return f"{self.path}: already exists (use --force to overwrite)"

    def __reduce__(self) -> tuple[type, tuple[str]]:  # pickled (e.g. across processes) by path
        return type(self), (self.path,)


class DownloadError(ToolError):
    """A download failed: offline, interrupted, or the file did not match its checksum."""

    exit_code = DOWNLOAD_FAILED


def remedied(exc: ToolError, remedy: str) -> ToolError:
    """``exc`` with a remedy key: the library's message stays neutral (no option names), and
    the command that prints it adds its own options (:func:`remedies`)."""
    exc.remedy = remedy
    return exc


@contextlib.contextmanager
def remedies(words: dict[str, str]) -> Iterator[None]:
    """Within the block, a :class:`ToolError` whose remedy key is in ``words`` is worded so:
    each command names only options it has."""
    try:
        yield
    except ToolError as exc:
        if exc.remedy in words and exc.cli_remedy is None:
            exc.cli_remedy = words[exc.remedy]
        raise


def one_line(value: object, limit: int | None = 200) -> str:
    """The first line of a message (an exception's, or any text), whitespace collapsed.

    The one way an error line quotes something it did not write: third-party errors (ONNX
    checker, tf2onnx, Keras, runtimes) carry pages of text, and file contents may carry
    newlines. An exception with no message gives its type name; ``limit`` cuts the line to
    that many characters (``None``: the whole first line).
    """
    text = str(value).strip()
    if not text:
        return type(value).__name__ if isinstance(value, BaseException) else ""
    line = " ".join(text.splitlines()[0].split())
    if limit is not None and len(line) > limit:
        line = line[: limit - 1] + "…"
    return line


class InterruptState:
    """Which signal interrupted the work, if any (see :func:`handle_interrupts`).

    ``finishing``: the caller is reporting the outcome (its one line): a further signal is
    remembered but raises nothing, so it cannot turn that line into a traceback.
    """

    signum: int | None = None
    finishing: bool = False

    @property
    def interrupted(self) -> bool:
        return self.signum is not None


_active: list[InterruptState] = []  # the states of the handle_interrupts() blocks in force


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if a signal came that did not unwind the work.

    A signal that lands while Python runs a finaliser (TensorFlow frees functions in
    ``__del__``) raises there, and Python ignores exceptions from finalisers: the work
    carries on as if nothing happened. Callers about to commit their outputs call this, so
    such an interrupt still ends the command like any other.
    """
    for state in _active:
        if state.signum is not None:
            raise KeyboardInterrupt(signal.Signals(state.signum).name)


@contextlib.contextmanager
def handle_interrupts(*, final: bool = False) -> Iterator[InterruptState]:
    """Within the block, SIGINT and SIGTERM raise ``KeyboardInterrupt`` and are remembered.

    SIGTERM (``kill``, ``timeout``, CI runners) would otherwise end the process on the spot:
    no ``finally`` runs, so temporary files would stay behind. As a ``KeyboardInterrupt`` it
    unwinds like Ctrl-C: temporary files are removed and earlier outputs stay intact.
    Remembering the signal lets the caller report an interrupt even when a library turned the
    ``KeyboardInterrupt`` into something else (a C extension interrupted while being imported
    raises ``ImportError: initialization failed``). Previous handlers are restored on exit, so
    calling the CLI in-process leaves no trace. Handlers can only be installed from the main
    thread, and an ignored signal stays ignored.

    After a signal (or with ``final``: the process ends with the block) the signals are
    ignored from then on instead, and a ``KeyboardInterrupt`` in a finaliser stays silent:
    the process is ending, and a second Ctrl-C during TensorFlow's teardown must not print
    "Exception ignored in: ApiDefMap.__del__" and a traceback after the one line.
    """
    state = InterruptState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if state.signum is None:
            state.signum = signum
        if not state.finishing:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous: dict[int, Any] = {}
    for signum in _SIGNALS:
        current = signal.getsignal(signum)
        if current is signal.SIG_IGN or current is None:  # ignored, or set outside Python
            continue
        previous[signum] = signal.signal(signum, handler)
    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # Our KeyboardInterrupt, swallowed by a finaliser: remembered in ``state`` and acted
        # on by raise_if_interrupted(), so no "Exception ignored" traceback for the user.
        if not (isinstance(info.exc_value, KeyboardInterrupt) and state.interrupted):
            previous_hook(info)

    sys.unraisablehook = unraisable
    _active.append(state)
    try:
        yield state
    finally:
        _active.remove(state)
        if final or state.interrupted:
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
            sys.unraisablehook = _silent_interrupts(previous_hook)
        else:
            sys.unraisablehook = previous_hook
            for signum, old in previous.items():
                signal.signal(signum, old)


def _silent_interrupts(previous_hook: Any) -> Any:
    """An unraisable hook for a process that is ending: KeyboardInterrupt stays silent."""
    def hook(info: Any) -> None:
        if not isinstance(info.exc_value, KeyboardInterrupt):
            previous_hook(info)
    return hook


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back during a few steps that an interrupt must not split.

    Used where an interrupt would do damage rather than just stop the work: between creating a
    temporary file and recording its name (a ``.part`` file nobody would remove), or inside a
    C extension's import (which turns the interrupt into a misleading ImportError). A signal
    that arrives meanwhile is handed to the previous handler as soon as the block ends, so it
    raises there, inside the caller's cleanup scope.

    The Python-level handler is swapped rather than the signal masked: the OS may deliver a
    process signal to any thread (BLAS and runtime thread pools), so masking the main thread
    defers nothing, whereas Python always runs its handlers in the main thread. Elsewhere
    ``KeyboardInterrupt`` is never raised, so other threads need nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous: dict[int, Any] = {}
    for signum in _SIGNALS:
        if callable(signal.getsignal(signum)):  # SIG_DFL/SIG_IGN: nothing Python could run
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        if pending:
            previous[pending[0]](pending[0], None)  # raises, e.g. KeyboardInterrupt
