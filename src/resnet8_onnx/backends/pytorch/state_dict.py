"""The native ResNet8 from a saved state dict (``.safetensors``, ``.pt``), read without pickle.

The loader half of the native port: the converter (:mod:`resnet8_onnx.convert.native_resnet8`)
writes these files, the PyTorch backend and the converter's checks read them back here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resnet8_onnx.backends.pytorch.safe_io import load_state_dict
from resnet8_onnx.support.errors import InvalidInputError

if TYPE_CHECKING:
    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8, ResNet8Config


def load_into(module: Any, state_dict: Mapping[str, Any], source: str) -> None:
    """Load ``state_dict`` into ``module``, refusing a missing, extra or misshapen tensor."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise InvalidInputError(f"{source}: not a state dict of this ResNet8 ({what})")
    for key, value in expected.items():
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise InvalidInputError(
                f"{source}: {key} has shape {tuple(state_dict[key].shape)}, the module "
                f"expects {tuple(value.shape)}")
    module.load_state_dict({k: state_dict[k].to(v.dtype) for k, v in expected.items()})


def config_from_state_dict(state_dict: Mapping[str, Any],
                           metadata: Mapping[str, str]) -> ResNet8Config:
    """The module config stored beside the weights, or the MLCommons defaults read off shapes.

    A state dict without our metadata (a ``.pt``) is read as the MLCommons layout: stride 2
    exactly where a stack has a projection, BatchNorm epsilon 1e-3, softmax output, the input
    32×32 with as many channels as the stem convolution takes.
    """
    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8Config, StackSpec

    if "resnet8_config" in metadata:
        return ResNet8Config.from_dict(json.loads(metadata["resnet8_config"]))
    stem = state_dict["conv.weight"]
    stacks = []
    i = 0
    while f"stacks.{i}.conv1.weight" in state_dict:
        projection = f"stacks.{i}.shortcut.weight" in state_dict
        stacks.append(StackSpec(int(state_dict[f"stacks.{i}.conv1.weight"].shape[0]),
                                2 if projection else 1, projection))
        i += 1
    return ResNet8Config(input_shape=(32, 32, int(stem.shape[1])),
                         stem_filters=int(stem.shape[0]), stacks=tuple(stacks),
                         num_classes=int(state_dict["fc.weight"].shape[0]),
                         conv_bias="conv.bias" in state_dict)


def native_from_state_dict(path: str | os.PathLike[str]) -> tuple[ResNet8, dict[str, Any]]:
    """The native ResNet8 from a ``.safetensors``/``.pt`` state dict; (module, metadata)."""
    state_dict, metadata = load_state_dict(path)
    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8

    try:
        config = config_from_state_dict(state_dict, metadata)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise InvalidInputError(f"{path}: not a state dict of the ResNet8 ({exc})") from None
    module = ResNet8(config)
    load_into(module, state_dict, str(path))
    info: dict[str, Any] = {}
    if "resnet8_onnx" in metadata:
        with contextlib.suppress(ValueError):
            info = json.loads(metadata["resnet8_onnx"])
    info.setdefault("output_kind", "probabilities" if config.softmax else "logits")
    info.setdefault("input_shape", ["N", *config.input_shape])
    info.setdefault("builder", "native")
    return module.eval(), info

