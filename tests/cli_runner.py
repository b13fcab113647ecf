"""Running the command line: as a user would (a subprocess), or in process (``main``), and
checking its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from resnet8_onnx.cli import main

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


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``main -q ARGS`` in process (argparse's usage errors exit through SystemExit)."""
    try:
        code = main(["-q", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *args: str) -> dict:
    """``main -q ARGS --json -``, which must succeed: the record it prints."""
    code, out, err = run(capsys, *args, "--json", "-")
    assert code == 0, err
    return json.loads(out)


def assert_refused(capsys, code_expected: int, fragment: str, *args: str,
                   outputs: tuple[Path, ...] = ()) -> None:
    """``main -q ARGS`` fails with one stderr line holding ``fragment``, writing none of
    ``outputs``."""
    code, _out, err = run(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == code_expected, err
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    for path in outputs:
        assert not path.exists(), path
