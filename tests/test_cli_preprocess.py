"""Any ONNX image classifier through the CLI: preprocessing options, PyTorch-style NCHW
models, fixed batches, several outputs, per-model specs in compare and verify, and execution
providers. Not one module's file: the preprocessing spec (test_preprocess.py) as every command
takes it. annotate is tested in test_annotate.py, test data export in test_testdata.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli_runner import assert_refused, run, run_json
from conftest import cifar_test_images, shared_path
from model_factory import SPEC, hand_preprocess, make_classifier
from resnet8_onnx.support import errors


@pytest.fixture(scope="module")
def data_dir() -> str:
    return str(shared_path("cifar-10", "cifar-10-batches-bin"))


# --------------------------------------------------------------------------- bad specs (fast)
@pytest.mark.parametrize(("option", "fragment"), [
    (["--mean", "0.5,0.5"], "2 values"), (["--std", "0.2,0,0.2"], "greater than 0"),
    (["--scale", "0"], "greater than 0"), (["--scale", "a/b"], "not a number"),
    (["--mean", "1,2,3,4"], "4 values"), (["--layout", "chw"], "not one of nhwc, nchw"),
    (["--layout", "nhwc"], "contradicts the model input 3×32×32")])
def test_wrong_specs_fail_loudly_and_write_nothing(tmp_path, capsys, option, fragment) -> None:
    model = make_classifier(tmp_path / "nchw.onnx", layout="nchw")
    report, out_dir = tmp_path / "r.json", tmp_path / "out"
    assert_refused(capsys, errors.USAGE, fragment, "evaluate", str(model), "--data-dir",
                   str(tmp_path), "--json", str(report), "--out", str(out_dir), *option,
                   outputs=(report, out_dir))


def test_metadata_contradicting_the_shape_is_invalid_input(tmp_path, capsys) -> None:
    model = onnx.load(str(make_classifier(tmp_path / "m.onnx")))  # NHWC input
    onnx.helper.set_model_props(model, {"preprocessing_spec": json.dumps({"layout": "nchw"})})
    onnx.save(model, str(tmp_path / "bad.onnx"))
    assert_refused(capsys, errors.INVALID_INPUT, "nchw (metadata) contradicts", "evaluate",
                   str(tmp_path / "bad.onnx"), "--data-dir", str(tmp_path))


def test_keras_models_refuse_a_spec(resnet8_h5, tmp_path, capsys) -> None:
    assert_refused(capsys, errors.USAGE, "keras models take raw 0-255 NHWC RGB", "evaluate",
                   str(resnet8_h5), "--data-dir", str(tmp_path), "--layout", "nchw")


def test_compare_needs_one_value_or_one_per_model(tmp_path, capsys) -> None:
    models = [str(make_classifier(tmp_path / f"m{i}.onnx", seed=i)) for i in range(3)]
    assert_refused(capsys, errors.USAGE, "--layout given 2 times for 3 models", "compare",
                   *models, "--data-dir", str(tmp_path), "--layout", "nhwc", "--layout",
                   "nhwc")


def test_several_outputs_need_a_name(tmp_path, capsys) -> None:
    model = str(make_classifier(tmp_path / "two.onnx", outputs=2))
    assert_refused(capsys, errors.USAGE, "2 outputs ('probabilities', 'flat'); choose one "
                   "with --output-name NAME", "evaluate", model, "--data-dir", str(tmp_path))
    assert_refused(capsys, errors.USAGE, "no output named 'nope'", "evaluate", model,
                   "--data-dir", str(tmp_path), "--output-name", "nope")


def test_a_bad_provider_lists_the_available_ones(tmp_path, capsys) -> None:
    model = str(make_classifier(tmp_path / "m.onnx"))
    assert_refused(capsys, errors.USAGE, "available: ", "evaluate", model, "--data-dir",
                   str(tmp_path), "--provider", "NoSuchExecutionProvider")
    _, _, err = run(capsys, "evaluate", model, "--data-dir", str(tmp_path), "--provider",
                    "nope")
    assert "CPUExecutionProvider" in err


# --------------------------------------------------------------------------- real data
@pytest.mark.shared
def test_other_shapes_are_clear_errors(tmp_path, capsys, data_dir) -> None:
    wrong = {"classes.onnx": {"classes": 1000}, "size.onnx": {"height": 64, "width": 64},
             "flat.onnx": {"rank": 2}}
    fragments = {"classes.onnx": "1000 outputs", "size.onnx": "expected a model input of 32×32×3",
                 "flat.onnx": "expected an image batch of rank 4"}
    for name, kwargs in wrong.items():
        model = make_classifier(tmp_path / name, **kwargs)
        assert_refused(capsys, errors.INVALID_INPUT, fragments[name], "evaluate", str(model),
                       "--data-dir", data_dir, "--limit", "10")
    nchw = make_classifier(tmp_path / "nchw64.onnx", layout="nchw", height=64, width=64)
    assert_refused(capsys, errors.INVALID_INPUT, "expected a model input of 3×32×32",
                   "evaluate", str(nchw), "--data-dir", data_dir, "--limit", "10")
    two = make_classifier(tmp_path / "two.onnx", outputs=2)
    assert_refused(capsys, errors.INVALID_INPUT, "8 outputs (output 'flat')", "evaluate",
                   str(two), "--data-dir", data_dir, "--limit", "10", "--output-name", "flat")
    record = run_json(capsys, "evaluate", str(two), "--data-dir", data_dir, "--limit", "10",
                      "--output-name", "probabilities", "--provider", "cpu")
    assert record["model"]["output_name"] == "probabilities"
    assert record["model"]["provider"] == "CPUExecutionProvider"


@pytest.mark.shared
@pytest.mark.slow
def test_opset9_fixed_batch_pytorch_export_matches_a_hand_written_loop(
        tmp_path, capsys, data_dir) -> None:
    """A PyTorch-1.8-style export (opset 9, NCHW, fixed batch 1, normalised input) on the full
    test set: the CLI's confusion matrix equals a bare ONNX Runtime loop's."""
    model = make_classifier(tmp_path / "export.onnx", layout="nchw", opset=9, batch=1,
                            ir_version=4, softmax=False, seed=7)
    record = run_json(capsys, "evaluate", str(model), "--data-dir", data_dir, *SPEC)

    images, labels = cifar_test_images(10_000)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = hand_preprocess(images)
    predictions = np.array([session.run(None, {"input": x[i:i + 1]})[0][0].argmax()
                            for i in range(len(x))])
    matrix = np.zeros((10, 10), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    assert record["metrics"]["correct"] == int((predictions == labels).sum())
    assert record["metrics"]["confusion_matrix"] == matrix.tolist()
    spec = record["model"]["preprocessing"]
    assert spec["layout"] == "nchw"
    assert spec["sources"]["layout"] == "input shape"
    assert spec["sources"]["scale"] == "option"
    assert spec["scale_text"] == "1/255"
    assert record["model"]["fixed_batch"] == 1
    assert any("fixed at 1" in note for note in record["model"]["notes"])


@pytest.mark.shared
def test_a_fixed_batch_of_8_pads_the_last_batch(tmp_path, capsys, data_dir) -> None:
    model = make_classifier(tmp_path / "b8.onnx", layout="nchw", batch=8, seed=2)
    record = run_json(capsys, "evaluate", str(model), "--data-dir", data_dir, "--limit", "100",
                      "--batch-size", "50", *SPEC)  # 50 = 6×8 + 2: every call pads
    # --limit takes a class-balanced selection; the images it picks come from the data
    # layer, the inference below is a hand-written loop independent of the tool's.
    from resnet8_onnx.data import load_dataset

    chosen = load_dataset(data_dir, download=False).with_limit(100)
    images, labels = chosen.images.astype(np.float32), chosen.labels
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = hand_preprocess(images)
    x = np.concatenate([x, np.repeat(x[-1:], 4, axis=0)])  # 104 = 13 × 8
    predictions = np.concatenate([session.run(None, {"input": x[i:i + 8]})[0].argmax(1)
                                  for i in range(0, 104, 8)])[:100]
    assert record["metrics"]["correct"] == int((predictions == labels).sum())
    assert record["metrics"]["total"] == 100


@pytest.mark.shared
@pytest.mark.slow
def test_compare_keras_and_a_pytorch_style_model_side_by_side(
        resnet8_h5, pytorch_resnet8, keras_full_outputs, cifar_test, capsys, data_dir) -> None:
    record = run_json(capsys, "compare", str(resnet8_h5), str(pytorch_resnet8), "--data-dir",
                      data_dir, "--layout", "nhwc", "--layout", "nchw", "--scale", "-",
                      "--scale", "1/255", "--mean", "-", "--mean", SPEC[3], "--std", "-",
                      "--std", SPEC[5])
    keras_correct = int((keras_full_outputs.argmax(1) == cifar_test.labels).sum())
    keras, onnx_model = record["models"]
    assert keras["metrics"]["correct"] == keras_correct
    assert onnx_model["metrics"]["correct"] == keras_correct
    assert onnx_model["versus_reference"]["agreement"] == 10_000
    assert onnx_model["model"]["preprocessing"]["layout"] == "nchw"


@pytest.mark.shared
def test_verify_takes_the_candidates_spec(resnet8_h5, pytorch_resnet8, capsys,
                                          data_dir) -> None:
    code, _, err = run(capsys, "verify", str(resnet8_h5), str(pytorch_resnet8), "--data-dir",
                       data_dir, "--limit", "64", *SPEC)
    assert code == errors.OK, err
    code, _, _ = run(capsys, "verify", str(resnet8_h5), str(pytorch_resnet8), "--data-dir",
                     data_dir, "--limit", "64")
    assert code == errors.VERIFICATION_FAILED


@pytest.mark.shared
def test_benchmark_preprocesses_before_timing(tmp_path, capsys, data_dir) -> None:
    model = make_classifier(tmp_path / "nchw.onnx", layout="nchw")
    record = run_json(capsys, "benchmark", str(model), "--data-dir", data_dir, "--quick",
                      "--batch-sizes", "1,8", "--threads", "1", "--optimization", "all",
                      "--min-seconds", "0", "--min-iterations", "1", *SPEC)
    assert record["models"][0]["preprocessing"]["layout"] == "nchw"
    assert len(record["results"]) == 2




def test_output_tensor_option_is_output_name_everywhere(tmp_path, capsys) -> None:
    """``--output NAME`` became ``--output-name NAME`` (``-o/--output`` is a file in convert
    and quantize); the old spelling is refused in one line, never taken as an abbreviation."""
    model = str(make_classifier(tmp_path / "two.onnx", outputs=2))
    for command in ("evaluate", "verify", "compare", "benchmark"):
        models = [model, model] if command in ("verify", "compare") else [model]
        assert_refused(capsys, errors.USAGE, "--output-name NAME", command, *models,
                       "--data-dir", str(tmp_path), "--output", "flat")
    assert_refused(capsys, errors.USAGE, "no output named 'nope'", "benchmark", model,
                   "--output-name", "nope", "--quick")
