"""Typed records: a schema in every JSON, to_dict/from_dict round trips, wrong kinds refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet8_onnx import records as r
from resnet8_onnx.report import to_json


def _round_trip(record: r.Record) -> None:
    data = json.loads(to_json(record.to_dict()))
    again = type(record).from_dict(data)
    assert again == type(record).from_dict(json.loads(to_json(again.to_dict())))
    assert json.loads(to_json(again.to_dict())) == data
    assert r.record_from_dict(data) == again


def test_every_record_names_its_schema_and_version():
    for kind in r.RECORD_TYPES:
        d = kind().to_dict()
        assert d["schema"] == kind.SCHEMA
        assert d["schema"].startswith("resnet8-onnx/")
        assert d["schema_version"] == kind.SCHEMA_VERSION
    assert len({k.SCHEMA for k in r.RECORD_TYPES}) == len(r.RECORD_TYPES)


def test_optional_keys_left_out_until_set_and_unknown_keys_kept():
    rec = r.ComparisonRecord(models=[r.EvaluationRecord(label="#1 Keras")])
    d = rec.to_dict()
    assert "verdict" not in d
    assert "layerwise" not in d
    assert "label" in d["models"][0]
    back = r.ComparisonRecord.from_dict({**d, "future_key": [1, 2]})
    assert back.extra == {"future_key": [1, 2]}
    assert isinstance(back.models[0], r.EvaluationRecord)
    assert back.to_dict()["future_key"] == [1, 2]


def test_a_record_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="not a resnet8-onnx/verification"):
        r.VerificationRecord.from_dict(r.BenchmarkRecord().to_dict())
    with pytest.raises(ValueError, match="unknown record schema"):
        r.record_from_dict({"schema": "other/thing"})


def test_a_record_written_before_schemas_is_read():
    old = {"passed": True, "samples": 3, "argmax_agreement": 3, "max_abs_diff": 0.0}
    rec = r.VerificationRecord.from_dict(old)
    assert rec.passed
    assert rec.samples == 3
    assert rec.extra == {}


def test_evaluation_comparison_and_benchmark_of_real_runs_round_trip(tmp_path):
    from model_factory import make_classifier, synthetic_dataset
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.bench import benchmark
    from resnet8_onnx.compare import compare_results
    from resnet8_onnx.evaluate import evaluate

    path = make_classifier(tmp_path / "tiny.onnx")
    data = synthetic_dataset(20)
    results = [evaluate(load_backend(path), data) for _ in range(2)]
    _round_trip(results[0].record())
    assert results[0].to_record()["schema"] == r.EvaluationRecord.SCHEMA
    comparison = compare_results(results, indices=data.indices)
    assert isinstance(comparison, r.ComparisonRecord)
    assert comparison.kind == "compare"
    assert comparison.models[1].versus_reference.agreement == 20
    _round_trip(comparison)
    bench = benchmark([path], batch_sizes=(2,), threads=[1], optimization_levels=["all"],
                      reference=False, min_seconds=0.0, min_iterations=1, warmup_seconds=0.0)
    assert bench.to_dict()["schema"] == r.BenchmarkRecord.SCHEMA
    assert isinstance(bench.results[0], r.BenchResult)
    _round_trip(bench)


def test_nested_blocks_are_typed_however_the_record_was_built():
    """A block handed over as a mapping becomes its part: renderers read attributes only."""
    rec = r.EvaluationRecord(metrics={"accuracy": 0.5, "per_class": [{"name": "cat"}]},
                             data={"count": 3, "source": {"kind": "array"}})
    assert isinstance(rec.metrics, r.Metrics)
    assert isinstance(rec.metrics.per_class[0], r.ClassRow)
    assert rec.metrics.per_class[0].name == "cat"
    assert rec.data.source.kind == "array"
    assert rec.model.backend == "model"  # a missing block takes its defaults
    rec.versus_reference = {"agreement": 3, "comparable": False}  # set later: typed too
    assert isinstance(rec.versus_reference, r.Versus)
    assert rec.versus_reference.agreement == 3


def test_every_saved_report_kind_round_trips_with_its_keys_unchanged():
    """to_dict(from_dict(d)) == d for a record of each kind with every optional block set,
    so reading a report back and writing it again loses and adds nothing."""
    from resnet8_onnx.verify import compare_outputs

    verification = {
        "passed": False, "samples": 4, "argmax_agreement": 3, "max_abs_diff": 0.5,
        "reference": {"name": "keras", "model_path": "m.h5", "model_sha256": "a",
                      "runtime_version": "k", "input_shape": [None, 32, 32, 3],
                      "input_dtype": "float32", "num_classes": 10,
                      "extra": {"threads": None}},
        "candidate": {"name": "onnxruntime", "model_path": "m.onnx", "model_sha256": "b",
                      "runtime_version": "1", "input_shape": [None, 32, 32, 3],
                      "input_dtype": "float32", "num_classes": 10},
        "provenance": {"converted_from_reference": None, "note": "no checksum"},
        "structure": {"path": "m.onnx", "checker": "passed", "nodes": 3, "future": 1},
        "interface_problems": ["output 'y' has shape [N, 9]"],
        "dynamic_batch": {"passed": True, "samples": 4, "batch_sizes": {"1": {}}},
        "parity": compare_outputs(np.eye(4, 10), np.eye(4, 10)).to_dict(),
        "settings": {"threads": 2, "available_cores": 2, "batch_size": 4,
                     "ort_optimization": "all"},
        "layerwise": {"layers": [{"layer": "conv", "class": "Conv2D", "matched": True,
                                  "max_abs_diff": 0.1, "onnx_tensor": "t"}],
                      "first_diverging_layer": None, "samples": 4,
                      "tolerance": {"atol": 1e-5, "rtol": 1e-5, "rule": "r"}},
    }
    back = r.VerificationRecord.from_dict(verification)
    assert back.layerwise.layers[0].kind == "Conv2D"
    assert back.structure.extra == {"future": 1}
    assert {k: v for k, v in back.to_dict().items() if not k.startswith("schema")} \
        == verification
    skipped = r.Layerwise.from_dict({"skipped": "needs an ONNX candidate"})
    assert skipped.to_dict() == {"skipped": "needs an ONNX candidate"}


def test_numpy_figures_become_python_numbers_however_they_arrive() -> None:
    """A figure set as a numpy scalar renders as a number, not as "—"."""
    from resnet8_onnx.report import format_int, format_pct

    metrics = r.Metrics(accuracy=np.float32(0.5), correct=np.int64(9))
    metrics.total = np.int64(18)
    assert (type(metrics.accuracy), type(metrics.correct), type(metrics.total)) == (
        float, int, int)
    assert (format_pct(metrics.accuracy), format_int(metrics.correct)) == ("50.00%", "9")


def test_older_and_partial_records_read_without_inventing_failures() -> None:
    """A verification without a dynamic-batch block says nothing about one; a run report's
    partial int8 block reads with defaults."""
    from resnet8_onnx.report.sections import _parity_lines

    old = r.VerificationRecord.from_dict({"passed": True, "parity": {"passed": True}})
    assert old.dynamic_batch is None
    assert _parity_lines(old.full_parity()) == []
    run = r.ComparisonRecord.from_dict({"int8": {"candidates": [{"recipe": {}}],
                                                 "layer_errors": [{"node": "conv"}]}})
    assert run.int8.candidates[0].recipe == r.quantization._default_recipe()
    assert run.int8.layer_errors[0].node == "conv"
