"""The quantisation job: quantise a grid of recipes, score and time them, keep the best.

:func:`quantize` measures for the user which recipe is right on this CPU: it quantises each
recipe of the grid on the calibration images, scores each on held-out images for agreement
with the float model, times each against the float model in the same run, and keeps the
fastest recipe within the agreement tolerance (:func:`~.recipe.select_candidate`). Every
candidate stays in the record.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx import preprocess
from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE
from resnet8_onnx.machine import BUSY_WARNING, CpuInfo, LoadMeter, read_cpuinfo
from resnet8_onnx.quantize.calibration import (
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_HOLDOUT_COUNT,
    GATE_HOLDOUT_TOO_SMALL,
    HOLDOUT_TOO_SMALL,
    MIN_HOLDOUT,
    as_dataset,
    calibration_account,
    images_sha256,
    split_positions,
)
from resnet8_onnx.quantize.cpu import speed_verdict
from resnet8_onnx.quantize.diagnosis import diagnose_chosen
from resnet8_onnx.quantize.engine import (
    FloatModel,
    check_excluded_nodes,
    cpu_session,
    inspect_float_model,
    library_versions,
    pre_process,
    quantize_static,
    run_outputs,
    supports_calibration_cache,
    time_passes,
)
from resnet8_onnx.quantize.opsets import OpsetPlan, plan_opset
from resnet8_onnx.quantize.output import evaluate_pair, finalise
from resnet8_onnx.quantize.recipe import (
    DEFAULT_TOLERANCE,
    PRUNE_BELOW,
    SPEED_NOISE,
    Trial,
    auto_grid,
    select_candidate,
)
from resnet8_onnx.records import (
    FileFigures,
    ImageRole,
    LayerError,
    QuantEvaluation,
    QuantizationRecord,
    Recipe,
    Selection,
    Speed,
)
from resnet8_onnx.support.errors import (
    InvalidInputError,
    UsageError,
    VerificationFailedError,
    one_line,
    remedied,
)
from resnet8_onnx.support.fsutil import check_writable, recorded_path, write_bytes_atomic
from resnet8_onnx.support.progress import status, track

if TYPE_CHECKING:
    from resnet8_onnx.data import Dataset

# The quality gate: no int8 model is written whose held-out top-1 agreement with fp32 is lower.
DEFAULT_MIN_AGREEMENT = 0.95
# Below this agreement with fp32 the record lists the layers with the largest error.
DIAGNOSE_BELOW = 0.98
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
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    tmp: Path = Path()
    pre: Path = Path()
    opset: OpsetPlan | None = None
    noise: float = SPEED_NOISE
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @functools.cached_property
    def cal_images(self) -> np.ndarray:
        return np.ascontiguousarray(self.dataset.images[self.cal_pos])

    @functools.cached_property
    def hold_images(self) -> np.ndarray:
        return np.ascontiguousarray(self.dataset.images[self.hold_pos])


@dataclass
class _Outcome:
    """What the measurement decided, before it becomes a record."""

    chosen: Trial
    reason: str
    final: bytes
    standard_ops: bool
    speed: Speed
    speedup: float | None
    evaluation: QuantEvaluation | None
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
    preprocessing: Mapping[str, Any] | None = None, output: str | None = None,
    standard_ops: bool = False,
) -> QuantizationRecord:
    """Quantise ``model_path`` to int8, write ``output_path``, and return what was measured.

    ``recipe``: ``None`` measures the default grid (:func:`auto_grid`) and keeps the fastest
    candidate whose held-out agreement with fp32 is within ``tolerance`` of the best; a
    sequence of recipes is a custom grid; one :class:`Recipe` is used as given. Everything the
    model is fed (calibration, held-out scoring, test figures) is prepared by its spec,
    resolved once as ``evaluate`` resolves it (``preprocessing`` options, the model's
    metadata, its input shape, the default); ``output`` names the output when there are
    several. ``calibration_count`` images of ``calibration`` calibrate (default: 1,000, at
    most half of them); up to ``holdout_count`` of the others are held out, and the int8
    model is written only if its top-1 agreement with fp32 on them is at least
    ``min_agreement`` (else :class:`VerificationFailedError`, nothing written; 0 turns the
    gate off). ``standard_ops`` keeps only QDQ recipes (standard ONNX ops). ``test_data``
    adds test-set figures of both models; it is never used to choose. ``diagnose`` forces
    (True) or suppresses (False) the per-layer error table, which by default appears when
    agreement is below 98 %.
    """
    started = time.perf_counter()
    out = check_writable(output_path, force=force)
    model = inspect_float_model(model_path, preprocessing=preprocessing, output=output)
    if out.resolve() == Path(model.path).resolve():
        raise UsageError(f"{out}: output would overwrite the float model")
    if not 0 <= tolerance < 1:
        raise UsageError(f"agreement tolerance must be in [0, 1), got {tolerance}")
    if not 0 <= min_agreement <= 1:
        raise UsageError(f"--min-agreement must be between 0 and 1, got {min_agreement}")
    grid, mode = _grid(recipe, standard_ops)
    job = _plan(model, out, as_dataset(calibration), mode, calibration_count, holdout_count,
                min_agreement)
    job.batch_size, job.threads = batch_size, threads
    job.timing_images, job.timing_rounds = timing_images, timing_rounds
    cpu = read_cpuinfo()
    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-quantize.") as tmp_name:
        job.tmp, job.pre = Path(tmp_name), Path(tmp_name) / "preprocessed.onnx"
        job.opset = _plan_opset(job, grid)
        with status("Pre-processing (shape inference, Conv+BatchNorm fusion)…"):
            pre_process(job.opset.path, job.pre)
        for r in grid:
            check_excluded_nodes(r, job.pre, model)
        cache_ok = supports_calibration_cache()
        candidates = _quantise_grid(job, grid, cache_ok)
        with LoadMeter() as load:  # other work while timing makes the images/s noisy
            outcome = _measure_and_choose(job, candidates, tolerance, test_data, diagnose)
        if load.busy is not None:
            outcome.speed.cpu_busy = load.busy
        write_bytes_atomic(out, outcome.final, force=force)
    _add_notes(job)
    return _record(job, candidates, outcome, cpu, tolerance, cache_ok, started)


def _plan_opset(job: _Job, grid: list[Recipe]) -> OpsetPlan:
    """The float model to quantise: an older opset upgraded and proven on held-out images."""
    images = (job.hold_images if len(job.hold_pos) else job.cal_images)[:DEFAULT_HOLDOUT_COUNT]

    def outputs(path: Path, x: np.ndarray) -> np.ndarray:
        return run_outputs(cpu_session(path, job.threads), job.model.feed, x, job.batch_size)

    plan = plan_opset(Path(job.model.path), job.model.opset, grid, job.tmp, outputs, images)
    if plan.note:
        job.notes.append(plan.note)
    return plan


def _grid(recipe: Recipe | Sequence[Recipe] | None, standard_ops: bool = False
          ) -> tuple[list[Recipe], str]:
    """The recipes to measure and the mode: "fixed" for one recipe, "auto" for a grid;
    ``standard_ops`` keeps the QDQ recipes only (QOperator needs com.microsoft ops)."""
    if isinstance(recipe, Recipe):
        grid, mode = [recipe], "fixed"
    else:
        grid, mode = (list(recipe) if recipe is not None else auto_grid()), "auto"
    if not grid:
        raise UsageError("the recipe grid is empty")
    if standard_ops:
        grid = [r for r in grid if r.format == "qdq"]
        if not grid:
            raise UsageError("--standard-ops keeps QDQ recipes only, but the recipe is "
                             "QOperator (ONNX Runtime's com.microsoft ops)")
    return grid, mode


def _plan(model: FloatModel, out: Path, dataset: Dataset, mode: str,
          calibration_count: int | None, holdout_count: int, min_agreement: float) -> _Job:
    """Check the calibration images against the model and split them into their roles."""
    _check_shape(model, dataset)
    n = len(dataset)
    if n == 0:
        raise InvalidInputError(f"{dataset.source.path}: calibration source holds no images")
    gated = min_agreement > 0
    if calibration_count is None:  # what is held out scores the grid and feeds the gate
        calibration_count = min(DEFAULT_CALIBRATION_COUNT,
                                n if mode == "fixed" and not gated else n // 2)
        calibration_count = max(calibration_count, 1)
    cal_pos, hold_pos = split_positions(n, calibration_count, holdout_count)
    if mode == "auto" and len(hold_pos) < MIN_HOLDOUT:
        raise remedied(InvalidInputError(
            f"{dataset.source.path}: {n:,} images leave {len(hold_pos):,} held out after "
            f"{calibration_count:,} for calibration; choosing a recipe needs at least "
            f"{MIN_HOLDOUT}"), HOLDOUT_TOO_SMALL)
    if gated and len(hold_pos) < MIN_HOLDOUT:  # a gate on a handful of images proves nothing
        held = "none" if not len(hold_pos) else f"{len(hold_pos):,}"
        raise remedied(InvalidInputError(
            f"{dataset.source.path}: {n:,} images leave {held} held out after "
            f"{calibration_count:,} for calibration; the quality gate measures int8 against "
            f"fp32 on at least {MIN_HOLDOUT} held-out images"), GATE_HOLDOUT_TOO_SMALL)
    return _Job(model=model, out=out, dataset=dataset, mode=mode, cal_pos=cal_pos,
                hold_pos=hold_pos, batch_size=DEFAULT_BATCH_SIZE, threads=None,
                timing_images=TIMING_IMAGES, timing_rounds=TIMING_ROUNDS,
                min_agreement=min_agreement)


def _check_shape(model: FloatModel, dataset: Dataset) -> None:
    """The images must be what the model takes once its spec has laid them out."""
    expected = tuple(model.image_shape)
    got = tuple(dataset.images.shape[1:])
    if len(got) == 3 and not any(e and e != g for e, g in zip(expected, got, strict=True)):
        return
    spec, source = model.spec, model.spec_sources.get("layout", "default")
    takes = "×".join(str(d or "?") for d in model.input_shape[1:])
    axes = "C×H×W" if spec.layout == "nchw" else "H×W×C"
    raise InvalidInputError(
        f"{dataset.source.path}: calibration images are {'×'.join(map(str, got))} (H×W×C), "
        f"the model takes {takes} ({axes}, layout {spec.layout} from {source})")


def _quantise_grid(job: _Job, grid: list[Recipe], cache_ok: bool) -> list[Trial]:
    """Each recipe quantised on the calibration images; a failure is kept as the candidate's
    error (one recipe alone failing is the user's error)."""
    model, cal_images = job.model, job.cal_images
    candidates: list[Trial] = []
    left_out = dict(job.opset.left_out) if job.opset is not None else {}
    grid_kept = [r for r in grid if r not in left_out]
    if not grid_kept:
        raise InvalidInputError(f"{model.path}: no recipe can be quantised "
                                f"({next(iter(left_out.values()))})")
    with track(f"Quantising {len(grid)} recipe{'s' if len(grid) > 1 else ''} "
               f"({len(cal_images):,} calibration images)", len(grid)) as advance:
        for k, r in enumerate(grid):
            if r in left_out:
                candidates.append(Trial(recipe=r, index=k, error=left_out[r]))
                advance(1)
                continue
            path = job.tmp / f"candidate_{k}.onnx"
            cache = job.tmp / f"calibration_{r.method}.json"  # ranges depend on the method only
            t0 = time.perf_counter()
            try:
                quantize_static(job.pre, path, r, model.feed, cal_images,
                                cache if cache_ok else None)
                error = None
            except (ValueError, RuntimeError, KeyError, TypeError) as exc:
                if len(grid_kept) == 1:
                    raise InvalidInputError(f"{model.path}: ONNX Runtime could not quantise "
                                            f"with {r.label}: {one_line(exc)}") from exc
                error = one_line(exc)
            candidates.append(Trial(recipe=r, index=k, path=path, error=error,
                                    seconds=round(time.perf_counter() - t0, 2)))
            advance(1)
    if not any(c.error is None for c in candidates):
        raise InvalidInputError(f"{model.path}: no recipe could be quantised "
                                f"({candidates[0].error})")
    return candidates


def _score_and_time(job: _Job, working: list[Trial]) -> tuple[list[Trial], float, int]:
    """Time every working candidate against fp32, score the fast ones on the held-out images.

    Sets ``ips``, ``pruned``, ``agreement``, ``mean_abs_diff`` and ``speedup`` on each
    candidate and the timing noise on the job (the largest relative spread of one model's
    interleaved passes, at least :data:`SPEED_NOISE`); returns the scored ones, fp32's
    images/s and how many images were timed.
    """
    model, hold_images, feed = job.model, job.hold_images, job.model.feed
    fp32 = cpu_session(job.opset.path if job.opset else model.path, job.threads)
    refused = []
    for c in list(working):  # a file the quantiser wrote but the runtime refuses: its error
        try:
            assert c.path is not None  # a working trial has its file
            c.session = cpu_session(c.path, job.threads)
        except Exception as exc:  # ORT's Fail/InvalidGraph/… types
            c.error = f"ONNX Runtime cannot load the quantised model: {one_line(exc)}"
            refused.append(c.error)
            working.remove(c)
            continue
        c.size = c.path.stat().st_size
    if not working:
        raise InvalidInputError(f"{model.path}: no quantised recipe loads ({refused[0]})")
    timing_set = (hold_images if len(hold_images) else job.cal_images)[:job.timing_images]
    # A first timed pass of every candidate; those under half the fastest one's speed
    # cannot be chosen unless every faster one fails the tolerance, so they are listed
    # with that speed and not scored (int8 activations in QOperator form run at a fifth
    # of fp32's speed on x86: scoring them would double the run time).
    # Two interleaved probe passes measure the noise first: a candidate is pruned only when
    # it is slower than PRUNE_BELOW × the fastest by more than that noise, and nothing is
    # pruned when other work loaded the machine during the probe, so which recipes are
    # scored does not depend on timing noise.
    probe_rounds = 2
    with LoadMeter() as load:
        probe = time_passes([fp32, *(c.session for c in working)], feed, timing_set,
                            job.batch_size, probe_rounds)
    probe_noise = max([SPEED_NOISE, *(_spread(p) for p in probe)])
    busy = load.busy is not None and load.busy > BUSY_WARNING
    fastest = max(max(p) for p in probe[1:])
    for c, passes in zip(working, probe[1:], strict=True):
        c.passes = list(passes)
        c.pruned = (len(working) > 1 and not busy
                    and max(passes) * (1 + probe_noise) < PRUNE_BELOW * fastest)
    if busy:
        job.notes.append("no candidate was left unscored for its speed: other work loaded the "
                         "machine during the probe passes, so their timings could not tell")
    measured = [c for c in working if not c.pruned]
    if len(hold_images):
        reference = run_outputs(fp32, feed, hold_images, job.batch_size)
        _warn_near_chance(job, reference)
        with track(f"Scoring on {len(hold_images):,} held-out images",
                   len(measured)) as advance:
            for c in measured:
                outputs = run_outputs(c.session, feed, hold_images, job.batch_size)
                c.agreement = int((outputs.argmax(1) == reference.argmax(1)).sum())
                c.mean_abs_diff = float(np.abs(outputs - reference).mean())
                advance(1)
    fp32_passes = list(probe[0])
    if job.timing_rounds > probe_rounds:
        more = time_passes([fp32, *(c.session for c in measured)], feed, timing_set,
                           job.batch_size, job.timing_rounds - probe_rounds)
        fp32_passes += more[0]
        for c, passes in zip(measured, more[1:], strict=True):
            c.passes += passes
    fp32_ips = max(fp32_passes)
    spreads = [_spread(p) for p in [fp32_passes, *(c.passes for c in measured)]]
    job.noise = max([SPEED_NOISE, *spreads])
    for c in working:
        c.ips = max(c.passes)
        c.speedup = c.ips / fp32_ips if fp32_ips > 0 else None
    return measured, fp32_ips, len(timing_set)


def _warn_near_chance(job: _Job, reference: np.ndarray) -> None:
    """fp32 itself near chance on the labelled held-out images: agreement between two
    models that both ignore the image proves little, and the spec in effect is the likely
    cause, so a warning names it (recorded, and printed by the CLI)."""
    labels = np.asarray(job.dataset.labels)[job.hold_pos]
    classes = int(reference.shape[1]) if reference.ndim == 2 else 0
    correct = int((reference.argmax(1) == labels).sum())
    warning = preprocess.near_chance_warning(
        correct, len(labels), classes, model=f"{job.model.path} (fp32, held-out images)",
        preprocessing=preprocess.record(job.model.spec, job.model.spec_sources))
    if warning is not None:
        job.warnings.append(warning)


def _spread(passes: Sequence[float]) -> float:
    """Relative spread of one model's passes: (best − worst) / best; 0 for one pass."""
    best = max(passes)
    return (best - min(passes)) / best if len(passes) > 1 and best > 0 else 0.0


def _measure_and_choose(job: _Job, candidates: list[Trial], tolerance: float,
                        test_data: Dataset | None, diagnose: bool | None) -> _Outcome:
    """Score and time the candidates, choose one, refuse it below the quality gate, finalise
    it, and measure its speed block (on the test images when given: same run, same images)
    and, if asked, its layer errors."""
    hold_images = job.hold_images
    working = [c for c in candidates if c.error is None]
    measured, fp32_ips, timed = _score_and_time(job, working)
    chosen, reason = select_candidate(measured, job.mode, tolerance, len(hold_images),
                                      noise=job.noise, min_agreement=job.min_agreement)
    _gate(job, chosen)
    assert chosen.path is not None  # a measured trial has its file and recipe
    assert chosen.recipe is not None
    chosen_path = chosen.path
    final, standard = finalise(chosen_path, job.model, chosen.recipe, job.dataset,
                               job.cal_images)
    evaluation = None
    speed_images, measured_on = timed, (
        "held-out images" if len(hold_images) else "calibration images")
    int8_ips, speedup = chosen.ips, chosen.speedup
    written_path = job.tmp / "final.onnx"
    written_path.write_bytes(final)
    if test_data is not None:
        evaluation, fp32_ips, int8_ips = evaluate_pair(
            job.model, written_path, str(job.out), test_data, job.batch_size, job.threads,
            job.timing_images, job.timing_rounds)
        speedup = int8_ips / fp32_ips if fp32_ips > 0 else None
        speed_images = min(len(test_data), job.timing_images)
        measured_on = "test images"
    agreement = (evaluation.agreement_fraction if evaluation is not None
                 else ((chosen.agreement or 0) / len(hold_images) if len(hold_images) else None))
    want_diagnosis = (diagnose if diagnose is not None
                      else agreement is not None and agreement < DIAGNOSE_BELOW)
    errors_found, errors_note = None, None
    if want_diagnosis:
        errors_found, errors_note = diagnose_chosen(job.pre, job.tmp, chosen.recipe,
                                                    chosen_path, job.model, job.cal_images,
                                                    hold_images)
    speed = Speed(fp32_images_per_second=round(fp32_ips, 1),
                  int8_images_per_second=round(int8_ips, 1),
                  speedup=None if speedup is None else round(speedup, 3),
                  images=speed_images, rounds=job.timing_rounds,
                  batch_size=job.model.fixed_batch or job.batch_size, measured_on=measured_on,
                  method="best of interleaved passes (fp32, int8, fp32, int8, …) in one "
                         "process",
                  extra={"noise": round(job.noise, 4)})
    return _Outcome(chosen=chosen, reason=reason, final=final, standard_ops=standard,
                    speed=speed, speedup=speedup, evaluation=evaluation,
                    layer_errors=errors_found, layer_errors_note=errors_note)


def _gate(job: _Job, chosen: Trial) -> None:
    """The quality gate: refuse, before anything is written, an int8 model whose held-out
    top-1 agreement with fp32 is below ``min_agreement``."""
    held = len(job.hold_pos)
    if job.min_agreement <= 0 or not held:
        return
    agreement = (chosen.agreement or 0) / held
    if agreement < job.min_agreement - 1e-12:
        from resnet8_onnx.report import format_threshold

        raise VerificationFailedError(
            f"{job.model.path}: int8 model NOT written: its top-1 agreement with fp32 is "
            f"{agreement:.2%} ({chosen.agreement or 0:,}/{held:,} held-out images, "
            f"{chosen.recipe.label if chosen.recipe else '?'}), below --min-agreement "
            f"{format_threshold(job.min_agreement)}")


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


def _holdout_purpose(job: _Job) -> str:
    """What the held-out images were used for, exactly (wording tested)."""
    gate = ("and measure the chosen one's top-1 agreement with fp32 for the quality gate "
            if job.mode == "auto" else
            "measure the int8 model's top-1 agreement with fp32 for the quality gate ")
    from resnet8_onnx.report import format_threshold

    gate += (f"(--min-agreement {format_threshold(job.min_agreement)})" if job.min_agreement > 0
             else "(off: --min-agreement 0)")
    if job.mode == "auto":
        return f"score (agreement with fp32) and time each candidate, {gate}"
    return f"{gate}, and time it against fp32; not used for calibration"


def _record(job: _Job, candidates: list[Trial], outcome: _Outcome, cpu: CpuInfo,
            tolerance: float, cache_ok: bool, started: float) -> QuantizationRecord:
    dataset, model, chosen = job.dataset, job.model, outcome.chosen
    assert chosen.recipe is not None  # the chosen trial was quantised from its recipe
    cal_images, hold_count = job.cal_images, len(job.hold_pos)
    indices_note = (f"{len(cal_images):,} test images selected by {dataset.subset}"
                    if dataset.subset.startswith("calibration indices") else None)
    speed = dataclasses.replace(outcome.speed, threads=job.threads or cpu.cores)
    return QuantizationRecord(
        source=FileFigures(path=recorded_path(model.path) or "", sha256=model.sha256,
                           size_bytes=model.size_bytes),
        output=FileFigures(path=str(Path(job.out).resolve()),
                           sha256=hashlib.sha256(outcome.final).hexdigest(),
                           size_bytes=len(outcome.final)),
        recipe=chosen.recipe,
        selection=Selection(mode=job.mode, tolerance=tolerance, reason=outcome.reason,
                            candidates=len(candidates), min_agreement=job.min_agreement,
                            calibration_reused=cache_ok,
                            extra={"speed_noise": round(job.noise, 4)}),
        candidates=tuple(c.candidate(chosen=c is chosen, holdout=hold_count)
                         for c in candidates),
        calibration=calibration_account(dataset, job.cal_pos, cal_images, indices_note),
        holdout=None if not hold_count else ImageRole(
            count=hold_count, sha256=images_sha256(job.hold_images),
            selection="evenly spread over the source positions not used for calibration",
            test_images=dataset.split == "test", purpose=_holdout_purpose(job)),
        preprocessing=preprocess.record(model.spec, model.spec_sources),
        standard_ops=outcome.standard_ops,
        opset=None if job.opset is None else job.opset.to_dict(),
        speed=speed,
        cpu=cpu,
        speed_verdict=speed_verdict(outcome.speedup, cpu),
        evaluation=outcome.evaluation,
        layer_errors=None if outcome.layer_errors is None else tuple(outcome.layer_errors),
        layer_errors_note=outcome.layer_errors_note,
        versions=library_versions(),
        notes=tuple(job.notes),
        warnings=tuple(job.warnings),
        seconds=round(time.perf_counter() - started, 2),
    )
