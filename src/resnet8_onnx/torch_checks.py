"""The checks of every conversion involving PyTorch, fed as the model is fed.

A model's input is described once (:class:`ModelInput`: the spec ``evaluate`` resolves, the
model's own input shape and dtype, a fixed batch) and every check feeds random NHWC uint8
pixels through that spec, at the batch sizes the model accepts, comparing outputs with the
rule ``verify`` documents: an element fails only beyond both ``atol`` and ``rtol`` × |ref|.
Raw 0–255 pixels fed to a model trained on 0–1 inputs give logits of ~1e3, where float32
rounding alone exceeds any absolute tolerance; fed its own spec, it is judged fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, ToolError, VerificationFailedError, one_line
from .preprocess import (
    METADATA,
    METADATA_SENTENCE,
    METADATA_SPEC,
    OPTION,
    Preprocessing,
    resolve,
)
from .torch_io import import_torch

CHECK_ATOL = 1e-5
CHECK_RTOL = 1e-5
CHECK_BATCH_SIZES = (1, 7)
# The batch a fixed-batch model is tried at when a dynamic batch is to be proven.
PROBE_BATCH = 7

Run = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelInput:
    """One model's input as every stage feeds it: ``spec`` (and where each field came from),
    the model's own input ``shape`` (batch first; ``None`` dynamic) and the NHWC image shape
    of the pixels the spec takes."""

    spec: Preprocessing
    sources: Mapping[str, str]
    shape: tuple[int | None, ...]
    pixel_shape: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if isinstance(self.shape[0], int) else None

    @property
    def model_dims(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.shape[1:])  # type: ignore[arg-type]

    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes the checks run: the fixed one, or 1 and 7."""
        return (self.fixed_batch,) if self.fixed_batch else CHECK_BATCH_SIZES

    def metadata(self) -> dict[str, Any]:
        """What a written model says about its input, so the next stage resolves the same
        spec with honest sources: only fields stated (by option or metadata) go into
        ``preprocessing_spec``; the others resolve again from the same shape and defaults."""
        import json

        stated = {k: v for k, v in self.spec.to_dict().items()
                  if self.sources.get(k) in (OPTION, METADATA)}
        return {METADATA_SENTENCE: self.spec.to_metadata()[METADATA_SENTENCE],
                METADATA_SPEC: json.dumps(stated, sort_keys=True),
                "input_layout": self.spec.layout.upper(), "input_dtype": self.spec.dtype,
                **({"fixed_batch": self.fixed_batch} if self.fixed_batch else {})}


def from_onnx_backend(backend: Any) -> ModelInput:
    """The description an ONNX Runtime runner resolved (exactly what ``evaluate`` feeds)."""
    shape = tuple(backend.info.input_shape)
    if any(not isinstance(d, int) for d in shape[1:]):
        raise InvalidInputError(f"{backend.info.model_path}: input {list(shape)} has dynamic "
                                "image dimensions; only the batch may be dynamic")
    return ModelInput(backend.input_spec.preprocessing, dict(backend.preprocessing_sources),
                      shape, tuple(int(d) for d in backend.input_spec.pixel_shape))


def resolve_torch_input(metadata: Mapping[str, Any], shape: Sequence[int | None], dtype: str,
                        overrides: Mapping[str, Any] | None = None, *,
                        where: str = "model") -> ModelInput:
    """A PyTorch model's description from its file's metadata and its program's input, by
    the same rule as ONNX models (option → metadata → input shape → default)."""
    strings = {k: v for k, v in metadata.items() if isinstance(v, str)}
    if isinstance(overrides, Preprocessing):
        overrides = {k: v for k, v in overrides.to_dict().items() if k != "dtype"}
    spec, sources = resolve(overrides, strings, tuple(shape), dtype, where=where)
    dims = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
    pixel = (dims[1], dims[2], dims[0]) if spec.layout == "nchw" else dims
    return ModelInput(spec, sources, tuple(shape), pixel)


def random_pixels(pixel_shape: Sequence[int], n: int, seed: int = 0) -> np.ndarray:
    """``n`` random NHWC uint8 images: what the data set holds, before any spec."""
    return np.random.default_rng(seed).integers(0, 256, (n, *pixel_shape), dtype=np.uint8)


def run_torch(fn: Any, x: np.ndarray) -> np.ndarray:
    """A torch callable on a prepared numpy batch (its dtype kept), under inference mode."""
    torch = import_torch()
    with torch.inference_mode():
        return np.asarray(fn(torch.from_numpy(np.ascontiguousarray(x))).float().numpy())


def chunked(run: Run, size: int | None) -> Run:
    """``run`` in batches of ``size`` (a fixed batch), the last padded with copies of its last
    image whose outputs are dropped, as the ONNX Runtime runner does."""
    if size is None:
        return run

    def call(x: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, len(x), size):
            part = x[start:start + size]
            n = len(part)
            if n < size:
                part = np.concatenate([part, np.repeat(part[-1:], size - n, axis=0)])
            outs.append(run(part)[:n])
        return np.concatenate(outs)
    return call


def module_runner(module: Any, model_input: ModelInput, *, batch: int | None) -> Run:
    """Pixels → ``module`` fed through the spec, in chunks of ``batch`` when it is fixed."""
    spec = model_input.spec
    run = chunked(lambda x: run_torch(module, x), batch)
    return lambda pixels: run(spec.apply(pixels))


def check_against(reference: Run, candidate: Run, model_input: ModelInput, what: str,
                  output: Path, batch_sizes: Sequence[int] | None = None) -> dict[str, Any]:
    """Both runners on random pixels at each batch size, judged by verify's rule; raise
    :class:`VerificationFailedError` when they differ."""
    from .verify import compare_outputs

    sizes = tuple(batch_sizes or model_input.batch_sizes())
    worst, over = 0.0, 0
    for n in sizes:
        x = random_pixels(model_input.pixel_shape, n, seed=n)
        a, b = reference(x), candidate(x)
        if a.shape != b.shape:
            raise VerificationFailedError(f"{output}: output shape {b.shape} differs from "
                                          f"{what}'s {a.shape} at batch {n}")
        cmp = compare_outputs(a, b, atol=CHECK_ATOL, rtol=CHECK_RTOL)
        worst = max(worst, cmp.max_abs_diff)
        over += cmp.elements_over_tolerance + cmp.nonfinite_candidate
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
    from .verify import compare_outputs

    want = reference(x)
    return got.shape == want.shape and compare_outputs(
        want, got, atol=CHECK_ATOL, rtol=CHECK_RTOL).passed


def export_program(module: Any, model_input_shape: tuple[int, ...], *,
                   batch: int | None = None, dtype: str = "float32") -> Any:
    """``torch.export`` of ``module`` for inputs of ``model_input_shape`` (after the batch):
    a dynamic batch dimension (sizes 1, 7, 256 all run), or ``batch`` fixed."""
    from . import progress

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


def program_input(program: Any) -> tuple[tuple[int | None, ...], str]:
    """(shape with ``None`` for a symbolic dimension, numpy dtype name) of an
    ExportedProgram's single user input, from its fake tensor."""
    users = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(users) != 1:
        raise InvalidInputError(f"the program has {len(users)} inputs; expected one image batch")
    name = users[0].arg.name
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    value = node.meta["val"]
    if len(value.shape) != 4:
        raise InvalidInputError(f"the program's input has rank {len(value.shape)}, expected 4")
    # a SymInt (dynamic) converts to its example value with int(): keep only real ints
    shape = [d if isinstance(d, int) else None for d in value.shape]
    if any(d is None for d in shape[1:]):
        raise InvalidInputError("the program's image dimensions are not fixed")
    return tuple(shape), str(value.dtype).removeprefix("torch.")


__all__ = ["CHECK_ATOL", "CHECK_BATCH_SIZES", "CHECK_RTOL", "ModelInput",
           "check_against", "chunked", "dynamic_batch_proven", "export_program",
           "from_onnx_backend", "module_runner", "program_input", "random_pixels",
           "resolve_torch_input", "run_torch"]
