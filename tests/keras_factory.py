"""Hand-written Keras files for the safe pre-scan: configs in .h5 attributes or .keras zips.

No TensorFlow: the files hold a model config and nothing to run, which is all the pre-scan
reads.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import pytest

from resnet8_onnx.support.errors import ToolError


def one_line_error(excinfo: pytest.ExceptionInfo[ToolError], *fragments: str) -> str:
    """The error's message, checked to be one line that mentions every fragment."""
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message



def layer(cls: str, name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": []}


def functional(*layers: dict[str, Any], name: str = "model") -> dict[str, Any]:
    return {"class_name": "Functional",
            "config": {"name": name, "layers": list(layers),
                       "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]]}}


def write_h5(path: Path, config: Any, *, keras_version: str = "2.4.0") -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = keras_version
    return path


def write_keras_zip(path: Path, config: Any, *, keras_version: str = "3.15.1") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": keras_version}))
        zf.writestr("config.json", json.dumps(config))
    return path


SAFE_LAYERS = (
    layer("InputLayer", "in", batch_input_shape=[None, 32, 32, 3]),
    layer("Conv2D", "conv", filters=4,
          kernel_initializer={"class_name": "HeNormal", "config": {"seed": None}}),
    layer("Dense", "out", units=10, activation="softmax"),
)

LAMBDA = layer("Lambda", "lam", function=["4wEAAAAAAAAA", None, None], function_type="lambda")
