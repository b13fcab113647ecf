"""Backends against each other on real CIFAR-10 images: Keras, ONNX Runtime, LiteRT float/int8.

Measured on this project's machine:

* float backends, on every tenth official test image (1,000 images): max |Δ| of probabilities
  2.5e-6 (Keras–ONNX), 3.5e-6 (Keras–float TFLite), 2.5e-6 (ONNX–TFLite); on all 10,000
  images ≤ 3.8e-6. Argmax agreement 100 %. The tolerance asserted is 1e-5, the default
  ``verify`` uses, leaving ~2.5× headroom for other CPUs' SIMD paths.
* int8 TFLite against Keras on all 10,000 images: argmax agreement 97.54 %, accuracy 86.97 %
  vs 87.19 % (on the every-tenth sample: 96.7 %). The MLCommons int8 model really disagrees
  with its float source on ~2.5 % of images — LiteRT's reference kernels give the same 97.5 %
  as XNNPACK — so "≥ 99 %" is not a property of this file. The test asserts ≥ 97 % on the
  full set and accuracy within one point of Keras. That catches gross errors (no −128 shift:
  64.6 % agreement) but not subtle ones (a zero point one step off still agrees on 97.2 %),
  which is why a separate test requires the backend to equal, bit for bit, a raw interpreter
  fed ``uint8 − 128`` and dequantised by hand.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path
from resnet8_onnx.backends import load_backend

pytestmark = [pytest.mark.slow, pytest.mark.shared]

FLOAT_ATOL = 1e-5
INT8_MIN_AGREEMENT = 0.97


@pytest.fixture(scope="module")
def sample(cifar_test):
    """Every tenth official test image: 1,000 images, 100 per class."""
    return cifar_test.images[::10], cifar_test.labels[::10]


@pytest.fixture(scope="module")
def tflite_float() -> Path:
    return shared_path("models", "pretrainedResnet.tflite")


@pytest.fixture(scope="module")
def tflite_int8() -> Path:
    return shared_path("models", "pretrainedResnet_quant.tflite")


def _outputs(backend, images: np.ndarray, batch: int = 250) -> np.ndarray:
    return np.concatenate([backend.predict(images[i:i + batch].astype(np.float32))
                           for i in range(0, len(images), batch)])


@pytest.fixture(scope="module")
def outputs(sample, keras_backend, resnet8_onnx, tflite_float):
    images, _ = sample
    return {
        "keras": _outputs(keras_backend, images),
        "onnx": _outputs(load_backend(resnet8_onnx), images),
        "tflite": _outputs(load_backend(tflite_float), images),
    }


@pytest.mark.parametrize(("a", "b"), [("keras", "onnx"), ("keras", "tflite"),
                                      ("onnx", "tflite")])
def test_float_backends_agree(outputs, sample, a, b) -> None:
    diff = np.abs(outputs[a].astype(np.float64) - outputs[b])
    agreement = float(np.mean(outputs[a].argmax(1) == outputs[b].argmax(1)))
    print(f"{a} vs {b} on {len(sample[0]):,} images: max |Δ| {diff.max():.3g}, "
          f"mean |Δ| {diff.mean():.3g}, argmax agreement {agreement:.2%}")
    assert outputs[a].shape == outputs[b].shape == (len(sample[0]), 10)
    assert diff.max() <= FLOAT_ATOL
    assert agreement == 1.0


def test_int8_tflite_close_to_keras(cifar_test, keras_full_outputs, tflite_int8) -> None:
    from resnet8_onnx.evaluate import run_inference

    int8, _ = run_inference(load_backend(tflite_int8), cifar_test)
    keras, labels = keras_full_outputs, cifar_test.labels
    agreement = float(np.mean(keras.argmax(1) == int8.argmax(1)))
    acc_keras = float(np.mean(keras.argmax(1) == labels))
    acc_int8 = float(np.mean(int8.argmax(1) == labels))
    diff = np.abs(keras.astype(np.float64) - int8)
    print(f"int8 vs keras on {len(labels):,} images: agreement {agreement:.2%}, accuracy "
          f"{acc_int8:.2%} vs {acc_keras:.2%}, max |Δ| {diff.max():.3g}, mean {diff.mean():.3g}")
    assert agreement >= INT8_MIN_AGREEMENT
    assert abs(acc_int8 - acc_keras) <= 0.01
    # Dequantised softmax: every value on the 1/256 grid, rows summing to ~1.
    np.testing.assert_allclose(int8 * 256, np.round(int8 * 256), atol=1e-3)
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=0.05)


def test_int8_quantisation_parameters_come_from_the_file(tflite_int8, sample) -> None:
    from ai_edge_litert.interpreter import Interpreter

    backend = load_backend(tflite_int8)
    interpreter = Interpreter(model_path=str(tflite_int8))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    scale, zero = (float(inp["quantization_parameters"]["scales"][0]),
                   int(inp["quantization_parameters"]["zero_points"][0]))
    assert backend.input_quantization == (scale, zero) == (1.0, -128)
    assert backend.output_quantization == (
        float(out["quantization_parameters"]["scales"][0]),
        int(out["quantization_parameters"]["zero_points"][0]))
    assert backend.info.input_dtype == "int8"

    # The backend equals a raw interpreter fed uint8 − 128, dequantised by hand.
    images = sample[0][:64]
    interpreter.resize_tensor_input(inp["index"], [len(images), 32, 32, 3])
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], (images.astype(np.int16) - 128).astype(np.int8))
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"]).astype(np.float32)
    out_scale, out_zero = backend.output_quantization
    expected = (raw - out_zero) * out_scale
    got = backend.predict(images.astype(np.float32))
    np.testing.assert_array_equal(got, expected)

    # A different zero point changes the results: the value is really used.
    backend.input_quantization = (scale, zero + 16)
    shifted = backend.predict(images.astype(np.float32))
    assert not np.array_equal(shifted, got)
    assert np.abs(shifted - got).max() > 0.05


def test_tflite_path_never_imports_tensorflow_or_prints_to_stdout(tflite_int8,
                                                                  tflite_float) -> None:
    """LiteRT is its own runtime; and its XNNPACK banner must stay off stdout (--json -)."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from resnet8_onnx.backends import load_backend
        for path in ({str(tflite_float)!r}, {str(tflite_int8)!r}):
            load_backend(path, threads=1).predict(np.zeros((3, 32, 32, 3), np.float32))
        heavy = ("tensorflow", "keras", "tf2onnx", "torch")
        print("loaded:" + ",".join(sorted(m for m in heavy if m in sys.modules)))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout == "loaded:\n"
