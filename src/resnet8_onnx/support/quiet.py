"""Keep native libraries' start-up chatter off the user's terminal.

TensorFlow (through absl) and LiteRT write informational lines straight to file descriptor 2
while their shared libraries load: absl's "All log messages before absl::InitializeLog() …"
banner, TensorFlow's "oneDNN custom operations are on …" (on CPUs where oneDNN is enabled),
LiteRT's "Created TensorFlow Lite XNNPACK delegate". ``TF_CPP_MIN_LOG_LEVEL`` does not reach
absl's pre-initialisation logging, and turning oneDNN off would change numerics, so the only
place to silence them is the descriptor itself.

:func:`native_chatter_filtered` points fd 2 at a temporary file for the duration of a block
(a library import, an interpreter's first allocation), then replays every line that is not
known chatter: warnings and errors from native code still reach the user, and Python's own
``sys.stderr`` (progress spinners, our messages) keeps writing to the real terminal meanwhile.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Lines that only ever inform: absl's pre-init banner, absl/TF INFO lines
# ("I0000 00:00:… port.cc:153] …"), LiteRT's "INFO: …" lines.
CHATTER = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
    rb"STDERR"
    rb"|I\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] .*"
    rb"|INFO: .*)$"
)


def is_chatter(line: bytes) -> bool:
    """Whether a line written by a native library is informational noise."""
    return CHATTER.match(line.rstrip(b"\r\n")) is not None


_passthrough = False


def set_passthrough(enabled: bool) -> None:
    """Show native output unfiltered (``--debug``: everything a library said, in full)."""
    global _passthrough
    _passthrough = enabled


_terminal: tuple[int, io.TextIOWrapper] | None = None  # a dup of fd 2 and a stream over it


def _terminal_stream(fd: int) -> tuple[int, io.TextIOWrapper]:
    """A lasting duplicate of ``fd`` (and a text stream on it) for Python-level writes.

    Kept for the life of the process rather than closed after each block: a spinner thread
    may still write through it after the block ends, and a closed descriptor's number can be
    reused by an unrelated file. Made anew if ``fd`` has been pointed elsewhere since.
    """
    global _terminal
    here = os.fstat(fd)
    if _terminal is not None:
        there = os.fstat(_terminal[0])
        if (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino):
            return _terminal
    dup = os.dup(fd)
    encoding = getattr(sys.__stderr__, "encoding", None) or "utf-8"
    _terminal = (dup, open(dup, "w", buffering=1, encoding=encoding,  # noqa: SIM115
                           errors="backslashreplace"))
    return _terminal


@contextlib.contextmanager
def native_chatter_filtered() -> Iterator[None]:
    """Capture fd 2 during the block; afterwards write back every line that is not chatter."""
    if _passthrough:
        yield
        return
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        saved, stream = _terminal_stream(fd)
    except (AttributeError, OSError, ValueError):  # no real descriptor (embedded interpreter)
        yield
        return
    python_stderr = sys.stderr
    python_stderr.flush()
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        if python_stderr is sys.__stderr__:  # our spinners and messages still reach the user
            sys.stderr = stream
        try:
            yield
        finally:
            if sys.stderr is stream:
                stream.flush()
                sys.stderr = python_stderr
            os.dup2(saved, fd)
            capture.seek(0)
            kept = b"".join(line for line in capture if not is_chatter(line))
            if kept:
                python_stderr.flush()
                os.write(fd, kept)
