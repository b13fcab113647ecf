"""Several models on the same images, side by side: accuracy, per-class accuracy, agreement
with the first model, output differences and throughput.

The question a user asks with ``compare`` is "do these files behave like the first one?" —
the Keras original against its ONNX conversion, the float TFLite and the int8 TFLite. So the
first model is the reference: every other model's predictions and raw outputs are measured
against it with :func:`resnet8_onnx.verify.compare_outputs`, the same comparison ``verify``
uses. An int8 model's outputs are dequantised by its backend, so its |Δ| is computable; it is
simply large (of the order of the 1/256 output grid) and the table marks the model as int8.

:func:`compare_results` is a pure function over evaluation results; :func:`compare_models`
loads and runs the models. Both return a typed :class:`~resnet8_onnx.records.ComparisonRecord`;
the writers live in :mod:`resnet8_onnx.report` and read only that record, so a saved
``compare.json`` read back with ``ComparisonRecord.from_dict`` renders without the models.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.backends import applicable_options, backend_for, label_of, load_backend
from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE, check_compatible, evaluate, settings_record
from resnet8_onnx.preprocess import SPEC_FIELDS
from resnet8_onnx.records import (
    ComparisonRecord,
    EvaluationRecord,
    Versus,
    tool,
)
from resnet8_onnx.support.errors import UsageError
from resnet8_onnx.support.facade import callable_module
from resnet8_onnx.verify import agreement, compare_outputs

if TYPE_CHECKING:
    from resnet8_onnx.data import Dataset


# --------------------------------------------------------------------------- building
def _label(index: int, record: EvaluationRecord) -> str:
    """'#2 ONNX', '#4 LiteRT int8': short enough for a column header, unique by number."""
    # The arithmetic, not the input's dtype: a uint8 input of embedded preprocessing
    # (annotate --embed) is cast to float inside the graph.
    precision = record.model.inference_precision  # OpenVINO's, in effect
    quant = (f" {record.model.quantization}" if record.model.quantization else
             f" {precision}" if precision not in (None, "f32") else "")
    return f"#{index + 1} {label_of(record.model.backend)}{quant}"


def versus_reference(reference: EvaluationRecord, result: EvaluationRecord,
                     indices: np.ndarray | None = None) -> Versus:
    """Agreement of predictions and |Δ| of outputs of ``result`` against the reference model.

    The one place they are computed: ``compare``, ``run``'s verdict and its int8 figures all
    read this entry.
    """
    n = len(result.predictions)
    agreeing, first = agreement(reference.predictions, result.predictions, indices)
    kinds = (reference.metrics.output_kind, result.metrics.output_kind)
    comparable = kinds[0] == kinds[1]
    cmp = (compare_outputs(reference.live_outputs(), result.live_outputs()) if comparable
           else None)
    return Versus(
        samples=n, agreement=agreeing, agreement_fraction=agreeing / n if n else None,
        disagreements=n - agreeing, first_disagreements=first, comparable=comparable,
        max_abs_diff=None if cmp is None else cmp.max_abs_diff,
        mean_abs_diff=None if cmp is None else cmp.mean_abs_diff,
        p99_abs_diff=None if cmp is None else cmp.p99_abs_diff,
        min_cosine_similarity=None if cmp is None else cmp.min_cosine_similarity,
        note=None if comparable else (f"outputs are not of the same kind ({kinds[1]} vs the "
                                      f"reference's {kinds[0]}): |Δ| not computed"))


def comparison_of(results: Sequence[EvaluationRecord], *,
                  indices: np.ndarray | None = None) -> ComparisonRecord:
    """The typed comparison of evaluations on the same images, the first the reference.

    Each model's record gets its label, whether it is quantised and its
    :func:`versus_reference` entry. Raises :class:`UsageError` when the results were not
    computed on the same images (different counts or labels): agreement would be meaningless.
    """
    if len(results) < 2:
        raise UsageError("compare needs at least two models")
    first = results[0]
    for result in results[1:]:
        if first.labels is None or result.labels is None or not np.array_equal(
                result.labels, first.labels):
            raise UsageError(
                f"{result.model.path}: evaluated on different images than "
                f"{first.model.path}; cannot compare")
    models = []
    for i, result in enumerate(results):
        record = copy.copy(result)  # the caller's record stays as evaluate() returned it
        record.label = _label(i, record)
        record.quantized = (record.model.input_dtype not in ("float32", "float64")
                            or bool(record.model.quantization))
        record.versus_reference = versus_reference(first, result, indices)
        models.append(record)
    return ComparisonRecord(models=models, data=copy.deepcopy(first.data))


def compare_results(
    results: Sequence[EvaluationRecord], *, indices: np.ndarray | None = None
) -> ComparisonRecord:
    """The ``compare`` record of evaluations of several models on the same images.

    The first result is the reference; ``indices`` (the images' test-set indices) name the
    first disagreeing images. See :func:`comparison_of`.
    """
    record = comparison_of(results, indices=indices)
    record.tool = tool()
    record.kind = "compare"
    first = record.models[0]
    record.reference = {"index": 0, "label": first.label, "path": first.model.path}
    return record


def per_model_options(
    paths: Sequence[str | os.PathLike[str]], values: Mapping[str, Sequence[Any] | None], *,
    backends: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Spread repeated options over the models: ``--layout nhwc --layout nchw`` for two models.

    Per option: no value → nothing; one value → every ONNX model (Keras and LiteRT models
    keep their fixed raw-pixel input); as many values as models → one each, in model order,
    ``None`` (``-`` on the command line) meaning "not given". Any other count is exit 2.
    """
    names = [b or backend_for(p) for b, p in
             zip(backends if backends is not None else [None] * len(paths), paths, strict=True)]
    per_model: list[dict[str, Any]] = [{} for _ in paths]
    for option, given in values.items():
        given = [None if v == "-" else v for v in (given or [])]
        if not given:
            continue
        if len(given) == 1 and len(paths) != 1:
            # the spec fields are the loaders' "preprocessing" option
            takes = "preprocessing" if option in SPEC_FIELDS else option
            for entry, name in zip(per_model, names, strict=True):
                if takes in applicable_options(name, {takes: True}):
                    entry[option] = given[0]
        elif len(given) == len(paths):
            for entry, value in zip(per_model, given, strict=True):
                if value is not None:
                    entry[option] = value
        else:
            flag = {"output": "output-name", "performance_hint": "performance-hint"}.get(
                option, option)
            raise UsageError(
                f"--{flag} given {len(given)} times for {len(paths)} models: give it once "
                f"(for every model it applies to) or once per model in model order ('-' for none)")
    return per_model


def compare_models(
    paths: Sequence[str | os.PathLike[str]], dataset: Dataset | Callable[..., Dataset], *,
    backends: Sequence[str | None] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None, options: Sequence[Mapping[str, Any]] | None = None,
    provider: str | None = None, device: str | None = None,
) -> ComparisonRecord:
    """Load each model with its backend, evaluate it on ``dataset`` and compare (first = ref).

    ``options`` holds one mapping per model (see :func:`per_model_options`): the spec fields
    (``layout``, ``channels``, ``scale``, ``mean``, ``std``) and ``output``; ``provider``
    applies to the ONNX models, ``device`` to the PyTorch models. Every model is loaded once
    before any is run, so a bad spec or model fails in seconds rather than after the first
    evaluations; models are then evaluated one after another. ``dataset`` may be a function
    returning it, called once every model has loaded: a corrupt model then fails before any
    data is searched.
    """
    if len(paths) < 2:
        raise UsageError("compare needs at least two models")
    names = list(backends) if backends is not None else [None] * len(paths)
    if len(names) != len(paths):
        raise UsageError(f"{len(names)} backends given for {len(paths)} models")

    per_model = list(options) if options is not None else [{} for _ in paths]
    if len(per_model) != len(paths):
        raise UsageError(f"{len(per_model)} option sets given for {len(paths)} models")
    loaded = []
    for path, name, opts in zip(paths, names, per_model, strict=True):
        spec = {k: v for k, v in opts.items() if k in SPEC_FIELDS}
        own = {k: v for k, v in opts.items() if k not in SPEC_FIELDS}  # output, precision …
        kind = name or backend_for(path)
        loaded.append(load_backend(path, name, threads=threads, preprocessing=spec, **own,
                                   **applicable_options(
                                       kind, {"provider": provider, "device": device})))
    if callable(dataset):  # given the models, it can fit their class names and input size
        import inspect

        takes_models = bool(inspect.signature(dataset).parameters)
        dataset = dataset(loaded) if takes_models else dataset()
    for backend in loaded:
        check_compatible(backend, dataset)
    results = []
    while loaded:
        backend = loaded.pop(0)
        results.append(evaluate(backend, dataset, batch_size=batch_size))
        del backend
    record = compare_results(results, indices=dataset.indices)
    record.settings = settings_record(threads, batch_size)
    return record


# The facade's resnet8_onnx.compare(...) is this module called (see support.facade).
callable_module(__name__, "compare_models")
