"""Stream a data set through a backend and collect what the metrics and reports need.

The loop is deliberately plain: batches are converted to float32 one at a time (the data set
stays uint8), each batch is one backend call, and outputs land in a preallocated array. That
keeps the harness's overhead over a bare runtime loop small and its memory flat.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import InvalidInputError
from .progress import track

if TYPE_CHECKING:
    from .backends.base import Backend
    from .data import Dataset
    from .metrics import ClassificationMetrics

# ONNX Runtime's throughput on ResNet8 peaks around 64–128 images per call on 2 cores
# (measured: 128 → 153 GFLOP/s, 250 → 141, 1000 → 131); larger batches only cost memory.
DEFAULT_BATCH_SIZE = 128


def check_compatible(backend: Backend, dataset: Dataset) -> None:
    """Refuse a model whose input or output cannot fit the data, before running anything."""
    info, path = backend.info, backend.info.model_path
    expected = tuple(dataset.images.shape[1:])
    got = tuple(info.input_shape[1:])
    if any(g is not None and g != e for g, e in zip(got, expected, strict=False)) or len(got) != 3:
        shown = "×".join("?" if d is None else str(d) for d in got)
        raise InvalidInputError(
            f"{path}: model input is {shown} (H×W×C), the data is "
            f"{'×'.join(map(str, expected))} NHWC images"
        )
    n = len(dataset.class_names)
    if info.num_classes and info.num_classes != n:
        raise InvalidInputError(
            f"{path}: model has {info.num_classes} outputs, the data set has {n} classes"
        )


def predict_all(
    backend: Backend, batches: Iterable[np.ndarray], n: int, description: str
) -> tuple[np.ndarray | None, float]:
    """Outputs of ``backend`` over ``n`` images given as float32 batches, into one array.

    The one inference loop of the package: a progress bar, time spent inside the backend
    only, outputs written into a preallocated array (``None`` when there were no batches).
    """
    outputs: np.ndarray | None = None
    spent = 0.0
    done = 0
    with track(description, n) as advance:
        for batch in batches:
            start = time.perf_counter()
            out = backend.predict(batch)
            spent += time.perf_counter() - start
            if outputs is None:
                outputs = np.empty((n, out.shape[1]), dtype=np.float32)
            outputs[done : done + len(out)] = out
            done += len(out)
            advance(len(out))
    return outputs, spent


def run_inference(
    backend: Backend, dataset: Dataset, *, batch_size: int = DEFAULT_BATCH_SIZE,
    description: str | None = None,
) -> tuple[np.ndarray, float]:
    """All outputs ``(N, C)`` of ``backend`` over ``dataset`` and the seconds spent in it."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    check_compatible(backend, dataset)
    n = len(dataset)
    label = description or f"{backend.info.name}: {n:,} images"
    outputs, spent = predict_all(backend, (b for b, _ in dataset.batches(batch_size)), n, label)
    if outputs is None:
        raise InvalidInputError(f"{dataset.source.path}: the data set holds no images")
    bad = ~np.isfinite(outputs).all(axis=1)
    if bad.any():
        raise InvalidInputError(
            f"{backend.info.model_path}: model produced NaN/Inf outputs for "
            f"{int(bad.sum()):,} of {n:,} images"
        )
    return outputs, spent


def environment(backend_versions: dict[str, str] | None = None) -> dict[str, str]:
    """Library versions that affect the numbers; deterministic for one installation."""
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "resnet8_onnx": __version__,
    }
    env.update(backend_versions or {})
    return env


@dataclass(frozen=True)
class EvaluationResult:
    """One model on one data set: raw outputs, metrics, and where they came from."""

    backend: dict[str, Any]
    data: dict[str, Any]
    outputs: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    metrics: ClassificationMetrics
    timings: dict[str, float]
    environment: dict[str, str]

    @property
    def predictions(self) -> np.ndarray:
        return self.outputs.argmax(axis=1)

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready report record (see ``report.py``); only ``timings`` varies per run."""
        return {
            "tool": {"name": "resnet8-onnx", "version": __version__},
            "model": {
                "path": self.backend["model_path"],
                "sha256": self.backend["model_sha256"],
                "backend": self.backend["name"],
                "runtime_version": self.backend["runtime_version"],
                "input_shape": self.backend["input_shape"],
                "input_dtype": self.backend["input_dtype"],
                "output_kind": self.metrics.output_kind,
                # Where and how a PyTorch model ran (device, dtype, TF32): parity depends on it.
                **{k: v for k, v in (self.backend.get("extra") or {}).items()
                   if k in ("device", "compute_dtype", "tf32")},
            },
            "data": self.data,
            "metrics": self.metrics.to_dict(),
            "environment": self.environment,
            "timings": self.timings,
        }


def evaluate(
    backend: Backend, dataset: Dataset, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> EvaluationResult:
    """Evaluate ``backend`` on every image of ``dataset``."""
    from .metrics import compute_metrics

    start = time.perf_counter()
    outputs, inference = run_inference(backend, dataset, batch_size=batch_size)
    declared = getattr(backend, "output_kind", None)
    metrics = compute_metrics(dataset.labels, outputs, dataset.class_names, output_kind=declared)
    total = time.perf_counter() - start
    n = len(dataset)
    return EvaluationResult(
        backend=backend.info.to_dict(),
        data=dataset.describe(),
        outputs=outputs,
        labels=np.asarray(dataset.labels),
        metrics=metrics,
        timings={
            "inference_seconds": round(inference, 4),
            "total_seconds": round(total, 4),
            "images_per_second": round(n / inference, 1) if inference > 0 else 0.0,
            "batch_size": batch_size,
        },
        environment=environment({backend.info.name: backend.info.runtime_version}),
    )
