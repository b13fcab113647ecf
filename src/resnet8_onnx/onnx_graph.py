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

from .errors import InputNotFoundError, InvalidInputError, one_line
from .fsutil import file_digest, recorded_path


def _shape_of(value_info: Any) -> list[int | str | None]:
    dims = []
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


def count_macs(model: Any) -> int:
    """Multiply-accumulates per image of Conv, MatMul and Gemm nodes, from inferred shapes.

    Convolutions: output elements × (input channels / groups) × kernel area. That is the
    figure MLPerf Tiny quotes for ResNet8 (≈12.5 M), so users can check ours against it.
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: _shape_of(vi) for vi in
              [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    inits = {t.name: list(t.dims) for t in inferred.graph.initializer}
    macs = 0
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            w = inits.get(node.input[1])
            out = shapes.get(node.output[0])
            if w is None or out is None:
                continue
            # Weight is (out, in / groups, kh, kw): w[1] already accounts for groups.
            macs += _per_image(out) * w[1] * int(np.prod(w[2:]))
        elif node.op_type in ("MatMul", "Gemm"):
            w = inits.get(node.input[1])
            out = shapes.get(node.output[0])
            if w is None or out is None:
                continue
            transposed = node.op_type == "Gemm" and any(
                a.name == "transB" and a.i for a in node.attribute)
            k = w[1] if transposed else w[0]
            macs += _per_image(out) * k
    return int(macs)


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
        "parameters": int(sum(int(np.prod(t.dims)) for t in graph.initializer)),
        "macs_per_image": count_macs(model),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }




def intermediate_outputs(
    onnx_path: str | os.PathLike[str], batch: np.ndarray
) -> dict[str, np.ndarray]:
    """Every float tensor of the ONNX graph on ``batch``, from a copy with them all as outputs.

    Optimisations are disabled on the copy so the tensors are the graph's own, not fused ones.
    """
    import onnx
    import onnxruntime as ort

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    known = {vi.name: vi for vi in model.graph.value_info}
    existing = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in existing:
                vi = known.get(name) or onnx.helper.make_tensor_value_info(
                    name, onnx.TensorProto.FLOAT, None)
                if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
                    model.graph.output.append(vi)
                    existing.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: batch})
    return dict(zip(names, values, strict=True))
