"""testdata: inputs and outputs saved in the ONNX Model Zoo layout, replayable elsewhere.

The ``.pb`` files are read back with ``onnx.numpy_helper`` and checked against a bare ONNX
Runtime session, so the test rests on neither this project's runner nor its preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from cli_runner import assert_refused, run_json
from conftest import cifar_test_images, shared_path
from model_factory import SPEC, hand_preprocess, make_classifier, synthetic_dataset
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.backends.onnxrt.testdata import check_destination, save_test_data
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import OutputError, UsageError


def read_pb(path: Path) -> tuple[str, np.ndarray]:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return tensor.name, numpy_helper.to_array(tensor)


def bare_run(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_each_set_replays_through_a_bare_onnx_runtime(tmp_path: Path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    images = synthetic_dataset(5).images
    out = tmp_path / "test_data"
    account = save_test_data(onnxrt.load(model), images, out, count=3)
    sets = sorted(p.name for p in out.iterdir())
    assert sets == ["test_data_set_0", "test_data_set_1", "test_data_set_2"]
    for i, name in enumerate(sets):
        in_name, x = read_pb(out / name / "input_0.pb")
        out_name, y = read_pb(out / name / "output_0.pb")
        assert (in_name, out_name) == ("input", "probabilities")  # the graph's own names
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, images[i:i + 1].astype(np.float32))  # raw pixels
        np.testing.assert_allclose(y, bare_run(model, x), rtol=1e-6, atol=1e-7)
    assert account["images"] == 3
    assert [s["images"] for s in account["sets"]] == [1, 1, 1]
    assert not list(tmp_path.glob(".*.part"))


def test_a_fixed_batch_writes_full_batches_padded_with_the_last_image(tmp_path: Path) -> None:
    model = make_classifier(tmp_path / "m.onnx", batch=4, layout="nchw")
    images = synthetic_dataset(6, seed=3).images
    out = tmp_path / "td"
    account = save_test_data(onnxrt.load(model), images, out, count=6)
    assert [s["images"] for s in account["sets"]] == [4, 2]
    _, first = read_pb(out / "test_data_set_0" / "input_0.pb")
    _, last = read_pb(out / "test_data_set_1" / "input_0.pb")
    assert first.shape == last.shape == (4, 3, 32, 32)  # NCHW, as the model takes it
    nchw = images.astype(np.float32).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(first, nchw[:4])
    np.testing.assert_array_equal(last, nchw[[4, 5, 5, 5]])
    _, y = read_pb(out / "test_data_set_1" / "output_0.pb")
    np.testing.assert_allclose(y, bare_run(model, last), rtol=1e-6, atol=1e-7)


def test_count_is_capped_by_the_images_and_must_be_positive(tmp_path: Path) -> None:
    backend = onnxrt.load(make_classifier(tmp_path / "m.onnx"))
    images = synthetic_dataset(2).images
    assert save_test_data(backend, images, tmp_path / "a", count=10)["images"] == 2
    with pytest.raises(UsageError, match="at least 1"):
        save_test_data(backend, images, tmp_path / "b", count=0)
    assert not (tmp_path / "b").exists()


def test_an_existing_directory_is_kept_without_force_and_replaced_with_it(
        tmp_path: Path) -> None:
    backend = onnxrt.load(make_classifier(tmp_path / "m.onnx"))
    images = synthetic_dataset(3).images
    out = tmp_path / "td"
    (out / "test_data_set_7").mkdir(parents=True)
    with pytest.raises(OutputError, match="already exists"):
        save_test_data(backend, images, out, count=1)
    assert [p.name for p in out.iterdir()] == ["test_data_set_7"]
    save_test_data(backend, images, out, count=2, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["test_data_set_0", "test_data_set_1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "td"]  # no leftovers
    with pytest.raises(OutputError, match="does not exist"):
        check_destination(tmp_path / "missing" / "td")


def test_a_failure_midway_leaves_no_directory(tmp_path: Path) -> None:
    backend = onnxrt.load(make_classifier(tmp_path / "m.onnx"))
    calls = []

    class Failing:
        def run(self, names, feeds):
            calls.append(1)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            return backend.session.run(names, feeds)

    backend.session = Failing()
    with pytest.raises(OutputError, match="cannot write test data"):
        save_test_data(backend, synthetic_dataset(3).images, tmp_path / "td", count=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.fixture(scope="module")
def data_dir() -> str:
    return str(shared_path("cifar-10", "cifar-10-batches-bin"))


@pytest.mark.shared
def test_saved_test_data_replays_through_onnx_runtime(tmp_path, capsys, data_dir) -> None:
    model = make_classifier(tmp_path / "b8.onnx", layout="nchw", batch=8, opset=9,
                            ir_version=4)
    target = tmp_path / "replay"
    record = run_json(capsys, "evaluate", str(model), "--data-dir", data_dir, "--limit", "40",
                      *SPEC, "--save-test-data", str(target), "--count", "10")
    assert [s["images"] for s in record["test_data"]["sets"]] == [8, 2]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    images, _ = cifar_test_images(10)
    for i, folder in enumerate(sorted(target.glob("test_data_set_*"))):
        x = onnx.TensorProto()
        x.ParseFromString((folder / "input_0.pb").read_bytes())
        y = onnx.TensorProto()
        y.ParseFromString((folder / "output_0.pb").read_bytes())
        assert x.name == "input"
        assert y.name == "probabilities"
        inputs = numpy_helper.to_array(x)
        assert inputs.shape == (8, 3, 32, 32)
        expected = hand_preprocess(images[8 * i:8 * i + 8])
        np.testing.assert_allclose(inputs[:len(expected)], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(session.run(None, {x.name: inputs})[0],
                                      numpy_helper.to_array(y))
    assert_refused(capsys, errors.OUTPUT_ERROR, "already exists", "evaluate", str(model),
                   "--data-dir", data_dir, "--limit", "40", *SPEC, "--save-test-data",
                   str(target))
