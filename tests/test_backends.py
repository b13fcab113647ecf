"""The float backends against each other on real CIFAR-10 images: Keras, ONNX Runtime, LiteRT.

Not one module's file: the agreement of three runtimes on one model. Each runtime's own tests
are in test_backend_<module>.py (the int8 LiteRT model in test_backend_litert.py).

Measured on this project's machine, on every tenth official test image (1,000 images): max
|Δ| of probabilities 2.5e-6 (Keras–ONNX), 3.5e-6 (Keras–float TFLite), 2.5e-6 (ONNX–TFLite);
on all 10,000 images ≤ 3.8e-6. Argmax agreement 100 %. The tolerance asserted is 1e-5, the
default ``verify`` uses, leaving ~2.5× headroom for other CPUs' SIMD paths.
"""

from __future__ import annotations

import numpy as np
import pytest

from resnet8_onnx.backends import load_backend

pytestmark = [pytest.mark.slow, pytest.mark.shared]

FLOAT_ATOL = 1e-5


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


