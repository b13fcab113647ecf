"""Native start-up chatter on fd 2 is dropped; anything else a native library says is kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from resnet8_onnx.support.quiet import is_chatter

CHATTER = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1795798542.543847    4484 port.cc:153] oneDNN custom operations are on. "
    b"You may see slightly different numerical results.\n",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
]
KEPT = [
    b"E0000 00:00:1795798542.543847    4484 op_kernel.cc:1] a real native error\n",
    b"W0000 00:00:1795798542.543847    4484 cpu_feature_guard.cc:9] a native warning\n",
    b"terminate called after throwing an instance of 'std::runtime_error'\n",
]


@pytest.mark.parametrize("line", CHATTER)
def test_informational_lines_are_chatter(line: bytes) -> None:
    assert is_chatter(line)


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_warnings_are_not_chatter(line: bytes) -> None:
    assert not is_chatter(line)


def _run(code: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          timeout=60, check=False)


def test_block_filters_fd2_and_keeps_python_stderr_live() -> None:
    """Native writes inside the block are filtered; Python's stderr still reaches fd 2 (first,
    since it is not held back), and the kept native lines follow when the block ends."""
    proc = _run(f"""
        import os, sys
        from resnet8_onnx.support.quiet import native_chatter_filtered
        with native_chatter_filtered():
            for line in {CHATTER + KEPT!r}:
                os.write(2, line)
            sys.stderr.write("python-level line\\n")
        os.write(2, b"after the block\\n")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b"python-level line\n" + b"".join(KEPT) + b"after the block\n"


def test_an_exception_inside_the_block_restores_fd2() -> None:
    proc = _run("""
        import os
        from resnet8_onnx.support.quiet import native_chatter_filtered
        try:
            with native_chatter_filtered():
                os.write(2, b"INFO: chatter\\n")
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        os.write(2, b"still visible\\n")
    """)
    assert proc.stderr == b"still visible\n"


def test_passthrough_shows_everything() -> None:
    """``--debug`` turns the filter off: everything a library said, in full."""
    proc = _run(f"""
        import os
        from resnet8_onnx.support import quiet
        quiet.set_passthrough(True)
        with quiet.native_chatter_filtered():
            for line in {CHATTER!r}:
                os.write(2, line)
    """)
    assert proc.stderr == b"".join(CHATTER)
