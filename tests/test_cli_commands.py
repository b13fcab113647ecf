"""cli.commands: what each command prints and writes (evaluate's JSON, thresholds and report
directory). ``run`` is tested in test_pipeline.py, the other commands in their stage's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_runner import assert_one_line_error, cli
from conftest import shared_path
from model_factory import make_classifier
from resnet8_onnx.cli import main
from resnet8_onnx.support import errors


def _perf_png() -> Path:
    return shared_path("cifar-10", "perf-png")


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


def test_evaluate_generated_model_offline_without_data(tmp_path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("evaluate", str(model), "--data-dir", str(empty), "--offline")
    assert_one_line_error(proc, errors.NOT_FOUND, "CIFAR-10")
    assert not Path(tmp_path / "report").exists()


@pytest.mark.slow
def test_evaluate_threshold_is_inclusive_and_printed_exactly(resnet8_onnx) -> None:
    """8,719/10,000 meets 87.19 % (given either way) and fails 87.2 %, which prints as such."""
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    accuracy = None
    for threshold in ("0.8719", "87.19%"):
        proc = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--json", "-",
                   "--min-accuracy", threshold)
        assert proc.returncode == 0, proc.stderr
        metrics = json.loads(proc.stdout)["metrics"]
        accuracy = (metrics["correct"], metrics["total"])
    assert accuracy == (8_719, 10_000)  # the real model on the real test set
    proc = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data),
               "--min-accuracy", "0.872")
    assert proc.returncode == errors.ACCURACY_BELOW_THRESHOLD
    assert "below --min-accuracy 87.2%" in proc.stderr
    assert "(8,719/10,000)" in proc.stderr


def test_evaluate_and_run_name_report_files_alike_and_list_them_on_stderr(tmp_path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    out = tmp_path / "reports"
    proc = cli("-q", "evaluate", str(model), "--data-dir", str(_perf_png()), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    # The same names as a `run` report directory (its per_class.csv, confusion_<backend>.png).
    assert names == ["confusion_onnxruntime.png", "per_class.csv", "report.json", "report.md"]
    listed = [line for line in proc.stderr.splitlines() if line.startswith("reports: ")]
    assert len(listed) == 1, proc.stderr
    assert all(str(out / name) in listed[0] for name in names)
    assert "reports:" not in proc.stdout


def _png_folder(root: Path, n: int = 20) -> Path:
    from cifar_factory import make_images, write_png_folder

    images, labels = make_images(n)
    return write_png_folder(root, images, labels, [f"{i:05d}" for i in range(n)])


def test_json_on_stdout_moves_the_human_summary_to_stderr(tmp_path: Path) -> None:
    """``--json -`` makes stdout one JSON document (pipe it to jq); the table goes to stderr.
    Without it the table is on stdout and stderr holds only the near-chance warning (a
    random model on random images is at chance)."""
    model = make_classifier(tmp_path / "m.onnx")
    data = _png_folder(tmp_path / "pngs")
    piped = cli("-q", "evaluate", str(model), "--data-dir", str(data), "--json", "-")
    assert piped.returncode == 0, piped.stderr
    record = json.loads(piped.stdout)
    assert record["metrics"]["total"] == 20
    assert "airplane" in piped.stderr  # the per-class table
    plain = cli("-q", "evaluate", str(model), "--data-dir", str(data))
    assert plain.returncode == 0, plain.stderr
    assert "airplane" in plain.stdout
    assert [line for line in plain.stderr.splitlines()
            if not line.startswith("resnet8-onnx: warning: ") or "near chance" not in line] == []


def test_a_failing_threshold_still_writes_the_reports_it_was_asked_for(tmp_path: Path) -> None:
    """Exit 7 is a verdict on a finished evaluation: its JSON and reports are kept."""
    model = make_classifier(tmp_path / "m.onnx")
    data = _png_folder(tmp_path / "pngs")
    out, target = tmp_path / "reports", tmp_path / "r.json"
    proc = cli("-q", "evaluate", str(model), "--data-dir", str(data), "--min-accuracy", "100%",
               "--json", str(target), "--out", str(out))
    assert proc.returncode == errors.ACCURACY_BELOW_THRESHOLD, proc.stderr
    listed, error = proc.stderr.strip().splitlines()
    assert listed.startswith("reports: ")
    assert error.startswith("resnet8-onnx: error: ")
    assert "is below --min-accuracy 100%" in error
    assert json.loads(target.read_text())["metrics"]["total"] == 20
    assert str(out / "report.json") in listed
    assert json.loads((out / "report.json").read_text())["metrics"]["total"] == 20


def test_convert_refuses_an_output_suffix_it_cannot_write(tmp_path, capsys) -> None:
    """`-o model.txt` used to write an ONNX file under that name without a word."""
    model = tmp_path / "m.h5"
    model.write_bytes(b"")
    assert main(["-q", "convert", str(model), "-o", str(tmp_path / "x.txt")]) == errors.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "convert writes .onnx, .pt2, .safetensors files" in err[0]
    assert not (tmp_path / "x.txt").exists()
