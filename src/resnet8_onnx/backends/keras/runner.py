"""The Keras model itself as a backend: the reference every converted model is compared with.

Loading goes through :func:`resnet8_onnx.backends.keras.files.load_keras_model`, so the same
safe pre-scan
protects it. Prediction calls a ``tf.function``-wrapped ``model(x, training=False)`` with a
fixed input signature rather than ``model.predict``: ``predict`` builds a dataset and a
step function per call, which dominates the run time for the small batches we feed it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.backends.base import (
    CONVERSION_SOURCE,
    LAYER_OUTPUTS,
    MACS,
    PARAMETERS,
    InputSpec,
    RawPixelRunner,
)
from resnet8_onnx.backends.keras.files import (
    call_model,
    import_tensorflow,
    inspect_keras_file,
    load_keras_model,
    output_kind_of,
)
from resnet8_onnx.records.parts import RunnerInfo
from resnet8_onnx.support.errors import InvalidInputError, UsageError
from resnet8_onnx.support.fsutil import file_digest


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


def load(path: str | os.PathLike[str], *, threads: int | None = None) -> KerasBackend:
    """The loader: a Keras file → a runner; unsafe files are refused before TensorFlow loads."""
    inspect_keras_file(path)
    configure_threads(threads)
    return KerasBackend(load_keras_model(Path(path)), path, threads=threads)


def from_model(model: Any, path: str | os.PathLike[str], *,
               threads: int | None = None) -> KerasBackend:
    """The loader for a model already in memory (``run`` converts and evaluates the same
    one); ``path`` is the file it was loaded from, for its checksum and reports."""
    configure_threads(threads)
    return KerasBackend(model, path, threads=threads)


def parents_from_config(model_config: dict[str, Any]) -> dict[str, list[str]]:
    """Layer name → names of the layers feeding it, from a Keras 3 functional config."""

    def histories(obj: Any) -> list[str]:
        found: list[str] = []
        if isinstance(obj, dict):
            if "keras_history" in obj:
                found.append(obj["keras_history"][0])
            for v in obj.values():
                found += histories(v)
        elif isinstance(obj, list):
            for v in obj:
                found += histories(v)
        return found

    layers = model_config.get("layers", [])
    if "inbound_nodes" not in (layers[0] if layers else {}):  # Sequential: a chain
        names = [layer["config"]["name"] for layer in layers]
        return {b: [a] for a, b in itertools.pairwise(names)}
    return {layer["config"]["name"]: histories(layer.get("inbound_nodes", [])) for layer in layers}


def keras_macs(model: Any) -> int:
    """MACs per image of a Keras model's Conv/Dense layers, from kernel and output shapes.

    Counts the same operations as the ONNX count (convolutions and dense layers), so the two
    figures of one model agree exactly; nested models are walked recursively.
    """
    macs = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model
            macs += keras_macs(layer)
            continue
        kind = type(layer).__name__
        out = [int(d) for d in tuple(layer.output.shape)[1:] if d is not None]
        if kind in ("Conv1D", "Conv2D", "Conv3D"):
            k = tuple(int(d) for d in layer.kernel.shape)  # (*spatial, in / groups, filters)
            macs += int(np.prod(out)) * int(np.prod(k[:-1]))
        elif kind in ("DepthwiseConv1D", "DepthwiseConv2D"):
            k = tuple(int(d) for d in layer.kernel.shape)  # (*spatial, in, multiplier)
            macs += int(np.prod(out)) * int(np.prod(k[:-2]))
        elif kind == "Dense":
            macs += int(np.prod(out)) * int(layer.kernel.shape[0])
    return int(macs)


class KerasBackend(RawPixelRunner):
    """The runner of a loaded Keras classifier; also exposes per-layer outputs for verify."""

    abilities = frozenset({MACS, LAYER_OUTPUTS, PARAMETERS, CONVERSION_SOURCE})
    macs_source = "counted from the Keras layers"

    def __init__(self, model: Any, path: str | os.PathLike[str], *,
                 threads: int | None = None) -> None:
        tf, keras = import_tensorflow()
        effective_threads = configure_threads(threads)
        self.path = Path(path)
        self.model = model
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
        kind = output_kind_of(self.model)
        self.output_kind = kind if kind in ("probabilities", "logits") else None
        pixels = tuple(None if d is None else int(d) for d in input_shape[1:])
        self.input_spec = InputSpec(shape=(None, *pixels), pixel_shape=pixels)
        self.info = RunnerInfo(
            name="keras",
            model_path=str(self.path),
            model_sha256=file_digest(self.path),
            runtime_version=f"tensorflow {tf.__version__} / keras {keras.__version__}",
            input_shape=(None, *input_shape[1:]),
            num_classes=int(output_shape[-1]),
            extra={"output_kind": kind, "threads": effective_threads},
        )

    def macs(self) -> int:
        """Multiply-accumulates per image of the Conv/Dense layers (see :func:`keras_macs`)."""
        return keras_macs(self.model)

    def source_parameters(self) -> dict[str, int]:
        """Parameter and BatchNormalization-layer counts: tf2onnx folds BN into the
        convolutions, so a converted model has fewer parameters; reports say why."""
        return {
            "reference_parameters": int(self.model.count_params()),
            "reference_batch_normalization_layers": sum(
                1 for layer in self.model.layers
                if type(layer).__name__ == "BatchNormalization"),
        }

    def layer_graph(self) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
        """(name, class) of each layer in order (input layer excluded), and each layer's
        parents by name: what verify needs to locate the first diverging layer."""
        layers = [(layer.name, type(layer).__name__) for layer in self.model.layers
                  if type(layer).__name__ != "InputLayer"]
        return layers, parents_from_config(self.model.get_config())

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
