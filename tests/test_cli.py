"""The command line: exit codes, one-line errors, machine-readable output, the whole job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED, shared_path
from model_factory import make_classifier
from resnet8_onnx import errors
from resnet8_onnx.cli import main


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the installed entry point in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "resnet8_onnx", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False)


def assert_one_line_error(proc, code: int, fragment: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "convert", "verify", "evaluate", "run", "compare", "benchmark",
                    "quantize"):
        assert command in out
    assert "exit codes" in out


def test_usage_error_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "m.onnx", "--batch-size", "0"])
    assert exit_info.value.code == errors.USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_model_exit_code(tmp_path, capsys) -> None:
    code = main(["evaluate", str(tmp_path / "nope.onnx"), "--data-dir", str(tmp_path)])
    assert code in (errors.NOT_FOUND,)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1


def test_debug_shows_traceback(tmp_path) -> None:
    proc = cli("--debug", "evaluate", str(tmp_path / "nope.onnx"), "--data-dir", str(tmp_path))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_evaluate_json_to_stdout_and_threshold(tmp_path, resnet8_onnx) -> None:
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    proc = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--limit", "500",
               "--json", "-", "--min-accuracy", "0.99")
    assert proc.returncode == errors.ACCURACY_BELOW_THRESHOLD, proc.stderr
    record = json.loads(proc.stdout)
    assert record["metrics"]["total"] == 500
    assert record["data"]["full_official_test_set"] is False
    assert "below --min-accuracy" in proc.stderr


@pytest.mark.slow
def test_evaluate_out_dir_refuses_overwrite(tmp_path, resnet8_onnx) -> None:
    data = shared_path("cifar-10", "perf-png")
    out = tmp_path / "reports"
    first = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--out", str(out))
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert any(n.endswith(".png") for n in names)
    assert any(n.endswith(".csv") for n in names)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--out", str(out))
    assert_one_line_error(second, errors.OUTPUT_ERROR, "already exists")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_run_whole_job(tmp_path) -> None:
    """The README's main command, on the real model and the full official test set."""
    shared_path("models", "pretrainedResnet.h5")
    shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    out = tmp_path / "report"
    proc = cli("-q", "run", "--data-dir", str(SHARED), "--out", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for name in ("report.json", "report.md", "model.onnx"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.csv"))
    assert list(out.glob("*.png"))
    report = json.loads((out / "report.json").read_text())
    keras, onnx_ = report["models"]
    assert keras["model"]["backend"] == "keras"
    assert onnx_["model"]["backend"] == "onnxruntime"
    for record in (keras, onnx_):
        metrics = record["metrics"]
        assert metrics["total"] == 10_000
        assert 0.85 < metrics["accuracy"] <= 1.0
        assert len(metrics["per_class"]) == 10
        assert {"name", "accuracy", "correct", "total"} <= set(metrics["per_class"][0])
        assert len(metrics["confusion_matrix"]) == 10
        assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
        assert record["data"]["full_official_test_set"] is True
    assert keras["metrics"]["correct"] == onnx_["metrics"]["correct"]
    assert report["parity"]["passed"] is True
    assert report["parity"]["argmax_agreement"] == 10_000
    assert report["verdict"]["passed"] is True
    assert "10,000" in (out / "report.md").read_text()
    assert "PASS" in proc.stdout


def test_run_refuses_missing_parent_before_work(tmp_path) -> None:
    proc = cli("-q", "run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "a" / "b"))
    assert_one_line_error(proc, errors.OUTPUT_ERROR, "does not exist")
    assert not (tmp_path / "a").exists()


def test_evaluate_generated_model_offline_without_data(tmp_path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("evaluate", str(model), "--data-dir", str(empty), "--offline")
    assert_one_line_error(proc, errors.NOT_FOUND, "CIFAR-10")
    assert not Path(tmp_path / "report").exists()
