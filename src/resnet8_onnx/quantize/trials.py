"""The configurations ``tune`` measures, each made into a runnable model in a scratch folder.

ONNX Runtime fp32 is the reference; ONNX Runtime int8 is what :func:`~.job.quantize` chooses
on the same calibration images (its own grid, timed and scored as always); OpenVINO runs the
float file at each precision the CPU has (f32, bf16, f16); OpenVINO int8 is NNCF's
post-training quantisation of the same file on the same calibration images. A configuration
that cannot be made (the CPU lacks the precision, the extra is not installed, quantisation
failed) stays in the list with the reason, so the record shows what was not tried and why.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.quantize.engine import FloatModel
from resnet8_onnx.support.errors import ToolError, one_line
from resnet8_onnx.support.progress import status

if TYPE_CHECKING:
    from resnet8_onnx.data import Dataset

REFERENCE = "onnxruntime-fp32"
# Every configuration tune knows, in the order the record lists them.
TRIALS = (REFERENCE, "onnxruntime-int8", "openvino-f32", "openvino-bf16", "openvino-f16",
          "openvino-int8")
HINT = "latency"  # one synchronous request at a time: what evaluate and the timing do


@dataclass
class Trial:
    """One configuration: what it is, the file it runs, and what was measured of it."""

    name: str
    runtime: str
    arithmetic: str  # fp32, bf16, f16, int8
    settings: dict[str, Any]  # what the runtime is told (precision, hint)
    path: Path | None = None  # the file it runs
    ir: bool = False  # an OpenVINO IR (.xml + .bin) rather than ONNX
    recipe: str | None = None
    error: str | None = None
    runner: Any = None
    outputs: np.ndarray | None = field(default=None, repr=False)  # on the held-out images
    passes: list[float] = field(default_factory=list)
    agreement: int | None = None
    mean_abs_diff: float | None = None
    max_abs_diff: float | None = None
    ips: float | None = None
    speedup: float | None = None
    eligible: bool = False

    @property
    def precision(self) -> str | None:
        return self.settings.get("precision")


def spec_options(model: FloatModel) -> dict[str, Any]:
    """The model's resolved spec as options: every runner is fed exactly what fp32 is fed,
    whatever its file says (an IR carries no ONNX metadata)."""
    return {k: v for k, v in model.spec.to_dict().items() if k != "dtype"}


def make_trials(model: FloatModel, dataset: Dataset, cal_pos: np.ndarray, tmp: Path, *,
                calibration_count: int, threads: int | None, batch_size: int,
                output: str | None, wanted: tuple[str, ...] = TRIALS) -> list[Trial]:
    """Every configuration of ``wanted``, made ready to load (or with its error)."""
    path = Path(model.path)
    trials = [Trial(REFERENCE, "onnxruntime", "fp32", {}, path=path)]
    if "onnxruntime-int8" in wanted:
        trials.append(_ort_int8(model, dataset, tmp, calibration_count=calibration_count,
                                threads=threads, batch_size=batch_size, output=output))
    ov_wanted = [n for n in wanted if n.startswith("openvino-")]
    if ov_wanted:
        trials += _openvino(model, dataset.images[cal_pos], tmp, ov_wanted)
    return trials


def _ort_int8(model: FloatModel, dataset: Dataset, tmp: Path, *, calibration_count: int,
              threads: int | None, batch_size: int, output: str | None) -> Trial:
    """quantize's own choice on the same calibration images (its gate off: tune's tolerance
    decides, against every other configuration)."""
    from resnet8_onnx.quantize.job import quantize

    int8_path = tmp / "ort_int8.onnx"
    trial = Trial("onnxruntime-int8", "onnxruntime", "int8", {}, path=int8_path)
    try:
        record = quantize(model.path, int8_path, dataset, calibration_count=calibration_count,
                          min_agreement=0, threads=threads, batch_size=batch_size,
                          diagnose=False, force=True, preprocessing=spec_options(model),
                          output=output)
    except ToolError as exc:
        trial.error, trial.path = f"quantize failed: {one_line(exc)}", None
        return trial
    trial.recipe = record.recipe.label if record.recipe is not None else None
    trial.settings = {"recipe": trial.recipe}
    return trial


def _openvino(model: FloatModel, cal_images: np.ndarray, tmp: Path,
              wanted: list[str]) -> list[Trial]:
    """OpenVINO at each precision the CPU has, and NNCF's int8, or why not."""
    float_trials = [Trial(f"openvino-{p}", "openvino", p, {"precision": p,
                                                            "performance_hint": HINT},
                          path=Path(model.path))
                    for p in ("f32", "bf16", "f16") if f"openvino-{p}" in wanted]
    int8 = Trial("openvino-int8", "openvino", "int8", {"precision": "f32",
                                                       "performance_hint": HINT,
                                                       "quantization": "nncf"})
    trials = [*float_trials, *([int8] if "openvino-int8" in wanted else [])]
    try:
        from resnet8_onnx.backends.openvino.runner import openvino_core, supported_precisions

        core = openvino_core()
    except ToolError as exc:  # the extra is not installed
        for t in trials:
            t.error, t.path = one_line(exc), None
        return trials
    have = supported_precisions(core)
    for t in float_trials:
        if t.arithmetic not in have:
            t.error, t.path = (f"this CPU lacks {t.arithmetic} (OpenVINO's CPU plugin offers "
                               f"{', '.join(have)})"), None
    if "openvino-int8" in wanted:
        _nncf_int8(int8, core, model, cal_images, tmp)
    return trials


def _nncf_int8(trial: Trial, core: Any, model: FloatModel, cal_images: np.ndarray,
               tmp: Path) -> None:
    """NNCF's post-training quantisation of the float file, calibrated on ``cal_images``
    (each prepared by the model's spec), saved as IR; its progress bars kept off stdout."""
    # NNCF imports torch when it is installed; its "No CUDA runtime" start-up warning and
    # NNCF's own progress bars (on stdout, where --json - writes) are not for the user.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import nncf
    except ImportError:
        trial.error = "NNCF is not installed (pip install 'resnet8-onnx[openvino]')"
        return
    import openvino as ov

    items = [x for x, _ in model.feed.batches(cal_images, 1)]
    nncf.set_log_level(logging.ERROR)
    target = tmp / "openvino_int8.xml"
    try:
        with status(f"Quantising with NNCF ({len(items):,} calibration images)…"), \
                contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(core.read_model(model.path), nncf.Dataset(items),
                                      subset_size=len(items))
        ov.save_model(quantized, str(target), compress_to_fp16=False)
    except Exception as exc:  # NNCF and OpenVINO raise their own types
        trial.error = f"NNCF could not quantise the model: {one_line(exc)}"
        return
    trial.path, trial.ir = target, True
    trial.recipe = f"NNCF {nncf.__version__} post-training (min/max, fast bias correction)"


def load_trial(trial: Trial, model: FloatModel, *, threads: int | None,
               output: str | None) -> Any:
    """The trial's runner, fed by the model's resolved spec."""
    from resnet8_onnx.backends import load_backend

    assert trial.path is not None
    options: Mapping[str, Any] = {k: v for k, v in trial.settings.items()
                                  if k in ("precision", "performance_hint")}
    return load_backend(trial.path, trial.runtime, threads=threads,
                        preprocessing=spec_options(model), output=output, **options)


def settings_metadata(trial: Trial) -> dict[str, str]:
    """What the written file states so that it is reloaded as it was measured: the runtime
    and, for OpenVINO, the inference precision (read by its runner as the default)."""
    from resnet8_onnx.backends.openvino.runner import METADATA_PRECISION, METADATA_RUNTIME

    meta = {METADATA_RUNTIME: trial.runtime, "tuned_configuration": trial.name}
    if trial.precision:
        meta[METADATA_PRECISION] = trial.precision
    return meta
