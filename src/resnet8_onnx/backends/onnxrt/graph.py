"""What an ONNX file is, read with the onnx library: a checked structure report, its MAC
count, and every intermediate float tensor on a batch (for the layer-by-layer comparison).

Facts about a file rather than a verdict about two models, so the ONNX Runtime backend's
abilities (``structure``, ``macs``, ``tensor_outputs``) and ``verify`` share them. onnx and
onnxruntime are imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, one_line
from resnet8_onnx.support.fsutil import file_digest, recorded_path


def _shape_of(value_info: Any) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return dims


def _per_image(dims: list[int | str | None]) -> int:
    """Elements per image of a (batch, ...) shape; symbolic dims other than batch count as 1."""
    n = 1
    for d in dims[1:]:
        n *= d if isinstance(d, int) else 1
    return n


# Where a quantised operator reads its weights (and biases): the integer tensors that are
# the model's parameters. Every other input of a quantised operator is an activation or a
# scale / zero point (quantisation constants, not parameters).
QUANTIZED_WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (0,), "QLinearConv": (3, 8), "QLinearMatMul": (3,),
    "QGemm": (3, 6), "MatMulInteger": (1,), "ConvInteger": (1,)}
# Operators that compute on integer tensors: a graph with one is a QOperator graph.
QOPERATOR_OPS = frozenset({"QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger",
                           "ConvInteger", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
                           "QLinearGlobalAveragePool", "QLinearSoftmax", "QLinearConcat",
                           "QLinearLeakyRelu", "QLinearSigmoid"})
_QUANT_OPS = QOPERATOR_OPS | {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# Which input holds the weight, for the operators whose MACs are counted.
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_MATMUL_WEIGHT = {"MatMul": 1, "Gemm": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "QGemm": 3}


def _weight_dims(graph: Any) -> dict[str, list[int]]:
    """Dims of every constant weight by the name an operator reads it under: initializers,
    and the outputs of DequantizeLinear nodes over an initializer (QDQ graphs)."""
    dims = {t.name: list(t.dims) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in dims:
            dims[node.output[0]] = dims[node.input[0]]
    return dims


# com.microsoft quantised operators ONNX shape inference does not know, as the standard
# operator of the same output shape (and which of their inputs it reads).
_SHAPE_TWINS = {"QLinearAdd": ("Add", (0, 3)), "QLinearMul": ("Mul", (0, 3)),
                "QLinearAveragePool": ("AveragePool", (0,)),
                "QLinearGlobalAveragePool": ("GlobalAveragePool", (0,)),
                "QLinearSoftmax": ("Softmax", (0,)), "QLinearLeakyRelu": ("LeakyRelu", (0,)),
                "QLinearSigmoid": ("Sigmoid", (0,)), "QGemm": ("Gemm", (0, 3))}


def _inferred(model: Any) -> Any:
    """``model`` with inferred shapes, also past com.microsoft quantised operators: those are
    inferred as their standard twins (QLinearAdd as Add …) on a copy used for shapes only."""
    import onnx

    if not any(n.domain == "com.microsoft" and n.op_type in _SHAPE_TWINS
               for n in model.graph.node):
        return onnx.shape_inference.infer_shapes(model)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = []
    for node in copy.graph.node:
        if node.domain == "com.microsoft" and node.op_type in _SHAPE_TWINS:
            op, reads = _SHAPE_TWINS[node.op_type]
            twin = onnx.helper.make_node(op, [node.input[i] for i in reads], list(node.output),
                                         name=node.name)
            twin.attribute.extend(a for a in node.attribute
                                  if a.name not in ("channels_last", "opset"))
            nodes.append(twin)
        else:
            nodes.append(node)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return onnx.shape_inference.infer_shapes(copy)


def count_macs(model: Any) -> int:
    """Multiply-accumulates per image of convolutions and matrix products, from inferred shapes.

    Float (Conv, MatMul, Gemm), QDQ (the same fed through DequantizeLinear) and QOperator
    (QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger, com.microsoft QGemm) graphs
    count alike: an int8 ResNet8 does the float model's ≈12.5 M MACs (the figure MLPerf Tiny
    quotes), in int8. Convolutions: output elements × (input channels / groups) × kernel area.
    """
    inferred = _inferred(model)
    shapes = {vi.name: _shape_of(vi) for vi in
              [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    weights = _weight_dims(inferred.graph)
    macs = 0
    for node in inferred.graph.node:
        if node.op_type in _CONV_WEIGHT:
            w = weights.get(node.input[_CONV_WEIGHT[node.op_type]])
            out = shapes.get(node.output[0])
            if w is None or out is None or len(w) < 3:
                continue
            # Weight is (out, in / groups, kh, kw): w[1] already accounts for groups.
            macs += _per_image(out) * w[1] * int(np.prod(w[2:]))
        elif node.op_type in _MATMUL_WEIGHT:
            w = weights.get(node.input[_MATMUL_WEIGHT[node.op_type]])
            if w is None or len(w) != 2:
                continue
            transposed = node.op_type in ("Gemm", "QGemm") and any(
                a.name == "transB" and a.i for a in node.attribute)
            k, n = (w[1], w[0]) if transposed else (w[0], w[1])
            out, a = shapes.get(node.output[0]), shapes.get(node.input[0])
            if out:  # a contrib operator (QGemm) has no inferred output: use its input
                macs += _per_image(out) * k
            elif a:
                macs += _per_image(a) * n
    return int(macs)


def parameter_counts(graph: Any) -> dict[str, int]:
    """Stored weights by dtype: float initializers (not a shape, not a scale) and the
    integer tensors quantised operators read as weights or biases.

    A Reshape's int64 shape and a quantisation scale or zero point are not parameters.
    """
    import onnx

    consumers: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, i))
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
              onnx.TensorProto.BFLOAT16}
    counts: Counter[str] = Counter()
    for t in graph.initializer:
        uses = consumers.get(t.name, [])
        if t.data_type in floats:
            counted = any(op not in _QUANT_OPS for op, _ in uses)
        else:
            counted = any(i in QUANTIZED_WEIGHT_INPUTS.get(op, ()) for op, i in uses)
        if counted:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name
            counts[dtype] += int(np.prod(t.dims))
    return dict(sorted(counts.items()))


def quantization_of(graph: Any) -> dict[str, str] | None:
    """``{"type": "int8", "format": "QDQ"}`` for a quantised graph (the type of its
    quantised weights), ``None`` for a float one."""
    ops = {n.op_type for n in graph.node}
    if not ops & _QUANT_OPS:
        return None
    weights = {k: v for k, v in parameter_counts(graph).items()
               if k in ("int8", "uint8", "int4", "uint4")}
    kind = max(weights, key=lambda k: weights[k]) if weights else "int8"
    return {"type": kind, "format": "QOperator" if ops & QOPERATOR_OPS else "QDQ"}


def quantization_of_file(path: str | os.PathLike[str]) -> str | None:
    """'int8' when the file is a quantised graph, else None; read with onnx only when its
    bytes name a quantisation operator, so float models cost no onnx import."""
    data = Path(path).read_bytes()
    if not any(op.encode() in data for op in ("QuantizeLinear", "QLinear", "QGemm",
                                              "MatMulInteger", "ConvInteger")):
        return None
    import onnx

    found = quantization_of(onnx.load_from_string(data).graph)
    return found["type"] if found else None


def batchnorm_as_mul_add(graph: Any) -> tuple[int, int]:
    """(how many Conv outputs go straight into a Mul and then an Add by per-channel
    constants, their channels): how tf2onnx writes a BatchNormalization after a Conv."""
    inits = {t.name: list(t.dims) for t in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def per_channel(node: Any, op: str) -> int | None:
        if node.op_type != op:
            return None
        dims = [inits[i] for i in node.input if i in inits]
        if len(dims) != 1 or len(dims[0]) < 1 or int(np.prod(dims[0])) != max(dims[0]):
            return None
        return int(np.prod(dims[0]))

    count = channels = 0
    for node in graph.node:
        after = readers.get(node.output[0], []) if node.op_type == "Conv" else []
        if len(after) != 1 or (c := per_channel(after[0], "Mul")) is None:
            continue
        then = readers.get(after[0].output[0], [])
        if len(then) == 1 and per_channel(then[0], "Add") == c:
            count, channels = count + 1, channels + c
    return count, channels


def structure_report(onnx_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What the ONNX file is, checked: the checker, shape inference and an inventory."""
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: ONNX file not found")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise InvalidInputError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from exc
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        raise InvalidInputError(f"{path}: fails the ONNX checker: "
                                f"{one_line(exc, limit=None)}") from exc
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [{"name": i.name, "shape": _shape_of(i),
               "dtype": onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type).name}
              for i in graph.input if i.name not in init_names]
    outputs = [{"name": o.name, "shape": _shape_of(o),
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type).name}
               for o in graph.output]
    parameters = parameter_counts(graph)
    mul_add, channels = batchnorm_as_mul_add(graph)
    quantized = quantization_of(graph)
    return {
        "path": recorded_path(path),
        "sha256": file_digest(path),
        "file_bytes": path.stat().st_size,
        "ir_version": int(model.ir_version),
        "opsets": {imp.domain or "ai.onnx": int(imp.version) for imp in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "checker": "passed (full_check)",
        "shape_inference": "passed (strict)",
        "inputs": inputs,
        "outputs": outputs,
        "nodes": len(graph.node),
        "op_inventory": dict(sorted(Counter(n.op_type for n in graph.node).items())),
        "parameters": sum(parameters.values()),
        "parameter_dtypes": parameters,
        "macs_per_image": count_macs(model),
        "batchnorm_mul_add": mul_add,
        "batchnorm_channels": channels,
        **({"quantization": quantized} if quantized else {}),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


# Where a QOperator operator's output scale and zero point are: its integer output is
# dequantised with them so the layer-by-layer comparison can read it as float.
_OUTPUT_SCALE = {"QuantizeLinear": 1, "QLinearConv": 6, "QLinearMatMul": 6, "QLinearAdd": 6,
                 "QLinearMul": 6, "QLinearAveragePool": 3, "QLinearGlobalAveragePool": 3,
                 "QLinearSoftmax": 3, "QLinearLeakyRelu": 3, "QLinearSigmoid": 3, "QGemm": 7}
DEQUANTISED = " (dequantised)"


def tensor_origins(model: Any) -> dict[str, tuple[str, bool]]:
    """For each computed tensor: (the operator that computed it, whether it went through
    quantisation since), looking through QuantizeLinear → DequantizeLinear pairs.

    In a QDQ graph a Conv's float output is the Conv's own ("Conv", False); the
    DequantizeLinear after its QuantizeLinear is ("Conv", True) — clipped to the quantised
    range, which is where a fused ReLU went. A QOperator output, dequantised, is (its
    operator, True). Dequantised weights are not computed tensors and are left out.
    """
    inits = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    origins: dict[str, tuple[str, bool]] = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            source = producer.get(node.input[0])
            if node.input[0] in inits or source is None:
                continue
            if source.op_type == "QuantizeLinear":
                before = producer.get(source.input[0])
                origins[node.output[0]] = (before.op_type if before else "input", True)
            else:
                origins[node.output[0]] = (source.op_type, True)
        elif node.op_type != "QuantizeLinear":
            for name in node.output:
                origins[name] = (node.op_type, node.op_type in QOPERATOR_OPS)
                origins[name + DEQUANTISED] = (node.op_type, True)
    return origins


def _dequantised_copies(model: Any, types: dict[str, int]) -> list[Any]:
    """DequantizeLinear nodes turning each integer output of a QOperator node into a float
    tensor named ``<output> (dequantised)``, by the node's own output scale and zero point."""
    import onnx

    integer = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    nodes = []
    for node in model.graph.node:
        at = _OUTPUT_SCALE.get(node.op_type)
        if at is None or node.op_type == "QuantizeLinear" or len(node.input) <= at + 1 \
                or not node.input[at] or types.get(node.output[0]) not in integer:
            continue
        nodes.append(onnx.helper.make_node(
            "DequantizeLinear", [node.output[0], node.input[at], node.input[at + 1]],
            [node.output[0] + DEQUANTISED]))
    return nodes


def intermediate_outputs(
    onnx_path: str | os.PathLike[str], batch: np.ndarray
) -> dict[str, np.ndarray]:
    """Every float tensor of the ONNX graph on ``batch``, from a copy with them all as outputs.

    Optimisations are disabled on the copy so the tensors are the graph's own, not fused ones.
    A QOperator graph's integer activations come dequantised (``<name> (dequantised)``).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(onnx_path))
    inferred = _inferred(model)  # types past com.microsoft operators too
    known = {vi.name: vi for vi in inferred.graph.value_info}
    types = {name: vi.type.tensor_type.elem_type for name, vi in known.items()}
    model.graph.node.extend(_dequantised_copies(model, types))
    existing = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in existing and types.get(name, onnx.TensorProto.FLOAT) \
                    == onnx.TensorProto.FLOAT:
                model.graph.output.append(known.get(name) or onnx.helper.make_tensor_value_info(
                    name, onnx.TensorProto.FLOAT, None))
                existing.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # a failure is raised, not logged in red too
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: batch})
    return dict(zip(names, values, strict=True))
