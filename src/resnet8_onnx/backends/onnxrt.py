"""ONNX Runtime (CPU) backend: the runtime the converted model is judged on."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InvalidInputError, interrupts_deferred
from ..fsutil import file_digest
from .base import BackendInfo

_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) else None


class OnnxRuntimeBackend:
    """An ``onnxruntime.InferenceSession`` over an NHWC image classifier.

    The session is created once; ``predict`` is a single ``run`` call so the harness adds
    nothing measurable on top of a bare ONNX Runtime loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        optimization: str = "all",
        optimized_model_path: str | None = None,
        sha256: str | None = None,
    ) -> None:
        with interrupts_deferred():  # Ctrl-C inside its C++ init becomes an ImportError
            import onnxruntime as ort

        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[optimization]
        options.log_severity_level = 3  # errors only: ORT warnings are noise for our users
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if optimized_model_path:
            options.optimized_model_filepath = str(optimized_model_path)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidInputError(f"{path}: not a loadable ONNX model: {first}") from exc

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise InvalidInputError(f"{path}: expected one input, the model has {len(inputs)}")
        inp, out = inputs[0], outputs[0]
        if len(inp.shape) != 4:
            raise InvalidInputError(
                f"{path}: input {inp.name!r} has rank {len(inp.shape)}, expected an NHWC image "
                "batch of rank 4"
            )
        if inp.type not in _ORT_TO_NUMPY:
            raise InvalidInputError(f"{path}: input {inp.name!r} has unsupported type {inp.type}")
        if len(out.shape) != 2:
            raise InvalidInputError(
                f"{path}: output {out.name!r} has shape {out.shape}, expected (batch, classes)"
            )
        self.input_name, self.output_name = inp.name, out.name
        self.input_dtype = _ORT_TO_NUMPY[inp.type]
        meta = self.session.get_modelmeta()
        self.metadata: dict[str, str] = dict(meta.custom_metadata_map)
        self.info = BackendInfo(
            name="onnxruntime",
            model_path=str(path),
            model_sha256=sha256 or file_digest(path),
            runtime_version=ort.__version__,
            input_shape=tuple(_dim(d) for d in inp.shape),
            num_classes=_dim(out.shape[1]) or 0,
            input_dtype=np.dtype(self.input_dtype).name,
            extra={
                "input_name": inp.name,
                "output_name": out.name,
                "optimization": optimization,
                "threads": threads or 0,
                **({"output_kind": self.metadata["output_kind"]}
                   if "output_kind" in self.metadata else {}),
                # A model written by ``quantize`` says so; its input stays float32.
                **({"quantization": "int8"}
                   if "quantization_recipe" in self.metadata else {}),
            },
        )

    @property
    def output_kind(self) -> str | None:
        """"probabilities" / "logits" when the converter recorded it in the metadata."""
        return self.metadata.get("output_kind")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch; float32 in, ``(N, C)`` float32 out."""
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        return self.session.run([self.output_name], {self.input_name: batch})[0]
