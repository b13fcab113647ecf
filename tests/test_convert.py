"""Keras → ONNX conversion: the safe pre-scan, the real ResNet8, other classifiers, failures.

Pre-scan tests write hand-made configs with h5py/zipfile and need no TensorFlow. Conversion
tests share module-scoped models and conversions because TensorFlow and tf2onnx are slow.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import cifar_test_images, shared_path
from keras_factory import LAMBDA, SAFE_LAYERS, functional, one_line_error, write_h5
from resnet8_onnx import __version__
from resnet8_onnx.backends.keras import files as keras_io
from resnet8_onnx.backends.keras.files import inspect_keras_file, load_keras_model, output_kind_of
from resnet8_onnx.convert import keras_to_onnx as convert_mod
from resnet8_onnx.convert.keras_to_onnx import CIFAR10_CLASSES, convert
from resnet8_onnx.records import Conversion
from resnet8_onnx.support.errors import (
    InvalidInputError,
    OutputError,
    UnsafeInputError,
    UsageError,
    VerificationFailedError,
)


def ort_run(path: str | Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]



def test_importing_convert_does_not_import_tensorflow() -> None:
    code = ("import sys, resnet8_onnx.convert.keras_to_onnx, resnet8_onnx.backends.keras.runner\n"
            "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)



# ---------------------------------------------------------------------------------------------
# Failures that must happen before any expensive work (no TensorFlow needed)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_heavy_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading or converting a test failure: these errors must come first."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("expensive work started before the cheap checks")

    monkeypatch.setattr(convert_mod, "load_keras_model", forbidden)
    monkeypatch.setattr(convert_mod, "import_tensorflow", forbidden)


@pytest.mark.usefixtures("no_heavy_work")
def test_output_in_missing_directory_fails_first(tmp_path: Path) -> None:
    source = write_h5(tmp_path / "m.h5", functional(*SAFE_LAYERS))
    with pytest.raises(OutputError) as excinfo:
        convert(source, tmp_path / "missing" / "out.onnx")
    one_line_error(excinfo, "does not exist")


@pytest.mark.usefixtures("no_heavy_work")
def test_existing_output_is_kept_without_force(tmp_path: Path) -> None:
    source = write_h5(tmp_path / "m.h5", functional(*SAFE_LAYERS))
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous")
    with pytest.raises(OutputError) as excinfo:
        convert(source, out)
    one_line_error(excinfo, "already exists")
    assert out.read_bytes() == b"previous"


@pytest.mark.usefixtures("no_heavy_work")
def test_unsupported_opset_and_unsafe_source_fail_before_loading(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as excinfo:
        convert(tmp_path / "m.h5", tmp_path / "out.onnx", opset=9)
    one_line_error(excinfo, "opset 9")
    unsafe = write_h5(tmp_path / "lam.h5", functional(LAMBDA))
    with pytest.raises(UnsafeInputError):
        convert(unsafe, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


# ---------------------------------------------------------------------------------------------
# TensorFlow: models built here, and the real ResNet8
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras() -> Any:
    _, keras = keras_io.import_tensorflow()
    return keras


def randomise(model: Any, seed: int) -> Any:
    """Replace freshly initialised weights by random ones so BN statistics matter too."""
    rng = np.random.default_rng(seed)
    for lay in model.layers:
        weights = lay.get_weights()
        if weights:
            new = [rng.normal(0, 0.2, w.shape).astype(np.float32) for w in weights]
            if type(lay).__name__ == "BatchNormalization":
                new[-1] = np.abs(new[-1]) + 0.5  # moving variance must be positive
            lay.set_weights(new)
    return model


@pytest.fixture(scope="module")
def small_models(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A logits Sequential CNN and a softmax functional model with Add/Concatenate."""
    layers = keras.layers
    sequential = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Dropout(0.3),
        layers.Flatten(),
        layers.Dense(10),
    ], name="seq_logits")
    inp = keras.Input((32, 32, 3))
    x = layers.Rescaling(1 / 64)(inp)
    a = layers.Conv2D(6, 3, padding="same")(x)
    b = layers.Conv2D(6, 1)(x)
    merged = layers.Concatenate()([layers.Add()([a, b]), x])
    y = layers.BatchNormalization()(merged)
    y = layers.GlobalAveragePooling2D()(layers.ReLU()(y))
    out = layers.Dense(10, activation="softmax")(y)
    func = keras.Model(inp, out, name="func_softmax")
    folder = tmp_path_factory.mktemp("small_models")
    paths = {}
    for name, model in (("seq", randomise(sequential, 1)), ("func", randomise(func, 2))):
        for suffix in (".h5", ".keras"):
            path = folder / f"{name}{suffix}"
            model.save(path)
            paths[f"{name}{suffix}"] = path
    return paths


@pytest.fixture(scope="module")
def lambda_models(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    """A model whose Lambda writes a marker file when called, saved as .h5 and .keras."""
    folder = tmp_path_factory.mktemp("lambda")
    marker = folder / "pwned"
    fn = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).write_text('x'), t)[1]")
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(fn, name="lam")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    assert marker.exists(), "premise: calling the lambda writes the marker"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(folder / "lam.h5")
        model.save(folder / "lam.keras")
    marker.unlink()
    return folder / "lam.h5", folder / "lam.keras", marker


@pytest.mark.slow
def test_lambda_model_is_refused_and_its_code_never_runs(
    lambda_models: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    h5, zipped, marker = lambda_models
    for path in (h5, zipped):
        for attempt in (inspect_keras_file, load_keras_model,
                        lambda p: convert(p, tmp_path / "out.onnx")):
            with pytest.raises(UnsafeInputError) as excinfo:
                attempt(path)
            one_line_error(excinfo, f"{path}: refuses layer 'lam' of class Lambda",
                           "it would run code stored in the file")
    assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.slow
def test_frozen_layer_allowlist_matches_installed_keras(keras: Any) -> None:
    import inspect

    exported = {name for name in dir(keras.layers)
                if inspect.isclass(getattr(keras.layers, name))
                and issubclass(getattr(keras.layers, name), keras.layers.Layer)}
    assert exported >= keras_io._LAYER_CLASSES
    unclassified = exported - keras_io._LAYER_CLASSES - set(keras_io._CODE_RUNNING)
    assert unclassified == {"Layer", "Wrapper"}  # a new Keras layer needs a decision here


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seq.h5", "seq.keras", "func.h5", "func.keras"])
def test_small_models_convert_and_match_keras(
    small_models: dict[str, Path], name: str, tmp_path: Path
) -> None:
    source = small_models[name]
    model = load_keras_model(source)
    out = tmp_path / "model.onnx"
    result = convert(source, out, opset=14 if name == "func.keras" else 17)
    kind = "logits" if name.startswith("seq") else "probabilities"
    assert (result.output_name, result.output_kind, result.num_classes) == (kind, kind, 10)
    assert output_kind_of(model) == kind
    x = np.random.default_rng(3).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(keras_io.call_model(model, x))
    got = ort_run(out, x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.ptp(expected, axis=0).max() > 1e-3  # outputs depend on the input at all

    import onnx

    proto = onnx.load(out)
    assert [o.name for o in proto.graph.output] == [kind]
    assert {op.domain: op.version for op in proto.opset_import}[""] == result.opset


@pytest.mark.slow
@pytest.mark.parametrize("name", ["func.keras", "seq.h5"])
def test_foreign_keras_models_convert_to_pytorch_with_onnx2torch(
    small_models: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """Not the ResNet8: auto picks onnx2torch (via ONNX), in a process TensorFlow already uses."""
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.convert import convert as convert_torch

    source = small_models[name]
    result = convert_torch(source, tmp_path / "model.pt2")
    assert result.builder == "onnx2torch"
    x = np.random.default_rng(4).uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    expected = np.asarray(keras_io.call_model(load_keras_model(source), x))
    backend = load_backend(tmp_path / "model.pt2")
    np.testing.assert_allclose(backend.predict(x), expected, rtol=0, atol=1e-5)
    assert backend.output_kind == ("logits" if name.startswith("seq") else "probabilities")


@pytest.fixture(scope="module")
def other_shape_model(keras: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalMaxPooling2D(),
                              keras.layers.Dense(5, activation="softmax")])
    path = tmp_path_factory.mktemp("mnistish") / "mnistish.keras"
    model.save(path)
    return model, path


@pytest.mark.slow
def test_other_shapes_refused_by_default_and_accepted_on_request(
    other_shape_model: tuple[Any, Path], tmp_path: Path
) -> None:
    model, source = other_shape_model
    out = tmp_path / "m.onnx"
    with pytest.raises(InvalidInputError) as excinfo:
        convert(source, out, model=model)
    one_line_error(excinfo, str(source), "28x28x1", "expected 32x32x3")
    with pytest.raises(InvalidInputError) as excinfo:
        convert(source, out, model=model, input_shape=(28, 28, 1))
    one_line_error(excinfo, "5 outputs, expected 10 classes")
    with pytest.raises(UsageError) as excinfo:
        convert(source, out, model=model, input_shape=None, num_classes=None,
                class_names=["a", "b"])
    one_line_error(excinfo, "2 class names", "5 outputs")
    assert not out.exists()

    result = convert(source, out, model=model, input_shape=None, num_classes=None)
    assert result.num_classes == 5
    assert json.loads(result.metadata["class_names"]) == ["0", "1", "2", "3", "4"]
    assert json.loads(result.metadata["input_shape"]) == ["N", 28, 28, 1]
    x = np.random.default_rng(4).uniform(0, 255, (3, 28, 28, 1)).astype(np.float32)
    expected = np.asarray(keras_io.call_model(model, x))
    np.testing.assert_allclose(ort_run(out, x), expected, rtol=0, atol=1e-5)

    named = convert(source, tmp_path / "named.onnx", model=model, input_shape=(28, 28, 1),
                    num_classes=5, class_names=list("vwxyz"))
    assert json.loads(named.metadata["class_names"]) == list("vwxyz")


@pytest.mark.slow
def test_cli_shape_errors_name_the_option_that_fixes_them(
    other_shape_model: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from resnet8_onnx.cli import main
    from resnet8_onnx.support import errors

    _, source = other_shape_model
    out = tmp_path / "m.onnx"
    assert main(["-q", "convert", str(source), "-o", str(out)]) == errors.INVALID_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--input-shape any" in err
    assert main(["-q", "convert", str(source), "-o", str(out), "--input-shape", "any"]) == (
        errors.INVALID_INPUT)
    err = capsys.readouterr().err.strip()
    assert "--num-classes any" in err
    assert main(["-q", "convert", str(source), "-o", str(out), "--input-shape", "any",
                 "--num-classes", "any"]) == 0
    assert out.is_file()


@pytest.mark.slow
def test_output_kind_of_recognises_every_way_to_end_in_softmax(keras: Any) -> None:
    layers = keras.layers

    def seq(*tail: Any) -> Any:
        return keras.Sequential([keras.Input((4,)), *tail])

    assert output_kind_of(seq(layers.Dense(3, activation="softmax"))) == "probabilities"
    assert output_kind_of(seq(layers.Dense(3), layers.Softmax())) == "probabilities"
    assert output_kind_of(seq(layers.Dense(3), layers.Activation("softmax"))) == "probabilities"
    assert output_kind_of(seq(layers.Dense(3))) == "logits"
    assert output_kind_of(seq(layers.Dense(3, activation="sigmoid"))) == "logits"
    inner = seq(layers.Dense(3, activation="softmax"))
    inp = keras.Input((4,))
    assert output_kind_of(keras.Model(inp, inner(inp))) == "probabilities"


@pytest.mark.slow
def test_failure_midway_leaves_no_file(
    small_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import tf2onnx

    source = small_models["seq.keras"]
    model = load_keras_model(source)
    out = tmp_path / "out.onnx"

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated converter crash\nwith a second line")

    with monkeypatch.context() as m:
        m.setattr(tf2onnx.convert, "from_function", explode)
        with pytest.raises(InvalidInputError) as excinfo:
            convert(source, out, model=model)
        one_line_error(excinfo, "tf2onnx could not convert", "simulated converter crash")

    with monkeypatch.context() as m:
        m.setattr(onnx.checker, "check_model",
                  lambda *a, **k: (_ for _ in ()).throw(onnx.checker.ValidationError("bad")))
        with pytest.raises(VerificationFailedError) as excinfo:
            convert(source, out, model=model)
        one_line_error(excinfo, "fails the ONNX checker")

    with monkeypatch.context() as m:  # interrupted while writing: the temp file goes too
        m.setattr(convert_mod, "write_bytes_atomic",
                  lambda path, data, force=False: _write_then_interrupt(path, data))
        with pytest.raises(KeyboardInterrupt):
            convert(source, out, model=model)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _write_then_interrupt(path: Path, data: bytes) -> None:
    from resnet8_onnx.support.fsutil import atomic_write

    with atomic_write(path) as f:
        f.write(data[: len(data) // 2])
        assert any(p.name.endswith(".part") for p in Path(path).parent.iterdir())
        raise KeyboardInterrupt


@pytest.fixture(scope="module")
def real_conversion(tmp_path_factory: pytest.TempPathFactory) -> tuple[Conversion, Any]:
    source = shared_path("models", "pretrainedResnet.h5")
    model = load_keras_model(source)
    out = tmp_path_factory.mktemp("real") / "resnet8.onnx"
    return convert(source, out), model


@pytest.mark.slow
@pytest.mark.shared
def test_real_model_converts_to_a_checked_self_describing_file(
    real_conversion: tuple[Conversion, Any],
) -> None:
    import onnx

    result, _ = real_conversion
    source = shared_path("models", "pretrainedResnet.h5")
    assert isinstance(result, Conversion)  # the record itself, as run stores it
    assert set(result.to_dict()) == {  # the keys convert --json has always printed
        "output_path", "source_path", "source_sha256", "onnx_sha256", "opset", "input_name",
        "output_name", "output_kind", "num_classes", "seconds", "metadata"}
    assert result.source_path == str(source.resolve())
    data = Path(result.output_path).read_bytes()
    assert result.onnx_sha256 == hashlib.sha256(data).hexdigest()
    assert result.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output

    def dims(vi: Any) -> list[Any]:
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    assert inp.name == "input"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(inp) == ["N", 32, 32, 3]
    assert out.name == "probabilities"
    assert dims(out) == ["N", 10]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta == result.metadata
    assert meta["source_file"] == "pretrainedResnet.h5"
    assert meta["source_sha256"] == result.source_sha256
    assert meta["source_keras_version"] == "2.4.0"
    assert meta["converter_version"] == __version__
    assert meta["opset"] == "17" == str({o.domain: o.version for o in proto.opset_import}[""])
    assert meta["preprocessing"] == "raw 0-255 float32 NHWC RGB, no normalisation"
    assert json.loads(meta["preprocessing_spec"]) == {
        "layout": "nhwc", "channels": "rgb", "scale": 1.0, "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0], "dtype": "float32"}
    assert json.loads(meta["class_names"]) == list(CIFAR10_CLASSES)
    assert meta["output_kind"] == "probabilities"
    for key in ("tensorflow_version", "keras_version", "tf2onnx_version", "onnx_version"):
        assert meta[key][0].isdigit()
    assert proto.producer_name == "resnet8-onnx"
    assert result.source_sha256 in proto.doc_string
    assert result.to_dict()["metadata"] == meta


@pytest.mark.slow
@pytest.mark.shared
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_real_model_onnx_matches_keras_on_real_images(
    real_conversion: tuple[Conversion, Any], batch: int
) -> None:
    result, model = real_conversion
    images, _ = cifar_test_images(64)
    x = images[:batch]
    expected = np.asarray(keras_io.call_model(model, x))
    got = ort_run(result.output_path, x)
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


@pytest.mark.slow
@pytest.mark.shared
def test_conversion_is_reproducible_and_force_overwrites(
    real_conversion: tuple[Conversion, Any], tmp_path: Path
) -> None:
    first, model = real_conversion
    out = tmp_path / "again.onnx"
    out.write_bytes(b"stale")
    again = convert(first.source_path, out, model=model, force=True)
    assert again.onnx_sha256 == first.onnx_sha256
    assert out.read_bytes() == Path(first.output_path).read_bytes()
