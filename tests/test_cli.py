"""cli (``main``): every failure becomes one line on stderr and its exit code, ``--debug``
shows the traceback, a closed pipe ends quietly, and ``-q`` leaves stderr empty.

The parser, the option types and the commands have their own files (test_cli_parser.py,
test_cli_options.py, test_cli_commands.py); ``run`` is in test_pipeline.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_runner import FORCE_ONEDNN, cli
from conftest import shared_path
from resnet8_onnx import __version__
from resnet8_onnx.cli import main, parser
from resnet8_onnx.support import errors


def test_missing_model_exit_code(tmp_path, capsys) -> None:
    code = main(["evaluate", str(tmp_path / "nope.onnx"), "--data-dir", str(tmp_path)])
    assert code in (errors.NOT_FOUND,)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1


def test_debug_shows_traceback(tmp_path) -> None:
    proc = cli("--debug", "evaluate", str(tmp_path / "nope.onnx"), "--data-dir", str(tmp_path))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


@pytest.mark.slow
def test_quiet_convert_of_the_real_model_writes_nothing_to_stderr(tmp_path) -> None:
    """oneDNN forced on: TensorFlow's start-up lines must not reach the user."""
    model = shared_path("models", "pretrainedResnet.h5")
    proc = cli("-q", "convert", str(model), "-o", str(tmp_path / "m.onnx"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.slow
def test_quiet_evaluate_of_a_tflite_model_writes_nothing_to_stderr() -> None:
    """LiteRT announces its XNNPACK delegate on fd 2; with -q the user sees nothing."""
    model = shared_path("models", "pretrainedResnet.tflite")
    data = shared_path("cifar-10", "perf-png")
    proc = cli("-q", "evaluate", str(model), "--data-dir", str(data), "--limit", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_closed_stdout_ends_quietly_with_exit_0(tmp_path) -> None:
    """`resnet8-onnx data | head -1`: the reader goes away; exit 0, nothing on stderr.

    The read end is closed before the command writes anything, so every write meets a closed
    pipe whatever the machine's speed (``head`` would race with it)."""
    data = tmp_path / "data"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (32, 32), (i, i, i)).save(data / ("cat", "dog")[i % 2] / f"{i}.png")
    for json_args in ((), ("--json", "-")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "resnet8_onnx", "data", "--data-dir", str(data), *json_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **FORCE_ONEDNN})
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == errors.OK, stderr.decode()
        assert stderr.decode().strip() == "", stderr.decode()


def _command_raising(exc: BaseException):
    def command(args) -> int:
        raise exc
    return command


@pytest.mark.parametrize(("exc", "code", "words"), [
    (errors.InvalidInputError("m.onnx: truncated\nsecond line"), errors.INVALID_INPUT,
     "resnet8-onnx: error: m.onnx: truncated"),
    (errors.OutputError("r.json: cannot write"), errors.OUTPUT_ERROR, "error: r.json"),
    (KeyboardInterrupt(), errors.INTERRUPTED, "resnet8-onnx: interrupted"),
    (RuntimeError("boom"), errors.INTERNAL, "internal error: RuntimeError: boom (run with "
                                           "--debug for the traceback; please report it)"),
])
def test_every_failure_is_one_line_and_its_exit_code(monkeypatch, capsys, exc, code,
                                                     words) -> None:
    monkeypatch.setattr(parser, "cmd_data", _command_raising(exc))
    assert main(["-q", "data"]) == code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert words in lines[0]
    assert captured.out == ""
    monkeypatch.setattr(parser, "cmd_data", _command_raising(exc))
    assert main(["-q", "--debug", "data"]) == code  # the same code, with the traceback
    assert "Traceback" in capsys.readouterr().err


def test_a_command_returns_its_own_exit_code(monkeypatch) -> None:
    monkeypatch.setattr(parser, "cmd_data", lambda args: errors.VERIFICATION_FAILED)
    assert main(["-q", "data"]) == errors.VERIFICATION_FAILED


def test_python_dash_m_is_the_command() -> None:
    proc = cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"resnet8-onnx {__version__}"
