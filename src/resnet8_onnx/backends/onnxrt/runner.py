"""ONNX Runtime backend: the runtime the converted model is judged on.

Any ONNX image classifier of opset 7+ that ONNX Runtime runs: the model's own preprocessing
(:mod:`resnet8_onnx.preprocess`) is applied per batch inside :meth:`predict`, a fixed batch
dimension is honoured by running fixed-size chunks (the last one padded), and a model with
several outputs needs the one to use named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from resnet8_onnx.backends.base import (
    CONVERSION_SOURCE,
    MACS,
    SESSION,
    STRUCTURE,
    TENSOR_OUTPUTS,
    InputSpec,
    OnnxSession,
    SpecRunner,
    chunked,
)
from resnet8_onnx.backends.onnxrt.graph import (
    count_macs,
    intermediate_outputs,
    quantization_of_file,
    structure_report,
    tensor_origins,
)
from resnet8_onnx.preprocess import NUMPY_OF_ORT, Preprocessing, record, resolve
from resnet8_onnx.records.parts import RunnerInfo
from resnet8_onnx.support.errors import (
    InvalidInputError,
    UsageError,
    interrupts_deferred,
    one_line,
)
from resnet8_onnx.support.fsutil import file_digest

DEFAULT_PROVIDER = "CPUExecutionProvider"
# ONNX Runtime's graph optimisation levels, weakest first (``benchmark --optimization``).
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) else None


def resolve_provider(name: str | None) -> str:
    """``--provider`` → an ONNX Runtime provider name; ``cuda`` and ``CUDA`` work too.

    An unknown or unavailable name is a usage error that lists the available ones.
    """
    import onnxruntime as ort

    if name is None:
        return DEFAULT_PROVIDER
    available = list(ort.get_available_providers())
    wanted = name.strip().lower().removesuffix("executionprovider")
    for provider in available:
        if provider.lower().removesuffix("executionprovider") == wanted:
            return provider
    raise UsageError(f"execution provider {name!r} is not available in onnxruntime "
                     f"{ort.__version__}; available: {', '.join(available)}")


def _session(source: str | bytes, where: str, *, threads: int | None, optimization: str,
             optimized_model_path: str | os.PathLike[str] | None, provider: str | None) -> Any:
    """An ONNX Runtime session over a file or serialized model; a bad model is exit 3."""
    with interrupts_deferred():  # Ctrl-C inside its C++ init becomes an ImportError
        import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise UsageError(f"unknown optimisation level {optimization!r}; choose one of "
                         f"{', '.join(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    # Fatal only: a model's own failure reaches the user once, as our one line (its error
    # log line would repeat it in red), and ORT warnings are noise for our users.
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model_path:
        options.optimized_model_filepath = str(optimized_model_path)
    chosen = resolve_provider(provider)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=[chosen])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
        raise InvalidInputError(f"{where}: not a loadable ONNX model: "
                                f"{one_line(exc, limit=None)}") from exc


def load(
    path: str | os.PathLike[str], *, threads: int | None = None, optimization: str = "all",
    optimized_model_path: str | os.PathLike[str] | None = None,
    preprocessing: Mapping[str, Any] | Preprocessing | None = None,
    output: str | None = None, provider: str | None = None,
) -> OnnxRuntimeBackend:
    """The loader: an ONNX file → a runner (``optimization``: ONNX Runtime's graph level;
    ``optimized_model_path``: where ONNX Runtime writes the optimised graph).

    A file ONNX Runtime cannot load is then put to the ONNX checker, so the message says what
    is wrong with the file when the checker can tell (truncated, not ONNX, invalid graph).
    """
    try:
        session = _session(str(path), str(path), threads=threads, optimization=optimization,
                           optimized_model_path=optimized_model_path, provider=provider)
    except InvalidInputError:
        structure_report(path)  # raises the checker's account of a broken file
        raise
    return OnnxRuntimeBackend(session, model_path=str(path), sha256=file_digest(path),
                              threads=threads, optimization=optimization,
                              preprocessing=preprocessing, output=output, source=str(path))


def from_bytes(
    data: bytes, label: str, *, threads: int | None = None,
    preprocessing: Mapping[str, Any] | Preprocessing | None = None,
    output: str | None = None, provider: str | None = None,
) -> OnnxRuntimeBackend:
    """The loader for an in-memory model (e.g. one about to be written); ``label`` names it
    in messages and reports."""
    session = _session(data, label, threads=threads, optimization="all",
                       optimized_model_path=None, provider=provider)
    return OnnxRuntimeBackend(session, model_path=label, sha256="", threads=threads,
                              optimization="all", preprocessing=preprocessing, output=output)


def _short_ort_message(exc: BaseException) -> str:
    """ONNX Runtime's run-time error without its boilerplate: "Expand node 'expand':
    invalid expand shape" rather than "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :
    Non-zero status code returned while running Expand node. Name:'expand' Status …"."""
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", one_line(exc, None))
    node = re.match(r"Non-zero status code returned while running (\S+) node\. "
                    r"Name:'([^']*)' Status Message: (.*)", text)
    if node:
        text = f"{node[1]} node {node[2]!r}: {node[3]}"
    return one_line(text)


class OnnxRuntimeBackend(SpecRunner):
    """The runner over an ``onnxruntime.InferenceSession`` of an image classifier.

    The session is created by :func:`load` (or :func:`from_bytes`); for raw NHWC float32
    models ``predict`` is one cast and a single ``run`` call, so the harness adds nothing
    measurable on top of a bare ONNX Runtime loop.
    """

    macs_source = "counted from the ONNX graph"

    def __init__(
        self,
        session: Any,
        *,
        model_path: str,
        sha256: str,
        threads: int | None = None,
        optimization: str = "all",
        preprocessing: Mapping[str, Any] | Preprocessing | None = None,
        output: str | None = None,
        source: str | None = None,
    ) -> None:
        where = model_path
        self.session = session
        self._source = source  # the file, when there is one: structure and tensors need it
        self._structure: dict[str, Any] | None = None
        inp, out = self._check_interface(output, where)
        self.input_name, self.output_name = inp.name, out.name
        input_shape = tuple(_dim(d) for d in inp.shape)
        meta = self.session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)
        if isinstance(preprocessing, Preprocessing):
            preprocessing = {k: v for k, v in preprocessing.to_dict().items() if k != "dtype"}
        self.preprocessing, self.preprocessing_sources = resolve(
            preprocessing, self.metadata, input_shape, NUMPY_OF_ORT[inp.type], where=where)
        self.input_dtype = np.dtype(self.preprocessing.dtype)
        self.fixed_batch = input_shape[0] if isinstance(input_shape[0], int) else None
        self.provider = self.session.get_providers()[0]
        notes = []
        if self.fixed_batch is not None:
            notes.append(f"the model's batch dimension is fixed at {self.fixed_batch}: images "
                         f"run {self.fixed_batch} at a time, a short last batch padded with "
                         "copies of its last image whose outputs are dropped")
        if self.metadata.get("runtime", "onnxruntime") != "onnxruntime":  # written by tune
            tuned = self.metadata.get("tuned_configuration", self.metadata["runtime"])
            notes.append(f"the file was tuned for {tuned} (its metadata); this run uses ONNX "
                         f"Runtime: add --runtime {self.metadata['runtime']} to run it so")
        self.notes = notes
        _, *dims = input_shape
        # the NHWC images predict() takes (None: any size)
        self.pixel_shape = ((dims[1], dims[2], dims[0]) if self.preprocessing.layout == "nchw"
                            else tuple(dims))
        self.input_spec = InputSpec(
            shape=input_shape, pixel_shape=self.pixel_shape, dtype=self.input_dtype.name,
            layout=self.preprocessing.layout, preprocessing=self.preprocessing)
        # A file is also a conversion source: ``convert`` turns ONNX into .pt2 and records
        # its sha256, so verify can prove provenance with an ONNX reference too.
        self.abilities = frozenset({SESSION} | (
            {MACS, STRUCTURE, TENSOR_OUTPUTS, CONVERSION_SOURCE} if source is not None
            else set()))
        self.info = self._describe(model_path, sha256, input_shape, inp, out,
                                   optimization=optimization, threads=threads, notes=notes)

    def _check_interface(self, output: str | None, where: str) -> tuple[Any, Any]:
        """(input, output) of the session once it is an image classifier this runner can
        feed: one rank-4 input of a supported type, one (batch, classes) output chosen."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise InvalidInputError(f"{where}: expected one input, the model has {len(inputs)}")
        inp = inputs[0]
        out = self._choose_output(outputs, output, where)
        if len(inp.shape) != 4:
            raise InvalidInputError(
                f"{where}: input {inp.name!r} has rank {len(inp.shape)} (shape {inp.shape}), "
                "expected an image batch of rank 4 (N,H,W,C or N,C,H,W)"
            )
        if inp.type not in NUMPY_OF_ORT:
            raise InvalidInputError(
                f"{where}: input {inp.name!r} has unsupported type {inp.type}; expected one of "
                f"{', '.join(sorted(NUMPY_OF_ORT))}")
        if len(out.shape) != 2:
            raise InvalidInputError(
                f"{where}: output {out.name!r} has shape {out.shape}, expected (batch, classes)"
            )
        return inp, out

    def _describe(self, model_path: str, sha256: str, input_shape: tuple[Any, ...], inp: Any,
                  out: Any, *, optimization: str, threads: int | None,
                  notes: list[str]) -> RunnerInfo:
        """The runner's description for reports, from the resolved spec and the metadata."""
        import onnxruntime as ort

        return RunnerInfo(
            name="onnxruntime",
            model_path=model_path,
            model_sha256=sha256,
            runtime_version=ort.__version__,
            input_shape=input_shape,
            num_classes=_dim(out.shape[1]) or 0,
            input_dtype=self.input_dtype.name,
            extra={
                "input_name": inp.name,
                "output_name": out.name,
                "optimization": optimization,
                "threads": threads or 0,
                "provider": self.provider,
                "preprocessing": record(self.preprocessing, self.preprocessing_sources),
                **({"fixed_batch": self.fixed_batch} if self.fixed_batch else {}),
                **({"notes": notes} if notes else {}),
                **({"output_kind": self.metadata["output_kind"]}
                   if "output_kind" in self.metadata else {}),
                # int8 by ``quantize``'s metadata or by the graph (another tool's file);
                # its input stays float32.
                **({"quantization": q} if (q := self._quantization()) else {}),
            },
        )

    def _quantization(self) -> str | None:
        """'int8' for a quantised model, None for a float one."""
        if "quantization_recipe" in self.metadata:
            return "int8"
        return quantization_of_file(self._source) if self._source is not None else None

    @staticmethod
    def _choose_output(outputs: list[Any], wanted: str | None, where: str) -> Any:
        names = [o.name for o in outputs]
        if wanted is not None:
            for o in outputs:
                if o.name == wanted:
                    return o
            raise UsageError(f"{where}: no output named {wanted!r}; the model's outputs are "
                             f"{', '.join(repr(n) for n in names)}")
        if len(outputs) > 1:
            raise UsageError(f"{where}: the model has {len(outputs)} outputs "
                             f"({', '.join(repr(n) for n in names)}); choose one with "
                             "--output-name NAME")
        return outputs[0]

    def onnx_session(self) -> OnnxSession:
        """The ``session`` ability: the session, its input and chosen output, and where the
        preprocessing spec came from."""
        return OnnxSession(self.session, self.input_name, self.output_name,
                           dict(self.preprocessing_sources))

    def _file(self) -> str:
        if self._source is None:
            raise UsageError(f"{self.info.model_path}: an in-memory model has no file to read")
        return self._source

    def macs(self) -> int:
        """Multiply-accumulates per image of Conv, MatMul and Gemm nodes (see onnx_graph)."""
        import onnx

        return count_macs(onnx.load(self._file()))

    def structure(self) -> dict[str, Any]:
        """The checked structure report of the file (see ``onnx_graph.structure_report``),
        made once: the file is read and checked once however often it is asked for."""
        if self._structure is None:
            self._structure = structure_report(self._file())
        return self._structure

    def tensor_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every float tensor of the graph for NHWC pixels ``batch``, optimisations off."""
        return intermediate_outputs(self._file(), self.prepare(batch))

    def tensor_origins(self) -> dict[str, tuple[str, bool]]:
        """(operator, through quantisation?) of each tensor (see ``onnx_graph``)."""
        import onnx

        return tensor_origins(onnx.load(self._file()))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for an already preprocessed batch; a fixed batch size runs in chunks."""
        if x.dtype != self.input_dtype:
            x = x.astype(self.input_dtype)
        size = self.fixed_batch
        if size is None or len(x) == size:
            return self._run(x)
        return chunked(self._run, size)(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """One ``session.run``; the model's own failure at run time (an Expand to an
        impossible shape …) is invalid input, in one line, not an internal error."""
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            raise InvalidInputError(f"{self.info.model_path}: the model fails in ONNX Runtime: "
                                    f"{_short_ort_message(exc)}") from exc
