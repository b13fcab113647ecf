"""What the quantize tests share: a float model like ``convert`` writes, quick quantisations
on random images, and calibration folders, so no test needs real data to exercise the job."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from model_factory import make_classifier, synthetic_dataset
from resnet8_onnx import quantize as q
from resnet8_onnx.cli import main

SOURCE_METADATA = {"preprocessing": "raw 0-255 float32 NHWC RGB, no normalisation",
                   "output_kind": "probabilities", "class_names": '["a"]'}
NO_VNNI = q.CpuInfo("Test CPU without VNNI", ("avx2",), 2, "test")
WITH_VNNI = q.CpuInfo("Test CPU with VNNI", ("avx2", "avx512f", "avx512_vnni"), 2, "test")


def float_model(path: Path, seed: int = 0) -> Path:
    """The test classifier with a converter's metadata, like a file from ``convert``."""
    make_classifier(path, seed=seed)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, SOURCE_METADATA)
    onnx.save(model, str(path))
    return path


def train_images(n: int):
    """Random images labelled as a training split (``synthetic_dataset`` says test)."""
    return dataclasses.replace(synthetic_dataset(n, seed=1), split="train", indices=None)


def quick(tmp_path: Path, recipe=None, n: int = 240, **kwargs):
    """A small quantisation (tiny model, random images, short timing) for unit tests."""
    model = float_model(tmp_path / "m.onnx")
    data = train_images(n)
    record = q.quantize(model, tmp_path / "m_int8.onnx", data, recipe, timing_images=64,
                        timing_rounds=2, batch_size=32, **kwargs)
    return model, data, record


def png_folder(root: Path, n_per_class: int, size: int = 32, stem: str = "train-{:05d}") -> Path:
    """An image folder of random PNGs, ``n_per_class`` per CIFAR-10 class."""
    from resnet8_onnx.data import CLASS_NAMES

    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{stem.format(c * 1000 + i)}.png")
    return root


def run_cli(capsys, *args: str) -> tuple[int, list[str]]:
    """``resnet8-onnx -q quantize ARGS``: (exit code, the non-blank stderr lines)."""
    code = main(["-q", "quantize", *args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def cli_setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(float model, a 40-image training folder, the output path) for CLI tests."""
    model = float_model(tmp_path / "m.onnx")
    return model, png_folder(tmp_path / "cal", 4), tmp_path / "out.onnx"


def foreign_resnet8(source: Path, path: Path, style: str) -> Path:
    """The real converted ResNet8 rebuilt as other people's exports are: opset 9, IR 4, no
    metadata. ``style="pytorch"``: NCHW input of fixed batch 1 that wants ToTensor+Normalize
    (``(p/255 − mean)/std``); ``style="tf2onnx"``: NHWC input, dynamic batch, that wants /255.

    The front undoes the preprocessing in float (no Round: opset 9 has none), so with the right
    spec its predictions are the original's up to float rounding and with a wrong one they
    are not. Every op of ResNet8 means the same at opset 9 (Softmax's axis given as 1).
    """
    from onnx import TensorProto, helper, numpy_helper

    from model_factory import CIFAR_MEAN, CIFAR_STD

    model = onnx.load(str(source))
    graph = model.graph
    original = graph.input[0].name

    def const(name: str, values, shape) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.asarray(values, np.float32).reshape(shape), name))

    if style == "pytorch":
        front = [const("f/std", CIFAR_STD, (1, 3, 1, 1)), const("f/mean", CIFAR_MEAN, (1, 3, 1, 1)),
                 const("f/255", 255.0, ()),
                 helper.make_node("Mul", ["x", "f/std"], ["f/a"]),
                 helper.make_node("Add", ["f/a", "f/mean"], ["f/b"]),
                 helper.make_node("Mul", ["f/b", "f/255"], ["f/c"]),
                 helper.make_node("Transpose", ["f/c"], [original], perm=[0, 2, 3, 1])]
        shape, batch = [1, 3, 32, 32], 1
    else:
        front = [const("f/255", 255.0, ()), helper.make_node("Mul", ["x", "f/255"], [original])]
        shape, batch = ["unk__0", 32, 32, 3], "unk__0"
    for node in graph.node:
        if node.op_type == "Softmax":
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", 1))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*front, *existing])
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, shape))
    out = graph.output[0]
    out.type.tensor_type.shape.dim[0].Clear()
    if isinstance(batch, int):
        out.type.tensor_type.shape.dim[0].dim_value = batch
    else:
        out.type.tensor_type.shape.dim[0].dim_param = batch
    del graph.value_info[:]
    del model.metadata_props[:]
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 9))
    model.ir_version = 4
    model.producer_name = "pytorch" if style == "pytorch" else "tf2onnx"
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
