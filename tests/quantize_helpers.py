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
    """(float model, a 240-image training folder, the output path) for CLI tests: enough to
    hold out the quality gate's minimum of 100 images."""
    model = float_model(tmp_path / "m.onnx")
    return model, png_folder(tmp_path / "cal", 24), tmp_path / "out.onnx"


def foreign_resnet8(source: Path, path: Path, style: str) -> Path:
    """The real converted ResNet8 rebuilt as other people's exports are: opset 9, IR 4, no
    metadata. ``style="pytorch"``: NCHW input of fixed batch 1 that wants ToTensor+Normalize
    (``(p/255 − mean)/std``), the layout transpose gone; ``style="tf2onnx"``: NHWC input,
    dynamic batch, that wants /255.

    The preprocessing is folded into the first convolution, as training on such inputs would
    have learnt it: weights × 255 (× std per input channel), bias + the mean's contribution.
    Exact for /255; for Normalize the zero padding now stands for the mean pixel, so the
    model is a close cousin of ResNet8 with its own predictions (checked by a bare loop).
    Every op of ResNet8 means the same at opset 9 (Softmax's axis given as 1).
    """
    from onnx import TensorProto, helper, numpy_helper

    from model_factory import CIFAR_MEAN, CIFAR_STD

    model = onnx.load(str(source))
    graph = model.graph
    transpose = next(n for n in graph.node if n.op_type == "Transpose"
                     and n.input[0] == graph.input[0].name)
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[0] == transpose.output[0])
    inits = {i.name: i for i in graph.initializer}
    w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
    b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
    if style == "pytorch":
        std, mean = np.array(CIFAR_STD), np.array(CIFAR_MEAN)
        b = b + (w * (255 * mean)[None, :, None, None]).sum(axis=(1, 2, 3))
        w = w * (255 * std)[None, :, None, None]
        graph.node.remove(transpose)
        conv.input[0] = "x"
        shape, batch = [1, 3, 32, 32], 1
    else:
        w = w * 255
        transpose.input[0] = "x"
        shape, batch = ["unk__0", 32, 32, 3], "unk__0"
    for name, value in ((conv.input[1], w), (conv.input[2], b)):
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    for node in graph.node:
        if node.op_type == "Softmax":
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", 1))
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
