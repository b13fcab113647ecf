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
    batch: int | str = "N", opset: int = 17, layout: str = "nhwc", ir_version: int = 8,
    outputs: int = 1,
) -> Path:
    """``layout="nchw"``: a PyTorch-style export, input (batch, C, H, W) with no transpose;
    ``outputs=2`` adds a second output (the pooled features) for multi-output tests."""
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
    if rank == 4 and layout == "nchw":
        in_shape = [batch, channels, height, width]
        nodes = [helper.make_node("Identity", ["input"], ["nchw"])]
    elif rank == 4:
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
        nodes.append(helper.make_node("Softmax", ["z"], ["probabilities"],
                                      axis=-1 if opset >= 11 else 1))
        out_name = "probabilities"
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [batch, classes])]
        + ([helper.make_tensor_value_info("flat", TensorProto.FLOAT, [batch, hidden])]
           if outputs == 2 else []),
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="resnet8-onnx-tests")
    model.ir_version = ir_version
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


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def wrap_pytorch_style(source: Path, path: Path, *, mean=CIFAR_MEAN, std=CIFAR_STD,
                       scale: float = 1 / 255, batch: int | str = "N") -> Path:
    """The converted ResNet8 behind a PyTorch-style interface: NCHW input, pixels scaled and
    normalised, i.e. the model expects ``(p·scale − mean) / std``.

    The wrapper undoes that (``Round((x·std + mean) / scale)``, exact for 0–255 pixels) and
    transposes to NHWC, so with the right spec its predictions are the original's exactly and
    with a wrong one they are not. No metadata: nothing tells a tool the spec.
    """
    model = onnx.load(str(source))
    graph = model.graph
    original = graph.input[0]

    def const(name: str, values) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.asarray(values, np.float32).reshape(1, 3, 1, 1), name))

    nodes = [const("w/std", std), const("w/mean", mean),
             helper.make_node("Constant", [], ["w/scale"],
                              value=numpy_helper.from_array(np.array(scale, np.float32))),
             helper.make_node("Mul", ["x", "w/std"], ["w/a"]),
             helper.make_node("Add", ["w/a", "w/mean"], ["w/b"]),
             helper.make_node("Div", ["w/b", "w/scale"], ["w/c"]),
             helper.make_node("Round", ["w/c"], ["w/d"]),
             helper.make_node("Transpose", ["w/d"], [original.name], perm=[0, 2, 3, 1])]
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32]))
    del model.metadata_props[:]
    model.producer_name = "pytorch"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# The PyTorch-style spec as command-line options, and its effect written by hand.
SPEC = ["--scale", "1/255", "--mean", ",".join(map(str, CIFAR_MEAN)),
        "--std", ",".join(map(str, CIFAR_STD))]


def hand_preprocess(images: np.ndarray) -> np.ndarray:
    """PyTorch's ToTensor + Normalize, written independently of resnet8_onnx.preprocess."""
    x = images.astype(np.float32) * np.float32(1 / 255)
    x = (x - np.array(CIFAR_MEAN, np.float32)) / np.array(CIFAR_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
