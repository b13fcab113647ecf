"""torch_models: the native ResNet8 module: Keras' padding, BatchNorm folding, its config.

Numbers are checked against independent implementations: ONNX Runtime running a hand-built
convolution with explicit pads, and the unfolded module itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from resnet8_onnx.backends.pytorch.resnet8 import (
    KerasConv2d,
    ResNet8,
    ResNet8Config,
    StackSpec,
    fold_batchnorm,
    keras_same_padding,
)
from torch_factory import ort_output


# --------------------------------------------------------------------------- padding
@pytest.mark.parametrize(("size", "kernel", "stride", "expected"), [
    (32, 3, 1, (1, 1)), (32, 3, 2, (0, 1)), (16, 3, 2, (0, 1)), (32, 1, 2, (0, 0)),
    (7, 3, 2, (1, 1)), (8, 8, 8, (0, 0)),
])
def test_keras_same_padding(size, kernel, stride, expected) -> None:
    before, after = keras_same_padding(size, kernel, stride)
    assert (before, after) == expected
    # Keras' rule: the output has ceil(size / stride) positions.
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


@pytest.mark.parametrize("size", [32, 16, 9])
def test_stride2_conv_pads_bottom_right_like_onnx_runtime(size: int) -> None:
    """KerasConv2d against ONNX Runtime running a Conv with explicit pads (0, 0, 1, 1)."""
    rng = np.random.default_rng(size)
    conv = KerasConv2d(4, 5, 3, 2, (size, size))
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(rng.normal(size=(5, 4, 3, 3)).astype(np.float32)))
        conv.bias.copy_(torch.from_numpy(rng.normal(size=5).astype(np.float32)))
    top, bottom = keras_same_padding(size, 3, 2)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=[2, 2],
                            pads=[top, top, bottom, bottom])
    graph = helper.make_graph(
        [node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(conv.weight.detach().numpy(), "w"),
         numpy_helper.from_array(conv.bias.detach().numpy(), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(2, 4, size, size)).astype(np.float32)
    expected = ort_output(model, x)
    with torch.no_grad():
        got = conv(torch.from_numpy(x)).numpy()
        symmetric = torch.nn.functional.conv2d(torch.from_numpy(x), conv.weight, conv.bias,
                                               stride=2, padding=1).numpy()
    assert got.shape == expected.shape == (2, 5, -(-size // 2), -(-size // 2))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    if top != bottom:  # the test can fail: PyTorch's own symmetric padding is different
        assert symmetric.shape != expected.shape or np.abs(symmetric - expected).max() > 0.1


def test_fold_batchnorm_keeps_outputs_and_the_original() -> None:
    torch.manual_seed(0)
    model = ResNet8().eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
    folded = fold_batchnorm(model)
    x = torch.rand(5, 32, 32, 3) * 255
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 7


def test_fold_batchnorm_leaves_a_batchnorm_without_scale_as_it_is() -> None:
    """A BatchNorm without γ/β (affine=False) is kept, not folded (it used to crash)."""
    torch.manual_seed(1)
    model = ResNet8().eval()
    model.bn = torch.nn.BatchNorm2d(model.config.stem_filters, affine=False).eval()
    model.bn.running_mean.uniform_(-1, 1)
    folded = fold_batchnorm(model)
    x = torch.rand(3, 32, 32, 3) * 255
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-5)
    assert isinstance(folded.bn, torch.nn.BatchNorm2d)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules()) == 1


def test_config_round_trips_through_a_dict() -> None:
    config = ResNet8Config(epsilon=1e-5, softmax=False)
    assert ResNet8Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="architecture"):
        ResNet8Config.from_dict({**config.to_dict(), "architecture": "vgg"})


SMALL = ResNet8Config(input_shape=(28, 20, 1), stem_filters=8,
                      stacks=(StackSpec(8, 1, False), StackSpec(12, 2, True)), num_classes=5)


def _randomise_batchnorms(model: ResNet8) -> ResNet8:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model


def test_every_convolution_knows_the_size_it_really_produces() -> None:
    """Each layer's padding is computed from the size the previous one declares: a wrong
    ``out_size`` would pad the next convolution wrongly without failing."""
    torch.manual_seed(1)
    model = ResNet8(SMALL).eval()
    seen = {}
    for name, module in model.named_modules():
        if isinstance(module, KerasConv2d):
            module.register_forward_hook(
                lambda m, args, out, name=name: seen.__setitem__(name, (m, out.shape[2:])))
    x = torch.rand(3, 28, 20, 1) * 255
    with torch.no_grad():
        y = model(x)
    assert y.shape == (3, 5)
    torch.testing.assert_close(y.sum(dim=1), torch.ones(3))
    assert len(seen) == 1 + 2 + 3  # stem, two in the first stack, three with the projection
    for name, (module, size) in seen.items():
        assert tuple(size) == module.out_size, name
    # Keras' "same": ceil(size / stride) at every stride (28×20 → 14×10 after the stride 2).
    assert tuple(seen["stacks.1.conv2"][1]) == (14, 10)
    assert tuple(seen["stacks.1.shortcut"][1]) == (14, 10)


def test_logits_are_the_softmax_models_output_before_the_softmax() -> None:
    torch.manual_seed(2)
    probabilities = _randomise_batchnorms(ResNet8(SMALL)).eval()
    logits = ResNet8(ResNet8Config(**{**SMALL.__dict__, "softmax": False})).eval()
    logits.load_state_dict(probabilities.state_dict())
    x = torch.rand(4, 28, 20, 1) * 255
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(logits(x), dim=1), probabilities(x))
        assert not torch.allclose(logits(x).sum(dim=1), torch.ones(4))


def test_folding_adds_a_bias_where_the_convolutions_had_none() -> None:
    torch.manual_seed(3)
    model = _randomise_batchnorms(ResNet8(ResNet8Config(conv_bias=False))).eval()
    assert model.conv.bias is None
    folded = fold_batchnorm(model)
    assert folded.conv.bias is not None
    assert model.conv.bias is None  # the original is untouched
    x = torch.rand(3, 32, 32, 3) * 255
    with torch.no_grad():
        np.testing.assert_allclose(folded(x).numpy(), model(x).numpy(), atol=1e-5)


def test_configs_that_cannot_be_built_are_refused() -> None:
    d = ResNet8Config().to_dict()
    with pytest.raises(ValueError, match="padding"):
        ResNet8Config.from_dict({**d, "padding": "causal"})
    with pytest.raises(ValueError, match="stacks"):
        ResNet8Config.from_dict({**d, "stacks": []})
    with pytest.raises(KeyError):
        ResNet8Config.from_dict({k: v for k, v in d.items() if k != "epsilon"})
    assert ResNet8Config.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
