"""Small ONNX classifiers built with onnx.helper, so ONNX-side tests need no TensorFlow.

The model is deterministic and non-trivial: NHWC → NCHW transpose, a 1×1 convolution, ReLU,
global average pooling, a dense layer and (optionally) softmax, i.e. the same op families as
ResNet8 in miniature. Knobs produce the malformed variants the hardening tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_classifier(
    path: Path, *, height: int = 32, width: int = 32, channels: int = 3, classes: int = 10,
    softmax: bool = True, nan_output: bool = False, rank: int = 4, seed: int = 0,
    batch: int | str = "N", opset: int = 17,
) -> Path:
    rng = np.random.default_rng(seed)
    hidden = 8
    conv_w = rng.normal(0, 0.05, (hidden, channels, 1, 1)).astype(np.float32)
    dense_w = rng.normal(0, 0.5, (hidden, classes)).astype(np.float32)
    dense_b = rng.normal(0, 0.1, (classes,)).astype(np.float32)
    if nan_output:
        dense_b[0] = np.nan
    inits = [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(dense_w, "dense_w"),
             numpy_helper.from_array(dense_b, "dense_b"),
             numpy_helper.from_array(np.array([-1, hidden], np.int64), "flat_shape")]
    if rank == 4:
        in_shape = [batch, height, width, channels]
        nodes = [helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2])]
    else:  # a flat input: wrong rank for an image classifier
        in_shape = [batch, height * width * channels]
        inits.append(numpy_helper.from_array(
            np.array([-1, height, width, channels], np.int64), "img_shape"))
        nodes = [helper.make_node("Reshape", ["input", "img_shape"], ["nhwc"]),
                 helper.make_node("Transpose", ["nhwc"], ["nchw"], perm=[0, 3, 1, 2])]
    nodes += [
        helper.make_node("Conv", ["nchw", "conv_w"], ["conv"], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Reshape", ["pool", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "dense_w"], ["mm"]),
        helper.make_node("Add", ["mm", "dense_b"], ["logits" if not softmax else "z"]),
    ]
    out_name = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["z"], ["probabilities"], axis=-1))
        out_name = "probabilities"
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="resnet8-onnx-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def synthetic_dataset(n: int = 64, *, seed: int = 0, height: int = 32, width: int = 32,
                      channels: int = 3):
    """A Dataset of random uint8 images with balanced labels, for tests that need no files."""
    from resnet8_onnx.data import CLASS_NAMES, Dataset, DataSource

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, height, width, channels), dtype=np.uint8)
    labels = (np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    source = DataSource(kind="synthetic", path="<memory>", checks=(), official=False)
    return Dataset(images=images, labels=labels, class_names=CLASS_NAMES, source=source,
                   split="test", subset="full", indices=np.arange(n, dtype=np.int64))
