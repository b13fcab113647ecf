"""Stream a data set through a backend and collect what the metrics and reports need.

The loop is deliberately plain: the data set stays uint8 and each batch is one backend call,
which casts (and, for ONNX models, preprocesses) that batch alone; outputs land in a
preallocated array. That keeps the harness's overhead over a bare runtime loop small and its
memory flat.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from resnet8_onnx.machine import LoadMeter, available_cores, check_batch_fits, environment
from resnet8_onnx.metrics import compute_metrics
from resnet8_onnx.preprocess import near_chance_warning
from resnet8_onnx.records import (
    EvaluationRecord,
    ModelInfo,
    RunnerInfo,
    RunSettings,
    Timings,
)
from resnet8_onnx.support.errors import InvalidInputError
from resnet8_onnx.support.facade import callable_module
from resnet8_onnx.support.fsutil import recorded_path
from resnet8_onnx.support.progress import track

if TYPE_CHECKING:
    from resnet8_onnx.backends.base import Runner
    from resnet8_onnx.data import Dataset

# ONNX Runtime's throughput on ResNet8 peaks around 64–128 images per call on 2 cores
# (measured: 128 → 153 GFLOP/s, 250 → 141, 1000 → 131); larger batches only cost memory.
DEFAULT_BATCH_SIZE = 128


def run_settings(info: RunnerInfo, batch_size: int) -> RunSettings:
    """How a model was run — threads, batch size, ONNX Runtime graph optimisation level —
    and the cores there were: throughput means little without them.

    ``threads`` is ``None`` when the runtime chose (ONNX Runtime and TensorFlow: all cores).
    """
    return settings_record(info.extra.get("threads") or None, batch_size,
                           ort_optimization=info.extra.get("optimization"))


def settings_record(threads: int | None, batch_size: int, *,
                    ort_optimization: str | None = "all") -> RunSettings:
    """The ``settings`` block of every record: one shape for one model or several."""
    return RunSettings(threads=threads, available_cores=available_cores(),
                       batch_size=batch_size, ort_optimization=ort_optimization)


def pixel_shape(backend: Runner) -> tuple[int | None, ...]:
    """The NHWC image shape (H, W, C) a backend's ``predict`` takes (None: any size).

    ONNX models with an NCHW spec take NHWC pixels too: the backend transposes them.
    """
    return tuple(backend.input_spec.pixel_shape)


def check_compatible(backend: Runner, dataset: Dataset) -> None:
    """Refuse a model whose input or output cannot fit the data, before running anything."""
    info, path = backend.info, backend.info.model_path
    expected = tuple(dataset.images.shape[1:])
    got = pixel_shape(backend)
    if any(g is not None and g != e for g, e in zip(got, expected, strict=False)) or len(got) != 3:
        spec = backend.input_spec
        model = tuple(info.input_shape[1:])
        shown = "×".join("?" if d is None else str(d) for d in model)
        axes = "C×H×W" if spec.layout == "nchw" else "H×W×C"
        want = spec.model_shape(expected) if len(expected) == 3 else expected
        raise InvalidInputError(
            f"{path}: model input is {shown} ({axes}), the data is "
            f"{'×'.join(map(str, expected))} NHWC images (expected a model input of "
            f"{'×'.join(map(str, want))}); to resize the images give --input-size H[,W]"
        )
    n = len(dataset.class_names)
    if info.num_classes and info.num_classes != n:
        output = info.extra.get("output_name")
        named = f" (output {output!r})" if output else ""
        raise InvalidInputError(
            f"{path}: model has {info.num_classes} outputs{named}, the data set has {n} "
            f"classes (expected an output of shape (N, {n})); name the model's classes with "
            "--class-names FILE (or annotate --class-names) to match folders by name"
        )


def predict_all(
    backend: Runner, batches: Iterable[np.ndarray], n: int, description: str
) -> tuple[np.ndarray | None, float]:
    """Outputs of ``backend`` over ``n`` images given as NHWC 0–255 batches, into one array.

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


def effective_batch_size(batch_size: int, images: int) -> int:
    """The batch size actually used: never more than the images there are."""
    return max(1, min(batch_size, images))


def run_inference(
    backend: Runner, dataset: Dataset, *, batch_size: int = DEFAULT_BATCH_SIZE,
    description: str | None = None,
) -> tuple[np.ndarray, float]:
    """All outputs ``(N, C)`` of ``backend`` over ``dataset`` and the seconds spent in it."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    check_compatible(backend, dataset)
    n = len(dataset)
    check_batch_fits(effective_batch_size(batch_size, n))  # before allocating, not OOM-killed
    label = description or f"{backend.info.name}: {n:,} images"
    # uint8 slices: each backend casts (and preprocesses) once per batch, as it needs.
    images = dataset.images
    batches = (images[i:i + batch_size] for i in range(0, n, batch_size))
    outputs, spent = predict_all(backend, batches, n, label)
    if outputs is None:
        raise InvalidInputError(f"{dataset.source.path}: the data set holds no images")
    bad = ~np.isfinite(outputs).all(axis=1)
    if bad.any():
        raise InvalidInputError(
            f"{backend.info.model_path}: model produced NaN/Inf outputs for "
            f"{int(bad.sum()):,} of {n:,} images"
        )
    return outputs, spent


# What a backend may add about itself that the report's "model" section carries.
# Runner facts a record keeps; a PyTorch model's device, dtype and TF32 setting among them,
# since parity depends on them.
_MODEL_EXTRAS = ("output_name", "provider", "preprocessing", "fixed_batch", "notes",
                 "quantization", "device", "compute_dtype", "tf32", "inference_precision",
                 "performance_hint", "precision_source")


def model_info(info: RunnerInfo, output_kind: str | None, *,
               notes: Sequence[str] = ()) -> ModelInfo:
    """The record's ``model`` block from a runner's ``info``, with ``notes`` of evaluate's
    own after the runner's."""
    extra = dict(info.extra)
    if notes:
        extra["notes"] = [*extra.get("notes", []), *notes]
    return ModelInfo(
        path=recorded_path(info.model_path) or "", sha256=info.model_sha256,
        backend=info.name, runtime_version=info.runtime_version,
        input_shape=list(info.input_shape), input_dtype=info.input_dtype,
        output_kind=output_kind,
        **{key: extra[key] for key in _MODEL_EXTRAS if key in extra})


def model_class_names(backend: Runner, data_names: Sequence[str]
                      ) -> tuple[tuple[str, ...], str | None]:
    """The class names reports use: the model's own (its metadata's ``class_names``, e.g.
    written by ``annotate --class-names``) when it has them, else the data set's; and a note
    when the two differ, so a reader knows whose names the table shows."""
    data = tuple(str(n) for n in data_names)
    raw = (getattr(backend, "metadata", None) or {}).get("class_names")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        return data, None
    names = tuple(raw)
    if len(names) != len(data):
        return data, (f"the model's metadata names {len(names)} classes, the data set has "
                      f"{len(data)}: the data set's names are shown")
    if names == data:
        return data, None
    differing = [f"{i} {m!r} (data: {d!r})" for i, (m, d) in enumerate(zip(names, data,
                                                                            strict=True))
                 if m != d]
    shown = ", ".join(differing[:3]) + (f" and {len(differing) - 3} more"
                                        if len(differing) > 3 else "")
    return names, ("class names are the model's own (metadata class_names); they differ "
                   f"from the data set's: {shown}")


def evaluate(
    backend: Runner, dataset: Dataset, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> EvaluationRecord:
    """Evaluate ``backend`` on every image of ``dataset``: its report record, which also
    holds the raw outputs and labels (not saved) that compare, run and quantize need."""
    start = time.perf_counter()
    with LoadMeter() as load:  # other work during the pass makes its images/s noisy
        outputs, inference = run_inference(backend, dataset, batch_size=batch_size)
    names, names_note = model_class_names(backend, dataset.class_names)
    metrics = compute_metrics(dataset.labels, outputs, names,
                              output_kind=backend.output_kind)
    total = time.perf_counter() - start
    n = len(dataset)
    info = backend.info
    warning = near_chance_warning(
        metrics.correct or 0, n, len(dataset.class_names), model=info.model_path,
        preprocessing=info.extra.get("preprocessing"))
    used = effective_batch_size(batch_size, n)
    timings = Timings(
        inference_seconds=round(inference, 4), total_seconds=round(total, 4),
        images_per_second=round(n / inference, 1) if inference > 0 else 0.0,
        batch_size=used, requested_batch_size=batch_size if used != batch_size else None,
        cpu_busy=load.busy)
    return EvaluationRecord(
        model=model_info(info, metrics.output_kind, notes=[names_note] if names_note else ()),
        data=dataset.info(),
        settings=run_settings(info, used),
        metrics=metrics,
        environment=environment({info.name: info.runtime_version}),
        timings=timings,
        warnings=[warning] if warning else None,
        outputs=outputs,
        labels=np.asarray(dataset.labels),
    )


# The facade's resnet8_onnx.evaluate(...) is this module called (see support.facade).
callable_module(__name__, "evaluate")
