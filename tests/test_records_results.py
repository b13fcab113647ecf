"""records/results.py: real evaluation, comparison, benchmark and verification records
round-trip through JSON with their keys unchanged."""

from __future__ import annotations

import json

import numpy as np

from resnet8_onnx import records as r
from resnet8_onnx.report import to_json


def _round_trip(record: r.Record) -> None:
    data = json.loads(to_json(record.to_dict()))
    again = type(record).from_dict(data)
    assert again == type(record).from_dict(json.loads(to_json(again.to_dict())))
    assert json.loads(to_json(again.to_dict())) == data
    assert r.record_from_dict(data) == again


def test_evaluation_comparison_and_benchmark_of_real_runs_round_trip(tmp_path):
    from model_factory import make_classifier, synthetic_dataset
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.bench import benchmark
    from resnet8_onnx.compare import compare_results
    from resnet8_onnx.evaluate import evaluate

    path = make_classifier(tmp_path / "tiny.onnx")
    data = synthetic_dataset(20)
    results = [evaluate(load_backend(path), data) for _ in range(2)]
    _round_trip(results[0])
    assert results[0].to_dict()["schema"] == r.EvaluationRecord.SCHEMA
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
