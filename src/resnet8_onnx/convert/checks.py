"""The checks of every conversion involving PyTorch, fed as the model is fed.

A model's input is described once (:class:`~resnet8_onnx.backends.pytorch.files.ModelInput`:
the spec ``evaluate`` resolves, the model's own input shape and dtype, a fixed batch) and
every check feeds random NHWC uint8 pixels through that spec, at the batch sizes the model
accepts, comparing outputs with the rule ``verify`` documents: an element fails only beyond
both ``atol`` and ``rtol`` × |ref|. Raw 0–255 pixels fed to a model trained on 0–1 inputs
give logits of ~1e3, where float32 rounding alone exceeds any absolute tolerance; fed its
own spec, it is judged fairly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.backends.base import chunked
from resnet8_onnx.backends.pytorch.files import ModelInput, Run
from resnet8_onnx.backends.pytorch.safe_io import import_torch
from resnet8_onnx.support.errors import (
    InvalidInputError,
    ToolError,
    VerificationFailedError,
    one_line,
)

CHECK_ATOL = 1e-5
CHECK_RTOL = 1e-5
# The batch a fixed-batch model is tried at when a dynamic batch is to be proven.
PROBE_BATCH = 7

def from_onnx_backend(backend: Any) -> ModelInput:
    """The description an ONNX Runtime runner resolved (exactly what ``evaluate`` feeds)."""
    shape = tuple(backend.info.input_shape)
    if any(not isinstance(d, int) for d in shape[1:]):
        raise InvalidInputError(f"{backend.info.model_path}: input {list(shape)} has dynamic "
                                "image dimensions; only the batch may be dynamic")
    return ModelInput(backend.input_spec.preprocessing, dict(backend.preprocessing_sources),
                      shape, tuple(int(d) for d in backend.input_spec.pixel_shape))


def random_pixels(pixel_shape: Sequence[int], n: int, seed: int = 0) -> np.ndarray:
    """``n`` random NHWC uint8 images: what the data set holds, before any spec."""
    return np.random.default_rng(seed).integers(0, 256, (n, *pixel_shape), dtype=np.uint8)


def run_torch(fn: Any, x: np.ndarray) -> np.ndarray:
    """A torch callable on a prepared numpy batch (its dtype kept), under inference mode."""
    torch = import_torch()
    with torch.inference_mode():
        return np.asarray(fn(torch.from_numpy(np.ascontiguousarray(x))).float().numpy())


def module_runner(module: Any, model_input: ModelInput, *, batch: int | None) -> Run:
    """Pixels → ``module`` fed through the spec, in chunks of ``batch`` when it is fixed."""
    spec = model_input.spec
    run = chunked(lambda x: run_torch(module, x), batch)
    return lambda pixels: run(spec.apply(pixels))


def check_against(reference: Run, candidate: Run, model_input: ModelInput, what: str,
                  output: Path, batch_sizes: Sequence[int] | None = None) -> dict[str, Any]:
    """Both runners on random pixels at each batch size, judged by verify's rule; raise
    :class:`VerificationFailedError` when they differ."""
    from resnet8_onnx.verify import compare_outputs

    sizes = tuple(batch_sizes or model_input.batch_sizes())
    worst, over = 0.0, 0
    for n in sizes:
        x = random_pixels(model_input.pixel_shape, n, seed=n)
        a, b = reference(x), candidate(x)
        if a.shape != b.shape:
            raise VerificationFailedError(f"{output}: output shape {b.shape} differs from "
                                          f"{what}'s {a.shape} at batch {n}")
        cmp = compare_outputs(a, b, atol=CHECK_ATOL, rtol=CHECK_RTOL)
        # compare_outputs fills every figure; the record's fields may be None for old JSON
        worst = max(worst, cmp.max_abs_diff or 0.0)
        over += (cmp.elements_over_tolerance or 0) + (cmp.nonfinite_candidate or 0)
        if not cmp.passed:
            raise VerificationFailedError(
                f"{output}: outputs differ from {what} by {cmp.max_abs_diff:.3g} "
                f"({cmp.elements_over_tolerance} elements beyond atol {CHECK_ATOL:g} and "
                f"rtol {CHECK_RTOL:g}) on random pixels fed as "
                f"{model_input.spec.describe()}, batch {n}")
    return {"against": what, "batch_sizes": list(sizes), "max_abs_diff": worst,
            "atol": CHECK_ATOL, "rtol": CHECK_RTOL, "elements_over_tolerance": over,
            "inputs": f"random uint8 pixels fed as {model_input.spec.describe()}"}


def dynamic_batch_proven(module: Any, reference: Run, model_input: ModelInput) -> bool:
    """Whether a module built from a fixed-batch model runs at another batch size and gives
    what the source gives image by image there: only then may the batch become dynamic."""
    if model_input.fixed_batch is None:
        return True
    x = random_pixels(model_input.pixel_shape, PROBE_BATCH, seed=PROBE_BATCH)
    try:
        got = run_torch(module, model_input.spec.apply(x))
    except ToolError:
        raise
    except Exception:  # e.g. a Reshape to (1, -1): "mat1 and mat2 shapes cannot be multiplied"
        return False
    from resnet8_onnx.verify import compare_outputs

    want = reference(x)
    return got.shape == want.shape and compare_outputs(
        want, got, atol=CHECK_ATOL, rtol=CHECK_RTOL).passed


def export_program(module: Any, model_input_shape: tuple[int, ...], *,
                   batch: int | None = None, dtype: str = "float32") -> Any:
    """``torch.export`` of ``module`` for inputs of ``model_input_shape`` (after the batch):
    a dynamic batch dimension (sizes 1, 7, 256 all run), or ``batch`` fixed."""
    from resnet8_onnx.support import progress

    torch = import_torch()
    example = torch.zeros((batch or 2, *model_input_shape), dtype=getattr(torch, dtype))
    dynamic = None if batch else ({0: torch.export.Dim("N", min=1, max=1 << 20)},)
    with progress.status("Exporting with torch.export"), torch.no_grad():
        try:
            return torch.export.export(module, (example,), dynamic_shapes=dynamic,
                                       strict=False)
        except ToolError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"torch.export could not export the module: "
                                    f"{one_line(exc)}") from exc


__all__ = ["CHECK_ATOL", "CHECK_RTOL", "check_against", "dynamic_batch_proven", "export_program",
           "from_onnx_backend", "module_runner", "random_pixels", "run_torch"]
