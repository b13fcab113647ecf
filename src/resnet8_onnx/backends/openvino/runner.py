"""OpenVINO backend: the runtime Intel ships, for ``.onnx`` files (``--runtime openvino``) and
OpenVINO IR (``.xml`` beside its ``.bin``).

Precision is a choice the user makes, never one the runtime makes for them: OpenVINO's CPU
plugin computes in bf16 by default on CPUs that have it, which changes predictions of a float
model silently. So the inference precision is asked for explicitly (``f32`` unless the option
or the file's metadata says otherwise), a precision the CPU lacks is refused (exit 2) rather
than left to the plugin's fallback, and what the record states is the precision *in effect*,
read back from the compiled model. The preprocessing spec is resolved as for ONNX Runtime
(option, the model's metadata, its input shape, the defaults), so both runtimes are fed the
same tensors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.backends.base import (
    MACS,
    STRUCTURE,
    InputSpec,
    SpecRunner,
    chunked,
)
from resnet8_onnx.preprocess import Preprocessing, record, resolve
from resnet8_onnx.records.parts import RunnerInfo
from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    UsageError,
    interrupts_deferred,
    one_line,
)
from resnet8_onnx.support.fsutil import file_digest

PRECISIONS = ("f32", "bf16", "f16")
DEFAULT_PRECISION = "f32"
PERFORMANCE_HINTS = ("latency", "throughput")
DEFAULT_HINT = "latency"
DEVICE = "CPU"
# Where a file written by this tool states the OpenVINO settings it was chosen with: ONNX
# metadata_props keys, and the same keys under this rt_info section of an IR file.
METADATA_RUNTIME = "runtime"
METADATA_PRECISION = "inference_precision"
RT_INFO_SECTION = "resnet8_onnx"
# OpenVINO's OPTIMIZATION_CAPABILITIES name for each precision.
_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16"}
# The element type INFERENCE_PRECISION_HINT reads back as, by its string.
_OF_TYPE = {"float32": "f32", "f32": "f32", "bfloat16": "bf16", "bf16": "bf16",
            "float16": "f16", "f16": "f16"}
_COMPUTE_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}
# The CPU flags that give each reduced precision its hardware (named in a refusal).
_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "f16": ("avx512_fp16", "amx_fp16")}


def check_precision(precision: str | None) -> str | None:
    """``--precision`` → one of :data:`PRECISIONS` (``None`` stays ``None``); else exit 2."""
    if precision is None:
        return None
    wanted = precision.strip().lower().replace("fp", "f")
    if wanted not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of "
                         f"{', '.join(PRECISIONS)}")
    return wanted


def check_hint(hint: str | None) -> str:
    """``--performance-hint`` → one of :data:`PERFORMANCE_HINTS`; else exit 2."""
    wanted = (hint or DEFAULT_HINT).strip().lower()
    if wanted not in PERFORMANCE_HINTS:
        raise UsageError(f"unknown performance hint {hint!r}; choose one of "
                         f"{', '.join(PERFORMANCE_HINTS)}")
    return wanted


def openvino_core() -> Any:
    with interrupts_deferred():  # a Ctrl-C inside its C++ init becomes an ImportError
        try:
            import openvino as ov
        except ImportError as exc:
            raise UsageError("the OpenVINO runtime needs the 'openvino' extra: pip install "
                             "'resnet8-onnx[openvino]'") from exc
    return ov.Core()


def optimization_capabilities(core: Any) -> tuple[str, ...]:
    """What the CPU plugin says this CPU computes natively (FP32, BF16, FP16, INT8 …)."""
    return tuple(str(c) for c in core.get_property(DEVICE, "OPTIMIZATION_CAPABILITIES"))


def supported_precisions(core: Any) -> tuple[str, ...]:
    """The :data:`PRECISIONS` this CPU has, by OpenVINO's own account."""
    capabilities = set(optimization_capabilities(core))
    return tuple(p for p in PRECISIONS if p == "f32" or _CAPABILITY[p] in capabilities)


def _refuse_missing_precision(precision: str, core: Any, where: str) -> None:
    """Exit 2 for a precision this CPU lacks: OpenVINO would fall back without a word."""
    have = supported_precisions(core)
    if precision in have:
        return
    from resnet8_onnx.machine import read_cpuinfo

    cpu = read_cpuinfo()
    flags = " or ".join(_CPU_FLAGS.get(precision, ()))
    raise UsageError(f"{where}: --precision {precision}: this CPU ({cpu.model_name or 'unknown'})"
                     f" lacks {precision} ({flags} not reported; OpenVINO's CPU plugin offers "
                     f"{', '.join(have)}); choose one of {', '.join(have)}")


def _rt_metadata(model: Any) -> dict[str, str]:
    """The settings a file of this tool carries in an IR's rt_info section."""
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info([RT_INFO_SECTION]).astype(dict)
    return {str(k): v.astype(str) for k, v in section.items()}


def model_metadata(path: str | os.PathLike[str], model: Any) -> dict[str, str]:
    """The file's own metadata: an ONNX file's metadata_props (OpenVINO does not carry them
    over), an IR's rt_info section."""
    if Path(path).suffix.lower() == ".onnx":
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {p.key: p.value for p in proto.metadata_props}
    return _rt_metadata(model)


def load(
    path: str | os.PathLike[str], *, threads: int | None = None,
    preprocessing: Mapping[str, Any] | Preprocessing | None = None,
    output: str | None = None, precision: str | None = None,
    performance_hint: str | None = None,
) -> OpenVinoBackend:
    """The loader: an ``.onnx`` or IR ``.xml`` file → a runner compiled for the CPU.

    ``precision`` (``f32``/``bf16``/``f16``; default: the file's metadata, else ``f32``) is
    OpenVINO's INFERENCE_PRECISION_HINT; ``performance_hint`` its PERFORMANCE_HINT.
    """
    where = str(path)
    weights = Path(path).with_suffix(".bin")
    if Path(path).suffix.lower() == ".xml" and not weights.is_file():
        raise InputNotFoundError(f"{where}: OpenVINO IR weights not found ({weights.name} "
                                 "belongs beside the .xml)")
    asked = check_precision(precision)
    hint = check_hint(performance_hint)
    core = openvino_core()
    try:
        model = core.read_model(where)
    except Exception as exc:  # OpenVINO raises RuntimeError/its own types for a bad file
        raise InvalidInputError(f"{where}: not a model OpenVINO can read: "
                                f"{one_line(exc, limit=None)}") from exc
    metadata = model_metadata(path, model)
    stated = check_precision(metadata.get(METADATA_PRECISION))
    chosen = asked or stated or DEFAULT_PRECISION
    source = "option" if asked else "metadata" if stated else "default"
    _refuse_missing_precision(chosen, core, where)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": chosen,
                              "PERFORMANCE_HINT": hint.upper()}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, DEVICE, config)
    except Exception as exc:
        raise InvalidInputError(f"{where}: OpenVINO cannot compile the model: "
                                f"{one_line(exc, limit=None)}") from exc
    return OpenVinoBackend(model, compiled, core=core, model_path=where, metadata=metadata,
                           precision=chosen, precision_source=source, hint=hint,
                           threads=threads, preprocessing=preprocessing, output=output)


class OpenVinoBackend(SpecRunner):
    """The runner over an OpenVINO compiled model (one synchronous infer request)."""

    macs_source = "counted from the ONNX graph"

    def __init__(self, model: Any, compiled: Any, *, core: Any, model_path: str,
                 metadata: Mapping[str, str], precision: str, precision_source: str,
                 hint: str, threads: int | None,
                 preprocessing: Mapping[str, Any] | Preprocessing | None,
                 output: str | None) -> None:
        import openvino as ov

        self.model_path, self.compiled, self.metadata = model_path, compiled, dict(metadata)
        inp, out = self._check_interface(model, output)
        shape = tuple(d.get_length() if d.is_static else None for d in inp.get_partial_shape())
        dtype = np.dtype(inp.get_element_type().to_dtype()).name
        if isinstance(preprocessing, Preprocessing):
            preprocessing = {k: v for k, v in preprocessing.to_dict().items() if k != "dtype"}
        self.preprocessing, sources = resolve(preprocessing, self.metadata, shape, dtype,
                                              where=model_path)
        self.input_dtype = np.dtype(self.preprocessing.dtype)
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        _, *dims = shape
        pixel_shape = ((dims[1], dims[2], dims[0]) if self.preprocessing.layout == "nchw"
                       else tuple(dims))
        self.input_spec = InputSpec(shape=shape, pixel_shape=pixel_shape,
                                    dtype=self.input_dtype.name,
                                    layout=self.preprocessing.layout,
                                    preprocessing=self.preprocessing)
        self._output_index = list(compiled.outputs).index(
            next(o for o in compiled.outputs if o.get_names() == out.get_names()))
        self._request = compiled.create_infer_request()
        self.precision = self._in_effect(precision)
        onnx_file = Path(model_path).suffix.lower() == ".onnx"
        self.abilities = frozenset({MACS, STRUCTURE} if onnx_file else set())
        notes = ([f"the model's batch dimension is fixed at {self.fixed_batch}: images run "
                  f"{self.fixed_batch} at a time, a short last batch padded with copies of "
                  "its last image whose outputs are dropped"] if self.fixed_batch else [])
        quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
        self.info = RunnerInfo(
            name="openvino", model_path=model_path, model_sha256=self._digest(),
            runtime_version=ov.get_version().split("-")[0], input_shape=shape,
            num_classes=out.get_partial_shape()[1].get_length()
            if out.get_partial_shape()[1].is_static else 0,
            input_dtype=self.input_dtype.name,
            extra={
                "input_name": inp.any_name, "output_name": out.any_name,
                "build": ov.get_version(),
                "device": f"{DEVICE} ({core.get_property(DEVICE, 'FULL_DEVICE_NAME')})",
                "inference_precision": self.precision,
                "precision_source": precision_source,
                "compute_dtype": _COMPUTE_DTYPE[self.precision],
                "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")).lower(),
                "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
                "preprocessing": record(self.preprocessing, sources),
                **({"fixed_batch": self.fixed_batch} if self.fixed_batch else {}),
                **({"notes": notes} if notes else {}),
                **({"output_kind": self.metadata["output_kind"]}
                   if "output_kind" in self.metadata else {}),
                **({"quantization": "int8"} if quantized else {}),
            })

    def _digest(self) -> str:
        """The sha256 of the file (an IR's .xml; its weights are the .bin beside it)."""
        return file_digest(self.model_path)

    def _in_effect(self, asked: str) -> str:
        """The precision the compiled model computes in, read back; one other than asked for
        is refused (OpenVINO fell back), never recorded as if it were the one asked for."""
        value = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        effect = _OF_TYPE.get(name, name)
        if effect != asked:
            raise UsageError(f"{self.model_path}: OpenVINO compiled the model for {effect} "
                             f"although {asked} was asked for; this CPU cannot run it in "
                             f"{asked}")
        return effect

    def _check_interface(self, model: Any, wanted: str | None) -> tuple[Any, Any]:
        """(input, output) once the model is an image classifier this runner can feed."""
        where = self.model_path
        if len(model.inputs) != 1:
            raise InvalidInputError(f"{where}: expected one input, the model has "
                                    f"{len(model.inputs)}")
        inp = model.inputs[0]
        rank = inp.get_partial_shape().rank
        if not rank.is_static or rank.get_length() != 4:
            raise InvalidInputError(f"{where}: input {inp.any_name!r} has shape "
                                    f"{inp.get_partial_shape()}, expected an image batch of "
                                    "rank 4 (N,H,W,C or N,C,H,W)")
        names = [o.any_name for o in model.outputs]
        if wanted is not None:
            out = next((o for o in model.outputs if wanted in o.get_names()), None)
            if out is None:
                raise UsageError(f"{where}: no output named {wanted!r}; the model's outputs "
                                 f"are {', '.join(repr(n) for n in names)}")
        elif len(model.outputs) > 1:
            raise UsageError(f"{where}: the model has {len(names)} outputs "
                             f"({', '.join(repr(n) for n in names)}); choose one with "
                             "--output-name NAME")
        else:
            out = model.outputs[0]
        if out.get_partial_shape().rank.get_length() != 2:
            raise InvalidInputError(f"{where}: output {out.any_name!r} has shape "
                                    f"{out.get_partial_shape()}, expected (batch, classes)")
        return inp, out

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for an already prepared batch; a fixed batch size runs in chunks."""
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        size = self.fixed_batch
        if size is None or len(x) == size:
            return self._run(x)
        return chunked(self._run, size)(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One synchronous inference; the outputs are copied out of OpenVINO's buffer (the
        next call reuses it)."""
        try:
            self._request.infer({0: np.ascontiguousarray(x)})
        except Exception as exc:
            raise InvalidInputError(f"{self.model_path}: the model fails in OpenVINO: "
                                    f"{one_line(exc)}") from exc
        return np.array(self._request.get_output_tensor(self._output_index).data,
                        dtype=np.float32)

    def macs(self) -> int:
        """Multiply-accumulates per image of the ONNX file's Conv, MatMul and Gemm nodes."""
        import onnx

        from resnet8_onnx.backends.onnxrt.graph import count_macs

        return count_macs(onnx.load(self.model_path))

    def structure(self) -> dict[str, Any]:
        """The ONNX file's checked structure report (what verify reads), as ONNX Runtime's
        runner gives it: the file is the same whichever runtime runs it."""
        from resnet8_onnx.backends.onnxrt.graph import structure_report

        return structure_report(self.model_path)
