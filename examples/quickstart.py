"""The README's ten-line library example, run from the project root with ../shared beside it:

    python examples/quickstart.py

Converts the MLCommons model to quick.onnx (force=True: a second run replaces it), then prints
the ONNX model's accuracy on the MLPerf Tiny 200 images and whether it equals its source there.
Everything goes through the package's facade (``import resnet8_onnx``), which imports each
stage on first use.
"""

import resnet8_onnx as rn

rn.convert("../shared/models/pretrainedResnet.h5", "quick.onnx", force=True)
data = rn.load_dataset("../shared", subset="perf")  # the MLPerf Tiny 200 images
keras = rn.load_runner("../shared/models/pretrainedResnet.h5")
onnx = rn.load_runner("quick.onnx")
print(rn.evaluate(onnx, data).metrics.accuracy)
print(rn.verify(keras, onnx, data.images).passed)
