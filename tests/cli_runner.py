"""Running the command line as a user would: a subprocess, and its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

# TensorFlow turns oneDNN on by itself only on some CPUs (AVX-512 ones), and then absl prints
# start-up lines on fd 2 that TF_CPP_MIN_LOG_LEVEL cannot silence. Forcing it on makes every
# CLI test see those lines on any x86 CPU, so "stderr holds only our lines" is checked everywhere.
FORCE_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the installed entry point in a subprocess, as a user would."""
    full_env = {**os.environ, **FORCE_ONEDNN, **(env or {})}
    return subprocess.run([sys.executable, "-m", "resnet8_onnx", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False)


def assert_one_line_error(proc, code: int, fragment: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr
