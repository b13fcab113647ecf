"""Keras → ONNX: safe pre-scan, load, tf2onnx conversion, metadata, checks, atomic write.

A Keras file is a program as much as a set of weights: ``Lambda`` layers carry marshalled
Python bytecode and configs can name classes from any importable module. Keras' own
``safe_mode`` was silently ignored for ``.h5`` files (CVE-2025-9905), so before anything is
deserialised we read the model config as plain JSON and refuse every class that is not a
built-in Keras layer or object. Only then is Keras imported and the model loaded.

TensorFlow, Keras and tf2onnx are imported inside functions: importing this module (which
the CLI does for every command) must not cost TensorFlow's start-up time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import __version__, progress
from .errors import (
    InputNotFoundError,
    InvalidInputError,
    ToolError,
    UnsafeInputError,
    UsageError,
    VerificationFailedError,
)
from .fsutil import check_writable, file_digest, refuse_overwriting_inputs, write_bytes_atomic
from .preprocess import Preprocessing
from .quiet import native_chatter_filtered

if TYPE_CHECKING:
    import keras
    import onnx

DEFAULT_OPSET = 17
# The opsets tf2onnx 1.17 is tested against; outside them a conversion may "work" and be wrong.
SUPPORTED_OPSETS = range(14, 19)
DEFAULT_INPUT_SHAPE: tuple[int, int, int] = (32, 32, 3)
DEFAULT_NUM_CLASSES = 10
INPUT_NAME = "input"
BATCH_DIM = "N"
PREPROCESSING = "raw 0-255 float32 NHWC RGB, no normalisation"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

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


@dataclass(frozen=True)
class ConversionResult:
    """Everything a report needs about one conversion; ``to_dict`` is JSON-ready."""

    output_path: str
    source_path: str
    source_sha256: str
    onnx_sha256: str
    opset: int
    input_name: str
    output_name: str
    output_kind: str
    num_classes: int
    seconds: float
    metadata: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    prints before its logging is initialised (see :mod:`resnet8_onnx.quiet`).
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


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
            raise InvalidInputError(f"{p}: Keras could not load the model: {_one_line(e)}") from e
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


def _shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _check_model_io(
    model: Any,
    source: Path,
    input_shape: tuple[int, int, int] | None,
    num_classes: int | None,
) -> tuple[tuple[int, ...], int]:
    """Refuse models that do not fit the task before spending time converting them."""
    inputs = list(getattr(model, "inputs", None) or [])
    outputs = list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidInputError(
            f"{source}: model has {len(inputs)} inputs and {len(outputs)} outputs; "
            "an image classifier has one of each"
        )
    shape = tuple(inputs[0].shape)
    dtype = str(getattr(inputs[0], "dtype", "float32"))
    if "float32" not in dtype:
        raise InvalidInputError(f"{source}: model input is {dtype}, expected float32")
    if len(shape) != 4:
        raise InvalidInputError(
            f"{source}: model input has shape {shape}, expected (batch, height, width, channels)"
        )
    image_shape = shape[1:]
    if input_shape is not None:
        if tuple(image_shape) != tuple(input_shape):
            raise InvalidInputError(
                f"{source}: model input is {_shape_text(image_shape)}, expected "
                f"{_shape_text(input_shape)} (convert --input-shape any accepts it)"
            )
    elif any(d is None for d in image_shape):
        raise InvalidInputError(
            f"{source}: model input {_shape_text(image_shape)} has unknown dimensions; "
            "only the batch dimension may be dynamic"
        )
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or out_shape[1] is None:
        raise InvalidInputError(
            f"{source}: model output has shape {out_shape}, expected (batch, classes)"
        )
    k = int(out_shape[1])
    if num_classes is not None and k != num_classes:
        raise InvalidInputError(
            f"{source}: model has {k} outputs, expected {num_classes} classes "
            "(convert --num-classes any accepts it)"
        )
    return tuple(int(d) for d in image_shape), k


def _resolve_class_names(
    class_names: Sequence[str] | None, k: int, source: Path
) -> list[str]:
    if class_names is None:
        return list(CIFAR10_CLASSES) if k == len(CIFAR10_CLASSES) else [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise UsageError(f"{source}: {len(names)} class names given but the model has {k} outputs")
    if len(set(names)) != len(names):
        raise UsageError(f"{source}: class names are not unique")
    return names


def _iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop bodies), which may reference outer names."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _iter_graphs(attr.g)
            for sub in attr.graphs:
                yield from _iter_graphs(sub)


def _rename_tensor(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it is produced, consumed or declared."""
    if old == new:
        return
    for graph in _iter_graphs(model.graph):
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new
        for coll in (graph.input, graph.output, graph.value_info):
            for vi in coll:
                if vi.name == old:
                    vi.name = new
        for init in graph.initializer:
            if init.name == old:
                init.name = new


def _all_tensor_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()
    for graph in _iter_graphs(model.graph):
        for node in graph.node:
            names.update(node.input)
            names.update(node.output)
        names.update(vi.name for vi in graph.input)
        names.update(vi.name for vi in graph.initializer)
    return names


def _claim_name(model: onnx.ModelProto, current: str, wanted: str) -> None:
    """Give tensor ``current`` the name ``wanted``, moving any other holder of it aside."""
    if current == wanted:
        return
    taken = _all_tensor_names(model)
    if wanted in taken:
        i = 0
        while f"{wanted}__{i}" in taken:
            i += 1
        _rename_tensor(model, wanted, f"{wanted}__{i}")
    _rename_tensor(model, current, wanted)


_AUTO_NAME = re.compile(r"^(?P<base>.+?)__\d+(?P<suffix>(:\d+)?)$")


def _canonicalise(model: onnx.ModelProto) -> None:
    """Make the serialised model byte-for-byte reproducible.

    tf2onnx numbers the names it invents (``const_fold_opt__142``), merges identical
    constants under whichever name it meets first, and orders initializers differently from
    run to run, so two conversions of one file hashed differently. Naming every initializer
    after its first consumer (``<node>/input_<slot>``), renumbering other invented names in
    order of first use and sorting initializers the same way makes ``onnx_sha256`` a stable
    fingerprint of the conversion.
    """
    graph = model.graph
    for i, node in enumerate(graph.node):
        if match := _AUTO_NAME.match(node.name):
            node.name = f"{match['base']}__n{i}"
    order: dict[str, int] = {}
    first_use: dict[str, str] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            order.setdefault(name, len(order))
            first_use.setdefault(name, f"{node.name}/input_{slot}")
        for name in node.output:
            order.setdefault(name, len(order))
    keep = {vi.name for vi in (*graph.input, *graph.output)}
    initializers = {t.name for t in graph.initializer}
    renames: dict[str, str] = {}
    for name in sorted(order, key=order.__getitem__):
        if name in keep or not name:
            continue
        if name in initializers:
            renames[name] = first_use[name]
        elif match := _AUTO_NAME.match(name):
            renames[name] = f"{match['base']}__{len(renames)}{match['suffix']}"
    # Two phases so a new name never collides with an old one still waiting to be renamed.
    for i, name in enumerate(renames):
        _rename_tensor(model, name, f"\x00tmp{i}")
    for i, new in enumerate(renames.values()):
        _rename_tensor(model, f"\x00tmp{i}", new)
    final = {renames.get(name, name): index for name, index in order.items()}
    sorted_inits = sorted(graph.initializer, key=lambda t: (final.get(t.name, len(final)), t.name))
    value_info = sorted(graph.value_info, key=lambda v: v.name)
    for coll, items in ((graph.initializer, sorted_inits), (graph.value_info, value_info)):
        copies = [type(x)() for x in items]
        for copy, item in zip(copies, items, strict=True):
            copy.CopyFrom(item)
        del coll[:]
        coll.extend(copies)


def _set_batch_dim(model: onnx.ModelProto) -> None:
    """Name the dynamic batch dimension ``N`` on the graph's inputs and outputs.

    tf2onnx invents names like ``unk__149``; a shared readable name tells users (and
    shape inference) that input and output batch sizes are the same symbol.
    """
    old_names: set[str] = set()
    for vi in (*model.graph.input, *model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            if dims[0].dim_param:
                old_names.add(dims[0].dim_param)
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    for vi in model.graph.value_info:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param in old_names:
                dim.dim_param = BATCH_DIM


def _library_versions(tf: ModuleType, keras: ModuleType) -> dict[str, str]:
    import onnx
    import tf2onnx

    return {
        "tensorflow_version": str(tf.__version__),
        "keras_version": str(keras.__version__),
        "tf2onnx_version": str(tf2onnx.__version__),
        "onnx_version": str(onnx.__version__),
    }


def _check_onnx(model: onnx.ModelProto, output: Path, image_shape: tuple[int, ...], k: int) -> None:
    """Full ONNX checker plus strict shape inference; the output must come out (N, k)."""
    import onnx

    with progress.status("Checking the ONNX model"):
        try:
            onnx.checker.check_model(model, full_check=True)
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise VerificationFailedError(
                f"{output}: converted model fails the ONNX checker: {_one_line(e)}"
            ) from e
    want_in = [BATCH_DIM, *image_shape]
    want_out = [BATCH_DIM, k]
    for vi, want in ((inferred.graph.input[0], want_in), (inferred.graph.output[0], want_out)):
        got = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        if got != want:
            raise VerificationFailedError(
                f"{output}: converted model's {vi.name!r} has shape {got}, expected {want}"
            )


def finish_onnx_model(
    proto: onnx.ModelProto,
    output: Path,
    *,
    output_kind: str,
    image_shape: tuple[int, ...],
    num_classes: int,
    metadata: Mapping[str, str],
    description: str,
) -> onnx.ModelProto:
    """Give an ONNX model from another exporter this converter's interface and checks.

    Input ``input`` and output named after its kind with the batch dimension ``N``, the
    metadata (plus the interface fields), a doc string, then the full checker and strict shape
    inference, exactly as for a Keras conversion. Used for ``torch.onnx`` exports.
    """
    import onnx

    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise VerificationFailedError(
            f"{output}: the exporter produced {len(proto.graph.input)} inputs and "
            f"{len(proto.graph.output)} outputs, expected one of each")
    _claim_name(proto, proto.graph.input[0].name, INPUT_NAME)
    _claim_name(proto, proto.graph.output[0].name, output_kind)
    _set_batch_dim(proto)
    props = {
        **metadata,
        "input_name": INPUT_NAME,
        "input_shape": json.dumps([BATCH_DIM, *image_shape]),
        "output_name": output_kind,
        "output_kind": output_kind,
        "num_classes": str(num_classes),
    }
    onnx.helper.set_model_props(proto, {k: str(v) for k, v in props.items()})
    proto.producer_name = "resnet8-onnx"
    proto.producer_version = __version__
    proto.doc_string = (
        f"{description}. Input {INPUT_NAME!r} (N, {', '.join(map(str, image_shape))}): "
        f"{props.get('preprocessing', PREPROCESSING)}. Output {output_kind!r} (N, "
        f"{num_classes}).")
    proto.graph.doc_string = proto.doc_string
    _check_onnx(proto, output, tuple(image_shape), num_classes)
    return proto


def convert(
    model_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    input_shape: tuple[int, int, int] | None = DEFAULT_INPUT_SHAPE,
    num_classes: int | None = DEFAULT_NUM_CLASSES,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    model: keras.Model | None = None,
    preprocessing: str = PREPROCESSING,
) -> ConversionResult:
    """Convert a Keras image classifier to a checked, self-describing ONNX file.

    ``input_shape=None`` / ``num_classes=None`` accept whatever the model has (any Keras
    image classifier); the defaults refuse anything that is not a CIFAR-10 32×32×3 model.
    ``model`` lets a caller that already loaded ``model_path`` skip loading it again. The
    output is written atomically: a failure at any step leaves no file behind.
    """
    start = time.perf_counter()
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(
            f"opset {opset} is not supported (tf2onnx 1.17 is tested on opsets "
            f"{SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1})"
        )
    source = Path(model_path)
    refuse_overwriting_inputs([output_path], [source])  # --force or not
    out = check_writable(output_path, force=force)  # before any expensive work
    info = inspect_keras_file(source)
    if model is None:
        model = load_keras_model(source)
    image_shape, k = _check_model_io(model, source, input_shape, num_classes)
    names = _resolve_class_names(class_names, k, source)
    kind = output_kind_of(model)

    tf, keras = import_tensorflow()
    import onnx
    import tf2onnx
    from tf2onnx.graph import GraphUtil

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = tf.TensorSpec((None, *image_shape), tf.float32, name=INPUT_NAME)
    # from_function on our own trace rather than from_keras: from_keras looks outputs up by
    # Keras tensor names, which fails for Keras 3 Sequential models (KeyError keras_tensor_N).
    function = tf.function(lambda x: call_model(model, x), input_signature=(spec,))
    with progress.status(f"Converting to ONNX (opset {opset})"):
        try:
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=(spec,), opset=opset
            )
        except ToolError:
            raise
        except Exception as e:
            raise InvalidInputError(
                f"{source}: tf2onnx could not convert the model at opset {opset}: {_one_line(e)}"
            ) from e

        # tf2onnx's optimisers occasionally miss a fold (about one run in ten here, e.g. the
        # Flatten reshape stays a Shape/Gather/Concat chain). A second pass over the proto
        # reaches the same fixed point either way, so the output is reproducible. Should that
        # pass fail, tf2onnx returns the first-pass model unchanged, which is still correct.
        proto = GraphUtil.optimize_model_proto(proto, catch_errors=True)

    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise VerificationFailedError(
            f"{source}: tf2onnx produced {len(proto.graph.input)} inputs and "
            f"{len(proto.graph.output)} outputs, expected one of each"
        )
    _claim_name(proto, proto.graph.input[0].name, INPUT_NAME)
    _claim_name(proto, proto.graph.output[0].name, kind)
    _set_batch_dim(proto)
    _canonicalise(proto)

    source_sha = file_digest(source)
    metadata = {
        "source_file": source.name,
        "source_sha256": source_sha,
        "source_format": info.format,
        "source_keras_version": info.keras_version or "unknown",
        "converter": "resnet8-onnx",
        "converter_version": __version__,
        **_library_versions(tf, keras),
        "opset": str(opset),
        "preprocessing": preprocessing,
        # machine-readable twin of the sentence, read by evaluate/compare (see preprocess.py)
        **({"preprocessing_spec": Preprocessing().to_metadata()["preprocessing_spec"]}
           if preprocessing == PREPROCESSING else {}),
        "input_name": INPUT_NAME,
        "input_shape": json.dumps([BATCH_DIM, *image_shape]),
        "output_name": kind,
        "output_kind": kind,
        "num_classes": str(k),
        "class_names": json.dumps(names),
    }
    onnx.helper.set_model_props(proto, metadata)
    proto.producer_name = "resnet8-onnx"
    proto.producer_version = __version__
    proto.doc_string = (
        f"{source.name} (sha256 {source_sha}) converted by resnet8-onnx {__version__} with "
        f"tf2onnx {metadata['tf2onnx_version']}, opset {opset}. Input {INPUT_NAME!r} "
        f"(N, {', '.join(map(str, image_shape))}): {preprocessing}. Output {kind!r} (N, {k}): "
        f"{'softmax probabilities' if kind == 'probabilities' else 'logits (no softmax)'} "
        f"over {k} classes."
    )
    proto.graph.doc_string = proto.doc_string

    _check_onnx(proto, out, image_shape, k)
    data = proto.SerializeToString()
    write_bytes_atomic(out, data, force=force)
    return ConversionResult(
        output_path=str(out),
        source_path=str(source),
        source_sha256=source_sha,
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        opset=opset,
        input_name=INPUT_NAME,
        output_name=kind,
        output_kind=kind,
        num_classes=k,
        seconds=round(time.perf_counter() - start, 3),
        metadata=metadata,
    )
