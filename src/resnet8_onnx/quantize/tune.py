"""``tune``: the fastest configuration on this machine that keeps the float model's predictions.

One search over runtime × precision × recipe (:mod:`.trials`): every configuration is scored
on held-out calibration-source images for top-1 agreement with ONNX Runtime fp32 (the
reference) and timed against it in this process, in interleaved passes over the same
prepared tensors. The fastest configuration whose agreement is within ``tolerance`` of
100 % is chosen; speeds within the timing noise count as equal, and among equals the more
faithful one wins. What the choice needs to be reproduced is written: the model file, with
the runtime settings in its metadata (OpenVINO's runner reads the precision from there), and
the record. Before anything is written, the file is reloaded as a user would load it and
must give the held-out figures it was chosen for; otherwise nothing is written (exit 6).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE
from resnet8_onnx.machine import LoadMeter, read_cpuinfo
from resnet8_onnx.quantize.calibration import (
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_HOLDOUT_COUNT,
    HOLDOUT_TOO_SMALL,
    MIN_HOLDOUT,
    as_dataset,
    calibration_account,
    images_sha256,
    split_positions,
)
from resnet8_onnx.quantize.engine import FloatModel, inspect_float_model, library_versions
from resnet8_onnx.quantize.engine import time_passes as _time_passes
from resnet8_onnx.quantize.output import stated_spec
from resnet8_onnx.quantize.recipe import SPEED_NOISE
from resnet8_onnx.quantize.trials import (
    REFERENCE,
    TRIALS,
    Trial,
    load_trial,
    make_trials,
    settings_metadata,
)
from resnet8_onnx.records.quantization import FileFigures, ImageRole
from resnet8_onnx.records.tuning import TuneCandidate, TuneChoice, TuningRecord
from resnet8_onnx.support.errors import (
    InvalidInputError,
    ToolError,
    UsageError,
    VerificationFailedError,
    one_line,
    remedied,
)
from resnet8_onnx.support.fsutil import check_writable, recorded_path, write_bytes_atomic
from resnet8_onnx.support.progress import track

if TYPE_CHECKING:
    from resnet8_onnx.data import Dataset

DEFAULT_TOLERANCE = 0.005  # 0.5 points of held-out agreement with fp32
TIMING_IMAGES = 1000
TIMING_ROUNDS = 5
# The written file reloaded must give the measured outputs to within this (the same runtime
# and settings on the same machine: bit-identical in practice).
REPRODUCE_ATOL = 1e-5


def output_files(output_path: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """The files ``tune`` may write: the .onnx, or for an OpenVINO int8 choice an IR beside
    it (same stem, .xml + .bin)."""
    out = Path(output_path)
    return {"onnx": [out], "ir": [out.with_suffix(".xml"), out.with_suffix(".bin")]}


def tune(
    model_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
    calibration: Dataset | np.ndarray, *, tolerance: float = DEFAULT_TOLERANCE,
    test_data: Dataset | None = None, calibration_count: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE, threads: int | None = None, force: bool = False,
    preprocessing: dict[str, Any] | None = None, output: str | None = None,
    configurations: Sequence[str] = TRIALS, timing_images: int = TIMING_IMAGES,
    timing_rounds: int = TIMING_ROUNDS,
) -> TuningRecord:
    """Measure every configuration of ``configurations`` (see :data:`.trials.TRIALS`),
    write the chosen one to ``output_path`` (``.onnx``; an OpenVINO int8 choice is written as
    IR beside it, same stem) and return the record. ``tolerance``: the fraction of held-out
    agreement with ONNX Runtime fp32 a configuration may lose. ``test_data`` adds the
    chosen file's agreement with fp32 on the test set; it never takes part in the choice."""
    started = time.perf_counter()
    out = Path(output_path)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"{out}: tune writes an .onnx file (an OpenVINO int8 choice as "
                         f"{out.with_suffix('.xml').name} + .bin beside it)")
    unknown = [c for c in configurations if c not in TRIALS]
    if unknown:
        raise UsageError(f"unknown configuration {unknown[0]!r}; choose among {', '.join(TRIALS)}")
    targets = output_files(out)
    for target in [*targets["onnx"],
                   *(targets["ir"] if "openvino-int8" in configurations else [])]:
        check_writable(target, force=force)
        if target.resolve() == Path(model_path).resolve():
            raise UsageError(f"{target}: output would overwrite the float model")
    if not 0 <= tolerance < 1:
        raise UsageError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    model = inspect_float_model(model_path, preprocessing=preprocessing, output=output)
    dataset = as_dataset(calibration)
    cal_pos, hold_pos, cal_count = _split(dataset, calibration_count)
    hold_images = np.ascontiguousarray(dataset.images[hold_pos])
    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-tune.") as tmp_name:
        tmp = Path(tmp_name)
        trials = make_trials(model, dataset, cal_pos, tmp, calibration_count=cal_count,
                             threads=threads, batch_size=batch_size, output=output,
                             wanted=(REFERENCE, *configurations))
        _load_all(trials, model, threads=threads, output=output)
        _score(trials, hold_images, batch_size)
        with LoadMeter() as load:
            noise = _time(trials, model, hold_images[:timing_images], batch_size,
                          timing_rounds)
        chosen, reason = choose(trials, tolerance, noise, len(hold_images))
        staged = _stage(chosen, model, tmp)
        reproduced, runner = _reproduce(chosen, staged[0], hold_images, batch_size,
                                        threads=threads, output=output)
        evaluation = (_test_figures(trials[0].runner, runner, test_data, batch_size)
                      if test_data is not None else None)
        for t in trials:
            t.runner = None
        runner = None
        files = _publish(staged, out, force=force)
    return _record(model=model, dataset=dataset, trials=trials, chosen=chosen, reason=reason,
                   files=files, reproduced=reproduced, evaluation=evaluation,
                   tolerance=tolerance, noise=noise, busy=load.busy, cal_pos=cal_pos,
                   hold_images=hold_images, timing=(min(len(hold_images), timing_images),
                                                    timing_rounds, batch_size, threads),
                   started=started)


def _split(dataset: Dataset, calibration_count: int | None) -> tuple[np.ndarray, np.ndarray,
                                                                        int]:
    """quantize's split: calibration and held-out positions; too few held out is exit 4."""
    n = len(dataset)
    if n == 0:
        raise InvalidInputError(f"{dataset.source.path}: calibration source holds no images")
    count = calibration_count or max(1, min(DEFAULT_CALIBRATION_COUNT, n // 2))
    cal_pos, hold_pos = split_positions(n, count, DEFAULT_HOLDOUT_COUNT)
    if len(hold_pos) < MIN_HOLDOUT:
        raise remedied(InvalidInputError(
            f"{dataset.source.path}: {n:,} images leave {len(hold_pos):,} held out after "
            f"{count:,} for calibration; choosing a configuration needs at least "
            f"{MIN_HOLDOUT}"), HOLDOUT_TOO_SMALL)
    return cal_pos, hold_pos, count


def _load_all(trials: list[Trial], model: FloatModel, *, threads: int | None,
              output: str | None) -> None:
    """A runner for every trial that was made; a configuration its runtime refuses keeps the
    refusal as its error (the reference must load: its failure is the command's)."""
    for t in trials:
        if t.error is not None:
            continue
        try:
            t.runner = load_trial(t, model, threads=threads, output=output)
        except ToolError as exc:
            if t.name == REFERENCE:
                raise
            t.error = one_line(exc)


def _outputs(runner: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([runner.predict(images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def _score(trials: list[Trial], hold_images: np.ndarray, batch_size: int) -> None:
    """Top-1 agreement and |Δ| of every trial's outputs against fp32's, held-out images."""
    live = [t for t in trials if t.runner is not None]
    with track(f"Scoring {len(live)} configurations on {len(hold_images):,} held-out images",
               len(live)) as advance:
        for t in live:
            t.outputs = _outputs(t.runner, hold_images, batch_size)
            advance(1)
    reference = trials[0].outputs
    assert reference is not None
    for t in live:
        assert t.outputs is not None
        diff = np.abs(t.outputs - reference)
        t.agreement = int((t.outputs.argmax(1) == reference.argmax(1)).sum())
        t.mean_abs_diff, t.max_abs_diff = float(diff.mean()), float(diff.max())


class _AsSession:
    """A runner where quantize's timer expects an ONNX Runtime session: ``run`` of one
    prepared batch (so every runtime is timed by the same loop, on the same tensors)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def run(self, _names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.runner.run(next(iter(feeds.values())))]


def _time(trials: list[Trial], model: FloatModel, images: np.ndarray, batch_size: int,
          rounds: int) -> float:
    """Interleaved passes (fp32, A, B, …, fp32, A, B, …) in this process; sets each trial's
    best images/s and speedup over fp32; returns the noise (largest relative spread of one
    trial's passes, at least quantize's SPEED_NOISE)."""
    live = [t for t in trials if t.runner is not None]
    passes = _time_passes([_AsSession(t.runner) for t in live], model.feed, images,
                          batch_size, rounds)
    for t, p in zip(live, passes, strict=True):
        t.passes, t.ips = list(p), max(p)
    fp32 = live[0].ips or 0.0
    for t in live:
        t.speedup = (t.ips or 0.0) / fp32 if fp32 > 0 else None
    spreads = [(max(p) - min(p)) / max(p) for p in passes if len(p) > 1 and max(p) > 0]
    return max([SPEED_NOISE, *spreads])


def choose(trials: Sequence[Trial], tolerance: float, noise: float, held: int
           ) -> tuple[Trial, str]:
    """The fastest trial whose held-out agreement is at least 1 − ``tolerance``; trials
    within ``noise`` of its speed count as equally fast, and among those the most faithful
    (most agreeing images, then smallest mean |Δ|) wins. The reference always qualifies."""
    measured = [t for t in trials if t.agreement is not None and t.ips is not None]
    for t in measured:
        t.eligible = t.agreement >= (1 - tolerance) * held - 1e-9  # type: ignore[operator]
    eligible = [t for t in measured if t.eligible]
    fastest = max(t.ips for t in eligible)  # type: ignore[type-var]
    tied = [t for t in eligible if t.ips * (1 + noise) >= fastest]  # type: ignore[operator]
    chosen = max(tied, key=lambda t: (t.agreement, -(t.mean_abs_diff or 0.0), t.ips))
    others = ", ".join(t.name for t in tied if t is not chosen)
    reason = (f"the fastest of {len(eligible)} configurations within {tolerance:.2%} of fp32's "
              f"predictions on {held:,} held-out images")
    if others:
        reason += (f"; as fast as {others} within the timing noise ({noise:.1%}), and more "
                   "faithful")
    slower = [t.name for t in measured if not t.eligible]
    if slower:
        reason += f"; outside the tolerance: {', '.join(slower)}"
    return chosen, reason


def _stage(trial: Trial, model: FloatModel, tmp: Path) -> list[Path]:
    """The chosen configuration's file(s) in the scratch folder, its settings in its
    metadata (ONNX metadata_props, or the IR's rt_info section) beside the source's own
    entries and the resolved spec."""
    assert trial.path is not None
    entries = {**model.metadata, **stated_spec(model), **settings_metadata(trial)}
    if trial.ir:
        import openvino as ov

        from resnet8_onnx.backends.openvino.runner import RT_INFO_SECTION, openvino_core

        ir = openvino_core().read_model(str(trial.path))
        for key, value in entries.items():
            ir.set_rt_info(str(value), [RT_INFO_SECTION, key])
        target = tmp / "final.xml"
        ov.save_model(ir, str(target), compress_to_fp16=False)
        return [target, target.with_suffix(".bin")]
    import onnx

    proto = onnx.load(str(trial.path))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(entries)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    target = tmp / "final.onnx"
    target.write_bytes(proto.SerializeToString())
    return [target]


def _reproduce(trial: Trial, staged: Path, hold_images: np.ndarray, batch_size: int, *,
               threads: int | None, output: str | None) -> tuple[dict[str, Any], Any]:
    """The staged file loaded as a user would (runtime and precision from its metadata, the
    spec resolved again) must give the outputs the choice was measured on; else exit 6."""
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.backends.openvino.runner import METADATA_RUNTIME

    runtime = settings_metadata(trial)[METADATA_RUNTIME]
    try:
        runner = load_backend(staged, runtime, threads=threads, output=output)
    except ToolError as exc:
        raise VerificationFailedError(f"tuned model NOT written: the file made for "
                                      f"{trial.name} does not load ({one_line(exc)})") from exc
    again = _outputs(runner, hold_images, batch_size)
    assert trial.outputs is not None
    diff = float(np.abs(again - trial.outputs).max())
    same_top1 = int((again.argmax(1) == trial.outputs.argmax(1)).sum())
    precision = runner.info.extra.get("inference_precision")
    account = {"holdout_images": len(hold_images), "same_top1": same_top1,
               "max_abs_diff_vs_measured": diff, "runtime": runtime,
               **({"inference_precision": precision} if precision else {})}
    if same_top1 != len(hold_images) or diff > REPRODUCE_ATOL or precision != trial.precision:
        raise VerificationFailedError(
            f"tuned model NOT written: reloaded from its file, {trial.name} gives "
            f"{same_top1:,}/{len(hold_images):,} of the measured top-1 predictions (max |Δ| "
            f"{diff:.2g}, precision {precision or 'n/a'}): the settings do not reproduce")
    account["passed"] = True
    return account, runner


def _test_figures(reference: Any, runner: Any, test_data: Dataset, batch_size: int
                  ) -> dict[str, Any]:
    """fp32 and the written configuration on the test set: agreement and accuracy."""
    images, labels = test_data.images, np.asarray(test_data.labels)
    ref = _outputs(reference, images, batch_size).argmax(1)
    got = _outputs(runner, images, batch_size).argmax(1)
    return {"images": len(labels), "data": test_data.info().to_dict(),
            "agreement": int((ref == got).sum()),
            "agreement_fraction": float((ref == got).mean()),
            "fp32_correct": int((ref == labels).sum()),
            "chosen_correct": int((got == labels).sum()),
            "fp32_accuracy": float((ref == labels).mean()),
            "chosen_accuracy": float((got == labels).mean())}


def _publish(staged: list[Path], out: Path, *, force: bool) -> list[Path]:
    """Each staged file renamed into place atomically (an IR's weights first, so the .xml
    never names missing weights); a failure takes back what this call published."""
    targets = [out] if len(staged) == 1 else [out.with_suffix(".bin"), out.with_suffix(".xml")]
    order = staged if len(staged) == 1 else [staged[1], staged[0]]
    written: list[Path] = []
    try:
        for source, target in zip(order, targets, strict=True):
            written.append(write_bytes_atomic(target, source.read_bytes(), force=force))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written[::-1]


def _candidate(t: Trial, chosen: Trial, held: int) -> TuneCandidate:
    return TuneCandidate(
        name=t.name, runtime=t.runtime, arithmetic=t.arithmetic, settings=dict(t.settings),
        recipe=t.recipe, holdout_agreement=t.agreement,
        holdout_count=held if t.agreement is not None else 0,
        holdout_mean_abs_diff=t.mean_abs_diff, holdout_max_abs_diff=t.max_abs_diff,
        images_per_second=None if t.ips is None else round(t.ips, 1),
        speedup=None if t.speedup is None else round(t.speedup, 3), eligible=t.eligible,
        chosen=t is chosen, error=t.error)


def run_command(trial: Trial, files: Sequence[Path]) -> str:
    """The command that runs the written file as it was measured."""
    flags = f" --runtime {trial.runtime}" if trial.runtime != "onnxruntime" else ""
    if trial.precision and not trial.ir:
        flags += f" --precision {trial.precision}"
    return f"resnet8-onnx evaluate {files[0]}{flags if not trial.ir else ''}"


def _record(*, model: FloatModel, dataset: Dataset, trials: list[Trial], chosen: Trial,
            reason: str, files: list[Path], reproduced: dict[str, Any],
            evaluation: dict[str, Any] | None, tolerance: float, noise: float,
            busy: float | None, cal_pos: np.ndarray, hold_images: np.ndarray,
            timing: tuple[int, int, int, int | None], started: float) -> TuningRecord:
    held = len(hold_images)
    images, rounds, batch_size, threads = timing
    cpu = read_cpuinfo()
    return TuningRecord(
        source=FileFigures(path=recorded_path(model.path) or "", sha256=model.sha256,
                           size_bytes=model.size_bytes),
        chosen=TuneChoice(
            name=chosen.name, runtime=chosen.runtime, settings=dict(chosen.settings),
            files=[str(f.resolve()) for f in files],
            speedup=None if chosen.speedup is None else round(chosen.speedup, 3),
            holdout_agreement=(chosen.agreement or 0) / held,
            test_agreement=None if evaluation is None else evaluation["agreement_fraction"],
            test_images=None if evaluation is None else evaluation["images"],
            reason=reason, reproduced=reproduced, command=run_command(chosen, files)),
        candidates=[_candidate(t, chosen, held) for t in trials],
        tolerance=tolerance,
        calibration=calibration_account(dataset, cal_pos, dataset.images[cal_pos], None),
        holdout=ImageRole(
            count=held, sha256=images_sha256(hold_images),
            selection="evenly spread over the source positions not used for calibration "
                      "(quantize's split)",
            test_images=dataset.split == "test",
            purpose="score (top-1 agreement with ONNX Runtime fp32) and time every "
                    "configuration, and check the written file reproduces"),
        speed={"method": "best of interleaved passes (fp32, A, B, …, fp32, A, B, …) in one "
                         "process, over the same prepared tensors",
               "images": images, "rounds": rounds, "batch_size": model.fixed_batch or batch_size,
               "threads": threads or cpu.cores, "noise": round(noise, 4),
               **({"cpu_busy": busy} if busy is not None else {})},
        evaluation=evaluation, cpu=cpu.to_dict(), versions=_versions(),
        seconds=round(time.perf_counter() - started, 2),
        notes=(["calibration and held-out images are TEST images: test agreement is not an "
                "unbiased estimate"] if dataset.split == "test" else []))


def _versions() -> dict[str, str]:
    """The libraries whose versions decide the figures (OpenVINO and NNCF when they ran)."""
    import sys

    versions = library_versions()
    for name in ("openvino", "nncf"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = str(getattr(module, "__version__", "?")).split("-")[0]
    return versions
