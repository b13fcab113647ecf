"""The quantisation job: quantise a grid of recipes, score and time them, keep the best.

:func:`quantize` measures for the user which recipe is right on this CPU: it quantises each
recipe of the grid on the calibration images, scores each on held-out images for agreement
with the float model, times each against the float model in the same run, and keeps the
fastest recipe within the agreement tolerance (:func:`~.recipe.select_candidate`). Every
candidate stays in the record.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..backends import onnxrt
from ..errors import InvalidInputError, UsageError, one_line
from ..evaluate import DEFAULT_BATCH_SIZE, evaluate
from ..fsutil import check_writable, recorded_path, write_bytes_atomic
from ..progress import status, track
from ..records import Candidate, Figures, LayerError, QuantizationRecord
from ..verify import compare_outputs
from .calibration import (
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_HOLDOUT_COUNT,
    MIN_HOLDOUT,
    as_dataset,
    calibration_account,
    images_sha256,
    split_positions,
)
from .cpu import CpuInfo, read_cpuinfo, speed_verdict
from .diagnosis import diagnose_chosen
from .engine import (
    FloatModel,
    check_excluded_nodes,
    cpu_session,
    inspect_float_model,
    library_versions,
    pre_process,
    quantize_static,
    run_outputs,
    supports_calibration_cache,
    time_sessions,
)
from .recipe import DEFAULT_TOLERANCE, PRUNE_BELOW, Recipe, auto_grid, select_candidate

if TYPE_CHECKING:
    from ..data import Dataset

# Below this agreement with fp32 the record lists the layers with the largest error.
DEFAULT_MIN_AGREEMENT = 0.98
TIMING_IMAGES = 512
TIMING_ROUNDS = 3


@dataclass
class _Job:
    """What every step of one :func:`quantize` call shares."""

    model: FloatModel
    out: Path
    dataset: Dataset
    mode: str
    cal_pos: np.ndarray
    hold_pos: np.ndarray
    batch_size: int
    threads: int | None
    timing_images: int
    timing_rounds: int
    tmp: Path = Path()
    pre: Path = Path()
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def cal_images(self) -> np.ndarray:
        return np.ascontiguousarray(self.dataset.images[self.cal_pos])

    @functools.cached_property
    def hold_images(self) -> np.ndarray:
        return np.ascontiguousarray(self.dataset.images[self.hold_pos])


@dataclass
class _Outcome:
    """What the measurement decided, before it becomes a record."""

    chosen: dict[str, Any]
    reason: str
    final: bytes
    speed: dict[str, Any]
    speedup: float | None
    evaluation: dict[str, Any] | None
    layer_errors: list[LayerError] | None
    layer_errors_note: str | None


def quantize(
    model_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
    calibration: Dataset | np.ndarray, recipe: Recipe | Sequence[Recipe] | None = None, *,
    calibration_count: int | None = None, holdout_count: int = DEFAULT_HOLDOUT_COUNT,
    tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT,
    test_data: Dataset | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None, timing_images: int = TIMING_IMAGES,
    timing_rounds: int = TIMING_ROUNDS, diagnose: bool | None = None, force: bool = False,
) -> QuantizationRecord:
    """Quantise ``model_path`` to int8, write ``output_path``, and return what was measured.

    ``recipe``: ``None`` measures the default grid (:func:`auto_grid`) and keeps the fastest
    candidate whose held-out agreement with fp32 is within ``tolerance`` of the best; a
    sequence of recipes is a custom grid; one :class:`Recipe` is used as given (still scored
    and timed when held-out images remain). ``calibration_count`` images of ``calibration``
    calibrate (default: 1,000, or all of them for a fixed recipe, or half of them when a grid
    must keep the rest for scoring); up to ``holdout_count`` of the remaining images are
    held out. ``test_data`` adds test-set figures of both models to the record; it is never
    used to choose. ``diagnose`` forces (True) or suppresses (False) the per-layer error
    table, which by default appears when agreement is below ``min_agreement``.
    """
    started = time.perf_counter()
    out = check_writable(output_path, force=force)
    model = inspect_float_model(model_path)
    if out.resolve() == Path(model.path).resolve():
        raise UsageError(f"{out}: output would overwrite the float model")
    if not 0 <= tolerance < 1:
        raise UsageError(f"agreement tolerance must be in [0, 1), got {tolerance}")
    grid, mode = _grid(recipe)
    job = _plan(model, out, as_dataset(calibration), mode, calibration_count, holdout_count)
    job.batch_size, job.threads = batch_size, threads
    job.timing_images, job.timing_rounds = timing_images, timing_rounds
    cpu = read_cpuinfo()
    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-quantize.") as tmp_name:
        job.tmp, job.pre = Path(tmp_name), Path(tmp_name) / "preprocessed.onnx"
        with status("Pre-processing (shape inference, Conv+BatchNorm fusion)…"):
            pre_process(Path(model.path), job.pre)
        for r in grid:
            check_excluded_nodes(r, job.pre, model)
        cache_ok = supports_calibration_cache()
        candidates = _quantise_grid(job, grid, cache_ok)
        outcome = _measure_and_choose(job, candidates, tolerance, min_agreement, test_data,
                                      diagnose)
        write_bytes_atomic(out, outcome.final, force=force)
    _add_notes(job)
    return _record(job, candidates, outcome, cpu, tolerance, min_agreement, cache_ok,
                   started)


def _grid(recipe: Recipe | Sequence[Recipe] | None) -> tuple[list[Recipe], str]:
    """The recipes to measure and the mode: "fixed" for one recipe, "auto" for a grid."""
    if isinstance(recipe, Recipe):
        return [recipe], "fixed"
    grid = list(recipe) if recipe is not None else auto_grid()
    if not grid:
        raise UsageError("the recipe grid is empty")
    return grid, "auto"


def _plan(model: FloatModel, out: Path, dataset: Dataset, mode: str,
          calibration_count: int | None, holdout_count: int) -> _Job:
    """Check the calibration images against the model and split them into their roles."""
    expected = tuple(model.image_shape)
    got = tuple(dataset.images.shape[1:])
    if any(e and e != g for e, g in zip(expected, got, strict=True)):
        raise InvalidInputError(
            f"{dataset.source.path}: calibration images are {'×'.join(map(str, got))}, the "
            f"model takes {'×'.join(str(d or '?') for d in expected)} (H×W×C)")
    n = len(dataset)
    if n == 0:
        raise InvalidInputError(f"{dataset.source.path}: calibration source holds no images")
    if calibration_count is None:
        calibration_count = min(DEFAULT_CALIBRATION_COUNT, n if mode == "fixed" else n // 2)
        calibration_count = max(calibration_count, 1)
    cal_pos, hold_pos = split_positions(n, calibration_count, holdout_count)
    if mode == "auto" and len(hold_pos) < MIN_HOLDOUT:
        raise InvalidInputError(
            f"{dataset.source.path}: {n:,} images leave {len(hold_pos):,} held out after "
            f"{calibration_count:,} for calibration; choosing a recipe needs at least "
            f"{MIN_HOLDOUT} (lower --calibration-count, or fix the recipe with --no-auto)")
    return _Job(model=model, out=out, dataset=dataset, mode=mode, cal_pos=cal_pos,
                hold_pos=hold_pos, batch_size=DEFAULT_BATCH_SIZE, threads=None,
                timing_images=TIMING_IMAGES, timing_rounds=TIMING_ROUNDS)


def _quantise_grid(job: _Job, grid: list[Recipe], cache_ok: bool) -> list[dict[str, Any]]:
    """Each recipe quantised on the calibration images; a failure is kept as the candidate's
    error (one recipe alone failing is the user's error)."""
    model, cal_images = job.model, job.cal_images
    candidates: list[dict[str, Any]] = []
    with track(f"Quantising {len(grid)} recipe{'s' if len(grid) > 1 else ''} "
               f"({len(cal_images):,} calibration images)", len(grid)) as advance:
        for k, r in enumerate(grid):
            path = job.tmp / f"candidate_{k}.onnx"
            cache = job.tmp / f"calibration_{r.method}.json"  # ranges depend on the method only
            t0 = time.perf_counter()
            try:
                quantize_static(job.pre, path, r, model.input_name, cal_images,
                                cache if cache_ok else None)
                error = None
            except (ValueError, RuntimeError, KeyError, TypeError) as exc:
                if len(grid) == 1:
                    raise InvalidInputError(f"{model.path}: ONNX Runtime could not quantise "
                                            f"with {r.label}: {one_line(exc)}") from exc
                error = one_line(exc)
            candidates.append({"recipe": r, "path": path, "error": error,
                               "seconds": round(time.perf_counter() - t0, 2)})
            advance(1)
    if not any(c["error"] is None for c in candidates):
        raise InvalidInputError(f"{model.path}: no recipe could be quantised "
                                f"({candidates[0]['error']})")
    return candidates


def _score_and_time(job: _Job, working: list[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], float, int]:
    """Time every working candidate against fp32, score the fast ones on the held-out images.

    Sets ``ips``, ``pruned``, ``agreement``, ``mean_abs_diff`` and ``speedup`` on each
    candidate; returns the scored ones, fp32's images/s and how many images were timed.
    """
    model, hold_images = job.model, job.hold_images
    fp32 = cpu_session(model.path, job.threads)
    for c in working:
        c["session"] = cpu_session(c["path"], job.threads)
        c["size"] = c["path"].stat().st_size
    timing_set = (hold_images if len(hold_images) else job.cal_images)[:job.timing_images]
    # A first timed pass of every candidate; those under half the fastest one's speed
    # cannot be chosen unless every faster one fails the tolerance, so they are listed
    # with that speed and not scored (int8 activations in QOperator form run at a fifth
    # of fp32's speed on x86: scoring them would double the run time).
    probe = time_sessions([fp32, *(c["session"] for c in working)], model.input_name,
                          timing_set, job.batch_size, 1)
    fastest = max(probe[1:])
    for c, ips in zip(working, probe[1:], strict=True):
        c["ips"] = ips
        c["pruned"] = len(working) > 1 and ips < PRUNE_BELOW * fastest
    measured = [c for c in working if not c["pruned"]]
    if len(hold_images):
        reference = run_outputs(fp32, model.input_name, hold_images, job.batch_size)
        with track(f"Scoring on {len(hold_images):,} held-out images",
                   len(measured)) as advance:
            for c in measured:
                outputs = run_outputs(c["session"], model.input_name, hold_images,
                                      job.batch_size)
                c["agreement"] = int((outputs.argmax(1) == reference.argmax(1)).sum())
                c["mean_abs_diff"] = float(np.abs(outputs - reference).mean())
                advance(1)
    fp32_ips = probe[0]
    if job.timing_rounds > 1:
        more = time_sessions([fp32, *(c["session"] for c in measured)], model.input_name,
                             timing_set, job.batch_size, job.timing_rounds - 1)
        fp32_ips = max(fp32_ips, more[0])
        for c, ips in zip(measured, more[1:], strict=True):
            c["ips"] = max(c["ips"], ips)
    for c in working:
        c["speedup"] = c["ips"] / fp32_ips if fp32_ips > 0 else None
    return measured, fp32_ips, len(timing_set)


def _measure_and_choose(job: _Job, candidates: list[dict[str, Any]], tolerance: float,
                        min_agreement: float, test_data: Dataset | None,
                        diagnose: bool | None) -> _Outcome:
    """Score and time the candidates, choose one, finalise it, and measure its speed block
    (on the test images when given: same run, same images) and, if asked, its layer errors."""
    hold_images = job.hold_images
    working = [c for c in candidates if c["error"] is None]
    measured, fp32_ips, timed = _score_and_time(job, working)
    chosen, reason = select_candidate(measured, job.mode, tolerance, len(hold_images))
    chosen_path = Path(chosen["path"])
    final = _finalise(chosen_path, job.model, chosen["recipe"], job.dataset, job.cal_images)

    evaluation = None
    speed_images, measured_on = timed, (
        "held-out images" if len(hold_images) else "calibration images")
    int8_ips, speedup = chosen["ips"], chosen["speedup"]
    written_path = job.tmp / "final.onnx"
    written_path.write_bytes(final)
    if test_data is not None:
        evaluation, fp32_ips, int8_ips = _evaluate_pair(
            job.model.path, written_path, str(job.out), test_data, job.batch_size, job.threads,
            job.timing_images, job.timing_rounds)
        speedup = int8_ips / fp32_ips if fp32_ips > 0 else None
        speed_images = min(len(test_data), job.timing_images)
        measured_on = "test images"
    agreement = (evaluation["agreement_fraction"] if evaluation is not None
                 else (chosen["agreement"] / len(hold_images) if len(hold_images) else None))
    want_diagnosis = (diagnose if diagnose is not None
                      else agreement is not None and agreement < min_agreement)
    errors_found, errors_note = None, None
    if want_diagnosis:
        errors_found, errors_note = diagnose_chosen(job.pre, job.tmp, chosen["recipe"],
                                                    chosen_path, job.model, job.cal_images,
                                                    hold_images)
    speed = {"fp32_images_per_second": round(fp32_ips, 1),
             "int8_images_per_second": round(int8_ips, 1),
             "speedup": None if speedup is None else round(speedup, 3),
             "images": speed_images, "rounds": job.timing_rounds,
             "batch_size": job.batch_size, "measured_on": measured_on,
             "method": "best of interleaved passes (fp32, int8, fp32, int8, …) in one process"}
    return _Outcome(chosen=chosen, reason=reason, final=final, speed=speed, speedup=speedup,
                    evaluation=evaluation, layer_errors=errors_found,
                    layer_errors_note=errors_note)


def _add_notes(job: _Job) -> None:
    """What the reader must know about the images' roles (test images, unknown origin)."""
    if job.dataset.split == "test":
        job.notes.append("calibration used TEST images: test-set accuracy of the int8 model is "
                         "not an unbiased estimate")
        if job.mode == "auto" and len(job.hold_pos):
            job.notes.append("the held-out images that chose the recipe are test images too")
    if job.dataset.split == "unknown":
        job.notes.append("calibration images were given as an array: whether they are test "
                         "images is not known")


def _candidate_record(c: dict[str, Any], chosen: dict[str, Any], holdout: int) -> Candidate:
    ok = c["error"] is None
    return Candidate(
        recipe=c["recipe"],
        holdout_agreement=c.get("agreement") if ok else None,
        holdout_count=holdout if c.get("agreement") is not None else 0,
        holdout_mean_abs_diff=c.get("mean_abs_diff"),
        images_per_second=round(c["ips"], 1) if ok else None,
        speedup=round(c["speedup"], 3) if ok and c["speedup"] is not None else None,
        size_bytes=c.get("size", 0), quantize_seconds=c["seconds"],
        eligible=bool(c.get("eligible")), chosen=c is chosen, error=c["error"],
        pruned=bool(c.get("pruned")))


def _record(job: _Job, candidates: list[dict[str, Any]], outcome: _Outcome, cpu: CpuInfo,
            tolerance: float, min_agreement: float, cache_ok: bool,
            started: float) -> QuantizationRecord:
    dataset, model, chosen = job.dataset, job.model, outcome.chosen
    cal_images, hold_count = job.cal_images, len(job.hold_pos)
    indices_note = (f"{len(cal_images):,} test images selected by {dataset.subset}"
                    if dataset.subset.startswith("calibration indices") else None)
    speed = dict(outcome.speed)
    speed["threads"] = job.threads or cpu.cores
    return QuantizationRecord(
        source={"path": recorded_path(model.path), "sha256": model.sha256,
                "size_bytes": model.size_bytes},
        output={"path": str(Path(job.out).resolve()),
                "sha256": hashlib.sha256(outcome.final).hexdigest(),
                "size_bytes": len(outcome.final)},
        recipe=chosen["recipe"],
        selection={"mode": job.mode, "tolerance": tolerance, "reason": outcome.reason,
                   "candidates": len(candidates), "min_agreement": min_agreement,
                   "calibration_reused": cache_ok},
        candidates=tuple(_candidate_record(c, chosen, hold_count) for c in candidates),
        calibration=calibration_account(dataset, job.cal_pos, cal_images, indices_note),
        holdout=None if not hold_count else {
            "count": hold_count, "sha256": images_sha256(job.hold_images),
            "selection": "evenly spread over the source positions not used for calibration",
            "test_images": dataset.split == "test",
            "purpose": "score (agreement with fp32) and time each candidate"},
        speed=speed,
        cpu=cpu,
        speed_verdict=speed_verdict(outcome.speedup, cpu),
        evaluation=outcome.evaluation,
        layer_errors=None if outcome.layer_errors is None else tuple(outcome.layer_errors),
        layer_errors_note=outcome.layer_errors_note,
        versions=library_versions(),
        notes=tuple(job.notes),
        seconds=round(time.perf_counter() - started, 2),
    )


def _finalise(path: Path, model: FloatModel, recipe: Recipe, dataset: Dataset,
              cal_images: np.ndarray) -> bytes:
    """The chosen model with the source's metadata plus the quantisation's, checked."""
    import onnx

    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(model.metadata)  # preprocessing, class names, output kind of the source
    versions = library_versions()
    props.update({
        "quantization_recipe": json.dumps(recipe.to_dict(), sort_keys=True),
        "quantization_calibration_source": dataset.source.path,
        "quantization_calibration_split": dataset.split,
        "quantization_calibration_count": str(len(cal_images)),
        "quantization_calibration_sha256": images_sha256(cal_images),
        "quantization_calibration_test_images": str(dataset.split == "test").lower(),
        "quantization_source_sha256": model.sha256,
        "quantization_tool": f"resnet8-onnx {__version__}",
        "quantization_versions": json.dumps(versions, sort_keys=True),
    })
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (f"int8 ({recipe.label}) of {Path(model.path).name} (sha256 "
                        f"{model.sha256}), quantised by resnet8-onnx {__version__} with ONNX "
                        f"Runtime {versions.get('onnxruntime')}; calibrated on "
                        f"{len(cal_images):,} {'TEST' if dataset.split == 'test' else ''} "
                        f"images. Input is float: {model.metadata.get('preprocessing', '')}"
                        .replace("  ", " "))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # pragma: no cover - ORT's quantiser output should always pass
        raise InvalidInputError(f"{model.path}: the quantised model fails the ONNX checker "
                                f"({one_line(exc)})") from exc
    return proto.SerializeToString()


def _evaluate_pair(fp32_path: str, int8_path: Path, shown_path: str, test_data: Dataset,
                   batch_size: int, threads: int | None, timing_images: int,
                   rounds: int) -> tuple[dict[str, Any], float, float]:
    """Both models on the test images: accuracy, per class, agreement, |Δ|, speed."""
    fp32_backend = onnxrt.load(fp32_path, threads=threads)
    int8_backend = onnxrt.load(int8_path, threads=threads)
    fp32 = evaluate(fp32_backend, test_data, batch_size=batch_size)
    int8 = evaluate(int8_backend, test_data, batch_size=batch_size)
    fp32_session, int8_session = fp32_backend.onnx_session(), int8_backend.onnx_session()
    fp32_ips, int8_ips = time_sessions(
        [fp32_session.session, int8_session.session], fp32_session.input_name,
        test_data.images[:timing_images], batch_size, rounds)
    cmp = compare_outputs(fp32.outputs, int8.outputs, indices=test_data.indices)
    n = len(test_data)
    return {
        "data": test_data.describe(),
        "fp32": Figures.of_result(fp32, fp32_path, round(fp32_ips, 1)),
        "int8": Figures.of_result(int8, int8_path, round(int8_ips, 1), shown_path=shown_path),
        "agreement": cmp.argmax_agreement,
        "agreement_fraction": cmp.argmax_agreement / n if n else None,
        "disagreements": n - cmp.argmax_agreement,
        "first_disagreements": [int(i) for i in cmp.first_disagreements][:10],
        "max_abs_diff": cmp.max_abs_diff,
        "mean_abs_diff": cmp.mean_abs_diff,
    }, fp32_ips, int8_ips

