"""torch_onnx2torch: an ONNX model as a torch.fx module with static shapes, checked against
ONNX Runtime running the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from model_factory import make_classifier
from resnet8_onnx.convert.onnx_to_torch import onnx2torch_module, onnx_metadata
from resnet8_onnx.convert.to_torch import export_program
from resnet8_onnx.support.errors import InvalidInputError


def ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def called_kinds(module) -> set[str]:
    """The kinds of the submodules the fx graph actually calls."""
    return {type(module.get_submodule(node.target)).__name__ for node in module.graph.nodes
            if node.op == "call_module"}


def flatten_by_shape_chain(path: Path) -> Path:
    """A tiny classifier whose Flatten is ``Shape → Slice → Concat → Reshape``, as tf2onnx
    sometimes leaves Keras' Flatten: values torch.export cannot trace unless made constant."""
    rng = np.random.default_rng(0)
    dense = rng.normal(0, 0.3, (4 * 4 * 2, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
        helper.make_node("Concat", ["batch", "features"], ["target"], axis=0),
        helper.make_node("Reshape", ["input", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense"], ["logits"]),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([32], np.int64), "features"),
             numpy_helper.from_array(dense, "dense")]
    graph = helper.make_graph(
        nodes, "flatten", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                         ["N", 4, 4, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_a_classifier_becomes_a_module_that_equals_onnx_runtime(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx", height=8, width=8)
    module = onnx2torch_module(path)
    assert module.training is False
    assert "OnnxReshape" not in called_kinds(module)  # constant shape: a plain reshape
    assert "OnnxMatMul" in called_kinds(module)  # (the check sees the modules called)
    x = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3)).astype(np.float32)
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ort_run(path, x), rtol=1e-5, atol=1e-6)


def test_a_flatten_computed_from_the_shape_exports_with_a_dynamic_batch(tmp_path: Path) -> None:
    path = flatten_by_shape_chain(tmp_path / "f.onnx")
    module = onnx2torch_module(path)
    assert "OnnxShape" not in called_kinds(module)  # the chain became a constant
    program = export_program(module, (4, 4, 2))
    rng = np.random.default_rng(2)
    for n in (1, 6):
        x = rng.normal(size=(n, 4, 4, 2)).astype(np.float32)
        with torch.no_grad():
            got = program.module()(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_metadata_and_unreadable_files(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    helper.set_model_props(model, {"output_kind": "probabilities", "class_names": "[]"})
    onnx.save(model, str(path))
    assert onnx_metadata(path) == {"output_kind": "probabilities", "class_names": "[]"}
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not protobuf\xff" * 10)
    with pytest.raises(InvalidInputError, match="not a readable ONNX file"):
        onnx2torch_module(junk)
