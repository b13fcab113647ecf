"""The README's ten-line library example, run from the project root with ../shared beside it:

    python examples/quickstart.py

Converts the MLCommons model to quick.onnx (force=True: a second run replaces it), then prints
the ONNX model's accuracy on the MLPerf Tiny 200 images and whether it equals its source there.
"""

from resnet8_onnx.backends import load_backend
from resnet8_onnx.convert.keras_to_onnx import convert
from resnet8_onnx.data import load_dataset
from resnet8_onnx.evaluate import evaluate
from resnet8_onnx.verify import verify

convert("../shared/models/pretrainedResnet.h5", "quick.onnx", force=True)
data = load_dataset("../shared", subset="perf")  # the MLPerf Tiny 200 images
keras, onnx = load_backend("../shared/models/pretrainedResnet.h5"), load_backend("quick.onnx")
print(evaluate(onnx, data).record().metrics.accuracy)
print(verify(keras, onnx, data.images).passed)
