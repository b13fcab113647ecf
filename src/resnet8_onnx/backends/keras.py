"""The Keras model itself as a backend: the reference every converted model is compared with.

Loading goes through :func:`resnet8_onnx.keras_io.load_keras_model`, so the same safe pre-scan
protects it. Prediction calls a ``tf.function``-wrapped ``model(x, training=False)`` with a
fixed input signature rather than ``model.predict``: ``predict`` builds a dataset and a
step function per call, which dominates the run time for the small batches we feed it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, UsageError
from ..fsutil import file_digest
from ..keras_io import (
    call_model,
    import_tensorflow,
    inspect_keras_file,
    load_keras_model,
    output_kind_of,
)
from .base import BackendInfo


def configure_threads(threads: int | None) -> int | None:
    """Apply a TensorFlow thread count if still possible; returns the count in effect.

    TensorFlow fixes its thread pools when its runtime first runs an op, so a caller that
    converts before building this backend should call this first. A request that comes too
    late is not an error: the backend reports the count actually in effect (``None`` means
    TensorFlow's default, all cores), which keeps benchmarks honest.
    """
    tf, _ = import_tensorflow()
    if threads is not None:
        if threads < 1:
            raise UsageError(f"threads must be at least 1, got {threads}")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # runtime already initialised: the earlier setting stays in force
    value = tf.config.threading.get_intra_op_parallelism_threads()
    return value or None  # 0 means "TensorFlow's default" (all cores)


class KerasBackend:
    """Run a Keras ``.h5``/``.keras`` classifier; also exposes per-layer outputs for verify."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        model: Any | None = None,
        threads: int | None = None,
    ) -> None:
        if model is None:
            inspect_keras_file(path)  # refuse unsafe files before paying for TensorFlow
        tf, keras = import_tensorflow()
        effective_threads = configure_threads(threads)
        self.path = Path(path)
        self.model = model if model is not None else load_keras_model(self.path)
        self._tf = tf
        self._keras = keras
        if len(self.model.inputs) != 1 or len(self.model.outputs) != 1:
            raise InvalidInputError(
                f"{self.path}: model has {len(self.model.inputs)} inputs and "
                f"{len(self.model.outputs)} outputs; expected one of each"
            )
        input_shape = tuple(self.model.inputs[0].shape)
        output_shape = tuple(self.model.outputs[0].shape)
        self._input_shape = input_shape
        spec = tf.TensorSpec((None, *input_shape[1:]), tf.float32)
        model_ref = self.model
        self._predict_fn = tf.function(
            lambda x: call_model(model_ref, x), input_signature=(spec,)
        )
        self._layer_models: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self.info = BackendInfo(
            name="keras",
            model_path=str(self.path),
            model_sha256=file_digest(self.path),
            runtime_version=f"tensorflow {tf.__version__} / keras {keras.__version__}",
            input_shape=(None, *input_shape[1:]),
            num_classes=int(output_shape[-1]),
            extra={"output_kind": output_kind_of(self.model), "threads": effective_threads},
        )

    def _check_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        expected = tuple(self._input_shape[1:])
        if batch.ndim != len(self._input_shape) or tuple(batch.shape[1:]) != expected:
            raise InvalidInputError(
                f"{self.path}: batch has shape {batch.shape}, expected (N, "
                f"{', '.join(map(str, expected))})"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs ``(N, num_classes)`` for a float32 ``(N, H, W, C)`` batch."""
        x = self._check_batch(batch)
        return np.asarray(self._predict_fn(self._tf.constant(x)), dtype=np.float32)

    def layer_names(self) -> list[str]:
        """Names of the model's layers in order, without the input layer."""
        return [
            layer.name
            for layer in self.model.layers
            if type(layer).__name__ != "InputLayer"
        ]

    def layer_outputs(
        self, batch: np.ndarray, layer_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Each named layer's output for ``batch`` (all layers by default), in layer order.

        Lets verify locate the first layer where two runtimes diverge. The multi-output
        model is built once per distinct ``layer_names`` and reused.
        """
        names = tuple(self.layer_names() if layer_names is None else layer_names)
        if not names:
            raise UsageError(f"{self.path}: no layers requested")
        if names not in self._layer_models:
            known = {layer.name: layer for layer in self.model.layers}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise UsageError(f"{self.path}: no layer named {', '.join(map(repr, unknown))}")
            probe = self._keras.Model(
                inputs=self.model.inputs, outputs=[known[n].output for n in names]
            )
            spec = self._tf.TensorSpec((None, *self._input_shape[1:]), self._tf.float32)
            fn = self._tf.function(lambda x: call_model(probe, x), input_signature=(spec,))
            self._layer_models[names] = (probe, fn)
        _, fn = self._layer_models[names]
        x = self._check_batch(batch)
        outputs = fn(self._tf.constant(x))
        if not isinstance(outputs, list | tuple):
            outputs = [outputs]
        return {name: np.asarray(out) for name, out in zip(names, outputs, strict=True)}
