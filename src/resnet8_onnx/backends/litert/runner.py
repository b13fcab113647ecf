"""LiteRT (TFLite) backend via ``ai-edge-litert``: float and fully-quantised models.

Quantised models take the input scale and zero point from the file itself (for MLCommons'
int8 ResNet8 that is scale 1, zero point −128, i.e. ``uint8 − 128``) and dequantise the
output the same way, so metrics compare like with like across runtimes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from resnet8_onnx.backends.base import MACS, InputSpec, RawPixelRunner
from resnet8_onnx.records.parts import RunnerInfo
from resnet8_onnx.support.errors import InvalidInputError, interrupts_deferred, one_line
from resnet8_onnx.support.fsutil import file_digest
from resnet8_onnx.support.quiet import native_chatter_filtered


def _quantization(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero_point) of a per-tensor quantised tensor, None for a float tensor."""
    params = detail.get("quantization_parameters", {})
    scales, zero_points = params.get("scales", []), params.get("zero_points", [])
    if len(scales) == 0:
        return None
    if len(scales) != 1:
        raise InvalidInputError(
            f"{detail['name']}: per-channel quantised model I/O is not supported")
    return float(scales[0]), int(zero_points[0])


def load(path: str | os.PathLike[str], *, threads: int | None = None) -> LiteRTBackend:
    """The loader: a ``.tflite`` file → a runner over an allocated interpreter."""
    with interrupts_deferred():  # Ctrl-C inside its C++ init becomes an ImportError
        from ai_edge_litert.interpreter import Interpreter

    try:
        # The first allocation creates the XNNPACK delegate, which announces itself on fd 2.
        with native_chatter_filtered():
            interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
            interpreter.allocate_tensors()
    except Exception as exc:  # LiteRT raises ValueError/RuntimeError with long text
        raise InvalidInputError(f"{path}: not a loadable TFLite model: "
                                f"{one_line(exc, limit=None)}") from exc
    return LiteRTBackend(interpreter, path, threads=threads)


def tflite_macs(interpreter: Any) -> int:
    """MACs per image of a TFLite model's CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops.

    Shapes come from the interpreter's tensor table, as allocated for one image.
    """
    shapes = {t["index"]: [int(d) for d in t["shape"]] for t in interpreter.get_tensor_details()}
    macs = 0
    for op in interpreter._get_ops_details():  # the only way LiteRT exposes its graph
        name, inputs, outputs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if len(inputs) < 2 or not outputs:
            continue
        out, w = shapes.get(outputs[0]), shapes.get(inputs[1])
        if not out or not w:
            continue
        per_image = int(np.prod(out[1:])) if len(out) > 1 else int(np.prod(out))
        if name == "CONV_2D":  # weights (out, kh, kw, in / groups)
            macs += per_image * int(np.prod(w[1:]))
        elif name == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, out)
            macs += per_image * int(np.prod(w[1:3]))
        elif name == "FULLY_CONNECTED":  # weights (units, in)
            rows = int(np.prod(out[:-1])) if len(out) > 1 else 1
            batch = int(shapes.get(inputs[0], [1])[0] or 1)
            macs += max(rows // batch, 1) * out[-1] * w[-1]
    return int(macs)


class LiteRTBackend(RawPixelRunner):
    """The runner of a LiteRT interpreter, resized to each batch; quantisation read from the
    file. Outputs are dequantised, so they are of the model's own kind (not declared)."""

    abilities = frozenset({MACS})
    macs_source = "counted from the TFLite operators"
    output_kind = None

    def __init__(self, interpreter: Any, path: str | os.PathLike[str], *,
                 threads: int | None = None) -> None:
        from ai_edge_litert import __version__ as litert_version

        self.interpreter = interpreter
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InvalidInputError(f"{path}: expected one input and one output")
        self._in, self._out = inputs[0], outputs[0]
        shape = [int(d) for d in self._in.get("shape_signature", self._in["shape"])]
        if len(shape) != 4:
            raise InvalidInputError(f"{path}: input has rank {len(shape)}, expected NHWC rank 4")
        self.input_quantization = _quantization(self._in)
        self.output_quantization = _quantization(self._out)
        self._batch: int | None = None
        self.input_spec = InputSpec(shape=(None, *shape[1:]), pixel_shape=tuple(shape[1:]))
        self.info = RunnerInfo(
            name="litert",
            model_path=str(path),
            model_sha256=file_digest(path),
            runtime_version=f"ai-edge-litert {litert_version}",
            input_shape=(None, *shape[1:]),
            num_classes=int(self._out["shape"][-1]),
            input_dtype=np.dtype(self._in["dtype"]).name,
            extra={
                "input_quantization": self.input_quantization,
                "output_quantization": self.output_quantization,
                "threads": threads or 0,
                # a quantised input means integer arithmetic inside (the MLCommons int8 file)
                **({"quantization": np.dtype(self._in["dtype"]).name}
                   if self.input_quantization is not None else {}),
            },
        )

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = [batch, *self.info.input_shape[1:]]
            self.interpreter.resize_tensor_input(self._in["index"], shape)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def macs(self) -> int:
        """Multiply-accumulates per image of the file's operators (see :func:`tflite_macs`)."""
        return tflite_macs(self.interpreter)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Float pixels in, float outputs out; (de)quantised at the edges when the model is."""
        x = np.asarray(batch, dtype=np.float32)
        if self.input_quantization is not None:
            scale, zero = self.input_quantization
            info = np.iinfo(self._in["dtype"])
            x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(self._in["dtype"])
        self._resize(len(x))
        self.interpreter.set_tensor(self._in["index"], x)
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self._out["index"])
        if self.output_quantization is not None:
            scale, zero = self.output_quantization
            return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return y.astype(np.float32, copy=True)
