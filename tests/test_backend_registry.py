"""The loader table and the runner protocol: what a runner declares instead of being probed."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_classifier
from resnet8_onnx.backends import LOADERS, Runner, backend_for, load_backend
from resnet8_onnx.backends.base import ABILITIES
from resnet8_onnx.errors import UsageError

# The abilities and the methods each one promises (see backends/base.py).
PROMISES = {"macs": ("macs",), "layer_outputs": ("layer_outputs", "layer_graph"),
            "tensor_outputs": ("tensor_outputs",), "structure": ("structure",),
            "session": ("session",), "parameters": ("source_parameters",)}


def test_every_registered_runtime_has_a_loader_and_owns_its_suffixes() -> None:
    assert set(PROMISES) == set(ABILITIES)
    for name, loader in LOADERS.items():
        module = importlib.import_module(f"resnet8_onnx.backends.{loader.module}")
        assert callable(module.load), name
        for suffix in loader.suffixes:
            assert backend_for(f"model{suffix.upper()}") == name


def test_onnx_runner_declares_its_input_and_keeps_its_promises(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx", layout="nchw", height=16, width=24)
    runner = load_backend(path)
    assert isinstance(runner, Runner)
    spec = runner.input_spec
    assert (spec.layout, spec.shape, spec.pixel_shape, spec.dtype) == (
        "nchw", (None, 3, 16, 24), (16, 24, 3), "float32")
    assert spec.model_shape((16, 24, 3)) == (3, 16, 24)
    assert {"macs", "structure", "session", "tensor_outputs"} <= runner.abilities
    for ability in runner.abilities:
        for method in PROMISES[ability]:
            assert hasattr(runner, method), (ability, method)
    # 1×1 convolution 3 → 8 channels on 16×24 pixels, then an 8 → 10 matrix product.
    assert runner.macs() == 16 * 24 * 8 * 3 + 8 * 10
    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(runner.run(runner.prepare(pixels)), runner.predict(pixels))
    assert runner.prepare(pixels).shape == (4, 3, 16, 24)


@pytest.mark.parametrize("option", [{"optimization": "basic"}, {"output": "logits"},
                                    {"provider": "cpu"}, {"device": "cuda"}])
def test_options_of_another_runtime_are_refused_before_loading(tmp_path: Path,
                                                               option: dict) -> None:
    path = tmp_path / "not-really.tflite"
    path.write_bytes(b"never read")  # refused before LiteRT would fail to load it
    with pytest.raises(UsageError, match="applies to"):
        load_backend(path, **option)
