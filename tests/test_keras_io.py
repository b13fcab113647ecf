"""keras_io: the safe pre-scan of Keras files (hand-written configs, no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from conftest import shared_path
from keras_factory import (
    LAMBDA,
    SAFE_LAYERS,
    functional,
    layer,
    one_line_error,
    write_h5,
    write_keras_zip,
)
from resnet8_onnx.backends.keras.files import inspect_keras_file
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UnsafeInputError


def test_inspect_real_model_lists_its_layers_without_tensorflow() -> None:
    path = shared_path("models", "pretrainedResnet.h5")
    code = (
        "import sys\n"
        "from resnet8_onnx.backends.keras.files import inspect_keras_file\n"
        f"info = inspect_keras_file({str(path)!r})\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "print(info.model_class, info.format, info.keras_version)\n"
        "print(' '.join(sorted({c for _, c in info.layers})))\n"
        "print(info.layers[0][0], info.layers[-1][0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    head, classes, ends = done.stdout.splitlines()
    assert head == "Functional h5 2.4.0"
    assert classes.split() == sorted({"InputLayer", "Conv2D", "BatchNormalization", "Activation",
                                      "Add", "AveragePooling2D", "Flatten", "Dense"})
    assert ends == "input_1 dense"


def test_inspect_accepts_safe_h5_and_keras_configs(tmp_path: Path) -> None:
    h5 = inspect_keras_file(write_h5(tmp_path / "m.h5", functional(*SAFE_LAYERS)))
    assert (h5.format, h5.model_class, h5.keras_version) == ("h5", "Functional", "2.4.0")
    assert h5.layers == (("in", "InputLayer"), ("conv", "Conv2D"), ("out", "Dense"))
    zipped = inspect_keras_file(write_keras_zip(tmp_path / "m.keras", functional(*SAFE_LAYERS)))
    assert (zipped.format, zipped.keras_version) == ("keras", "3.15.1")
    assert zipped.to_dict()["layers"][1] == ["conv", "Conv2D"]


def test_inspect_names_nested_layers_with_their_parents(tmp_path: Path) -> None:
    inner = {"class_name": "Sequential", "name": "block",
             "config": {"name": "block", "layers": [layer("Dense", "d1", units=3)]}}
    wrapped = layer("TimeDistributed", "td", layer={"class_name": "Dense",
                                                     "config": {"name": "d2", "units": 2}})
    info = inspect_keras_file(write_h5(tmp_path / "m.h5", functional(inner, wrapped)))
    assert info.layers == (("block", "Sequential"), ("block/d1", "Dense"),
                           ("td", "TimeDistributed"), ("td/d2", "Dense"))




@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        pytest.param(functional(SAFE_LAYERS[0], LAMBDA),
                     ["refuses layer 'lam' of class Lambda", "run code stored in the file"],
                     id="lambda"),
        pytest.param(functional({"class_name": "Functional", "name": "sub",
                                 "config": {"name": "sub", "layers": [
                                     {"class_name": "Sequential", "name": "seq",
                                      "config": {"name": "seq", "layers": [LAMBDA]}}]}}),
                     ["'sub/seq/lam' of class Lambda"], id="lambda-in-nested-models"),
        pytest.param(functional(layer("TimeDistributed", "td", layer=LAMBDA)),
                     ["'td/lam' of class Lambda"], id="lambda-in-wrapper"),
        pytest.param(functional(layer("Bidirectional", "bi", layer=layer("LSTM", "f", units=2),
                                      backward_layer=layer("EvilRNN", "b"))),
                     ["'bi/b' of class EvilRNN", "not a built-in Keras layer"],
                     id="custom-backward-layer"),
        pytest.param(functional(layer("MyLayer", "mine")),
                     ["refuses layer 'mine' of class MyLayer", "not a built-in Keras layer"],
                     id="custom-layer"),
        pytest.param(functional(layer("Conv2D", "conv", kernel_initializer={
                         "class_name": "EvilInit", "config": {}})),
                     ["object of class EvilInit in layer 'conv'"], id="custom-initializer"),
        pytest.param(functional({"module": "evil.layers", "class_name": "Dense", "name": "d",
                                 "config": {"name": "d"}, "registered_name": None}),
                     ["class Dense from module 'evil.layers'"], id="module-outside-keras"),
        pytest.param(functional({"module": "keras.layers", "class_name": "Dense", "name": "d",
                                 "config": {"name": "d"}, "registered_name": "evil>Dense"}),
                     ["registered as 'evil>Dense'"], id="registered-custom-name"),
        pytest.param(functional(layer("Dense", "d", activation={
                         "module": "os", "class_name": "function", "config": "system",
                         "registered_name": None})),
                     ["class function from module 'os'"], id="function-outside-keras"),
        pytest.param(functional(layer("Dense", "d", activation={
                         "class_name": "__lambda__", "config": {"value": ["AAAA", None, None]}})),
                     ["class __lambda__", "run code stored in the file"], id="keras3-lambda-fn"),
        pytest.param(functional(layer("TFSMLayer", "sm", filepath="/tmp/x")),
                     ["'sm' of class TFSMLayer", "external TensorFlow SavedModel"], id="tfsm"),
        pytest.param({"module": "__main__", "class_name": "MyModel", "config": {}},
                     ["from module '__main__'"], id="subclassed-model"),
    ],
)
@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_inspect_refuses_code_and_custom_classes(
    tmp_path: Path, config: dict[str, Any], fragments: list[str], suffix: str
) -> None:
    path = tmp_path / f"model{suffix}"
    (write_h5 if suffix == ".h5" else write_keras_zip)(path, config)
    with pytest.raises(UnsafeInputError) as excinfo:
        inspect_keras_file(path)
    assert one_line_error(excinfo, *fragments).startswith(f"{path}: refuses ")


CUSTOM_LOSS = {"loss": {"module": "__main__", "class_name": "function", "config": "my_loss",
                        "registered_name": "my_loss"}}


def test_inspect_ignores_compile_config_that_compile_false_never_reads(tmp_path: Path) -> None:
    config = functional(*SAFE_LAYERS)
    config["compile_config"] = CUSTOM_LOSS
    assert inspect_keras_file(write_keras_zip(tmp_path / "m.keras", config)).layers


def test_inspect_scans_compile_config_of_nested_models(tmp_path: Path) -> None:
    # Keras compiles a nested model from its own compile_config even with compile=False.
    nested = functional(*SAFE_LAYERS, name="inner")
    nested["name"] = "inner"
    nested["compile_config"] = CUSTOM_LOSS
    with pytest.raises(UnsafeInputError) as excinfo:
        inspect_keras_file(write_keras_zip(tmp_path / "m.keras", functional(nested)))
    one_line_error(excinfo, "from module '__main__' in layer 'inner'")


def test_inspect_refuses_a_config_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        inspect_keras_file(write_h5(tmp_path / "m.h5", layer("Dense", "d")))
    one_line_error(excinfo, "describes a Dense", "not a Functional or Sequential")


def test_inspect_refuses_files_that_are_not_models(tmp_path: Path) -> None:
    hdf5 = tmp_path / "data.h5"
    with h5py.File(hdf5, "w") as f:
        f["x"] = np.arange(4)
    noise = tmp_path / "noise.h5"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    zipped = write_keras_zip(tmp_path / "zipped.keras", functional(*SAFE_LAYERS))
    misnamed_zip = tmp_path / "misnamed.h5"
    misnamed_zip.write_bytes(zipped.read_bytes())
    not_zip = tmp_path / "notzip.keras"
    not_zip.write_bytes(b"not a zip at all")
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("metadata.json", "{}")
    bad_json = tmp_path / "badjson.h5"
    with h5py.File(bad_json, "w") as f:
        f.attrs["model_config"] = "{not json"
    deep = tmp_path / "deep.h5"
    with h5py.File(deep, "w") as f:
        f.attrs["model_config"] = "[" * 100_000 + "]" * 100_000
    odd = tmp_path / "model.pb"
    odd.write_bytes(b"x")

    cases = [
        (hdf5, "has no model_config"), (noise, "not an HDF5 file"),
        (misnamed_zip, "zip archive"), (not_zip, "not a zip archive"),
        (empty_zip, "no config.json"), (bad_json, "not valid JSON"), (deep, str(deep)),
        (odd, "unsupported model file extension '.pb'"), (tmp_path, "is a directory"),
    ]
    for path, fragment in cases:
        with pytest.raises(InvalidInputError) as excinfo:
            inspect_keras_file(path)
        one_line_error(excinfo, str(path), fragment)


def test_inspect_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError) as excinfo:
        inspect_keras_file(tmp_path / "nope.h5")
    one_line_error(excinfo, "nope.h5", "no such file")
