"""The native PyTorch builder: recognise the MLCommons ResNet8 in a Keras file, port its weights.

A Keras file is recognised as ResNet8 *by its structure* (the layer graph in its config JSON,
which the safe pre-scan already reads); the weights are read from the ``.h5`` with h5py as
plain arrays, so Keras is never imported. Loading a saved state dict lives with the PyTorch
backend (:mod:`resnet8_onnx.backends.pytorch.state_dict`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.backends.keras.files import read_keras_config
from resnet8_onnx.backends.pytorch.safe_io import import_torch
from resnet8_onnx.backends.pytorch.state_dict import load_into
from resnet8_onnx.support.errors import InvalidInputError, UsageError

if TYPE_CHECKING:
    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8, ResNet8Config, StackSpec


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
    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8Config

    g = _Graph(config)
    (h, w, c), input_layer = _match_input(g)
    layers: dict[str, str] = {}
    convs: list[dict[str, Any]] = []
    eps: set[float] = set()

    x = _match_stem(g, input_layer, layers, convs, eps)
    size, channels = (h, w), convs[-1]["filters"]
    stacks: list[StackSpec] = []
    while True:
        kids = g.children[x]
        if len(kids) == 1 and g.cls(kids[0]) in ("AveragePooling2D", "GlobalAveragePooling2D"):
            break
        x, stack, padding = _match_stack(g, x, len(stacks), channels, layers, convs, eps)
        stacks.append(stack)
        size = _out_size(size, 3, stack.stride, padding)
        channels = stack.filters
    if not stacks:
        raise ValueError("no residual stacks")
    dense, activation = _match_head(g, x, size, layers)
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


def _out_size(size: tuple[int, int], kernel: int, stride: int,
              padding: str) -> tuple[int, int]:
    """Spatial size after a convolution, as Keras computes it for ``same``/``valid``."""
    h, w = size
    if padding == "same":
        return math.ceil(h / stride), math.ceil(w / stride)
    return (h - kernel) // stride + 1, (w - kernel) // stride + 1


def _match_input(g: _Graph) -> tuple[tuple[int, int, int], str]:
    """((H, W, C), name) of the single input layer, whose shape must be fully known."""
    inputs = [n for n in g.layers if g.cls(n) == "InputLayer"]
    if len(inputs) != 1:
        raise ValueError(f"{len(inputs)} input layers")
    cfg = g.cfg(inputs[0])
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape") or []
    if len(shape) != 4 or any(not isinstance(d, int) for d in shape[1:]):
        raise ValueError(f"input shape {shape} is not (batch, H, W, C)")
    h, w, c = (int(d) for d in shape[1:])
    g.visited.add(inputs[0])
    return (h, w, c), inputs[0]


def _match_stem(g: _Graph, input_layer: str, layers: dict[str, str],
                convs: list[dict[str, Any]], eps: set[float]) -> str:
    """Match the stride-1 conv-BN-ReLU stem after the input; returns its ReLU's name.

    ``layers``, ``convs`` and ``eps`` collect what the match found, for the final checks.
    """
    stem = g.only_child(input_layer, "Conv2D")
    convs.append(_conv(g, stem, 3))
    if convs[-1]["stride"] != 1:
        raise ValueError("the stem convolution has a stride")
    bn = g.only_child(stem, "BatchNormalization")
    eps.add(_bn(g, bn))
    x = g.only_child(bn, "Activation")
    _relu(g, x)
    layers.update(conv=stem, bn=bn)
    return x


def _match_stack(g: _Graph, x: str, i: int, channels: int, layers: dict[str, str],
                 convs: list[dict[str, Any]],
                 eps: set[float]) -> tuple[str, StackSpec, str]:
    """Match residual stack ``i`` fed by layer ``x`` (with ``channels`` channels): two 3×3
    conv-BN with a ReLU between, an identity or 1×1 projection shortcut, Add, ReLU.

    Returns the stack's closing ReLU, its spec and its first convolution's padding (which
    sets the map size after it); ``layers``, ``convs`` and ``eps`` collect
    what the match found (the stack's convolutions in the order first, second[, shortcut]).
    """
    from resnet8_onnx.backends.pytorch.resnet8 import StackSpec

    kids = g.children[x]
    mains = [k for k in kids if g.cls(k) == "Conv2D"
             and _pair(g.cfg(k).get("kernel_size", 0)) == (3, 3)]
    others = [k for k in kids if k not in mains]
    if len(mains) != 1 or len(others) != 1:
        raise ValueError(f"after {x} expected a residual stack")
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
    out = g.only_child(add, "Activation")
    _relu(g, out)
    layers.update({f"stacks.{i}.conv1": c1, f"stacks.{i}.bn1": b1,
                   f"stacks.{i}.conv2": c2, f"stacks.{i}.bn2": b2})
    return out, StackSpec(first["filters"], first["stride"], projection), first["padding"]


def _match_head(g: _Graph, x: str, size: tuple[int, int],
                layers: dict[str, str]) -> tuple[str, str]:
    """Match pooling over the whole ``size`` map, Flatten and the output Dense after ``x``;
    returns (the Dense layer's name, its activation)."""
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
    return dense, activation


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


def native_from_keras(path: str | os.PathLike[str]) -> tuple[ResNet8, NativePlan]:
    """The native ResNet8 with weights ported from a Keras ``.h5``; raises if not recognised."""
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
    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8

    module = ResNet8(plan.config)
    load_into(module, _torch_state_dict(plan, _h5_layer_weights(p, list(plan.layers.values())),
                                         p), str(p))
    return module.eval(), plan
