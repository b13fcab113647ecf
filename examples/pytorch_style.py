"""A PyTorch-style export of a converted model, for the examples to work on.

``torch.onnx.export`` of a CIFAR-10 network typically takes NCHW float input already scaled
and normalised (``ToTensor`` + ``Normalize``: ``(pixel / 255 - mean) / std``). This wraps a
raw-pixel NHWC model (what ``convert`` writes) behind that interface with plain ONNX ops, so
the examples have such a file without PyTorch; with your own export, skip this step. The
metadata is dropped: nothing in the file tells a tool its preprocessing.

    python examples/pytorch_style.py r8.onnx cifar10_resnet.onnx
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def pytorch_style(source: str, target: str) -> None:
    """Write ``target``: ``source`` behind an NCHW, normalised input (exact for 0-255 pixels:
    the wrapper undoes the normalisation and rounds back to the pixel values)."""
    model = onnx.load(source)
    graph = model.graph
    raw = graph.input[0]
    batch = raw.type.tensor_type.shape.dim[0]
    consts = {"pt/std": np.array(STD, np.float32).reshape(1, 3, 1, 1),
              "pt/mean": np.array(MEAN, np.float32).reshape(1, 3, 1, 1),
              "pt/255": np.array(255, np.float32)}
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    undo = [helper.make_node("Mul", ["pt/input", "pt/std"], ["pt/a"]),
            helper.make_node("Add", ["pt/a", "pt/mean"], ["pt/b"]),
            helper.make_node("Mul", ["pt/b", "pt/255"], ["pt/c"]),
            helper.make_node("Round", ["pt/c"], ["pt/d"]),
            helper.make_node("Transpose", ["pt/d"], [raw.name], perm=[0, 2, 3, 1])]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*undo, *nodes])
    shape = [batch.dim_param or batch.dim_value or "N", 3, 32, 32]
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("pt/input", onnx.TensorProto.FLOAT, shape))
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    onnx.save(model, target)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/pytorch_style.py SOURCE.onnx TARGET.onnx")
    pytorch_style(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]} (NCHW input, ToTensor + Normalize, no metadata)")
