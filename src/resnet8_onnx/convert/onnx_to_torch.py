"""The onnx2torch builder: any ONNX model the converter supports as a ``torch.fx`` module.

onnx2torch keeps shape computations (``Shape`` → ``Gather`` → ``Concat`` → ``Reshape``) as
graph operations; those whose result is fixed by the model are made constants so that
``torch.export`` sees static shapes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from resnet8_onnx.backends.pytorch.safe_io import import_torch, require_module
from resnet8_onnx.support import progress
from resnet8_onnx.support.errors import InvalidInputError, ToolError, one_line


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

    require_module("onnx2torch")
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


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}

