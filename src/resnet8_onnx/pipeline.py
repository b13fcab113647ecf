"""The whole job in one call: convert → verify → evaluate both models → one report directory.

Each model runs over the data exactly once; verification reuses those outputs, so the
pipeline costs one conversion plus one pass per runtime.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resnet8_onnx.backends.keras import runner as keras_loader
from resnet8_onnx.backends.keras.files import inspect_keras_file, load_keras_model
from resnet8_onnx.backends.keras.runner import configure_threads
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.compare import comparison_of, versus_reference
from resnet8_onnx.convert.keras_to_onnx import DEFAULT_OPSET, convert
from resnet8_onnx.data import load_dataset
from resnet8_onnx.data.download import fetch
from resnet8_onnx.data.locations import ENV_DATA_DIR, named_data_dir
from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE, evaluate, settings_record
from resnet8_onnx.metrics import meets_accuracy
from resnet8_onnx.quantize import (
    DEFAULT_MIN_AGREEMENT,
    find_calibration_source,
    load_calibration_data,
    quantize,
)
from resnet8_onnx.quantize.calibration import NO_TRAINING_IMAGES
from resnet8_onnx.records import (
    ComparisonRecord,
    Conversion,
    DataInfo,
    EvaluationRecord,
    Figures,
    Parity,
    QuantEvaluation,
    QuantizationRecord,
    RunSettings,
    Verdict,
    VerificationRecord,
    Versus,
)
from resnet8_onnx.report import (
    check_planned,
    comparison_files,
    format_threshold,
    int8_verdict_line,
)
from resnet8_onnx.report.sections import evaluation_speedup, speed_line
from resnet8_onnx.support.errors import InputNotFoundError, VerificationFailedError, remedied
from resnet8_onnx.support.fsutil import refuse_overwriting_inputs
from resnet8_onnx.support.progress import note, status
from resnet8_onnx.verify import DEFAULT_ATOL, DEFAULT_RTOL, verify_outputs

DEFAULT_MODEL = "pretrainedResnet.h5"
DEFAULT_MIN_ACCURACY = 0.85


def resolve_model(model: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None,
                  *, download: bool | None = None) -> Path:
    """The user's model, or MLCommons' pretrained ResNet8 (found locally or downloaded)."""
    if model is not None:
        return Path(model)
    try:
        return fetch(DEFAULT_MODEL, data_dir, download=download)
    except InputNotFoundError as exc:
        raise InputNotFoundError(f"{exc}; or give the Keras model with --model FILE") from None


# The two models ``run`` evaluates, in report order (their confusion PNGs are named by backend).
_RUN_BACKENDS = ("keras", "onnxruntime")


def model_files(out_dir: str | os.PathLike[str], *, int8: bool = False) -> dict[str, Path]:
    """The models ``run`` writes into ``out_dir``, by their key in the record's ``files``."""
    out = Path(out_dir)
    return {"onnx": out / "model.onnx", **({"onnx_int8": out / "model_int8.onnx"} if int8 else {})}


def planned_outputs(out_dir: str | os.PathLike[str], *, int8: bool = False) -> list[Path]:
    """Every file ``run`` writes into ``out_dir``: the models, then the report set (which the
    caller writes from the record: ``report.write``)."""
    out = Path(out_dir)
    runs: list[tuple[str, str | None]] = [(b, None) for b in _RUN_BACKENDS]
    if int8:
        runs.append(("onnxruntime", "int8"))
    return [*model_files(out, int8=int8).values(),
            *(out / name for name in comparison_files(runs).values())]


def check_outputs(out_dir: str | os.PathLike[str], *, force: bool = False,
                  int8: bool = False) -> list[Path]:
    """:func:`planned_outputs`, each checked (exists without ``force``, not writable) without
    creating anything: a refusal costs nothing instead of the whole run."""
    planned = planned_outputs(out_dir, int8=int8)
    check_planned(out_dir, {str(p): p.name for p in planned}, force=force)
    return planned


def build_verdict(keras: EvaluationRecord, onnx: EvaluationRecord, parity: Parity,
                  min_accuracy: float, versus: Versus | None = None) -> Verdict:
    """The answer to the user's question, as data and as a few sentences.

    ``versus`` is ONNX's :func:`~resnet8_onnx.compare.versus_reference` entry against Keras
    (computed here when not given).
    """
    k, o = keras.metrics, onnx.metrics
    same_predictions = int((versus or versus_reference(keras, onnx)).agreement)
    meets = meets_accuracy(o.correct, o.total, min_accuracy)
    equal = k.correct == o.correct and same_predictions == o.total
    passed = bool(parity.passed and meets and equal)
    n = o.total or 0  # evaluate counts every image
    differing = [a.name for a, b in zip(k.per_class, o.per_class, strict=True)
                 if a.correct != b.correct]
    summary = [
        f"Keras accuracy {k.accuracy:.2%} ({k.correct:,}/{n:,}), "
        f"ONNX accuracy {o.accuracy:.2%} ({o.correct:,}/{n:,}).",
        ("ONNX and Keras agree on every prediction" if same_predictions == n else
         f"ONNX and Keras disagree on {n - same_predictions:,} of {n:,} predictions")
        + f"; max |Δ| of outputs {parity.max_abs_diff:.2e} "
        + ("(within tolerance)." if parity.passed else "(OVER tolerance)."),
        (f"ONNX accuracy is at least {format_threshold(min_accuracy)} (the threshold)."
         if meets else f"ONNX accuracy is BELOW the threshold of "
                       f"{format_threshold(min_accuracy)}."),
        "Per-class accuracy is identical for all classes." if not differing
        else "Per-class accuracy differs for: " + ", ".join(differing) + ".",
        "VERDICT: PASS — the conversion lost nothing." if passed else "VERDICT: FAIL.",
    ]
    return Verdict(
        accuracy_threshold=min_accuracy, keras_accuracy=k.accuracy, onnx_accuracy=o.accuracy,
        keras_correct=k.correct, onnx_correct=o.correct,
        same_correct_count=k.correct == o.correct, prediction_agreement=same_predictions,
        threshold_rule="correct / total ≥ threshold (exact)", meets_threshold=meets,
        passed=passed, summary=summary)


def run_pipeline(
    *, model: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str], split: str = "test", subset: str = "full",
    indices_file: str | os.PathLike[str] | None = None, limit: int | None = None,
    opset: int = DEFAULT_OPSET, min_accuracy: float = DEFAULT_MIN_ACCURACY,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
    batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None,
    force: bool = False, download: bool | None = None, int8: bool = False,
    calibration_data: str | os.PathLike[str] | None = None,
    also_outputs: Sequence[str | os.PathLike[str]] = (),
    min_agreement: float | None = None,
) -> ComparisonRecord:
    """Run the whole job: ``model.onnx`` (and ``model_int8.onnx``) written into ``out_dir``;
    returns the comparison record, whose report set the caller writes (``report.write``:
    ``run`` does it under the directory's lock), so the pipeline renders nothing.

    ``int8`` also quantises the ONNX model (``quantize``'s automatic recipe choice, calibrated
    on training images: ``calibration_data`` or those found near ``data_dir``), evaluates it
    on the same images and adds it to the tables and the verdict. It never changes the
    verdict: the verdict is about the conversion. ``also_outputs`` are files the caller will
    write afterwards (``run --json``): refused with the report's if they would overwrite an
    input, the data included. ``min_agreement`` is the int8 model's quality gate (quantize's
    default when None; 0: off), recorded in the int8 record's selection.
    """
    out = Path(out_dir)
    models = model_files(out, int8=True)
    onnx_path, int8_path = models["onnx"], models["onnx_int8"]
    model_path, dataset = _check_inputs(
        out, model, data_dir, split=split, subset=subset, indices_file=indices_file,
        limit=limit, download=download, force=force, int8=int8, also=also_outputs)

    with status("Loading Keras model (imports TensorFlow)…"):
        # TensorFlow fixes its thread pools at first use: set them before anything runs.
        configure_threads(threads)
        keras_model = load_keras_model(model_path)
    conversion = convert(model_path, onnx_path, opset=opset, force=force, model=keras_model)
    keras_backend = keras_loader.from_model(keras_model, model_path, threads=threads)
    onnx_backend = onnxrt.load(onnx_path, threads=threads)

    keras_result = evaluate(keras_backend, dataset, batch_size=batch_size)
    onnx_result = evaluate(onnx_backend, dataset, batch_size=batch_size)
    verification = verify_outputs(
        keras_backend, onnx_backend, dataset.images,
        keras_result.live_outputs(), onnx_result.live_outputs(),
        indices=dataset.indices, atol=atol, rtol=rtol, batch_size=batch_size,
    )
    parity = verification.full_parity()
    results = [keras_result, onnx_result]
    int8_record, int8_failure = None, None
    if int8:
        try:
            int8_record, int8_result = _int8(
                onnx_path, int8_path, onnx_result, dataset, data_dir=data_dir,
                calibration_data=calibration_data, batch_size=batch_size, threads=threads,
                force=force, download=download, min_agreement=min_agreement)
            results.append(int8_result)
        except VerificationFailedError as exc:  # the quality gate: no int8 model written
            int8_failure = str(exc)
    # The same comparison as ``compare`` (agreement and |Δ| against Keras, computed once),
    # plus the conversion, the verification and the verdict.
    comparison = comparison_of(results, indices=dataset.indices)
    verdict = build_verdict(keras_result, onnx_result, parity, min_accuracy,
                            comparison.models[1].versus_reference)
    if int8_record is not None:  # one speed-up: the table's figures, not the quantiser's
        verdict = add_int8_to_verdict(verdict, int8_record,
                                      evaluation_speedup(*comparison.models[1:3]))
    if int8_failure is not None:
        verdict = _add_int8_failure(verdict, int8_failure)
        comparison.extra["int8_failed"] = int8_failure
    _attach_job(comparison, conversion=conversion,
                verification=verification, parity=parity, verdict=verdict,
                data=dataset.info(),
                settings=settings_record(threads, batch_size),
                int8_record=int8_record)
    return comparison


def _attach_job(comparison: ComparisonRecord, *, conversion: Conversion,
                verification: VerificationRecord, parity: Parity, verdict: Verdict,
                data: DataInfo, settings: RunSettings,
                int8_record: QuantizationRecord | None) -> None:
    """Add what only the pipeline knows (conversion, verification, verdict, settings) to the
    comparison record, whose model rows ``compare`` would have produced alike."""
    comparison.conversion = conversion
    comparison.structure = verification.structure
    comparison.parity = parity
    comparison.verdict = verdict
    comparison.data = data
    comparison.settings = settings
    for key in ("reference_parameters", "reference_batch_normalization_layers", "provenance",
                "layerwise"):
        setattr(comparison, key, getattr(verification, key))
    comparison.int8 = int8_record


def _check_inputs(
    out: Path, model: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None,
    *, split: str, subset: str, indices_file: str | os.PathLike[str] | None,
    limit: int | None, download: bool | None, force: bool, int8: bool,
    also: Sequence[str | os.PathLike[str]] = (),
) -> tuple[Path, Any]:
    """(model path, dataset) once the outputs may be written and overwrite no input, and the
    model file is readable and safe: every cheap failure before minutes of TensorFlow."""
    outputs = [*check_outputs(out, force=force, int8=int8), *map(Path, also)]  # before work
    model_path = resolve_model(model, data_dir, download=download)
    refuse_overwriting_inputs(outputs, [model_path])
    inspect_keras_file(model_path)  # a missing, corrupt or unsafe model fails before the data
    dataset = load_dataset(data_dir, split=split, subset=subset, indices_file=indices_file,
                           download=download)
    refuse_overwriting_inputs(outputs, dataset.input_paths)
    if limit:
        dataset = dataset.with_limit(limit)
    for line in dataset.notes:  # said on stderr as every command says it (-q: not at all)
        note(line)
    return model_path, dataset


def _int8(onnx_path: Path, int8_path: Path, onnx_result: EvaluationRecord, dataset: Any, *,
          data_dir: str | os.PathLike[str] | None,
          calibration_data: str | os.PathLike[str] | None, batch_size: int,
          threads: int | None, force: bool, download: bool | None,
          min_agreement: float | None = None,
          ) -> tuple[QuantizationRecord, EvaluationRecord]:
    """Quantise the converted model, evaluate it on the run's images; record + result.

    Calibration images are found by quantize's one rule (:func:`calibration_source`): under
    ``calibration_data`` when given, else under ``data_dir``. A model below quantize's quality
    gate raises :class:`VerificationFailedError` and nothing is written."""
    source = calibration_data if calibration_data is not None else \
        find_calibration_source(data_dir)
    named = named_data_dir(data_dir)
    if source is None and named is not None:  # a named directory is never downloaded into
        label = data_dir if data_dir is not None else f"{ENV_DATA_DIR}={named}"
        raise remedied(InputNotFoundError(
            f"no training images for int8 calibration under {label} (searched two levels "
            "down: an image folder named train*, or an official layout with training "
            "batches)"), NO_TRAINING_IMAGES)
    calibration = load_calibration_data(
        source, download=False if calibration_data is not None else download)
    record = quantize(onnx_path, int8_path, calibration, batch_size=batch_size,
                      threads=threads, force=force,
                      min_agreement=DEFAULT_MIN_AGREEMENT if min_agreement is None
                      else min_agreement)
    result = evaluate(onnxrt.load(int8_path, threads=threads), dataset,
                      batch_size=batch_size)
    n = len(result.predictions)
    versus = versus_reference(onnx_result, result)
    record.evaluation = QuantEvaluation(
        data=dataset.info(),
        fp32=Figures(accuracy=onnx_result.metrics.accuracy,
                     correct=onnx_result.metrics.correct, total=n),
        int8=Figures(accuracy=result.metrics.accuracy, correct=result.metrics.correct, total=n),
        agreement=versus.agreement, agreement_fraction=versus.agreement_fraction,
        max_abs_diff=versus.max_abs_diff if n else None,
        mean_abs_diff=versus.mean_abs_diff if n else None)
    return record, result


def _add_int8_failure(verdict: Verdict, message: str) -> Verdict:
    """The verdict with the int8 step's gate failure before its last line; the conversion's
    pass/fail is unchanged (``run`` exits 6 for it)."""
    summary = list(verdict.summary)
    summary.insert(max(len(summary) - 1, 0),
                   f"Int8 step FAILED the quality gate: {message.split(': ', 1)[-1]}.")
    return dataclasses.replace(verdict, summary=summary)


def add_int8_to_verdict(verdict: Verdict, record: QuantizationRecord,
                        speed: tuple[float, str] | None = None) -> Verdict:
    """The verdict with an int8 line before its last line; pass/fail is unchanged.

    ``speed`` (speed-up, its measurement; see ``evaluation_speedup``) replaces the
    quantiser's own timing, so the verdict and the table beneath it state one figure.
    """
    summary = list(verdict.summary)
    line = int8_verdict_line(record, speed)
    line = line[:1].upper() + line[1:]
    summary.insert(max(len(summary) - 1, 0), line)
    ev = record.evaluation
    return dataclasses.replace(
        verdict, summary=summary, int8_accuracy=None if ev is None else ev.int8.accuracy,
        int8_agreement=None if ev is None else ev.agreement_fraction,
        int8_speedup=record.speed.speedup if speed is None else round(speed[0], 4),
        int8_speedup_measurement=(f"quantize's timing: {speed_line(record)}" if speed is None
                                  else speed[1]))
