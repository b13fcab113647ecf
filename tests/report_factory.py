"""Typed records for the report tests: metrics from compute_metrics on synthetic predictions."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from resnet8_onnx import records as r
from resnet8_onnx.metrics import compute_metrics, softmax

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def data_block(count: int, subset: str = "full", official: bool = True) -> dict:
    """The saved ``data`` block (``Dataset.info()``'s JSON) for ``count`` test images."""
    return {
        "dataset": "CIFAR-10",
        "source": {"kind": "binary-dir", "path": "/data/cifar-10-batches-bin",
                   "checks": ["test_batch.bin md5 matches the official file"],
                   "official": official, "warnings": [] if official else ["unofficial files"]},
        "split": "test", "subset": subset, "count": count, "source_count": 10_000,
        "limit": None, "per_class": {}, "full_official_test_set": official and subset == "full",
    }


def record_dict(n: int = 2000, seed: int = 0, *, subset: str = "full",
                backend: str = "onnxruntime", logits: bool = False,
                drop_class: int | None = None) -> dict:
    """The JSON form of an evaluation record, metrics from compute_metrics."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    if drop_class is not None:
        y[y == drop_class] = (drop_class + 1) % 10
    scores = rng.normal(size=(n, 10))
    scores[np.arange(n), y] += 2.5
    if not logits:
        scores = softmax(scores).astype(np.float32)
    metrics = compute_metrics(y, scores, NAMES)
    suffix = {"onnxruntime": ".onnx", "keras": ".h5"}.get(backend, ".bin")
    return {
        "tool": {"name": "resnet8-onnx", "version": "0.1.0"},
        "model": {"path": f"/models/pretrainedResnet{suffix}", "sha256": "0" * 64,
                  "backend": backend, "runtime_version": "1.0", "output_kind": metrics.output_kind},
        "data": data_block(n, subset),
        "metrics": metrics.to_dict(),
        "environment": {"python": "3.11", "numpy": np.__version__},
        "timings": {"inference_seconds": 0.5, "images_per_second": n / 0.5, "batch_size": 250},
    }


def make_record(*args: object, **kwargs: object) -> r.EvaluationRecord:
    return r.EvaluationRecord.from_dict(record_dict(*args, **kwargs))  # type: ignore[arg-type]


def make_comparison(passed: bool = True) -> r.ComparisonRecord:
    keras, onnx = record_dict(backend="keras"), record_dict(backend="onnxruntime")
    summary = ["Keras and ONNX agree on every prediction.",
               "VERDICT: PASS — the conversion lost nothing." if passed else "VERDICT: FAIL."]
    return r.ComparisonRecord.from_dict({
        "models": [keras, onnx],
        "parity": {"passed": passed, "samples": 2000, "argmax_agreement": 2000 if passed else 1997,
                   "max_abs_diff": 3e-7, "atol": 1e-5, "rtol": 1e-5,
                   "first_disagreements": [] if passed else [4, 17, 933]},
        "verdict": {"accuracy_threshold": 0.85, "onnx_accuracy": onnx["metrics"]["accuracy"],
                    "keras_accuracy": keras["metrics"]["accuracy"], "same_correct_count": True,
                    "meets_threshold": True, "passed": passed, "summary": summary},
        "data": onnx["data"],
    })


def terminal_text(render, payload) -> str:
    """What ``render`` prints for ``payload`` on a 120-column console without colour."""
    console = Console(record=True, width=120, color_system=None)
    render(payload, console)
    return console.export_text()
