"""The Keras backend: the reference runtime, on the real ResNet8 and real CIFAR-10 images."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import cifar_test_images, shared_path
from resnet8_onnx.backends.base import Backend
from resnet8_onnx.backends.keras.files import call_model, import_tensorflow, load_keras_model
from resnet8_onnx.backends.keras.runner import KerasBackend, from_model, load
from resnet8_onnx.support.errors import InvalidInputError, UnsafeInputError, UsageError

pytestmark = [pytest.mark.slow, pytest.mark.shared]

@pytest.fixture(scope="module")
def backend() -> KerasBackend:
    return load(shared_path("models", "pretrainedResnet.h5"))


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    return cifar_test_images(500)


def test_describes_itself(backend: KerasBackend) -> None:
    import keras
    import tensorflow as tf

    path = shared_path("models", "pretrainedResnet.h5")
    info = backend.info
    assert isinstance(backend, Backend)
    assert info.name == "keras"
    assert info.model_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.runtime_version == f"tensorflow {tf.__version__} / keras {keras.__version__}"
    assert info.input_shape == (None, 32, 32, 3)
    assert info.num_classes == 10
    assert info.extra["output_kind"] == "probabilities"
    assert info.to_dict()["input_shape"] == [None, 32, 32, 3]


def test_predicts_like_keras_itself_and_classifies_real_images(
    backend: KerasBackend, images: tuple[np.ndarray, np.ndarray]
) -> None:
    x, labels = images
    out = backend.predict(x)
    assert out.shape == (500, 10)
    assert out.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' own input-structure warning
        reference = backend.model.predict(x, batch_size=100, verbose=0)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    # MLPerf Tiny reports ~87% for this model on the full test set; a preprocessing slip
    # (BGR, NCHW, /255) drops it far below this.
    assert (out.argmax(1) == labels).mean() > 0.8


def test_batch_size_does_not_change_results(
    backend: KerasBackend, images: tuple[np.ndarray, np.ndarray]
) -> None:
    x = images[0][:13]
    whole = backend.predict(x)
    pieces = np.concatenate([backend.predict(x[i:i + 4]) for i in range(0, 13, 4)])
    single = np.concatenate([backend.predict(x[i:i + 1]) for i in range(13)])
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(single, whole, rtol=0, atol=1e-6)
    as_uint8 = backend.predict(x.astype(np.uint8))  # converted, not rejected
    np.testing.assert_array_equal(as_uint8, whole)


def test_rejects_batches_of_the_wrong_shape(backend: KerasBackend) -> None:
    for bad in (np.zeros((2, 32, 32), np.float32), np.zeros((2, 3, 32, 32), np.float32),
                np.zeros((2, 28, 28, 3), np.float32)):
        with pytest.raises(InvalidInputError) as excinfo:
            backend.predict(bad)
        assert "\n" not in str(excinfo.value)
        assert "expected (N, 32, 32, 3)" in str(excinfo.value)


def test_layer_outputs_cover_every_layer_and_end_at_the_prediction(
    backend: KerasBackend, images: tuple[np.ndarray, np.ndarray]
) -> None:
    x = images[0][:8]
    outputs = backend.layer_outputs(x)
    names = [layer.name for layer in backend.model.layers if type(layer).__name__ != "InputLayer"]
    assert list(outputs) == names == backend.layer_names()
    assert outputs["conv2d"].shape == (8, 32, 32, 16)
    assert outputs["flatten"].shape == (8, 64)  # 8x8x64 average-pooled to 1x1x64
    np.testing.assert_allclose(outputs[names[-1]], backend.predict(x), rtol=0, atol=1e-6)
    # An activation layer's output is exactly relu of the layer before it.
    np.testing.assert_array_equal(outputs["activation"],
                                  np.maximum(outputs["batch_normalization"], 0))

    subset = backend.layer_outputs(x, ["add", "conv2d"])
    assert list(subset) == ["add", "conv2d"]
    np.testing.assert_allclose(subset["add"], outputs["add"], rtol=0, atol=1e-6)
    before = len(backend._layer_models)
    backend.layer_outputs(x[:2], ["add", "conv2d"])
    assert len(backend._layer_models) == before  # probe model reused, not rebuilt

    with pytest.raises(UsageError) as excinfo:
        backend.layer_outputs(x, ["conv2d", "no_such_layer"])
    assert "'no_such_layer'" in str(excinfo.value)


def test_reuses_a_model_the_caller_already_loaded(backend: KerasBackend) -> None:
    path = shared_path("models", "pretrainedResnet.h5")
    again = from_model(backend.model, path)
    assert again.model is backend.model
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x), backend.predict(x))


def test_thread_count_must_be_positive(backend: KerasBackend) -> None:
    with pytest.raises(UsageError):
        from_model(backend.model, shared_path("models", "pretrainedResnet.h5"), threads=0)


def test_logits_model_and_unsafe_file(tmp_path: Path) -> None:
    _, keras = import_tensorflow()
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    path = tmp_path / "tiny.keras"
    model.save(path)
    tiny = load(path)
    assert tiny.info.extra["output_kind"] == "logits"
    assert (tiny.info.input_shape, tiny.info.num_classes) == ((None, 8, 8, 3), 4)
    x = np.random.default_rng(1).uniform(0, 255, (5, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(tiny.predict(x), np.asarray(call_model(load_keras_model(path), x)),
                               rtol=1e-6, atol=1e-5)

    marker = tmp_path / "ran"
    fn = eval(f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]")
    inp = keras.Input((8, 8, 3))
    unsafe: Any = keras.Model(inp, keras.layers.Lambda(fn, name="lam")(inp))
    marker.unlink()
    bad = tmp_path / "lam.h5"
    unsafe.save(bad)
    with pytest.raises(UnsafeInputError):
        load(bad)
    assert not marker.exists()


def test_thread_count_applies_in_a_fresh_process_and_is_reported_honestly_after() -> None:
    import subprocess
    import sys

    code = (
        "from resnet8_onnx.backends.keras.runner import configure_threads\n"
        "from resnet8_onnx.backends.keras.files import import_tensorflow\n"
        "tf, _ = import_tensorflow()\n"
        "first = configure_threads(1)\n"
        "tf.constant(1.0) + 1  # starts the runtime: thread pools are now fixed\n"
        "print(first, configure_threads(2))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["1", "1"]
    assert "cpu_feature_guard" not in done.stderr  # TensorFlow's C++ start-up noise is off
