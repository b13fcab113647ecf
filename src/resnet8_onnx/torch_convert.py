"""Keras/ONNX → PyTorch and back: build a module, export it, save it, check it.

Two builders make the ``nn.Module``:

* **native** — :class:`resnet8_onnx.torch_models.ResNet8`, a readable module of the MLCommons
  ResNet8, when the Keras file is recognised as that network *by its structure* (the layer
  graph in its config JSON, which the safe pre-scan already reads). The weights are read
  from the ``.h5`` with h5py as plain arrays; Keras is never imported.
* **onnx2torch** — any ONNX model the converter supports (a ``.h5``/``.keras`` source is
  converted to ONNX first), turned into a ``torch.fx`` module by onnx2torch.

The module is exported with ``torch.export`` (dynamic batch dimension) and saved as a
self-contained ``.pt2`` archive: an ExportedProgram with raw tensor payloads and this
project's metadata, loadable by ``torch.export.load`` with no Python class of ours. The
native module's ``state_dict`` can be saved as ``.safetensors`` for fine-tuning. A ``.pt2``
(or state dict) goes back to ONNX through ``torch.onnx.export`` (the dynamo exporter, which
emits opset 18 or newer). Each step checks its output like the Keras → ONNX conversion does.

torch, onnx2torch and safetensors are the optional ``torch`` extra, imported only here and
in the PyTorch backend, through :func:`import_torch`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__, progress
from .data.format import CLASS_NAMES
from .errors import (
    InvalidInputError,
    MissingExtraError,
    ToolError,
    UsageError,
    VerificationFailedError,
    interrupts_deferred,
    one_line,
)
from .fsutil import check_writable, file_digest
from .torch_io import (
    PT2_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    STATE_DICT_SUFFIXES,
    TORCH_SUFFIXES,
    load_exported_program,
    load_state_dict,
    save_exported_program,
    save_state_dict,
)

if TYPE_CHECKING:
    from .torch_models import ResNet8, ResNet8Config

BUILDERS = ("auto", "native", "onnx2torch")
EXTRA_HINT = "pip install 'resnet8-onnx[torch]' (from a checkout: pip install -e \".[torch]\")"
TORCH_ONNX_OPSET = 18  # the oldest opset torch.onnx's dynamo exporter emits without adapters
CHECK_ATOL = 1e-5
CHECK_BATCH_SIZES = (1, 7)
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def import_torch() -> ModuleType:
    """Import torch, or fail with one line naming the extra that provides it.

    Triton is kept out of the process: torch imports it lazily (``torch.export`` pulls in
    ``torch._dynamo``), and its bundled LLVM crashes the process when TensorFlow's is already
    loaded (``verify model.h5 model.pt2``). Nothing here compiles kernels (no
    ``torch.compile``), so Triton is never needed.
    """
    if "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
    try:
        with interrupts_deferred():  # Ctrl-C inside its C++ init becomes an ImportError
            import torch
    except ImportError as exc:
        raise MissingExtraError(
            f"PyTorch is not installed; this needs the 'torch' extra: {EXTRA_HINT}") from exc
    # Its import-time warning that Triton kernels cannot be FLOP-counted: we run none.
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    return torch


def _require(module: str) -> ModuleType:
    import importlib

    import_torch()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed; this needs the 'torch' extra: {EXTRA_HINT}") from exc


def is_torch_conversion(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> bool:
    """Does converting ``source`` to ``output`` involve PyTorch (either side)?"""
    return (Path(output).suffix.lower() in TORCH_SUFFIXES
            or Path(source).suffix.lower() in TORCH_SUFFIXES)


# --------------------------------------------------------------------------- recognition
@dataclass(frozen=True)
class NativePlan:
    """A recognised ResNet8: its config and which Keras layer feeds which module part."""

    config: ResNet8Config
    layers: dict[str, str]  # module prefix ("stacks.1.conv1") → Keras layer name


class _Graph:
    """The layer graph of a Keras functional config (Keras 2 and Keras 3 layouts)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        if config.get("class_name") not in ("Functional", "Model"):
            raise ValueError(f"a {config.get('class_name')} model, not a functional graph")
        body = config.get("config") or {}
        self.layers: dict[str, tuple[str, dict[str, Any]]] = {}
        self.parents: dict[str, list[str]] = {}
        for layer in body.get("layers") or []:
            cfg = layer.get("config") or {}
            name = str(layer.get("name") or cfg.get("name"))
            nodes = layer.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise ValueError(f"layer {name} is shared (called {len(nodes)} times)")
            self.layers[name] = (str(layer.get("class_name")), cfg)
            self.parents[name] = _inbound(nodes)
        self.children: dict[str, list[str]] = {n: [] for n in self.layers}
        for child, parents in self.parents.items():
            for parent in parents:
                if parent not in self.children:
                    raise ValueError(f"layer {child} reads unknown layer {parent}")
                self.children[parent].append(child)
        self.outputs = _inbound(body.get("output_layers") or [])
        self.visited: set[str] = set()

    def cls(self, name: str) -> str:
        return self.layers[name][0]

    def cfg(self, name: str) -> dict[str, Any]:
        return self.layers[name][1]

    def only_child(self, name: str, cls: str) -> str:
        kids = self.children[name]
        if len(kids) != 1 or self.cls(kids[0]) != cls:
            found = ", ".join(f"{k} ({self.cls(k)})" for k in kids) or "nothing"
            raise ValueError(f"after {name} expected one {cls}, found {found}")
        self.visited.add(kids[0])
        return kids[0]


def _inbound(obj: Any) -> list[str]:
    """Names of the layers an ``inbound_nodes`` structure reads (Keras 2 lists, Keras 3 dicts)."""
    if isinstance(obj, dict):
        if "keras_history" in obj:
            return [str(obj["keras_history"][0])]
        return [n for v in obj.values() for n in _inbound(v)]
    if isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and all(
                isinstance(v, int) for v in obj[1:3]):
            return [obj[0]]
        return [n for v in obj for n in _inbound(v)]
    return []


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = (int(v) for v in value)
    return a, b


def _conv(g: _Graph, name: str, kernel: int) -> dict[str, Any]:
    """Check a Conv2D the native module can express; returns its relevant settings."""
    c = g.cfg(name)
    checks = {
        "kernel_size": _pair(c.get("kernel_size", 0)) == (kernel, kernel),
        "activation": c.get("activation", "linear") in ("linear", None),
        "dilation_rate": _pair(c.get("dilation_rate", 1)) == (1, 1),
        "groups": int(c.get("groups", 1)) == 1,
        "data_format": c.get("data_format", "channels_last") == "channels_last",
        "padding": c.get("padding") in ("same", "valid"),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"{name}: unsupported Conv2D setting {', '.join(bad)}")
    sy, sx = _pair(c.get("strides", 1))
    if sy != sx:
        raise ValueError(f"{name}: unequal strides")
    return {"filters": int(c["filters"]), "stride": sy, "padding": c["padding"],
            "bias": bool(c.get("use_bias", True))}


def _bn(g: _Graph, name: str) -> float:
    c = g.cfg(name)
    axis = c.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (3, -1) or not c.get("center", True) or not c.get("scale", True):
        raise ValueError(f"{name}: unsupported BatchNormalization settings")
    return float(c.get("epsilon", 1e-3))


def _relu(g: _Graph, name: str) -> None:
    if g.cls(name) != "Activation" or g.cfg(name).get("activation") != "relu":
        raise ValueError(f"{name}: expected a ReLU activation")


def recognise_resnet8(config: Mapping[str, Any]) -> NativePlan:
    """Match a Keras config against the MLCommons ResNet8 topology; ValueError says why not.

    The structure, not the layer names, is matched: stem conv-BN-ReLU, residual stacks
    (conv-BN-ReLU-conv-BN plus identity or 1×1 projection, Add, ReLU), a pooling layer that
    covers the whole final map, Flatten, Dense. Every layer must be accounted for.
    """
    from .torch_models import ResNet8Config, StackSpec

    g = _Graph(config)
    inputs = [n for n in g.layers if g.cls(n) == "InputLayer"]
    if len(inputs) != 1:
        raise ValueError(f"{len(inputs)} input layers")
    cfg = g.cfg(inputs[0])
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or []
    if len(shape) != 4 or any(not isinstance(d, int) for d in shape[1:]):
        raise ValueError(f"input shape {shape} is not (batch, H, W, C)")
    h, w, c = (int(d) for d in shape[1:])
    g.visited.add(inputs[0])
    layers: dict[str, str] = {}
    convs: list[dict[str, Any]] = []
    eps: set[float] = set()

    stem = g.only_child(inputs[0], "Conv2D")
    convs.append(_conv(g, stem, 3))
    if convs[-1]["stride"] != 1:
        raise ValueError("the stem convolution has a stride")
    bn = g.only_child(stem, "BatchNormalization")
    eps.add(_bn(g, bn))
    x = g.only_child(bn, "Activation")
    _relu(g, x)
    layers.update(conv=stem, bn=bn)
    size, channels = (h, w), convs[-1]["filters"]

    def out_size(size: tuple[int, int], kernel: int, stride: int, padding: str) -> tuple[int,
                                                                                        int]:
        if padding == "same":
            return tuple(math.ceil(n / stride) for n in size)  # type: ignore[return-value]
        return tuple((n - kernel) // stride + 1 for n in size)  # type: ignore[return-value]

    stacks = []
    while True:
        kids = g.children[x]
        if len(kids) == 1 and g.cls(kids[0]) in ("AveragePooling2D", "GlobalAveragePooling2D"):
            break
        mains = [k for k in kids if g.cls(k) == "Conv2D"
                 and _pair(g.cfg(k).get("kernel_size", 0)) == (3, 3)]
        others = [k for k in kids if k not in mains]
        if len(mains) != 1 or len(others) != 1:
            raise ValueError(f"after {x} expected a residual stack")
        i = len(stacks)
        c1 = mains[0]
        g.visited.add(c1)
        first = _conv(g, c1, 3)
        b1 = g.only_child(c1, "BatchNormalization")
        a1 = g.only_child(b1, "Activation")
        _relu(g, a1)
        c2 = g.only_child(a1, "Conv2D")
        second = _conv(g, c2, 3)
        b2 = g.only_child(c2, "BatchNormalization")
        add = g.only_child(b2, "Add")
        eps.update((_bn(g, b1), _bn(g, b2)))
        if second["stride"] != 1 or second["filters"] != first["filters"]:
            raise ValueError(f"{c2}: the second convolution of a stack changes the shape")
        convs += [first, second]
        if others[0] == add and set(g.parents[add]) == {x, b2}:
            projection = False
            if first["stride"] != 1 or first["filters"] != channels:
                raise ValueError(f"{add}: identity shortcut across a shape change")
        elif g.cls(others[0]) == "Conv2D" and g.children[others[0]] == [add] \
                and set(g.parents[add]) == {others[0], b2}:
            projection = True
            shortcut = _conv(g, others[0], 1)
            g.visited.add(others[0])
            if shortcut["stride"] != first["stride"] or shortcut["filters"] != first["filters"]:
                raise ValueError(f"{others[0]}: projection does not match its stack")
            convs.append(shortcut)
            layers[f"stacks.{i}.shortcut"] = others[0]
        else:
            raise ValueError(f"after {x} expected an identity or 1×1 projection shortcut")
        x = g.only_child(add, "Activation")
        _relu(g, x)
        layers.update({f"stacks.{i}.conv1": c1, f"stacks.{i}.bn1": b1,
                       f"stacks.{i}.conv2": c2, f"stacks.{i}.bn2": b2})
        stacks.append(StackSpec(first["filters"], first["stride"], projection))
        size = out_size(size, 3, first["stride"], first["padding"])
        channels = first["filters"]
    if not stacks:
        raise ValueError("no residual stacks")
    pool = g.children[x][0]
    g.visited.add(pool)
    if g.cls(pool) == "AveragePooling2D":
        p = g.cfg(pool)
        if _pair(p.get("pool_size", 0)) != size or p.get("padding", "valid") != "valid" \
                or p.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{pool}: pooling does not cover the whole {size} map")
        flat = g.only_child(pool, "Flatten")
    else:
        flat = pool
    dense = g.only_child(flat, "Dense")
    activation = g.cfg(dense).get("activation", "linear")
    if activation not in ("softmax", "linear") or not g.cfg(dense).get("use_bias", True):
        raise ValueError(f"{dense}: unsupported Dense settings")
    if g.children[dense] or g.outputs != [dense]:
        raise ValueError(f"{dense} is not the model's only output")
    layers["fc"] = dense
    missing = sorted(set(g.layers) - g.visited)
    if missing:
        raise ValueError(f"layers outside the ResNet8 pattern: {', '.join(missing[:5])}")
    paddings = {conv["padding"] for conv in convs}
    biases = {conv["bias"] for conv in convs}
    if len(eps) != 1 or len(paddings) != 1 or len(biases) != 1:
        raise ValueError("mixed BatchNorm epsilons, paddings or conv biases")
    config_ = ResNet8Config(
        input_shape=(h, w, c), stem_filters=convs[0]["filters"], stacks=tuple(stacks),
        num_classes=int(g.cfg(dense)["units"]), epsilon=eps.pop(),
        softmax=activation == "softmax", conv_bias=biases.pop(), padding=paddings.pop())
    return NativePlan(config=config_, layers=layers)


# --------------------------------------------------------------------------- weights
def _h5_layer_weights(path: Path, layer_names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Each layer's weights from a Keras ``.h5`` as plain arrays, keyed by variable name."""
    import h5py

    out: dict[str, dict[str, np.ndarray]] = {}
    try:
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", f)
            for layer in layer_names:
                if layer not in root:
                    raise InvalidInputError(f"{path}: no weights for layer {layer!r}")
                group = root[layer]
                names = [n.decode() if isinstance(n, bytes) else str(n)
                         for n in group.attrs.get("weight_names", [])]
                arrays = {}
                for n in names:
                    short = n.rsplit("/", 1)[-1].split(":", 1)[0]
                    arrays[short] = np.asarray(group[n], dtype=np.float32)
                out[layer] = arrays
    except (OSError, KeyError) as exc:
        raise InvalidInputError(f"{path}: cannot read the weights ({exc})") from None
    return out


def _torch_state_dict(plan: NativePlan, weights: dict[str, dict[str, np.ndarray]],
                      path: Path) -> dict[str, Any]:
    """Keras arrays → the native module's state dict (HWIO → OIHW, (in, out) → (out, in))."""
    torch = import_torch()
    sd: dict[str, Any] = {}

    def take(layer: str, var: str) -> np.ndarray:
        try:
            return weights[layer][var]
        except KeyError:
            raise InvalidInputError(f"{path}: layer {layer!r} has no {var!r} weight") from None

    for prefix, layer in plan.layers.items():
        last = prefix.rsplit(".", 1)[-1]
        if last.startswith("bn"):
            sd[f"{prefix}.weight"] = take(layer, "gamma")
            sd[f"{prefix}.bias"] = take(layer, "beta")
            sd[f"{prefix}.running_mean"] = take(layer, "moving_mean")
            sd[f"{prefix}.running_var"] = take(layer, "moving_variance")
            sd[f"{prefix}.num_batches_tracked"] = np.array(0, dtype=np.int64)
        elif prefix == "fc":
            sd["fc.weight"] = take(layer, "kernel").T
            sd["fc.bias"] = take(layer, "bias")
        else:
            sd[f"{prefix}.weight"] = take(layer, "kernel").transpose(3, 2, 0, 1)
            if plan.config.conv_bias:
                sd[f"{prefix}.bias"] = take(layer, "bias")
    return {k: torch.from_numpy(np.array(v, order="C")) for k, v in sd.items()}


def _load_into(module: Any, state_dict: Mapping[str, Any], source: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise InvalidInputError(f"{source}: not a state dict of this ResNet8 ({what})")
    for key, value in expected.items():
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise InvalidInputError(
                f"{source}: {key} has shape {tuple(state_dict[key].shape)}, the module "
                f"expects {tuple(value.shape)}")
    module.load_state_dict({k: state_dict[k].to(v.dtype) for k, v in expected.items()})


def native_from_keras(path: str | os.PathLike[str]) -> tuple[ResNet8, NativePlan]:
    """The native ResNet8 with weights ported from a Keras ``.h5``; raises if not recognised."""
    from .keras_io import read_keras_config

    p = Path(path)
    config = read_keras_config(p)  # the safe pre-scan runs first
    if p.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"{p}: the native builder reads .h5 weights; use --torch-builder "
                         "onnx2torch for .keras files")
    try:
        plan = recognise_resnet8(config)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{p}: not recognised as the MLCommons ResNet8 ({exc}); use "
                         "--torch-builder onnx2torch") from None
    import_torch()
    from .torch_models import ResNet8

    module = ResNet8(plan.config)
    _load_into(module, _torch_state_dict(plan, _h5_layer_weights(p, list(plan.layers.values())),
                                         p), str(p))
    return module.eval(), plan


def config_from_state_dict(state_dict: Mapping[str, Any],
                           metadata: Mapping[str, str]) -> ResNet8Config:
    """The module config stored beside the weights, or the MLCommons defaults read off shapes.

    A state dict without our metadata (a ``.pt``) is read as the MLCommons layout: stride 2
    exactly where a stack has a projection, BatchNorm epsilon 1e-3, softmax output, the input
    32×32 with as many channels as the stem convolution takes.
    """
    from .torch_models import ResNet8Config, StackSpec

    if "resnet8_config" in metadata:
        return ResNet8Config.from_dict(json.loads(metadata["resnet8_config"]))
    stem = state_dict["conv.weight"]
    stacks = []
    i = 0
    while f"stacks.{i}.conv1.weight" in state_dict:
        projection = f"stacks.{i}.shortcut.weight" in state_dict
        stacks.append(StackSpec(int(state_dict[f"stacks.{i}.conv1.weight"].shape[0]),
                                2 if projection else 1, projection))
        i += 1
    return ResNet8Config(input_shape=(32, 32, int(stem.shape[1])),
                         stem_filters=int(stem.shape[0]), stacks=tuple(stacks),
                         num_classes=int(state_dict["fc.weight"].shape[0]),
                         conv_bias="conv.bias" in state_dict)


def native_from_state_dict(path: str | os.PathLike[str]) -> tuple[ResNet8, dict[str, Any]]:
    """The native ResNet8 from a ``.safetensors``/``.pt`` state dict; (module, metadata)."""
    state_dict, metadata = load_state_dict(path)
    from .torch_models import ResNet8

    try:
        config = config_from_state_dict(state_dict, metadata)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise InvalidInputError(f"{path}: not a state dict of the ResNet8 ({exc})") from None
    module = ResNet8(config)
    _load_into(module, state_dict, str(path))
    info: dict[str, Any] = {}
    if "resnet8_onnx" in metadata:
        with contextlib.suppress(ValueError):
            info = json.loads(metadata["resnet8_onnx"])
    info.setdefault("output_kind", "probabilities" if config.softmax else "logits")
    info.setdefault("input_shape", ["N", *config.input_shape])
    info.setdefault("builder", "native")
    return module.eval(), info


# --------------------------------------------------------------------------- onnx2torch
def _constant_shape_ops(module: Any) -> int:
    """Replace onnx2torch Reshape/Squeeze modules fed by constant shapes or axes.

    ONNX passes a Reshape's shape and a Squeeze's axes as tensor *inputs*; onnx2torch keeps
    them as buffers and branches on their values at run time (``torch.any(shape == 0)``),
    which ``torch.export`` (and ``torch.compile``) cannot trace. With the input a constant,
    the call becomes ``torch.reshape``/``torch.squeeze`` with the values written into the
    graph. Returns the number replaced; other data-dependent modules still fail to export,
    with a one-line error.
    """
    torch = import_torch()
    graph = module.graph
    replaced = 0
    for node in list(graph.nodes):
        if node.op != "call_module" or len(node.args) != 2 or node.kwargs:
            continue
        kind = type(module.get_submodule(node.target)).__name__
        if kind not in ("OnnxReshape", "OnnxSqueezeDynamicAxes") \
                or getattr(node.args[1], "op", None) != "get_attr":
            continue
        values = tuple(int(v) for v in _attr(module, node.args[1].target).reshape(-1).tolist())
        if kind == "OnnxReshape":
            if 0 in values:  # "copy this dimension": keep onnx2torch's own handling
                continue
            call = (torch.reshape, (node.args[0], values))
        else:
            call = (torch.squeeze, (node.args[0], values))
        with graph.inserting_after(node):
            new = graph.call_function(*call)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        replaced += 1
    if replaced:
        graph.eliminate_dead_code()
        module.recompile()
    return replaced


def _attr(module: Any, target: str) -> Any:
    value = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _static_reshapes(proto: Any) -> int:
    """Give each Reshape whose output shape inference knows a constant target shape.

    tf2onnx sometimes leaves Keras' Flatten as ``Shape → Gather/Slice → Concat → Reshape``.
    onnx2torch turns that chain into tensor code whose values ``torch.export`` cannot trace
    (``.numpy()`` on a fake tensor). Shape inference knows the result, e.g. ``[N, 1800]``, so
    the shape input becomes the constant ``[-1, 1800]`` (at most one unknown dimension), and
    the chain, now unused, is removed. Returns the number of Reshapes changed.
    """
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception:
        return 0
    shapes = {vi.name: vi.type.tensor_type.shape for vi in
              [*inferred.graph.value_info, *inferred.graph.output]}
    constants = {t.name for t in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] in constants:
            continue
        shape = shapes.get(node.output[0])
        if shape is None or not shape.dim:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape.dim]
        if dims.count(-1) > 1 or 0 in dims:
            continue
        name = f"{node.output[0]}/static_shape"
        graph.initializer.append(numpy_helper.from_array(np.array(dims, np.int64), name))
        constants.add(name)
        node.input[1] = name
        changed += 1
    if changed:  # drop what no longer feeds anything
        while True:
            used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
            dead = [n for n in graph.node if not any(o in used for o in n.output)]
            if not dead:
                break
            for n in dead:
                graph.node.remove(n)
        used = {i for n in graph.node for i in n.input}
        for t in [t for t in graph.initializer if t.name not in used]:
            graph.initializer.remove(t)
    return changed


def onnx2torch_module(path: str | os.PathLike[str]) -> Any:
    """An ONNX file as a ``torch.fx`` module (onnx2torch), ready for ``torch.export``."""
    import onnx

    _require("onnx2torch")
    from onnx2torch import convert as o2t_convert

    try:
        proto = onnx.load(str(path))
    except Exception as exc:
        raise InvalidInputError(f"{path}: not a readable ONNX file ({type(exc).__name__})") \
            from exc
    _static_reshapes(proto)
    with progress.status("Building the PyTorch module (onnx2torch)"):
        try:
            module = o2t_convert(proto)
        except ToolError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"{path}: onnx2torch cannot convert it: "
                                    f"{one_line(exc)}") from exc
    _constant_shape_ops(module)
    return module.eval()


def _onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


# --------------------------------------------------------------------------- export + checks
def _input_shape(module: Any, fallback: tuple[int, ...] | None) -> tuple[int, ...]:
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "input_shape"):
        return tuple(config.input_shape)
    if fallback is None:
        raise InvalidInputError("cannot tell the model's input shape")
    return fallback


def export_program(module: Any, image_shape: tuple[int, ...]) -> Any:
    """``torch.export`` with a dynamic batch dimension (sizes 1, 7, 256 all run)."""
    torch = import_torch()
    example = torch.zeros((2, *image_shape), dtype=torch.float32)
    batch = torch.export.Dim("N", min=1, max=1 << 20)
    with progress.status("Exporting with torch.export"), torch.no_grad():
        try:
            return torch.export.export(module, (example,), dynamic_shapes=({0: batch},),
                                       strict=False)
        except ToolError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"torch.export could not export the module: "
                                    f"{one_line(exc)}") from exc


def _random_batch(image_shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *image_shape)).astype(np.float32)


def _run_torch(fn: Any, batch: np.ndarray) -> np.ndarray:
    torch = import_torch()
    with torch.inference_mode():
        return np.asarray(fn(torch.from_numpy(batch)).float().numpy())


def _check_against(reference: Any, candidate: Any, image_shape: tuple[int, ...], what: str,
                   output: Path) -> dict[str, Any]:
    """Run both on random pixels at each check batch size; raise when they differ."""
    worst = 0.0
    for n in CHECK_BATCH_SIZES:
        x = _random_batch(image_shape, n, seed=n)
        a, b = reference(x), candidate(x)
        if a.shape != b.shape:
            raise VerificationFailedError(f"{output}: output shape {b.shape} differs from "
                                          f"{what}'s {a.shape} at batch {n}")
        worst = max(worst, float(np.abs(a - b).max()))
    if not worst <= CHECK_ATOL:
        raise VerificationFailedError(f"{output}: outputs differ from {what} by {worst:.3g} "
                                      f"(> {CHECK_ATOL:g}) on random pixels")
    return {"against": what, "batch_sizes": list(CHECK_BATCH_SIZES), "max_abs_diff": worst}


def _ort_runner(path_or_bytes: Any) -> Any:
    from .backends import onnxrt

    if isinstance(path_or_bytes, bytes | bytearray):
        import onnxruntime as ort

        session = ort.InferenceSession(bytes(path_or_bytes), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    return onnxrt.load(path_or_bytes).predict


@dataclass(frozen=True)
class TorchConversionResult:
    """One conversion involving PyTorch; ``to_dict`` is JSON-ready."""

    output_path: str
    source_path: str
    source_sha256: str
    output_sha256: str
    target: str  # "pt2", "safetensors" or "onnx"
    builder: str  # "native", "onnx2torch" or "torch.onnx"
    output_kind: str
    num_classes: int
    seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _versions() -> dict[str, str]:
    torch = import_torch()
    versions = {"torch_version": str(torch.__version__)}
    for name in ("onnx2torch", "onnx", "onnxscript", "safetensors"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[f"{name}_version"] = version(name)
    return versions


def _class_names(metadata: Mapping[str, Any], k: int) -> list[str]:

    names = metadata.get("class_names")
    if isinstance(names, str):
        with contextlib.suppress(ValueError):
            names = json.loads(names)
    if isinstance(names, list) and len(names) == k:
        return [str(n) for n in names]
    return list(CLASS_NAMES) if k == len(CLASS_NAMES) else [str(i) for i in range(k)]


def _choose_builder(source: Path, builder: str) -> str:
    suffix = source.suffix.lower()
    if builder not in BUILDERS:
        raise UsageError(f"unknown --torch-builder {builder!r}; choose one of "
                         f"{', '.join(BUILDERS)}")
    if suffix == ".onnx":
        if builder == "native":
            raise UsageError(f"{source}: the native builder reads a Keras .h5; an ONNX source "
                             "needs --torch-builder onnx2torch (or auto)")
        return "onnx2torch"
    if suffix in STATE_DICT_SUFFIXES:
        if builder == "onnx2torch":
            raise UsageError(f"{source}: a state dict builds the native module; onnx2torch "
                             "needs an ONNX or Keras source")
        return "native"
    if suffix in PT2_SUFFIXES:
        raise UsageError(f"{source}: a .pt2 converts to .onnx; build .pt2 and .safetensors "
                         "files from the Keras or ONNX model")
    if suffix not in KERAS_SUFFIXES:
        raise UsageError(f"{source}: cannot build a PyTorch model from {suffix or 'no suffix'!r}"
                         " (expected .h5, .keras, .onnx, .safetensors or .pt)")
    if builder != "auto":
        return builder
    if suffix == ".keras":
        return "onnx2torch"
    from .keras_io import read_keras_config

    try:
        recognise_resnet8(read_keras_config(source))
    except (ValueError, KeyError, TypeError):
        return "onnx2torch"
    return "native"


def convert_to_torch(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    builder: str = "auto",
    force: bool = False,
    opset: int | None = None,
) -> TorchConversionResult:
    """Build a PyTorch model from a Keras, ONNX or state-dict file and save it.

    ``output_path`` ends in ``.pt2`` (an ExportedProgram) or ``.safetensors`` (the native
    module's state dict, for fine-tuning). The saved ``.pt2`` is loaded back through the safe
    loader and must reproduce the in-memory module (and, for onnx2torch, ONNX Runtime on the
    ONNX it came from) on random pixels at batch sizes 1 and 7.
    """
    start = time.perf_counter()
    source = Path(source_path)
    out = check_writable(output_path, force=force)  # before any expensive work
    if not source.is_file():
        from .errors import InputNotFoundError

        raise InputNotFoundError(f"{source}: model file not found")
    if out.resolve() == source.resolve():
        raise UsageError(f"{out}: output would overwrite the source model")
    target = out.suffix.lower()
    if target not in PT2_SUFFIXES + SAFETENSORS_SUFFIXES:
        raise UsageError(f"{out}: a PyTorch target is .pt2 or .safetensors")
    kind = _choose_builder(source, builder)
    if target in SAFETENSORS_SUFFIXES and kind != "native":
        raise UsageError(f"{out}: a .safetensors state dict needs the native ResNet8 module; "
                         f"{source} is converted with onnx2torch")
    import_torch()
    checks: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    reference: Any = None
    with contextlib.ExitStack() as stack:
        if kind == "native":
            if source.suffix.lower() in STATE_DICT_SUFFIXES:
                module, meta = native_from_state_dict(source)
            else:
                module, plan = native_from_keras(source)
                meta = {"keras_layers": plan.layers}
            image_shape = tuple(module.config.input_shape)
            k = module.config.num_classes
            output_kind = "probabilities" if module.config.softmax else "logits"
        else:
            onnx_path = source
            if source.suffix.lower() in KERAS_SUFFIXES:
                from .convert import DEFAULT_OPSET, convert

                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                onnx_path = tmp / "model.onnx"
                convert(source, onnx_path, input_shape=None, num_classes=None,
                        opset=opset or DEFAULT_OPSET)
            onnx_meta = _onnx_metadata(onnx_path)
            module = onnx2torch_module(onnx_path)
            ort = _ort_runner(onnx_path)
            image_shape = tuple(d for d in _ort_input_shape(onnx_path))
            probe = ort(_random_batch(image_shape, 1))
            k = int(probe.shape[1])
            output_kind = onnx_meta.get("output_kind") or (
                "probabilities" if np.allclose(probe.sum(axis=1), 1, atol=1e-4) else "logits")
            meta = {k_: v for k_, v in onnx_meta.items()
                    if k_ in ("class_names", "preprocessing", "source_file", "source_sha256")}
            reference = ort
        module_fn = _module_runner(module)
        if reference is not None:
            checks.append(_check_against(reference, module_fn, image_shape,
                                         "ONNX Runtime on the source ONNX", out))
        metadata = {
            "converter": "resnet8-onnx", "converter_version": __version__,
            "source_file": source.name, "source_sha256": file_digest(source),
            "builder": kind, "input_shape": ["N", *image_shape],
            # The native module takes NHWC; onnx2torch keeps the ONNX model's own layout.
            "input_layout": "NHWC" if kind == "native" else "as the source ONNX model",
            "preprocessing": meta.get("preprocessing") or _default_preprocessing(),
            "output_kind": output_kind, "num_classes": k,
            "class_names": _class_names(meta, k), **_versions(),
        }
        if kind == "native":
            metadata["resnet8_config"] = module.config.to_dict()
        if target in SAFETENSORS_SUFFIXES:
            data = save_state_dict(module.state_dict(), out, {
                "resnet8_config": json.dumps(module.config.to_dict()),
                "resnet8_onnx": json.dumps(metadata)}, force=force)
            module2, _ = native_from_state_dict(out)
            checks.append(_check_against(module_fn, _module_runner(module2), image_shape,
                                         "the module before saving", out))
        else:
            if kind == "native":  # inference program: BatchNorm folded into the convolutions
                from .torch_models import fold_batchnorm

                module = fold_batchnorm(module)
                metadata["batchnorm"] = "folded into the preceding convolutions"
            program = export_program(module, image_shape)
            data = _save_checked(program, out, metadata, force=force)
            loaded, _ = load_exported_program(out)
            try:
                checks.append(_check_against(module_fn, _module_runner(loaded.module()),
                                             image_shape, "the module before export", out))
            except VerificationFailedError:
                out.unlink(missing_ok=True)
                raise
    return TorchConversionResult(
        output_path=str(out), source_path=str(source), source_sha256=metadata["source_sha256"],
        output_sha256=hashlib.sha256(data).hexdigest(), target=target.lstrip("."),
        builder=kind, output_kind=output_kind, num_classes=k,
        seconds=round(time.perf_counter() - start, 3), checks=checks, metadata=metadata)


def _save_checked(program: Any, out: Path, metadata: Mapping[str, Any], *,
                  force: bool) -> bytes:
    with progress.status(f"Saving {out.name}"):
        return save_exported_program(program, out, metadata, force=force)


def _default_preprocessing() -> str:
    from .convert import PREPROCESSING

    return PREPROCESSING


def _ort_input_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InvalidInputError(f"{path}: expected one input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    if len(dims) != 4 or any(d <= 0 for d in shape):
        raise InvalidInputError(f"{path}: input must be (batch, H, W, C) with fixed H, W, C")
    return shape


def _module_runner(module: Any) -> Any:
    return lambda x: _run_torch(module, x)


# --------------------------------------------------------------------------- back to ONNX
def load_torch_model(path: str | os.PathLike[str]) -> tuple[Any, Any | None, dict[str, Any]]:
    """(callable module, ExportedProgram or None, metadata) from any PyTorch file we read."""
    suffix = Path(path).suffix.lower()
    if suffix in PT2_SUFFIXES:
        program, metadata = load_exported_program(path)
        return program.module(), program, metadata
    from .torch_models import fold_batchnorm

    module, metadata = native_from_state_dict(path)
    return fold_batchnorm(module), None, metadata


def convert_torch_to_onnx(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    opset: int | None = None,
    force: bool = False,
) -> TorchConversionResult:
    """A ``.pt2`` (or native state dict) → ONNX with ``torch.onnx.export`` (dynamo exporter).

    The result gets the same treatment as a Keras conversion: input ``input`` (N, H, W, C),
    output named after its kind, batch dimension ``N``, self-describing metadata, the full
    ONNX checker and strict shape inference; then ONNX Runtime must reproduce the PyTorch
    model on random pixels at batch sizes 1 and 7.
    """
    from .convert import finish_onnx_model

    start = time.perf_counter()
    source = Path(source_path)
    out = check_writable(output_path, force=force)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"{out}: a PyTorch model converts to .onnx, .pt2 or .safetensors")
    opset = TORCH_ONNX_OPSET if opset is None else opset
    if opset < TORCH_ONNX_OPSET:
        raise UsageError(f"opset {opset}: torch.onnx's exporter emits opset "
                         f"{TORCH_ONNX_OPSET} or newer")
    if not source.is_file():
        from .errors import InputNotFoundError

        raise InputNotFoundError(f"{source}: model file not found")
    torch = import_torch()
    _require("onnxscript")
    module, program, meta = load_torch_model(source)
    image_shape = tuple(int(d) for d in (meta.get("input_shape") or [])[1:]) or None
    if program is None:
        image_shape = _input_shape(module, image_shape)
        program = export_program(module, image_shape)
    if image_shape is None:
        image_shape = _program_input_shape(program)
    probe = _run_torch(module, _random_batch(image_shape, 1))
    k = int(probe.shape[1])
    kind = meta.get("output_kind") or (
        "probabilities" if np.allclose(probe.sum(axis=1), 1, atol=1e-4) else "logits")
    with progress.status(f"Exporting to ONNX (torch.onnx, opset {opset})"), \
            contextlib.redirect_stdout(sys.stderr):  # the exporter prints; stdout may be JSON
        try:
            onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=opset,
                                             optimize=True, verbose=False)
        except ToolError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"{source}: torch.onnx.export failed: "
                                    f"{one_line(exc)}") from exc
    proto = onnx_program.model_proto
    versions = _versions()
    metadata = {
        "source_file": source.name, "source_sha256": file_digest(source),
        "source_format": source.suffix.lower().lstrip("."),
        "converter": "resnet8-onnx", "converter_version": __version__,
        **{k_: v for k_, v in versions.items() if k_ in ("torch_version", "onnxscript_version",
                                                         "onnx_version")},
        "opset": str(opset),
        "preprocessing": str(meta.get("preprocessing") or _default_preprocessing()),
        "class_names": json.dumps(_class_names(meta, k)),
    }
    proto = finish_onnx_model(proto, out, output_kind=kind, image_shape=image_shape,
                              num_classes=k, metadata=metadata,
                              description=f"{source.name} exported by torch.onnx "
                                          f"{versions['torch_version']}")
    data = proto.SerializeToString()
    checks = [_check_against(_module_runner(module), _ort_runner(data), image_shape,
                             "the PyTorch model", out)]
    from .fsutil import write_bytes_atomic

    write_bytes_atomic(out, data, force=force)
    return TorchConversionResult(
        output_path=str(out), source_path=str(source), source_sha256=metadata["source_sha256"],
        output_sha256=hashlib.sha256(data).hexdigest(), target="onnx", builder="torch.onnx",
        output_kind=kind, num_classes=k, seconds=round(time.perf_counter() - start, 3),
        checks=checks, metadata={p.key: p.value for p in proto.metadata_props})


def _program_input_shape(program: Any) -> tuple[int, ...]:
    """(H, W, C) of an ExportedProgram's single user input, from its fake tensor."""
    users = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(users) != 1:
        raise InvalidInputError(f"the program has {len(users)} inputs; expected one image batch")
    name = users[0].arg.name
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    shape = node.meta["val"].shape
    if len(shape) != 4:
        raise InvalidInputError(f"the program's input has rank {len(shape)}, expected 4")
    try:
        return tuple(int(d) for d in shape[1:])
    except TypeError:
        raise InvalidInputError("the program's image dimensions are not fixed") from None


def convert_torch(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    builder: str = "auto",
    opset: int | None = None,
    force: bool = False,
) -> TorchConversionResult:
    """Dispatch a conversion that involves PyTorch by the two suffixes."""
    suffix = Path(output_path).suffix.lower()
    if Path(source_path).suffix.lower() in TORCH_SUFFIXES and suffix == ".onnx":
        return convert_torch_to_onnx(source_path, output_path, opset=opset, force=force)
    if suffix in PT2_SUFFIXES + SAFETENSORS_SUFFIXES:
        return convert_to_torch(source_path, output_path, builder=builder, force=force,
                                opset=opset)
    raise UsageError(f"{output_path}: a PyTorch model converts to .onnx, .pt2 or .safetensors")

