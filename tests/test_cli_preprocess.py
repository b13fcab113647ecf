"""Any ONNX image classifier through the CLI: preprocessing options, PyTorch-style NCHW
models, fixed batches, several outputs, annotate (metadata and --embed), per-model specs in
compare, test data export and execution providers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from conftest import cifar_test_images, shared_path
from model_factory import CIFAR_MEAN, CIFAR_STD, make_classifier, wrap_pytorch_style
from resnet8_onnx import errors
from resnet8_onnx.cli import main

SPEC = ["--scale", "1/255", "--mean", ",".join(map(str, CIFAR_MEAN)),
        "--std", ",".join(map(str, CIFAR_STD))]


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``main`` in process (argparse's usage errors exit through SystemExit)."""
    try:
        code = main(["-q", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *args: str) -> dict:
    code, out, err = run(capsys, *args, "--json", "-")
    assert code == 0, err
    return json.loads(out)


def assert_refused(capsys, code_expected: int, fragment: str, *args: str,
                   outputs: tuple[Path, ...] = ()) -> None:
    code, _out, err = run(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == code_expected, err
    assert len(lines) == 1, err
    assert fragment in lines[0], lines[0]
    for path in outputs:
        assert not path.exists(), path


def hand_preprocess(images: np.ndarray) -> np.ndarray:
    """PyTorch's ToTensor + Normalize, written independently of resnet8_onnx.preprocess."""
    x = images.astype(np.float32) * np.float32(1 / 255)
    x = (x - np.array(CIFAR_MEAN, np.float32)) / np.array(CIFAR_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@pytest.fixture(scope="module")
def data_dir() -> str:
    return str(shared_path("cifar-10", "cifar-10-batches-bin"))


@pytest.fixture(scope="module")
def pytorch_resnet8(resnet8_onnx, tmp_path_factory) -> Path:
    """The real ResNet8 behind a PyTorch-style interface (NCHW, normalised), no metadata."""
    return wrap_pytorch_style(resnet8_onnx, tmp_path_factory.mktemp("pt") / "pt_resnet8.onnx")


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
                   "with --output NAME", "evaluate", model, "--data-dir", str(tmp_path))
    assert_refused(capsys, errors.USAGE, "no output named 'nope'", "evaluate", model,
                   "--data-dir", str(tmp_path), "--output", "nope")


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
                   str(two), "--data-dir", data_dir, "--limit", "10", "--output", "flat")
    record = run_json(capsys, "evaluate", str(two), "--data-dir", data_dir, "--limit", "10",
                      "--output", "probabilities", "--provider", "cpu")
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
def test_pytorch_style_resnet8_annotate_then_evaluate_without_flags(
        pytorch_resnet8, keras_full_outputs, cifar_test, tmp_path, capsys, data_dir) -> None:
    flagged = run_json(capsys, "evaluate", str(pytorch_resnet8), "--data-dir", data_dir, *SPEC)
    # the wrapped model is the original ResNet8 exactly when given its spec
    keras_correct = int((keras_full_outputs.argmax(1) == cifar_test.labels).sum())
    assert flagged["metrics"]["correct"] == keras_correct
    assert flagged["metrics"]["accuracy"] > 0.85
    unflagged = run_json(capsys, "evaluate", str(pytorch_resnet8), "--data-dir", data_dir,
                         "--limit", "500")
    assert unflagged["metrics"]["accuracy"] < 0.5  # raw pixels into a normalised model

    annotated = tmp_path / "annotated.onnx"
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(flagged["metrics"]["class_names"]) + "\n")
    code, _, err = run(capsys, "annotate", str(pytorch_resnet8), "-o", str(annotated), *SPEC,
                       "--class-names", str(names))
    assert code == 0, err
    before, after = onnx.load(str(pytorch_resnet8)), onnx.load(str(annotated))
    assert after.graph.SerializeToString() == before.graph.SerializeToString()
    props = {p.key: p.value for p in after.metadata_props}
    assert json.loads(props["class_names"]) == flagged["metrics"]["class_names"]

    again = run_json(capsys, "evaluate", str(annotated), "--data-dir", data_dir)
    assert again["metrics"] == flagged["metrics"]
    assert set(again["model"]["preprocessing"]["sources"].values()) == {"metadata",
                                                                        "input type"}


@pytest.mark.shared
@pytest.mark.slow
def test_annotate_embed_gives_a_raw_pixel_model_equal_to_original_plus_spec(
        pytorch_resnet8, tmp_path, capsys, data_dir) -> None:
    embedded = tmp_path / "embedded.onnx"
    account = run_json(capsys, "annotate", str(pytorch_resnet8), "-o", str(embedded), *SPEC,
                       "--embed", "--data-dir", data_dir)
    assert account["parity"]["samples"] == 10_000
    assert account["parity"]["argmax_agreement"] == 10_000

    assert account["parity"]["max_abs_diff"] <= 1e-5

    # Independently of the tool: the file itself on raw pixels vs the original on
    # hand-preprocessed ones (a slice: annotate already compared all 10,000).
    images, _ = cifar_test_images(2_000)
    new = ort.InferenceSession(str(embedded), providers=["CPUExecutionProvider"])
    old = ort.InferenceSession(str(pytorch_resnet8), providers=["CPUExecutionProvider"])
    inp = new.get_inputs()[0]
    assert inp.type == "tensor(uint8)"
    assert inp.shape[1:] == [32, 32, 3]
    got = new.run(None, {inp.name: images.astype(np.uint8)})[0]
    want = old.run(None, {"x": hand_preprocess(images)})[0]
    assert np.abs(got - want).max() <= 1e-5
    assert int((got.argmax(1) == want.argmax(1)).sum()) == 2_000
    ops = {n.op_type for n in onnx.load(str(embedded)).graph.node[:8]}
    assert {"Cast", "Mul", "Sub", "Div", "Transpose"} <= ops


@pytest.mark.shared
def test_annotate_refusals_write_nothing(pytorch_resnet8, tmp_path, capsys, data_dir,
                                         monkeypatch) -> None:
    out = tmp_path / "out.onnx"
    # --embed proves parity on real images: none found (offline, empty cache) → exit 3
    assert_refused(capsys, errors.NOT_FOUND, "CIFAR-10", "annotate", str(pytorch_resnet8),
                   "-o", str(out), "--embed", *SPEC, outputs=(out,))
    out.write_bytes(b"keep")
    assert_refused(capsys, errors.OUTPUT_ERROR, "already exists", "annotate",
                   str(pytorch_resnet8), "-o", str(out), *SPEC)
    assert out.read_bytes() == b"keep"
    out.unlink()
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    assert_refused(capsys, errors.INVALID_INPUT, "2 class names given for a model with 10",
                   "annotate", str(pytorch_resnet8), "-o", str(out), "--class-names",
                   str(names), outputs=(out,))
    assert_refused(capsys, errors.USAGE, "contradicts", "annotate", str(pytorch_resnet8),
                   "-o", str(out), "--layout", "nhwc", outputs=(out,))

    # An embedding that does not reproduce original + spec is caught before writing.
    import resnet8_onnx.annotate as annotate_module
    from resnet8_onnx.preprocess import Preprocessing, embed

    monkeypatch.setattr(annotate_module, "embed",
                        lambda model, spec, **kw: embed(model, Preprocessing(layout="nchw"),
                                                        **kw))
    assert_refused(capsys, errors.VERIFICATION_FAILED, "nothing written", "annotate",
                   str(pytorch_resnet8), "-o", str(out), "--embed", *SPEC, "--data-dir",
                   data_dir, "--limit", "64", outputs=(out,))


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


@pytest.mark.shared
def test_benchmark_preprocesses_before_timing(tmp_path, capsys, data_dir) -> None:
    model = make_classifier(tmp_path / "nchw.onnx", layout="nchw")
    record = run_json(capsys, "benchmark", str(model), "--data-dir", data_dir, "--quick",
                      "--batch-sizes", "1,8", "--threads", "1", "--optimization", "all",
                      "--min-seconds", "0", "--min-iterations", "1", *SPEC)
    assert record["models"][0]["preprocessing"]["layout"] == "nchw"
    assert len(record["results"]) == 2


def test_per_model_options_spread_in_model_order() -> None:
    from resnet8_onnx.compare import per_model_options

    spread = per_model_options(["a.h5", "b.onnx", "c.onnx"], {
        "layout": ["nchw"], "scale": [None, 0.5, None], "output": ["-", "logits", "-"],
        "mean": None})
    assert spread == [{}, {"layout": "nchw", "scale": 0.5, "output": "logits"},
                      {"layout": "nchw"}]
