"""quantize.engine: the float model checked up front, ONNX Runtime's quantiser, sessions."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_factory import make_classifier, synthetic_dataset
from quantize_helpers import SOURCE_METADATA, cli_setup, float_model, quick, run_cli
from resnet8_onnx import quantize as q
from resnet8_onnx.quantize.engine import (
    calibration_reader,
    check_excluded_nodes,
    cpu_session,
    run_outputs,
    time_sessions,
)
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InvalidInputError, UsageError


def test_bad_model_files(tmp_path, capsys) -> None:
    setup = cli_setup(tmp_path)
    _, cal, out = setup
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    cases = [(tmp_path / "missing.onnx", errors.NOT_FOUND, "not found"),
             (text, errors.INVALID_INPUT, "not an ONNX model")]
    quantised = tmp_path / "already.onnx"
    q.quantize(setup[0], quantised, synthetic_dataset(40), q.Recipe(), min_agreement=0,
               timing_images=16, timing_rounds=1)
    cases.append((quantised, errors.INVALID_INPUT, "already quantised"))
    for model, code, fragment in cases:
        got, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(cal))
        assert got == code, err
        assert len(err) == 1, err
        assert fragment in err[0], err
        assert not out.exists()


def test_exclude_keeps_a_node_float(tmp_path) -> None:
    _, _, record = quick(tmp_path, q.Recipe(exclude=("conv",)))
    written = onnx.load(str(tmp_path / "m_int8.onnx"))
    conv = [n for n in written.graph.node if n.name == "conv"]
    assert conv
    assert conv[0].op_type == "Conv"
    producers = {o: n.op_type for n in written.graph.node for o in n.output}
    assert producers.get(conv[0].input[1]) != "DequantizeLinear"  # float weights
    assert record.recipe.exclude == ("conv",)
    with pytest.raises(UsageError, match="no such node"):
        quick(tmp_path, q.Recipe(exclude=("nope",)), force=True)


def test_the_float_model_is_described_from_the_file(tmp_path) -> None:
    path = float_model(tmp_path / "m.onnx")
    model = q.inspect_float_model(path)
    assert model.input_name == "input"
    assert model.image_shape == (32, 32, 3)
    assert model.size_bytes == path.stat().st_size
    assert model.metadata == SOURCE_METADATA
    assert "conv" in model.node_names
    assert len(model.sha256) == 64


@pytest.mark.parametrize(("make", "fragment"), [
    (lambda d: make_classifier(d / "m.onnx", rank=2), "rank 2"),
    (lambda d: make_classifier(d / "m.onnx").rename(d / "m.bin"), "takes an ONNX model"),
])
def test_models_quantize_cannot_take_are_refused(tmp_path, make, fragment) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        q.inspect_float_model(make(tmp_path))


def test_external_tensor_data_is_refused(tmp_path) -> None:
    model = onnx.load(str(make_classifier(tmp_path / "m.onnx")))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    with pytest.raises(InvalidInputError, match="external tensor data"):
        q.inspect_float_model(tmp_path / "ext.onnx")


def test_exclusions_must_name_nodes_of_the_model(tmp_path) -> None:
    path = float_model(tmp_path / "m.onnx")
    model = q.inspect_float_model(path)
    check_excluded_nodes(q.Recipe(exclude=("conv",)), path, model)
    check_excluded_nodes(q.Recipe(), path, model)
    with pytest.raises(UsageError, match=r"'ghost': no such node in m\.onnx"):
        check_excluded_nodes(q.Recipe(exclude=("conv", "ghost")), path, model)


def test_calibration_reader_feeds_every_image_once_per_pass_as_float() -> None:
    images = synthetic_dataset(25).images
    reader = calibration_reader("x", images, batch=10)
    assert len(reader) == 5  # equal batches: 5 of 5, never 10, 10 and a short 5
    for _ in range(2):  # rewind starts over
        fed = []
        while (batch := reader.get_next()) is not None:
            assert set(batch) == {"x"}
            assert batch["x"].dtype == np.float32
            fed.append(batch["x"])
        np.testing.assert_array_equal(np.concatenate(fed), images.astype(np.float32))
        assert [len(b) for b in fed] == [5] * 5
        reader.rewind()


def test_run_outputs_equal_one_bare_onnx_runtime_call(tmp_path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    images = synthetic_dataset(23).images
    bare = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = bare.run(None, {"input": images.astype(np.float32)})[0]
    got = run_outputs(cpu_session(path, threads=1), "input", images, batch_size=8)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_timing_gives_one_positive_figure_per_session(tmp_path) -> None:
    sessions = [cpu_session(make_classifier(tmp_path / f"m{i}.onnx", seed=i), threads=1)
                for i in range(3)]
    ips = time_sessions(sessions, "input", synthetic_dataset(16).images, batch_size=8, rounds=1)
    assert len(ips) == 3
    assert all(v > 0 for v in ips)
