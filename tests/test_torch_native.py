"""torch_native: ResNet8 recognised in a Keras file by its structure, and the native module
rebuilt from a state dict (its shapes or our stored config)."""

from __future__ import annotations

import copy
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet8_onnx.backends.keras.files import read_keras_config
from resnet8_onnx.backends.pytorch.resnet8 import ResNet8, ResNet8Config, StackSpec
from resnet8_onnx.backends.pytorch.safe_io import save_state_dict
from resnet8_onnx.backends.pytorch.state_dict import config_from_state_dict, native_from_state_dict
from resnet8_onnx.convert.native_resnet8 import native_from_keras, recognise_resnet8
from resnet8_onnx.support.errors import InvalidInputError, UsageError


# --------------------------------------------------------------------------- recognition
@pytest.fixture(scope="module")
def real_config(resnet8_h5: Path) -> dict:
    return read_keras_config(resnet8_h5)


@pytest.mark.shared
def test_recognises_the_mlcommons_resnet8(real_config) -> None:
    plan = recognise_resnet8(real_config)
    c = plan.config
    assert c.input_shape == (32, 32, 3)
    assert [(s.filters, s.stride, s.projection) for s in c.stacks] == [
        (16, 1, False), (32, 2, True), (64, 2, True)]
    assert c.stem_filters == 16
    assert c.num_classes == 10
    assert c.softmax
    assert c.padding == "same"
    eps = {layer["config"]["epsilon"] for layer in real_config["config"]["layers"]
           if layer["class_name"] == "BatchNormalization"}
    assert eps == {c.epsilon}
    assert c.epsilon != torch.nn.BatchNorm2d(1).eps
    assert plan.layers["stacks.1.shortcut"] == "conv2d_5"  # the 1×1 projection, not a 3×3
    # 9 convolutions, 7 BatchNorms and the dense layer get weights.
    assert len(plan.layers) == 17


def _mutated(config: dict, change) -> dict:
    config = copy.deepcopy(config)
    change(config["config"]["layers"])
    return config


@pytest.mark.shared
@pytest.mark.parametrize("change", [
    lambda layers: layers[3]["config"].update(activation="tanh"),
    lambda layers: layers[1]["config"].update(kernel_size=[5, 5]),
    lambda layers: layers[-3]["config"].update(pool_size=[4, 4], strides=[4, 4]),
    lambda layers: layers[2]["config"].update(epsilon=1e-5),
    lambda layers: layers.append({"class_name": "Dense", "name": "extra",
                                  "config": {"name": "extra", "units": 3},
                                  "inbound_nodes": [[["flatten", 0, 0, {}]]]}),
], ids=["tanh", "kernel5", "partial-pool", "mixed-eps", "extra-branch"])
def test_other_structures_are_not_recognised(real_config, change) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the structural reason
        recognise_resnet8(_mutated(real_config, change))


# --------------------------------------------------------------------------- state dicts
def test_a_bare_state_dict_is_read_as_the_mlcommons_layout_from_its_shapes() -> None:
    """No stored config: stride 2 exactly where a stack has a projection, read off shapes."""
    built = ResNet8Config(input_shape=(32, 32, 1), stem_filters=8,
                          stacks=(StackSpec(8, 1, False), StackSpec(24, 2, True),
                                  StackSpec(24, 1, False)), num_classes=7, conv_bias=False)
    state = ResNet8(built).state_dict()
    assert config_from_state_dict(state, {}) == built
    stored = ResNet8Config(epsilon=1e-5, softmax=False)
    assert config_from_state_dict(ResNet8().state_dict(),
                                  {"resnet8_config": json.dumps(stored.to_dict())}) == stored


def test_a_saved_state_dict_rebuilds_the_same_module(tmp_path: Path) -> None:
    torch.manual_seed(4)
    config = ResNet8Config(epsilon=1e-5, softmax=False)
    module = ResNet8(config).eval()
    path = tmp_path / "w.safetensors"
    save_state_dict(module.state_dict(), path, {"resnet8_config": json.dumps(config.to_dict())})
    rebuilt, info = native_from_state_dict(path)
    assert rebuilt.config == config
    assert info["output_kind"] == "logits"
    assert info["builder"] == "native"
    x = torch.rand(3, 32, 32, 3) * 255
    with torch.no_grad():
        np.testing.assert_array_equal(rebuilt(x).numpy(), module(x).numpy())


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda sd: sd.pop("fc.bias"), "missing 'fc.bias'"),
    (lambda sd: sd.update(extra=torch.zeros(1)), "unexpected 'extra'"),
    (lambda sd: sd.update({"fc.bias": torch.zeros(11)}), "fc.bias has shape (11,)"),
    (lambda sd: sd.pop("conv.weight"), "not a state dict of the ResNet8"),
])
def test_a_state_dict_of_another_model_is_invalid_input(tmp_path: Path, edit,
                                                         fragment: str) -> None:
    state = dict(ResNet8().state_dict())
    edit(state)
    path = tmp_path / "w.pt"
    torch.save(state, path)
    with pytest.raises(InvalidInputError, match=re.escape(fragment)):
        native_from_state_dict(path)


def test_the_native_builder_reads_h5_files_only(tmp_path: Path) -> None:
    from test_hardening import keras_layer, keras_model, write_h5

    config = keras_model(keras_layer("Conv2D", "conv", "in", filters=4, kernel_size=[1, 1]))
    keras_file = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_file, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
    with pytest.raises(UsageError, match=r"reads \.h5 weights"):
        native_from_keras(keras_file)
    with pytest.raises(UsageError, match="not recognised as the MLCommons ResNet8"):
        native_from_keras(write_h5(tmp_path / "m.h5", config))
