"""onnx_graph: the checked structure report, MACs, and the graph's intermediate tensors."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from model_factory import make_classifier
from resnet8_onnx.backends.onnxrt.graph import count_macs, intermediate_outputs, structure_report
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError
from resnet8_onnx.verify import check_io_contract


def test_structure_report_of_generated_model(tmp_path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    report = structure_report(path)
    assert report["inputs"] == [{"name": "input", "shape": ["N", 32, 32, 3], "dtype": "float32"}]
    assert report["outputs"][0]["shape"] == ["N", 10]
    # 1×1 conv 3→8 over 32×32 plus dense 8→10, computed by hand.
    assert report["macs_per_image"] == 32 * 32 * 8 * 3 + 8 * 10
    # Float weights only: the Reshape's int64 shape [-1, 8] is not a parameter.
    assert report["parameters"] == 8 * 3 + 8 * 10 + 10
    assert report["parameter_dtypes"] == {"float32": 8 * 3 + 8 * 10 + 10}
    assert report["op_inventory"]["Conv"] == 1
    assert check_io_contract(report) == []


def test_truncated_onnx_is_invalid(tmp_path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match=r"m\.onnx"):
        structure_report(path)


def test_a_missing_file_is_not_found(tmp_path) -> None:
    with pytest.raises(InputNotFoundError, match="not found"):
        structure_report(tmp_path / "nowhere.onnx")


def test_macs_of_a_gemm_with_transposed_weights_count_its_inner_dimension() -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((10, 8), np.float32), "w")  # (out, in): transB=1
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    assert count_macs(model) == 8 * 10


def test_intermediate_outputs_include_the_graph_output_as_the_session_computes_it(
        tmp_path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    batch = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    tensors = intermediate_outputs(path, batch)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.get_outputs()[0].name
    expected = session.run([out], {session.get_inputs()[0].name: batch})[0]
    np.testing.assert_allclose(tensors[out], expected, rtol=1e-6, atol=1e-7)
    assert len(tensors) > 1  # the hidden tensors too, not only the output


@pytest.mark.slow
def test_real_model_structure(resnet8_onnx) -> None:
    report = structure_report(resnet8_onnx)
    assert check_io_contract(report) == []
    assert report["inputs"][0]["name"] == "input"
    assert isinstance(report["inputs"][0]["shape"][0], str)  # dynamic batch
    assert report["outputs"][0]["shape"][1] == 10
    # MLPerf Tiny quotes ~12.5 M MACs for ResNet8.
    assert 12.4e6 < report["macs_per_image"] < 12.6e6
    assert report["op_inventory"]["Conv"] == 9
    # Parameters are the float initializers (numpy over the file), not the Reshape shape.
    import onnx
    from onnx import numpy_helper

    arrays = [numpy_helper.to_array(t) for t in onnx.load(str(resnet8_onnx)).graph.initializer]
    assert report["parameters"] == sum(a.size for a in arrays if a.dtype.kind == "f")
    assert report["parameters"] < sum(a.size for a in arrays)
    # Every BatchNormalization is a Mul then an Add right after its Conv.
    assert report["batchnorm_mul_add"] == 7 == report["op_inventory"]["Mul"]
    assert "quantization" not in report
