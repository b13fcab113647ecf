"""compare: several models against the first, as data, as renderings, and on the real files."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared_path
from model_factory import make_classifier, synthetic_dataset
from resnet8_onnx.backends import load_backend
from resnet8_onnx.compare import compare_models, compare_results
from resnet8_onnx.evaluate import evaluate
from resnet8_onnx.report import (
    compare_csv,
    compare_markdown,
    compare_per_class_csv,
    render_compare_terminal,
    to_json,
    write_compare_reports,
)
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import OutputError, UsageError


@pytest.fixture
def tiny_models(tmp_path):
    """Two different small classifiers and a logits-only one."""
    return (make_classifier(tmp_path / "a.onnx", seed=0),
            make_classifier(tmp_path / "b.onnx", seed=1),
            make_classifier(tmp_path / "logits.onnx", seed=0, softmax=False))


def _rich_text(record) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, color_system=None)
    render_compare_terminal(record, console)
    return console.file.getvalue()


def test_agreement_and_differences_against_the_first_model(tiny_models) -> None:
    data = synthetic_dataset(120)
    a, b = (evaluate(load_backend(p), data) for p in tiny_models[:2])
    record = compare_results([a, b, a], indices=data.indices).to_dict()
    first, second, third = record["models"]

    assert first["versus_reference"]["agreement"] == 120
    assert first["versus_reference"]["agreement_fraction"] == 1.0
    assert first["versus_reference"]["max_abs_diff"] == 0.0
    assert third["versus_reference"]["max_abs_diff"] == 0.0

    expected = a.predictions == b.predictions
    versus = second["versus_reference"]
    assert versus["agreement"] == int(expected.sum()) < 120  # different seeds disagree
    assert versus["agreement_fraction"] == pytest.approx(expected.mean())
    assert versus["disagreements"] == int((~expected).sum())
    assert versus["first_disagreements"] == [int(i) for i in data.indices[~expected][:10]]
    assert versus["max_abs_diff"] == pytest.approx(float(np.abs(a.outputs - b.outputs).max()))
    assert versus["comparable"] is True
    assert [m["label"] for m in record["models"]] == ["#1 ONNX", "#2 ONNX", "#3 ONNX"]
    assert second["metrics"]["accuracy"] == pytest.approx(
        float(np.mean(b.predictions == data.labels)))
    assert record["data"]["count"] == 120


def test_comparing_leaves_the_evaluations_as_evaluate_returned_them(tiny_models) -> None:
    """evaluate() returns the record itself: compare labels copies of it, not the caller's."""
    data = synthetic_dataset(40)
    a, b = (evaluate(load_backend(p), data) for p in tiny_models[:2])
    before = (a.to_dict(), b.to_dict())
    comparison = compare_results([a, b], indices=data.indices)
    assert (a.to_dict(), b.to_dict()) == before
    assert a.label is None
    assert b.versus_reference is None
    assert comparison.models[1].versus_reference.agreement == int(
        (a.outputs.argmax(1) == b.outputs.argmax(1)).sum())
    saved = json.loads(to_json(comparison.to_dict()))
    assert all("outputs" not in m and "labels" not in m for m in saved["models"])


def test_outputs_of_different_kinds_are_not_differenced(tiny_models) -> None:
    data = synthetic_dataset(40)
    probs, logits = (evaluate(load_backend(p), data) for p in (tiny_models[0], tiny_models[2]))
    typed = compare_results([probs, logits])
    record = typed.to_dict()
    versus = record["models"][1]["versus_reference"]
    assert versus["comparable"] is False
    assert "max_abs_diff" not in versus
    assert "logits" in versus["note"]
    # Same weights, softmax or not: the predictions agree all the same.
    assert versus["agreement"] == 40
    assert "n/a" in _rich_text(typed)


def test_results_on_different_images_are_refused(tiny_models) -> None:
    backend = load_backend(tiny_models[0])
    a = evaluate(backend, synthetic_dataset(30, seed=0))
    b = evaluate(backend, synthetic_dataset(31, seed=0))
    with pytest.raises(UsageError, match="different images"):
        compare_results([a, b])
    with pytest.raises(UsageError, match="at least two"):
        compare_results([a])


def test_renderings_hold_every_figure(tiny_models) -> None:
    data = synthetic_dataset(50)
    record = compare_models(tiny_models[:2], data, batch_size=16)
    saved = record.to_dict()
    text = _rich_text(record)
    for fragment in ("#1 ONNX", "#2 ONNX", "top-1 accuracy", "agreement with #1", "airplane",
                     "truck", "max |Δ output|", "images/s"):
        assert fragment in text
    assert max(len(line) for line in text.splitlines()) <= 80

    markdown = compare_markdown(record)
    assert "| top-1 accuracy |" in markdown
    assert "sha256" in markdown
    rows = list(csv.DictReader(io.StringIO(compare_csv(record))))
    assert [r["label"] for r in rows] == ["#1 ONNX", "#2 ONNX"]
    assert rows[0]["agreement_fraction"] == "1.0"
    assert float(rows[1]["accuracy"]) == pytest.approx(saved["models"][1]["metrics"]["accuracy"])
    per_class = list(csv.DictReader(io.StringIO(compare_per_class_csv(record))))
    assert len(per_class) == 10
    assert sum(int(r["m2_correct"]) for r in per_class) == saved["models"][1]["metrics"][
        "correct"]
    assert json.loads(to_json(record))["models"][1]["versus_reference"]["samples"] == 50


def test_reports_are_written_once(tiny_models, tmp_path) -> None:
    record = compare_models(tiny_models[:2], synthetic_dataset(20))
    out = tmp_path / "out"
    written = write_compare_reports(record, out)
    assert sorted(p.name for p in written.values()) == [
        "compare.csv", "compare.json", "compare.md", "compare_per_class.csv"]
    assert json.loads((out / "compare.json").read_text())["kind"] == "compare"
    with pytest.raises(OutputError, match="already exists"):
        write_compare_reports(record, out)
    write_compare_reports(record, out, force=True)


def test_cli_needs_two_models(tiny_models, capsys) -> None:
    from resnet8_onnx.cli import main

    assert main(["compare", str(tiny_models[0]), "--data-dir", "nowhere"]) == errors.USAGE
    assert "at least two models" in capsys.readouterr().err


# --------------------------------------------------------------------------- real files
@pytest.mark.slow
@pytest.mark.shared
def test_real_models_side_by_side(resnet8_h5, resnet8_onnx, cifar_test) -> None:
    tflite = shared_path("models", "pretrainedResnet.tflite")
    quant = shared_path("models", "pretrainedResnet_quant.tflite")
    data = cifar_test.with_limit(1000)
    typed = compare_models([resnet8_h5, resnet8_onnx, tflite, quant], data)
    print(_rich_text(typed))
    record = typed.to_dict()
    keras, onnx, flt, int8 = record["models"]

    assert [m["label"] for m in record["models"]] == [
        "#1 Keras", "#2 ONNX", "#3 LiteRT", "#4 LiteRT int8"]
    assert keras["versus_reference"]["agreement_fraction"] == 1.0
    assert keras["versus_reference"]["max_abs_diff"] == 0.0
    for model in (onnx, flt):
        assert model["versus_reference"]["agreement"] == 1000
        assert model["versus_reference"]["max_abs_diff"] < 1e-5
        assert model["metrics"]["correct"] == keras["metrics"]["correct"]
        assert [c["correct"] for c in model["metrics"]["per_class"]] == [
            c["correct"] for c in keras["metrics"]["per_class"]]
    assert int8["quantized"] is True
    assert not keras["quantized"]
    # Dequantised int8 probabilities: comparable, and visibly coarser than float32.
    assert int8["versus_reference"]["comparable"] is True
    assert 1e-3 < int8["versus_reference"]["mean_abs_diff"] < 0.05
    assert 0.95 <= int8["versus_reference"]["agreement_fraction"] < 1.0
    for model in record["models"]:
        metrics = model["metrics"]
        assert metrics["total"] == 1000
        assert sum(c["correct"] for c in metrics["per_class"]) == metrics["correct"]
        assert metrics["accuracy"] > 0.8
        assert model["timings"]["images_per_second"] > 0
    assert record["data"]["count"] == 1000


@pytest.mark.slow
@pytest.mark.shared
def test_cli_json_on_stdout_stays_valid_with_litert(tmp_path) -> None:
    """LiteRT's XNNPACK banner goes to stderr: `--json -` is parseable as is."""
    tflite = shared_path("models", "pretrainedResnet.tflite")
    quant = shared_path("models", "pretrainedResnet_quant.tflite")
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "resnet8_onnx", "compare", str(tflite), str(quant),
         "--data-dir", str(data), "--limit", "300", "--json", "-", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "RESNET8_ONNX_OFFLINE": "1"},
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["kind"] == "compare"
    assert [m["label"] for m in record["models"]] == ["#1 LiteRT", "#2 LiteRT int8"]
    assert record["models"][0]["versus_reference"]["agreement_fraction"] == 1.0
    assert record["data"]["count"] == 300
    assert "agreement with #1" in proc.stderr  # the table went to stderr
    assert json.loads((out / "compare.json").read_text())["models"][1]["metrics"]["total"] == 300


def test_per_model_options_spread_in_model_order() -> None:
    from resnet8_onnx.compare import per_model_options

    spread = per_model_options(["a.h5", "b.onnx", "c.onnx"], {
        "layout": ["nchw"], "scale": [None, 0.5, None], "output": ["-", "logits", "-"],
        "mean": None})
    assert spread == [{}, {"layout": "nchw", "scale": 0.5, "output": "logits"},
                      {"layout": "nchw"}]
