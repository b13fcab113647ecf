"""ONNX Runtime's quantisation, run for us: the float model checked, pre-processed, quantised.

Also the session plumbing every measurement shares: a CPU session, outputs over a batch loop,
and interleaved timing of several models in one process. ``onnxruntime.quantization`` is
imported when first needed.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx import __version__
from resnet8_onnx.preprocess import Preprocessing, resolve
from resnet8_onnx.records import Recipe
from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    UsageError,
    interrupts_deferred,
    one_line,
)
from resnet8_onnx.support.fsutil import file_digest
from resnet8_onnx.support.progress import track

CALIBRATION_BATCH = 100

# Operators that only a quantised model contains (ai.onnx and com.microsoft domains).
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger",
    "MatMulInteger", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearSoftmax", "QLinearConcat", "QLinearSigmoid",
    "QLinearLeakyRelu", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})


@dataclass(frozen=True)
class Feed:
    """How tensors reach one model: its input and output names, its preprocessing spec and
    its fixed batch size (``None``: any). Calibration, scoring and timing all feed through
    one, so every image the model sees is prepared the same way."""

    input_name: str
    spec: Preprocessing = field(default_factory=Preprocessing)
    fixed_batch: int | None = None
    output_name: str | None = None  # None: the first output

    def batches(self, images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
        """(model input, real image count) per batch; a fixed batch size is honoured by
        padding the last batch with copies of its last image."""
        size = self.fixed_batch or batch_size
        for start in range(0, len(images), size):
            chunk = images[start:start + size]
            n = len(chunk)
            if self.fixed_batch and n < size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - n, axis=0)])
            yield self.spec.apply(chunk), n

    def outputs(self, session: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
        """The chosen output over ``images`` (uint8 NHWC), float32, padding dropped."""
        names = None if self.output_name is None else [self.output_name]
        parts = [session.run(names, {self.input_name: x})[0][:n]
                 for x, n in self.batches(images, batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)


def as_feed(feed: Feed | str) -> Feed:
    """A bare input name is the converted ResNet8's feed: raw 0–255 float32 NHWC pixels."""
    return feed if isinstance(feed, Feed) else Feed(feed)


@dataclass(frozen=True)
class FloatModel:
    """What quantisation needs to know about the float ONNX file, checked up front."""

    path: str
    sha256: str
    size_bytes: int
    input_name: str
    image_shape: tuple[int, ...]  # (H, W, C) of the pixels it takes; 0 where dynamic
    metadata: dict[str, str]
    node_names: tuple[str, ...]
    input_shape: tuple[int | None, ...] = ()  # as the model declares it (None: dynamic)
    opset: int = 0  # of the default ONNX domain
    spec: Preprocessing = field(default_factory=Preprocessing)
    spec_sources: dict[str, str] = field(default_factory=dict)
    output_name: str | None = None

    @property
    def fixed_batch(self) -> int | None:
        return self.input_shape[0] if self.input_shape and self.input_shape[0] else None

    @property
    def feed(self) -> Feed:
        return Feed(self.input_name, self.spec, self.fixed_batch, self.output_name)


def inspect_float_model(path: str | os.PathLike[str], *,
                        preprocessing: Mapping[str, Any] | None = None,
                        output: str | None = None) -> FloatModel:
    """Refuse what cannot be quantised (a missing file, a non-ONNX or already-quantised
    model) and resolve its preprocessing spec exactly as ``evaluate`` does
    (:func:`resnet8_onnx.preprocess.resolve`: option, metadata, input shape, default)."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: model file not found")
    if p.suffix.lower() != ".onnx":
        raise InvalidInputError(f"{p}: quantize takes an ONNX model (.onnx), not "
                                f"{p.suffix or 'a file without suffix'}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise InvalidInputError(f"{p}: not an ONNX model ({one_line(exc)})") from None
    graph = model.graph
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        raise InvalidInputError(f"{p}: models with external tensor data are not supported")
    quantized = sorted({n.op_type for n in graph.node if n.op_type in QUANTIZED_OPS})
    if quantized:
        raise InvalidInputError(f"{p}: model is already quantised (contains "
                                f"{', '.join(quantized[:3])}); quantize takes a float model")
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not graph.node or len(inputs) != 1 or len(graph.output) < 1:
        raise InvalidInputError(f"{p}: expected an image classifier with one input, found "
                                f"{len(inputs)} inputs and {len(graph.node)} nodes")
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise InvalidInputError(f"{p}: input {inputs[0].name!r} is not float32; quantize takes "
                                "the float model")
    shape = tuple(d.dim_value or None for d in tensor_type.shape.dim)
    if len(shape) != 4:
        raise InvalidInputError(f"{p}: input {inputs[0].name!r} has rank {len(shape)}, expected "
                                "an image batch of rank 4 (N,H,W,C or N,C,H,W)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidInputError(f"{p}: fails the ONNX checker ({one_line(exc)})") from None
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    spec, sources = resolve(preprocessing, metadata, shape, "float32", where=str(p))
    _, *dims = (d or 0 for d in shape)
    image_shape = (dims[1], dims[2], dims[0]) if spec.layout == "nchw" else tuple(dims)
    return FloatModel(
        path=str(p), sha256=file_digest(p), size_bytes=p.stat().st_size,
        input_name=inputs[0].name, image_shape=tuple(image_shape), metadata=metadata,
        node_names=tuple(n.name for n in graph.node if n.name), input_shape=shape,
        opset=default_opset(model), spec=spec, spec_sources=sources,
        output_name=_output_name(p, [o.name for o in graph.output], output),
    )


def _output_name(path: Path, names: list[str], wanted: str | None) -> str | None:
    """The output to score: the one named, or the only one (as the ONNX backend chooses)."""
    if wanted is not None:
        if wanted not in names:
            raise UsageError(f"{path}: no output named {wanted!r}; the model's outputs are "
                             f"{', '.join(repr(n) for n in names)}")
        return wanted
    if len(names) > 1:
        raise UsageError(f"{path}: the model has {len(names)} outputs "
                         f"({', '.join(repr(n) for n in names)}); choose one with "
                         "--output-name NAME")
    return names[0]


def default_opset(model: Any) -> int:
    """The model's opset of the default ONNX domain (``""`` or ``ai.onnx``)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
               default=0)


def ort_quantization() -> Any:
    with interrupts_deferred():  # Ctrl-C inside a C++ import becomes an ImportError
        import onnxruntime.quantization as q
    return q


def equal_batch(count: int, limit: int = CALIBRATION_BATCH) -> int:
    """The largest batch size up to ``limit`` that divides ``count``: ONNX Runtime's histogram
    calibrators (entropy, percentile) stack every batch's outputs, so a short last batch
    fails them."""
    return next(b for b in range(min(limit, max(count, 1)), 0, -1) if count % b == 0)


def calibration_reader(feed: Feed | str, images: np.ndarray,
                       batch: int = CALIBRATION_BATCH) -> Any:
    """A ``CalibrationDataReader`` over uint8 NHWC images, each batch prepared by the model's
    spec in its layout, dtype and (fixed) batch size: what the model takes, nothing else.
    Every batch has the same size (:func:`equal_batch`; a fixed batch pads its last one)."""
    q: Any = ort_quantization()
    fed = as_feed(feed)
    batch = fed.fixed_batch or equal_batch(len(images), batch)

    class _Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[tuple[np.ndarray, int]] = iter(())
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._batches, None)
            return None if x is None else {fed.input_name: x[0]}

        def rewind(self) -> None:
            self._batches = fed.batches(images, batch)

        def __len__(self) -> int:
            size = fed.fixed_batch or batch
            return -(-len(images) // size)

    return _Reader()


def cpu_session(path: str | os.PathLike[str], threads: int | None) -> Any:
    with interrupts_deferred():
        import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def run_outputs(session: Any, feed: Feed | str, images: np.ndarray,
                batch_size: int) -> np.ndarray:
    return as_feed(feed).outputs(session, images, batch_size)


def time_passes(sessions: Sequence[Any], feed: Feed | str, images: np.ndarray,
                batch_size: int, rounds: int) -> list[list[float]]:
    """Images/s of each session in each of ``rounds`` interleaved passes over ``images``.

    Interleaving (fp32, A, B, …, fp32, A, B, …) exposes every model to the same background
    load; the spread of one model's passes is the noise of this machine at this time.
    Preprocessing happens once, before the clock starts.
    """
    feed = as_feed(feed)
    batches = [x for x, _ in feed.batches(images, batch_size)]
    for session in sessions:  # warm-up: first-run allocations and kernel selection
        session.run(None, {feed.input_name: batches[0]})
    passes: list[list[float]] = [[] for _ in sessions]
    with track(f"Timing {len(sessions)} models against each other",
               rounds * len(sessions)) as advance:
        for _ in range(rounds):
            for k, session in enumerate(sessions):
                start = time.perf_counter()
                for batch in batches:
                    session.run(None, {feed.input_name: batch})
                elapsed = time.perf_counter() - start
                passes[k].append(len(images) / elapsed if elapsed > 0 else 0.0)
                advance(1)
    return passes


def time_sessions(sessions: Sequence[Any], feed: Feed | str, images: np.ndarray,
                  batch_size: int, rounds: int) -> list[float]:
    """Best images/s of each session over ``rounds`` interleaved passes (:func:`time_passes`):
    the least disturbed pass is the figure to compare."""
    return [max(p) for p in time_passes(sessions, feed, images, batch_size, rounds)]


_QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def _pooling_nodes(pre: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node
            if n.op_type in ("AveragePool", "GlobalAveragePool") and n.name]


def quantize_static(pre: Path, out: Path, recipe: Recipe, feed: Feed | str,
                    images: np.ndarray, cache: Path | None) -> None:
    q = ort_quantization()
    exclude = list(recipe.exclude)
    if recipe.float_pooling:
        exclude += [n for n in _pooling_nodes(pre) if n not in exclude]
    kwargs: dict[str, Any] = {}
    if cache is not None:
        kwargs["calibration_cache_path"] = str(cache)
    import logging

    quiet = [logging.getLogger(), logging.getLogger("onnxruntime")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # ORT's quantiser logs recommendations at WARNING; the record says more
        lg.setLevel(logging.ERROR)
    try:
        # Entropy/percentile calibration prints its histogram settings: not our user's concern.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            q.quantize_static(
                str(pre), str(out), calibration_reader(feed, images),
                quant_format=q.QuantFormat.QDQ if recipe.format == "qdq"
                else q.QuantFormat.QOperator,
                activation_type=getattr(q.QuantType, _QUANT_TYPES[recipe.activations]),
                weight_type=getattr(q.QuantType, _QUANT_TYPES[recipe.weights]),
                per_channel=recipe.per_channel,
                calibrate_method=getattr(q.CalibrationMethod, _METHODS[recipe.method]),
                nodes_to_exclude=exclude or None,
                **kwargs,
            )
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def supports_calibration_cache() -> bool:
    """ONNX Runtime ≥ 1.26 can reuse one calibration for every format × type of a method."""
    q = ort_quantization()
    return "calibration_cache_path" in inspect.signature(q.quantize_static).parameters


def pre_process(model_path: Path, out: Path) -> None:
    """ONNX Runtime's recommended pre-processing: symbolic shape inference, then graph
    optimisation (Conv+BatchNorm fusion), then ONNX shape inference."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with interrupts_deferred():
            import sympy  # noqa: F401 - symbolic shape inference needs it; fail clearly here
    except ImportError:  # pragma: no cover - sympy is a declared dependency
        raise InvalidInputError("quantize needs sympy (pip install sympy)") from None
    try:
        quant_pre_process(str(model_path), str(out))
    except Exception as exc:
        raise InvalidInputError(f"{model_path}: ONNX Runtime's quantisation pre-processing "
                                f"failed ({one_line(exc)})") from exc


def check_excluded_nodes(recipe: Recipe, pre: Path, model: FloatModel) -> None:
    if not recipe.exclude:
        return
    import onnx

    names = {n.name for n in onnx.load(str(pre), load_external_data=False).graph.node}
    unknown = [n for n in recipe.exclude if n not in names]
    if unknown:
        sample = ", ".join(sorted(names)[:4])
        raise UsageError(f"--exclude {unknown[0]!r}: no such node in {Path(model.path).name} "
                         f"after pre-processing (e.g. {sample})")



def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"resnet8_onnx": __version__, "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__, "numpy": np.__version__}
    with contextlib.suppress(ImportError):
        import sympy

        versions["sympy"] = sympy.__version__
    return versions

