"""How a model wants its pixels, as data: layout, channel order, scale, mean/std, dtype.

The data set holds uint8 NHWC RGB images. Models differ in what they take: the converted
MLCommons ResNet8 wants raw 0–255 float32 NHWC RGB, a typical PyTorch export wants NCHW,
pixels scaled to 0–1 and normalised per channel. A :class:`Preprocessing` describes one such
contract and :meth:`Preprocessing.apply` turns a uint8 batch into exactly what the model
takes, one batch at a time (so 10,000 images never exist as float32 at once).

The order of operations is fixed and the same in :meth:`~Preprocessing.apply` and in the ONNX
graph ``annotate --embed`` prepends (:func:`embed`): cast to float32, multiply by ``scale``,
subtract ``mean``, divide by ``std`` (both given in R,G,B order), reverse the channels for
``bgr``, transpose for ``nchw``, cast to the model's input dtype.

Where each field comes from (:func:`resolve`): a command-line option, else the model's
metadata (``preprocessing_spec``, or the converter's ``preprocessing`` sentence), else the
model's input shape (a 3 right after the batch dimension means NCHW), else the default raw
0–255 NHWC RGB. The report states the spec and the source of every field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.data.geometry import GEOMETRY_FIELDS, PARSERS
from resnet8_onnx.support.errors import InvalidInputError, UsageError

if TYPE_CHECKING:
    import onnx

LAYOUTS = ("nhwc", "nchw")
CHANNEL_ORDERS = ("rgb", "bgr")
DTYPES = ("float32", "float16", "float64", "uint8", "int8")
SPEC_FIELDS = ("layout", "channels", "scale", "mean", "std")  # the ones options can set

# Metadata keys: ``preprocessing`` is the converter's human-readable sentence (kept as is);
# ``preprocessing_spec`` is the machine-readable JSON of :meth:`Preprocessing.to_dict`.
METADATA_SENTENCE = "preprocessing"
METADATA_SPEC = "preprocessing_spec"
METADATA_EMBEDDED = "preprocessing_embedded"
# What the converter has always written for raw pixels (convert.PREPROCESSING).
RAW_SENTENCE_PREFIX = "raw 0-255 float32 NHWC RGB"

# Sources, as the report names them.
OPTION, METADATA, INPUT_SHAPE, INPUT_TYPE, DEFAULT, FIXED = (
    "option", "metadata", "input shape", "input type", "default", "fixed by the runtime")


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def parse_scale(text: str | float) -> float:
    """``'1/255'``, ``'0.00392'``, ``'255'`` → a positive float; anything else is an error."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        parts = str(text).strip().split("/")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise UsageError(f"scale {text!r} is not a number or a fraction like 1/255") from None
        if len(numbers) > 2 or not parts[0].strip():
            raise UsageError(f"scale {text!r} is not a number or a fraction like 1/255")
        if len(numbers) == 2:
            if numbers[1] == 0:
                raise UsageError(f"scale {text!r} divides by zero")
            value = numbers[0] / numbers[1]
        else:
            value = numbers[0]
    value = _finite(value, f"scale {text!r}")
    if value <= 0:
        raise UsageError(f"scale {text!r} must be greater than 0")
    return value


def parse_triple(text: str | Sequence[float], what: str, *, positive: bool = False
                 ) -> tuple[float, float, float]:
    """``'0.485,0.456,0.406'`` → three floats (R, G, B); ``positive`` refuses 0 and below."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise UsageError(f"{what} {text!r} is not three numbers R,G,B") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise UsageError(f"{what} {text!r} has {len(values)} values; expected 3 (R,G,B)")
    for v in values:
        _finite(v, f"{what} {text!r}")
        if positive and v <= 0:
            raise UsageError(f"{what} {text!r} must be greater than 0 in every channel "
                             "(the pixels are divided by it)")
    return values[0], values[1], values[2]


def _choice(value: Any, options: Sequence[str], what: str) -> str:
    text = str(value).strip().lower()
    if text not in options:
        raise UsageError(f"{what} {value!r} is not one of {', '.join(options)}")
    return text


def format_scale(scale: float) -> str:
    """1/255 prints as ``1/255``; other values as the shortest float that round-trips."""
    for d in (255.0, 256.0, 127.5, 128.0):
        if scale == 1.0 / d:
            return f"1/{d:g}"
    return repr(float(scale))


@dataclass(frozen=True)
class Preprocessing:
    """One model's input contract (see the module docstring for the order of operations)."""

    layout: str = "nhwc"
    channels: str = "rgb"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    dtype: str = "float32"
    # Resize and crop (timm's fields, see data.geometry): None when not stated. They act on
    # the images as they are read, not per batch: a spec with them is a data-side step too.
    input_size: tuple[int, int] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", _choice(self.layout, LAYOUTS, "layout"))
        object.__setattr__(self, "channels", _choice(self.channels, CHANNEL_ORDERS, "channels"))
        object.__setattr__(self, "scale", parse_scale(self.scale))
        object.__setattr__(self, "mean", parse_triple(self.mean, "mean"))
        object.__setattr__(self, "std", parse_triple(self.std, "std", positive=True))
        object.__setattr__(self, "dtype", _choice(self.dtype, DTYPES, "dtype"))
        for name in GEOMETRY_FIELDS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, PARSERS[name](getattr(self, name)))
        # Precomputed float32 constants, so apply() does no per-batch set-up.
        object.__setattr__(self, "_mean", np.asarray(self.mean, np.float32))
        object.__setattr__(self, "_std", np.asarray(self.std, np.float32))

    # ------------------------------------------------------------------ properties
    @property
    def arithmetic(self) -> bool:
        """Whether any scaling or normalisation happens (otherwise only casts and moves)."""
        return self.scale != 1.0 or any(self.mean) or any(s != 1.0 for s in self.std)

    @property
    def is_raw(self) -> bool:
        """Raw 0–255 NHWC RGB pixels: the data set's own form, up to a cast."""
        return self.layout == "nhwc" and self.channels == "rgb" and not self.arithmetic

    @property
    def geometry_stated(self) -> dict[str, Any]:
        """The resize/crop fields this spec states (``None`` ones left out)."""
        return {n: getattr(self, n) for n in GEOMETRY_FIELDS if getattr(self, n) is not None}

    def model_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        """The model's input dims after the batch for NHWC ``image_shape`` (H, W, C)."""
        h, w, c = image_shape
        return (c, h, w) if self.layout == "nchw" else (h, w, c)

    def describe(self) -> str:
        """One line for humans, e.g. ``NCHW RGB float32, ×1/255, mean …, std …``."""
        parts = [f"{self.layout.upper()} {self.channels.upper()} {self.dtype}"]
        if self.scale != 1.0:
            parts.append(f"×{format_scale(self.scale)}")
        if any(self.mean):
            parts.append("mean " + ",".join(f"{v:g}" for v in self.mean))
        if any(s != 1.0 for s in self.std):
            parts.append("std " + ",".join(f"{v:g}" for v in self.std))
        if not self.arithmetic:
            parts.append("raw 0-255 pixels, no normalisation")
        geometry = self.geometry_stated
        if geometry:
            shown = [f"{k} {'×'.join(map(str, v)) if k == 'input_size' else v}"
                     for k, v in geometry.items()]
            parts.append("; ".join(shown))
        return ", ".join(parts)

    # ------------------------------------------------------------------ the work
    def apply(self, batch: np.ndarray) -> np.ndarray:
        """A uint8 (or float 0–255) NHWC RGB batch → the model's input tensor, contiguous.

        Raw NHWC float32 input is returned as is (no copy): the fast path of the converted
        ResNet8 does exactly one uint8 → float32 cast per batch, as a bare loop would.
        """
        target = np.dtype(self.dtype)
        if self.is_raw:
            return np.ascontiguousarray(batch, dtype=target)
        x = np.array(batch, dtype=np.float32)  # a fresh copy: the in-place ops below own it
        if self.scale != 1.0:
            x *= np.float32(self.scale)
        # _mean/_std: arrays set in __post_init__ with object.__setattr__ (a frozen dataclass
        # that keeps them out of its fields, so out of to_dict and comparisons).
        if any(self.mean):
            x -= self._mean  # type: ignore[attr-defined]
        if any(s != 1.0 for s in self.std):
            x /= self._std  # type: ignore[attr-defined]
        if self.channels == "bgr":
            x = x[..., ::-1]
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=target)

    # ------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "channels": self.channels, "scale": self.scale,
                "mean": list(self.mean), "std": list(self.std), "dtype": self.dtype,
                **{k: list(v) if k == "input_size" else v
                   for k, v in self.geometry_stated.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown preprocessing field(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_metadata(self) -> dict[str, str]:
        """``metadata_props`` entries describing this spec (sentence + machine-readable JSON)."""
        sentence = (f"{RAW_SENTENCE_PREFIX}, no normalisation"
                    if self.is_raw and self.dtype == "float32" and not self.geometry_stated
                    else self.describe())
        return {METADATA_SENTENCE: sentence,
                METADATA_SPEC: json.dumps(self.to_dict(), sort_keys=True)}

    @staticmethod
    def from_metadata(metadata: Mapping[str, str], *, where: str = "model") -> dict[str, Any]:
        """The fields a model's metadata states (possibly none); a malformed entry is exit 4."""
        if METADATA_SPEC in metadata:
            try:
                data = json.loads(metadata[METADATA_SPEC])
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                spec = Preprocessing.from_dict(data)
            except (ValueError, UsageError) as exc:
                raise InvalidInputError(
                    f"{where}: metadata {METADATA_SPEC!r} is invalid: {exc}") from None
            return {k: v for k, v in asdict(spec).items() if k in data}
        if metadata.get(METADATA_SENTENCE, "").startswith(RAW_SENTENCE_PREFIX):
            return {k: v for k, v in asdict(Preprocessing()).items() if k in SPEC_FIELDS}
        return {}


# --------------------------------------------------------------------------- resolution
def layout_from_shape(input_shape: Sequence[int | None]) -> str | None:
    """NCHW when the dimension right after the batch is 3 and the last is not; NHWC when the
    last is 3 and the second is not; None when the shape does not tell."""
    if len(input_shape) != 4:
        return None
    second, last = input_shape[1], input_shape[3]
    if second == 3 and last != 3:
        return "nchw"
    if last == 3 and second != 3:
        return "nhwc"
    return None


NUMPY_OF_ORT = {"tensor(float)": "float32", "tensor(float16)": "float16",
                 "tensor(double)": "float64", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def resolve(
    overrides: Mapping[str, Any] | None, metadata: Mapping[str, str] | None,
    input_shape: Sequence[int | None], input_dtype: str = "float32", *, where: str = "model",
) -> tuple[Preprocessing, dict[str, str]]:
    """The spec for one model and where each field came from.

    ``overrides`` are the user's options (``None`` values are ignored), ``metadata`` the
    model's ``metadata_props``; then the input shape, then the defaults. The dtype always
    comes from the model's input type: feeding anything else would fail in the runtime.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(SPEC_FIELDS) - set(GEOMETRY_FIELDS))
    if unknown:
        raise UsageError(f"unknown preprocessing option(s): {', '.join(unknown)}")
    stated = Preprocessing.from_metadata(metadata or {}, where=where)
    shape_layout = layout_from_shape(input_shape)
    default = Preprocessing()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in SPEC_FIELDS:
        if name in given:
            values[name], sources[name] = given[name], OPTION
        elif name in stated:
            values[name], sources[name] = stated[name], METADATA
        elif name == "layout" and shape_layout is not None:
            values[name], sources[name] = shape_layout, INPUT_SHAPE
        else:
            values[name], sources[name] = getattr(default, name), DEFAULT
    values["dtype"], sources["dtype"] = input_dtype, INPUT_TYPE
    for name in GEOMETRY_FIELDS:  # stated or absent: the loader resolves the rest
        if name in given:
            values[name], sources[name] = given[name], OPTION
        elif stated.get(name) is not None:
            values[name], sources[name] = stated[name], METADATA
    spec = Preprocessing(**values)
    check_layout(spec, input_shape, sources, where=where)
    return spec, sources


def check_layout(spec: Preprocessing, input_shape: Sequence[int | None],
                 sources: Mapping[str, str], *, where: str = "model") -> None:
    """Refuse a stated layout that contradicts the input shape (option: exit 2; metadata:
    exit 4). A default layout is not a statement: a model that fits no layout is refused when
    it meets the data, with the shape it would need."""
    if len(input_shape) != 4 or sources.get("layout", DEFAULT) not in (OPTION, METADATA):
        return
    channel_axis = 1 if spec.layout == "nchw" else 3
    if input_shape[channel_axis] in (None, 3):
        return
    shown = "×".join("?" if d is None else str(d) for d in input_shape[1:])
    source = sources.get("layout", DEFAULT)
    message = (f"{where}: layout {spec.layout} ({source}) contradicts the model input "
               f"{shown}: {'C×H×W' if spec.layout == 'nchw' else 'H×W×C'} needs 3 channels "
               f"at axis {channel_axis}")
    if source == OPTION:
        raise UsageError(message)
    raise InvalidInputError(message)


def sources_line(sources: Mapping[str, str]) -> str:
    """``layout: input shape; channels, scale, mean, std: default; dtype: input type``."""
    grouped: dict[str, list[str]] = {}
    for name, source in sources.items():
        grouped.setdefault(source, []).append(name)
    return "; ".join(f"{', '.join(names)}: {source}" for source, names in grouped.items())


def record(spec: Preprocessing, sources: Mapping[str, str]) -> dict[str, Any]:
    """The JSON-ready account of a spec for reports."""
    return {**spec.to_dict(), "scale_text": format_scale(spec.scale),
            "description": spec.describe(), "sources": dict(sources)}


# --------------------------------------------------------------------------- ONNX graph
def embed(model: onnx.ModelProto, spec: Preprocessing, *, input_name: str | None = None,
          pixels_name: str = "pixels") -> onnx.ModelProto:
    """A copy of ``model`` that takes raw uint8 NHWC RGB pixels: ``spec`` as plain ONNX ops
    (Cast, Mul, Sub, Div, Gather, Transpose) in front of the graph.

    Constants are ``Constant`` nodes rather than initialisers, which old IR versions would
    also require to be graph inputs; every op used exists with these semantics since opset 7.
    """
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    initializers = {t.name for t in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in initializers]
    target = next(i for i in real_inputs if i.name == (input_name or real_inputs[0].name))
    dims = list(target.type.tensor_type.shape.dim)

    def dim_value(d: Any) -> int | str | None:
        return d.dim_value if d.HasField("dim_value") else (d.dim_param or None)

    shape = [dim_value(d) for d in dims]
    if spec.layout == "nchw":
        batch, c, h, w = shape
    else:
        batch, h, w, c = shape
    prefix, pixels_name = _free_names(graph, initializers, pixels_name)
    nodes = _preprocess_nodes(spec, pixels_name, target.name,
                              target.type.tensor_type.elem_type, prefix)

    new_input = helper.make_tensor_value_info(pixels_name, TensorProto.UINT8,
                                              [batch, h, w, c])
    kept = [i for i in graph.input if i.name != target.name]
    del graph.input[:]
    graph.input.extend([new_input, *kept])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    # The old input is now an internal tensor; keep its shape as value_info for readers.
    graph.value_info.append(target)
    return out


def _free_names(graph: onnx.GraphProto, initializers: set[str],
                pixels_name: str) -> tuple[str, str]:
    """(node-name prefix, new input name) clashing with no name already in ``graph``, so
    embedding never rewires an existing tensor, even in a model embedded once before."""
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {
        i.name for i in graph.input} | initializers
    prefix = "preprocess"
    while any(name.startswith(prefix + "/") for name in taken):
        prefix += "_"
    if pixels_name in taken:
        pixels_name = f"{prefix}/{pixels_name}"
    return prefix, pixels_name


def _preprocess_nodes(spec: Preprocessing, pixels_name: str, target_name: str, elem: int,
                      prefix: str) -> list[onnx.NodeProto]:
    """The nodes taking uint8 ``pixels_name`` to the model's old input ``target_name`` (of
    ONNX element type ``elem``) as ``spec`` says; steps that would be no-ops are left out."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[onnx.NodeProto] = []
    counter = iter(range(1000))

    def name(what: str) -> str:
        return f"{prefix}/{what}_{next(counter)}"

    def const(value: np.ndarray) -> str:
        out_name = name("const")
        nodes.append(helper.make_node("Constant", [], [out_name], name=out_name,
                                      value=numpy_helper.from_array(value)))
        return out_name

    current = name("cast")
    nodes.append(helper.make_node("Cast", [pixels_name], [current], to=TensorProto.FLOAT,
                                  name=current))
    steps = []
    if spec.scale != 1.0:
        steps.append(("Mul", np.array(spec.scale, np.float32)))
    if any(spec.mean):
        steps.append(("Sub", np.asarray(spec.mean, np.float32)))
    if any(s != 1.0 for s in spec.std):
        steps.append(("Div", np.asarray(spec.std, np.float32)))
    for op, value in steps:
        operand = const(value)
        result = name(op.lower())
        nodes.append(helper.make_node(op, [current, operand], [result], name=result))
        current = result
    if spec.channels == "bgr":
        index = const(np.array([2, 1, 0], np.int64))
        result = name("bgr")
        nodes.append(helper.make_node("Gather", [current, index], [result], axis=3,
                                      name=result))
        current = result
    if spec.layout == "nchw":
        result = name("nchw")
        nodes.append(helper.make_node("Transpose", [current], [result], perm=[0, 3, 1, 2],
                                      name=result))
        current = result
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [current], [target_name], to=elem,
                                      name=name("cast")))
    else:
        nodes.append(helper.make_node("Identity", [current], [target_name],
                                      name=name("identity")))
    return nodes


def raw_uint8(spec: Preprocessing | None = None) -> Preprocessing:
    """The spec of a model with embedded preprocessing: raw uint8 NHWC RGB pixels, keeping
    the resize/crop ``spec`` states (those happen as the images are read, not in a graph)."""
    return replace(Preprocessing(), dtype="uint8",
                   **(spec.geometry_stated if spec is not None else {}))


# ---------------------------------------------------------------- a spec that looks wrong
def near_chance(correct: int, total: int, classes: int) -> bool:
    """Accuracy at or below twice chance (2/classes) on labelled images: what a model fed the
    wrong preprocessing scores, since its predictions are then nearly independent of the
    label. Exact integer arithmetic, so 20 % of 10 classes counts."""
    return total > 0 and classes > 1 and correct * classes <= 2 * total


def near_chance_warning(correct: int, total: int, classes: int, *, model: str,
                        preprocessing: Mapping[str, Any] | None = None) -> str | None:
    """The one warning line (no prefix) when accuracy is near chance, naming the spec in
    effect and where each field came from; ``None`` otherwise.

    ``preprocessing`` is a :func:`record` (what ONNX and PyTorch runners report); without
    one the runtime fixes the input (Keras, LiteRT: raw pixels). Every command that measures
    accuracy (evaluate, compare, run, quantize) calls this, so the sentence is the same.
    """
    if not near_chance(correct, total, classes):
        return None
    if preprocessing:
        spec = str(preprocessing.get("description") or "")
        sources = sources_line(preprocessing.get("sources") or {})
        where = f"{spec} ({sources})" if sources else spec
        hint = ("; if that is not what the model was trained on, give --layout/--channels/"
                "--scale/--mean/--std (or record them once with annotate)")
    else:
        where = f"{Preprocessing().describe()} ({FIXED})"
        hint = ""
    return (f"{model}: accuracy {correct / total:.1%} ({correct:,}/{total:,}) is near chance "
            f"({1 / classes:.0%} for {classes} classes): is the preprocessing right? In "
            f"effect: {where}{hint}")
