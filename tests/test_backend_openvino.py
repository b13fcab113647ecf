"""The OpenVINO runner (issue 22): the real converted ResNet8 on real images against a bare ONNX
Runtime loop, precision as an explicit, checked choice, and the record stating the precision in
effect (read back from the compiled model) and the device."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli_runner import assert_refused, run, run_json
from conftest import cifar_test_images, in_ci, shared_path
from model_factory import (
    CIFAR_MEAN,
    CIFAR_STD,
    hand_preprocess,
    make_classifier,
    wrap_pytorch_style,
)
from resnet8_onnx.backends import load_backend
from resnet8_onnx.backends.openvino import runner as ov_runner

if not in_ci():  # CI installs the openvino extra: there a missing package fails
    pytest.importorskip("openvino")


def bare_ort(path, x: np.ndarray) -> np.ndarray:
    """The reference: one ONNX Runtime session, one run, nothing of this package."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def has_bf16() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    return cifar_test_images(1000)


@pytest.mark.shared
def test_f32_equals_a_bare_onnx_runtime_loop_on_real_images(resnet8_onnx, images) -> None:
    x, _ = images
    expected = bare_ort(resnet8_onnx, x)
    runner = load_backend(resnet8_onnx, "openvino")
    got = runner.predict(x.astype(np.uint8))
    assert runner.info.extra["inference_precision"] == "f32"  # the default, read back
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.shared
def test_bf16_in_effect_where_the_cpu_has_it(resnet8_onnx, images) -> None:
    if not has_bf16():
        pytest.skip("this CPU has no bf16 (OpenVINO lists no BF16 capability)")
    x, _ = images
    expected = bare_ort(resnet8_onnx, x)
    runner = load_backend(resnet8_onnx, "openvino", precision="bf16")
    got = runner.predict(x)
    assert runner.info.extra["inference_precision"] == "bf16"
    assert runner.info.extra["compute_dtype"] == "bfloat16"
    diff = np.abs(got - expected).max()
    assert 1e-4 < diff < 0.5  # visibly not f32 arithmetic, still the same model
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.98


def test_a_precision_the_cpu_lacks_is_refused_not_fallen_back(tmp_path, capsys,
                                                              monkeypatch) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    monkeypatch.setattr(ov_runner, "optimization_capabilities", lambda core: ("FP32", "INT8"))
    for precision in ("bf16", "f16"):
        assert_refused(capsys, 2, f"lacks {precision}", "evaluate", str(model), "--runtime",
                       "openvino", "--precision", precision, "--data-dir", str(tmp_path),
                       "--json", str(tmp_path / "e.json"), outputs=(tmp_path / "e.json",))


def test_a_fallback_read_back_from_the_compiled_model_is_refused(tmp_path,
                                                                  monkeypatch) -> None:
    """Even when the capability list says yes, the record never states a precision the
    compiled model does not compute in: OpenVINO compiling for f32 when bf16 was asked is
    exit 2."""
    model = make_classifier(tmp_path / "m.onnx")
    real_core = ov_runner.openvino_core

    class FallingBack:
        def __init__(self) -> None:
            self.core = real_core()

        def __getattr__(self, name):
            return getattr(self.core, name)

        def compile_model(self, model, device, config):
            return self.core.compile_model(model, device, {**config,
                                                           "INFERENCE_PRECISION_HINT": "f32"})

    monkeypatch.setattr(ov_runner, "openvino_core", FallingBack)
    monkeypatch.setattr(ov_runner, "optimization_capabilities",
                        lambda core: ("FP32", "BF16", "FP16"))
    from resnet8_onnx.support.errors import UsageError

    with pytest.raises(UsageError, match="compiled the model for f32 although bf16"):
        load_backend(model, "openvino", precision="bf16")


def test_the_record_states_precision_in_effect_and_device(tmp_path, capsys) -> None:
    from cifar_factory import make_images, write_png_folder

    model = make_classifier(tmp_path / "m.onnx")
    imgs, labels = make_images(20)
    data = write_png_folder(tmp_path / "pngs", imgs, labels, [f"{i:05d}" for i in range(20)])
    record = run_json(capsys, "evaluate", str(model), "--runtime", "openvino",
                      "--data-dir", str(data))
    info = record["model"]
    assert info["backend"] == "openvino"
    assert (info["inference_precision"], info["precision_source"]) == ("f32", "default")
    assert info["device"].startswith("CPU")
    # the outputs are those of ONNX Runtime on the same file
    ref = run_json(capsys, "evaluate", str(model), "--data-dir", str(data))
    assert ref["model"]["backend"] == "onnxruntime"
    assert ref["metrics"]["correct"] == record["metrics"]["correct"]


def test_precision_stated_in_the_file_is_used_and_said_where_from(tmp_path) -> None:
    if not has_bf16():
        pytest.skip("this CPU has no bf16 (OpenVINO lists no BF16 capability)")
    path = make_classifier(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {ov_runner.METADATA_PRECISION: "bf16"})
    onnx.save(model, str(path))
    runner = load_backend(path, "openvino")
    assert (runner.info.extra["inference_precision"],
            runner.info.extra["precision_source"]) == ("bf16", "metadata")
    runner = load_backend(path, "openvino", precision="f32")  # the option wins
    assert (runner.info.extra["inference_precision"],
            runner.info.extra["precision_source"]) == ("f32", "option")


def test_nchw_fixed_batch_pytorch_style_model(tmp_path, resnet8_onnx, images) -> None:
    """A PyTorch-style export (NCHW, Normalize, batch fixed at 1) with the spec as options:
    OpenVINO's predictions are ONNX Runtime's on the hand-preprocessed tensors."""
    wrapped = wrap_pytorch_style(resnet8_onnx, tmp_path / "torch_style.onnx", batch=1)
    x, _ = images
    x = x[:37].astype(np.uint8)
    session = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"])
    prepared = hand_preprocess(x)
    expected = np.concatenate([session.run(None, {"x": prepared[i:i + 1]})[0]
                               for i in range(len(x))])
    spec = {"scale": 1 / 255, "mean": CIFAR_MEAN, "std": CIFAR_STD}
    runner = load_backend(wrapped, "openvino", preprocessing=spec)
    assert runner.input_spec.fixed_batch == 1
    assert runner.input_spec.layout == "nchw"
    got = runner.predict(x)
    assert got.shape == expected.shape
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert np.abs(got - expected).max() < 1e-4


def test_openvino_ir_defaults_to_openvino(tmp_path) -> None:
    import openvino as ov

    path = make_classifier(tmp_path / "m.onnx")
    ov.save_model(ov.Core().read_model(str(path)), str(tmp_path / "m.xml"),
                  compress_to_fp16=False)
    runner = load_backend(tmp_path / "m.xml")
    x = np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    assert runner.info.name == "openvino"
    assert np.abs(runner.predict(x) - bare_ort(path, x.astype(np.float32))).max() < 1e-5
    (tmp_path / "m.bin").unlink()  # an IR without its weights: not found, exit 3
    from resnet8_onnx.support.errors import InputNotFoundError

    with pytest.raises(InputNotFoundError, match=r"m\.bin belongs beside"):
        load_backend(tmp_path / "m.xml")


def test_unknown_runtime_or_precision_lists_the_valid_ones(tmp_path, capsys) -> None:
    model = str(make_classifier(tmp_path / "m.onnx"))
    assert_refused(capsys, 2, "choose one of onnxruntime, openvino", "evaluate", model,
                   "--runtime", "tensorrt")
    assert_refused(capsys, 2, "choose one of f32, bf16, f16", "compare", model, model,
                   "--runtime", "openvino", "--precision", "int4")
    # a precision for a model no OpenVINO runs would be ignored: refused instead
    assert_refused(capsys, 2, "--precision applies to OpenVINO models only", "benchmark",
                   model, "--precision", "f32", "--quick")
    assert_refused(capsys, 2, "--runtime openvino reads .xml, .onnx files", "evaluate",
                   str(shared_path("models", "pretrainedResnet.tflite")), "--runtime",
                   "openvino")


def test_compare_and_benchmark_run_both_runtimes_on_one_file(tmp_path, capsys) -> None:
    from cifar_factory import make_images, write_png_folder

    model = str(make_classifier(tmp_path / "m.onnx"))
    imgs, labels = make_images(20)
    data = write_png_folder(tmp_path / "pngs", imgs, labels, [f"{i:05d}" for i in range(20)])
    record = run_json(capsys, "compare", model, model, "--runtime", "-", "--runtime",
                      "openvino", "--data-dir", str(data))
    first, second = record["models"]
    assert (first["model"]["backend"], second["model"]["backend"]) == ("onnxruntime",
                                                                       "openvino")
    assert second["versus_reference"]["agreement_fraction"] == 1.0
    assert second["versus_reference"]["max_abs_diff"] < 1e-5
    code, out, err = run(capsys, "benchmark", model, model, "--runtime", "onnxruntime",
                         "--runtime", "openvino", "--quick", "--batch-sizes", "8",
                         "--threads", "1", "--optimization", "all", "--json", "-")
    assert code == 0, err
    bench = json.loads(out)
    assert [m["backend"] for m in bench["models"]] == ["onnxruntime", "openvino"]
    assert bench["models"][1]["inference_precision"] == "f32"
