"""Error types and the exit codes the CLI maps them to.

Every failure a user can cause is a ``ToolError`` subclass with a one-line message that names
the file and the problem; the CLI prints that line and exits with the class's code. Anything
else is a bug and exits with ``INTERNAL``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

# Exit codes (documented in the README; keep the two in step).
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


class UsageError(ToolError):
    """Options that contradict each other or make no sense for the input."""

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


class DownloadError(ToolError):
    """A download failed: offline, interrupted, or the file did not match its checksum."""

    exit_code = DOWNLOAD_FAILED


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt``, exactly as Ctrl-C does.

    ``kill``, ``timeout`` and CI runners stop a job with SIGTERM, whose default action ends
    the process on the spot: no ``finally`` runs, so temporary files would stay behind. As a
    ``KeyboardInterrupt`` it unwinds like Ctrl-C: temporary files are removed, earlier outputs
    stay intact and the command exits with ``INTERRUPTED``. The previous handler is restored
    on exit, so calling the CLI in-process (tests, notebooks) leaves no trace. Only the main
    thread can install handlers, and an ignored SIGTERM stays ignored; then this does nothing.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN):  # the caller opted out
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
