"""Keras files: the safe pre-scan, quiet TensorFlow import, loading and calling a model.

A Keras file is a program as much as a set of weights: ``Lambda`` layers carry marshalled
Python bytecode and configs can name classes from any importable module. Keras' own
``safe_mode`` was silently ignored for ``.h5`` files (CVE-2025-9905), so before anything is
deserialised we read the model config as plain JSON and refuse every class that is not a
built-in Keras layer or object. Only then is Keras imported and the model loaded.

Shared by :mod:`resnet8_onnx.convert.keras_to_onnx`, the Keras backend and the PyTorch
converter, so every
Keras file passes the same door. TensorFlow and Keras are imported inside functions:
importing this module must not cost TensorFlow's start-up time.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from resnet8_onnx.support import progress
from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    UnsafeInputError,
    one_line,
)
from resnet8_onnx.support.quiet import native_chatter_filtered

if TYPE_CHECKING:
    import keras

# A .keras config.json larger than this is not a model config but an attack on our memory.
_MAX_CONFIG_BYTES = 64 << 20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"

# ---------------------------------------------------------------------------------------------
# What a safe model config may contain. Default-deny: a class in none of these sets is refused.
# ---------------------------------------------------------------------------------------------

# Built-in classes that nonetheless run code from the file or from outside it, with the reason.
_CODE_RUNNING: Mapping[str, str] = {
    "Lambda": "it would run code stored in the file",
    "__lambda__": "it would run code stored in the file",
    "TFOpLambda": "it would call a TensorFlow function named in the file",
    "SlicingOpLambda": "it would call a TensorFlow function named in the file",
    "TFSMLayer": "it would load and run an external TensorFlow SavedModel",
    "TorchModuleWrapper": "it would unpickle a PyTorch module stored in the file",
    "JaxLayer": "it would call arbitrary JAX functions",
    "FlaxLayer": "it would call an arbitrary Flax module",
}

_MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})

# The concrete layer classes exported by keras.layers (Keras 3.15) minus _CODE_RUNNING and the
# abstract bases Layer/Wrapper. Frozen here so the pre-scan needs no TensorFlow import; a test
# checks it against the installed Keras so drift is caught on upgrade.
_LAYER_CLASSES = frozenset({
    "Activation", "ActivityRegularization", "AdaptiveAveragePooling1D",
    "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D", "AdaptiveMaxPooling1D",
    "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D", "Add", "AdditiveAttention", "AlphaDropout",
    "Attention", "AugMix", "AutoContrast", "Average", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "AvgPool1D", "AvgPool2D", "AvgPool3D", "BatchNormalization",
    "Bidirectional", "CategoryEncoding", "CenterCrop", "Concatenate",
    "ContrastLimitedAdaptiveHistogramEqualization", "Conv1D", "Conv1DTranspose", "Conv2D",
    "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
    "Convolution1D", "Convolution1DTranspose", "Convolution2D", "Convolution2DTranspose",
    "Convolution3D", "Convolution3DTranspose", "Cropping1D", "Cropping2D", "Cropping3D",
    "CutMix", "Dense", "DepthwiseConv1D", "DepthwiseConv2D", "Discretization", "Dot", "Dropout",
    "ELU", "EinsumDense", "Embedding", "Equalization", "Flatten", "GRU", "GRUCell",
    "GaussianDropout", "GaussianNoise", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalAveragePooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "GlobalMaxPooling3D", "GroupNormalization", "GroupQueryAttention",
    "HashedCrossing", "Hashing", "Identity", "InputLayer", "IntegerLookup", "LSTM", "LSTMCell",
    "LayerNormalization", "LeakyReLU", "Masking", "MaxNumBoundingBoxes", "MaxPool1D",
    "MaxPool2D", "MaxPool3D", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Maximum",
    "MelSpectrogram", "Minimum", "MixUp", "MultiHeadAttention", "Multiply", "Normalization",
    "PReLU", "Permute", "Pipeline", "RMSNormalization", "RNN", "RandAugment",
    "RandomBrightness", "RandomColorDegeneration", "RandomColorJitter", "RandomContrast",
    "RandomCrop", "RandomElasticTransform", "RandomErasing", "RandomFlip", "RandomGaussianBlur",
    "RandomGrayscale", "RandomHue", "RandomInvert", "RandomPerspective", "RandomPosterization",
    "RandomRotation", "RandomSaturation", "RandomSharpness", "RandomShear",
    "RandomTranslation", "RandomZoom", "ReLU", "RepeatVector", "Rescaling", "Reshape",
    "Resizing", "ReversibleEmbedding", "STFTSpectrogram", "SeparableConv1D", "SeparableConv2D",
    "SeparableConvolution1D", "SeparableConvolution2D", "SimpleRNN", "SimpleRNNCell",
    "Softmax", "Solarization", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "SpectralNormalization", "StackedRNNCells", "StringLookup", "Subtract",
    "TextVectorization", "TimeDistributed", "UnitNormalization", "UpSampling1D",
    "UpSampling2D", "UpSampling3D", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D",
})

# Non-layer objects found inside layer configs: initializers, regularizers, constraints,
# dtype policies (Keras 2 "Policy" too), Keras 3 serialisation markers, and references to
# built-in functions ("function", only accepted with a keras.* module, checked separately).
_OBJECT_CLASSES = frozenset({
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "Identity",
    "IdentityInitializer", "LecunNormal", "LecunUniform", "Ones", "Orthogonal",
    "OrthogonalInitializer", "RandomNormal", "RandomUniform", "STFT", "STFTInitializer",
    "TruncatedNormal", "VarianceScaling", "Zeros",
    "L1", "L1L2", "L2", "OrthogonalRegularizer",
    "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "RadialConstraint",
    "AWQDTypePolicy", "DTypePolicy", "DTypePolicyMap", "FloatDTypePolicy", "GPTQDTypePolicy",
    "Int4DTypePolicy", "QuantizedDTypePolicy", "QuantizedFloat8DTypePolicy", "Policy",
    "__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__",
    "function",
})

# Parts of the top-level config Keras never deserialises with compile=False. Only the top
# level: Keras compiles nested models from their own compile_config whatever ``compile`` says.
_SKIPPED_TOP_LEVEL_KEYS = frozenset({"compile_config"})


@dataclass(frozen=True)
class KerasModelInfo:
    """What the safe pre-scan learned from a Keras file without deserialising anything.

    ``layers`` lists every layer found in the config in order, nested ones (inside
    sub-models and wrappers) as ``"outer/inner"``.
    """

    path: str
    format: str  # "h5" | "keras"
    model_class: str
    layers: tuple[tuple[str, str], ...]
    keras_version: str | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [list(pair) for pair in self.layers]
        return d


# ---------------------------------------------------------------------------------------------
# Safe pre-scan
# ---------------------------------------------------------------------------------------------


def inspect_keras_file(path: str | os.PathLike[str]) -> KerasModelInfo:
    """Read a Keras file's model config as JSON and refuse anything that could run code.

    Raises InputNotFoundError, InvalidInputError (not a Keras model file) or UnsafeInputError.
    Nothing is deserialised and TensorFlow is not imported, so this is safe on hostile files.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise InvalidInputError(f"{p}: is a directory, expected a .h5 or .keras model file")
    suffix = p.suffix
    # Keras picks its loader by exact, case-sensitive extension; scan with the same rule so
    # the file we check is parsed exactly as Keras will parse it.
    if suffix in (".h5", ".hdf5"):
        fmt = "h5"
        config, keras_version = _read_h5_config(p)
    elif suffix == ".keras":
        fmt = "keras"
        config, keras_version = _read_keras_zip_config(p)
    else:
        raise InvalidInputError(
            f"{p}: unsupported model file extension {suffix or '(none)'!r} "
            "(expected .h5, .hdf5 or .keras)"
        )
    layers = _scan_config(config, str(p))
    model_class = config.get("class_name") if isinstance(config, dict) else None
    if model_class not in _MODEL_CLASSES:
        raise InvalidInputError(
            f"{p}: the file describes a {model_class or 'non-model object'}, "
            "not a Functional or Sequential Keras model"
        )
    return KerasModelInfo(
        path=str(p),
        format=fmt,
        model_class=str(model_class),
        layers=tuple(layers),
        keras_version=keras_version,
    )


def read_keras_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model config of a Keras file as plain JSON, after the safe pre-scan accepted it.

    For code that needs the layer graph itself (the native PyTorch builder), not just the
    layer list :func:`inspect_keras_file` returns; nothing is deserialised.
    """
    p = Path(path)
    inspect_keras_file(p)
    config, _ = _read_h5_config(p) if p.suffix in (".h5", ".hdf5") else _read_keras_zip_config(p)
    return config


def _file_kind(p: Path) -> str:
    """A short description of what a file really is, for error messages."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise InvalidInputError(f"{p}: cannot read: {e.strerror or e}") from e
    if head.startswith(_HDF5_SIGNATURE):
        return "HDF5"
    if head.startswith(_ZIP_SIGNATURE):
        return "zip"
    return "empty" if not head else "unknown"


def _parse_json(text: str | bytes, p: Path, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InvalidInputError(f"{p}: {what} is not valid JSON") from e


def _read_h5_config(p: Path) -> tuple[Any, str | None]:
    import h5py

    kind = _file_kind(p)
    if kind != "HDF5":
        hint = " (it is a zip archive: a .keras file?)" if kind == "zip" else ""
        raise InvalidInputError(f"{p}: not an HDF5 file{hint}")
    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version")
    except OSError as e:
        raise InvalidInputError(f"{p}: corrupt or unreadable HDF5 file") from e
    if raw is None:
        raise InvalidInputError(
            f"{p}: HDF5 file has no model_config (a weights-only file, not a Keras model)"
        )
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(version, bytes):
        version = version.decode("utf-8", errors="replace")
    return _parse_json(str(raw), p, "model_config"), (str(version) if version else None)


def _read_keras_zip_config(p: Path) -> tuple[Any, str | None]:
    kind = _file_kind(p)
    if kind != "zip":
        hint = " (it is an HDF5 file: a .h5 file?)" if kind == "HDF5" else ""
        raise InvalidInputError(f"{p}: not a zip archive, so not a .keras file{hint}")
    try:
        with zipfile.ZipFile(p) as zf:
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise InvalidInputError(f"{p}: .keras archive has no config.json") from None
            if info.file_size > _MAX_CONFIG_BYTES:
                raise InvalidInputError(f"{p}: config.json is implausibly large")
            config_text = zf.read(info)
            version = None
            if "metadata.json" in zf.namelist() and (
                zf.getinfo("metadata.json").file_size <= _MAX_CONFIG_BYTES
            ):
                meta = _parse_json(zf.read("metadata.json"), p, "metadata.json")
                if isinstance(meta, dict) and meta.get("keras_version"):
                    version = str(meta["keras_version"])
    except (zipfile.BadZipFile, OSError) as e:
        raise InvalidInputError(f"{p}: corrupt zip archive") from e
    return _parse_json(config_text, p, "config.json"), version


def _is_keras_module(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


def _node_name(node: Mapping[str, Any]) -> str:
    config = node.get("config")
    name = node.get("name")
    if name is None and isinstance(config, Mapping):
        name = config.get("name")
    return str(name) if name is not None else "?"


def _looks_like_layer(node: Mapping[str, Any]) -> bool:
    config = node.get("config")
    return "inbound_nodes" in node or (isinstance(config, Mapping) and "name" in config)


def _scan_config(config: Any, file: str) -> list[tuple[str, str]]:
    """Walk every dict of a model config; raise UnsafeInputError on the first unsafe class.

    Returns the layers found, in order, as (qualified name, class). Everything is walked
    (nested models, wrappers, RNN cells, initializers...), not just known layer positions,
    so a class hidden in an unexpected key is still seen.
    """
    layers: list[tuple[str, str]] = []

    def describe(
        node: Mapping[str, Any], cls: str, prefix: str, owner: str | None, detail: str = ""
    ) -> str:
        if cls in _LAYER_CLASSES or cls in _MODEL_CLASSES or cls in _CODE_RUNNING or (
            cls not in _OBJECT_CLASSES and _looks_like_layer(node)
        ):
            return f"layer '{prefix}{_node_name(node)}' of class {cls}{detail}"
        where = f" in layer '{owner}'" if owner else ""
        return f"object of class {cls}{detail}{where}"

    def walk(node: Any, prefix: str, owner: str | None, top: bool) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, prefix, owner, False)
            return
        if not isinstance(node, dict):
            return
        cls = node.get("class_name")
        if isinstance(cls, str):
            what = describe(node, cls, prefix, owner)
            if cls in _CODE_RUNNING:
                raise UnsafeInputError(f"{file}: refuses {what}: {_CODE_RUNNING[cls]}")
            module = node.get("module")
            if module is not None and not (isinstance(module, str) and _is_keras_module(module)):
                what = describe(node, cls, prefix, owner, f" from module {module!r}")
                raise UnsafeInputError(
                    f"{file}: refuses {what}: only Keras' own classes can be loaded safely"
                )
            registered = node.get("registered_name")
            if registered is not None and registered != cls and not (
                cls == "function" and registered == node.get("config")
                and ">" not in str(registered)
            ):
                raise UnsafeInputError(
                    f"{file}: refuses {what} registered as {registered!r}: "
                    "custom objects are not built-in Keras classes"
                )
            is_layer = (cls in _LAYER_CLASSES or cls in _MODEL_CLASSES) and (
                cls not in _OBJECT_CLASSES or _looks_like_layer(node)
            )
            if not is_layer and cls not in _OBJECT_CLASSES:
                kind = "layer" if what.startswith("layer") else "class"
                raise UnsafeInputError(
                    f"{file}: refuses {what}: not a built-in Keras {kind} "
                    "(custom code cannot be loaded safely)"
                )
            child_prefix: str
            child_owner: str | None
            if is_layer and not top:
                name = _node_name(node)
                layers.append((prefix + name, cls))
                child_prefix, child_owner = f"{prefix}{name}/", prefix + name
            else:
                child_prefix, child_owner = prefix, owner
            for key, value in node.items():
                if not (top and key in _SKIPPED_TOP_LEVEL_KEYS):
                    walk(value, child_prefix, child_owner, False)
            return
        for value in node.values():
            walk(value, prefix, owner, False)

    try:
        walk(config, "", None, True)
    except RecursionError:
        raise InvalidInputError(f"{file}: model config is nested implausibly deep") from None
    return layers


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def import_tensorflow() -> tuple[ModuleType, ModuleType]:
    """Import TensorFlow and Keras quietly (C++ log noise off); returns ``(tf, keras)``.

    Shared with the Keras backend so every TensorFlow import goes through one quiet door:
    ``TF_CPP_MIN_LOG_LEVEL`` for TensorFlow's own logging, and a filter on fd 2 for what absl
    prints before its logging is initialised (see :mod:`resnet8_onnx.support.quiet`).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # The spinner ends inside the filtered block, so it never outlives the redirection.
    with native_chatter_filtered(), progress.status("Importing TensorFlow…"):
        import keras
        import tensorflow as tf
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    tf.get_logger().setLevel(logging.ERROR)
    return tf, keras


def call_model(model: Any, x: Any) -> Any:
    """``model(x, training=False)`` with ``x`` packed the way the model declares its inputs.

    Functional models loaded from Keras 2 files declare a *list* of one input; calling them
    with a bare tensor works but warns on every call (and every trace).
    """
    struct = getattr(model, "_inputs_struct", None)
    if struct is not None:
        import keras

        x = keras.tree.pack_sequence_as(struct, [x])
    return model(x, training=False)


def load_keras_model(path: str | os.PathLike[str]) -> keras.Model:
    """Pre-scan the file (see :func:`inspect_keras_file`), then load it with Keras.

    Loaded with ``compile=False`` (the optimiser state is irrelevant to inference) and
    ``safe_mode=True`` as a second line of defence behind the pre-scan.
    """
    p = Path(path)
    inspect_keras_file(p)
    _, keras = import_tensorflow()
    with progress.status(f"Loading model {p.name}"):
        try:
            model = keras.models.load_model(str(p), compile=False, safe_mode=True)
        except Exception as e:
            raise InvalidInputError(f"{p}: Keras could not load the model: {one_line(e)}") from e
    if not isinstance(model, keras.Model):
        raise InvalidInputError(f"{p}: the file holds a {type(model).__name__}, not a model")
    return model


# ---------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------


def _final_layer(model: Any) -> Any:
    """The layer that produces the model's (single) output, looking inside nested models."""
    layer = None
    outputs = getattr(model, "outputs", None) or []
    if outputs:
        history = getattr(outputs[0], "_keras_history", None)
        layer = getattr(history, "operation", None) or (history[0] if history else None)
    if layer is None and getattr(model, "layers", None):
        layer = model.layers[-1]
    if layer is not None and layer is not model and hasattr(layer, "layers"):
        return _final_layer(layer)
    return layer


def output_kind_of(model: keras.Model) -> str:
    """``"probabilities"`` if the model ends in a softmax, else ``"logits"``.

    Decides the ONNX output name, and tells evaluation whether to apply softmax itself.
    """
    layer = _final_layer(model)
    if layer is None:
        return "logits"
    if type(layer).__name__ == "Softmax":
        return "probabilities"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None) or (
        activation if isinstance(activation, str) else None
    )
    return "probabilities" if name == "softmax" else "logits"
