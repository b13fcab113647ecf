"""The MLCommons ResNet8 as a readable PyTorch module, numerically equal to the Keras original.

Three details decide whether a port of a Keras CNN matches it on real images, and each is
handled here rather than left to the caller:

* **Padding.** Keras' ``padding="same"`` pads ``total = max((ceil(n/s) - 1)·s + k - n, 0)``
  and puts the odd pixel at the *bottom/right*. For the 3×3 stride-2 convolutions on 32×32
  and 16×16 maps that is ``(0, 1, 0, 1)``, which PyTorch's symmetric ``padding=`` cannot
  express, so :class:`KerasConv2d` pads explicitly when the split is uneven.
* **BatchNorm epsilon.** Keras defaults to 1e-3, PyTorch to 1e-5; the value comes from the
  Keras config.
* **Layout.** The module takes the project's common input, NHWC float32 raw 0–255 pixels, and
  permutes to NCHW inside. A permuted NHWC tensor *is* a channels-last NCHW tensor, so no copy
  is made and the convolutions run in the layout oneDNN/cuDNN prefer.

This module imports torch at import time; only code that already knows torch is installed
imports it (see :func:`resnet8_onnx.convert.to_torch.import_torch`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet8_onnx.data.format import IMAGE_SHAPE

ARCHITECTURE = "mlcommons-resnet8"


def keras_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial dimension under Keras' ``padding="same"``."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class StackSpec:
    """One residual stack: two 3×3 convolutions, and a 1×1 projection when the shape changes."""

    filters: int
    stride: int
    projection: bool


@dataclass(frozen=True)
class ResNet8Config:
    """Everything that shapes the module; read from the Keras config, stored beside weights."""

    input_shape: tuple[int, int, int] = IMAGE_SHAPE
    stem_filters: int = 16
    stacks: tuple[StackSpec, ...] = (
        StackSpec(16, 1, False), StackSpec(32, 2, True), StackSpec(64, 2, True))
    num_classes: int = 10
    epsilon: float = 1e-3
    softmax: bool = True
    conv_bias: bool = True
    padding: str = "same"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["architecture"] = ARCHITECTURE
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ResNet8Config:
        """Inverse of :meth:`to_dict`; raises ``ValueError``/``TypeError``/``KeyError`` on junk."""
        if d.get("architecture", ARCHITECTURE) != ARCHITECTURE:
            raise ValueError(f"architecture {d.get('architecture')!r} is not {ARCHITECTURE}")
        h, w, c = (int(v) for v in d["input_shape"])
        stacks = tuple(StackSpec(int(s["filters"]), int(s["stride"]), bool(s["projection"]))
                       for s in d["stacks"])
        padding = str(d.get("padding", "same"))
        if padding not in ("same", "valid") or not stacks:
            raise ValueError("padding must be 'same' or 'valid' and there must be stacks")
        return cls(input_shape=(h, w, c), stem_filters=int(d["stem_filters"]), stacks=stacks,
                   num_classes=int(d["num_classes"]), epsilon=float(d["epsilon"]),
                   softmax=bool(d["softmax"]), conv_bias=bool(d["conv_bias"]), padding=padding)


class KerasConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras' padding rule for a known input size (see module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 in_size: tuple[int, int], *, bias: bool = True, padding: str = "same") -> None:
        if padding == "same":
            (top, bottom), (left, right) = (keras_same_padding(n, kernel, stride)
                                            for n in in_size)
        else:
            top = bottom = left = right = 0
        symmetric = top == bottom and left == right
        super().__init__(in_channels, out_channels, kernel, stride,
                         padding=(top, left) if symmetric else 0, bias=bias)
        # F.pad order is (left, right, top, bottom) for the last two dimensions.
        self.extra_padding = None if symmetric else (left, right, top, bottom)
        (h, w) = in_size
        self.out_size = ((h + top + bottom - kernel) // stride + 1,
                         (w + left + right - kernel) // stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_padding is not None:
            x = F.pad(x, self.extra_padding)
        return super().forward(x)


class ResidualStack(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the input (or its 1×1 projection), then ReLU."""

    def __init__(self, in_channels: int, spec: StackSpec, in_size: tuple[int, int],
                 config: ResNet8Config) -> None:
        super().__init__()
        opts: dict[str, Any] = {"bias": config.conv_bias, "padding": config.padding}
        self.conv1 = KerasConv2d(in_channels, spec.filters, 3, spec.stride, in_size, **opts)
        self.bn1 = nn.BatchNorm2d(spec.filters, eps=config.epsilon)
        self.conv2 = KerasConv2d(spec.filters, spec.filters, 3, 1, self.conv1.out_size, **opts)
        self.bn2 = nn.BatchNorm2d(spec.filters, eps=config.epsilon)
        self.shortcut: nn.Module = (
            KerasConv2d(in_channels, spec.filters, 1, spec.stride, in_size, **opts)
            if spec.projection else nn.Identity())
        self.out_size = self.conv2.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(self.shortcut(x) + y)


class ResNet8(nn.Module):
    """MLCommons tiny ResNet8: stem conv, three residual stacks, global average pool, dense.

    Input: ``(N, H, W, C)`` float32 raw 0–255 pixels (no normalisation, like the Keras model).
    Output: ``(N, classes)`` softmax probabilities (or logits when the source had none).
    """

    def __init__(self, config: ResNet8Config | None = None) -> None:
        super().__init__()
        self.config = config = config or ResNet8Config()
        h, w, c = config.input_shape
        self.conv = KerasConv2d(c, config.stem_filters, 3, 1, (h, w), bias=config.conv_bias,
                                padding=config.padding)
        self.bn = nn.BatchNorm2d(config.stem_filters, eps=config.epsilon)
        stacks, channels, size = [], config.stem_filters, self.conv.out_size
        for spec in config.stacks:
            stack = ResidualStack(channels, spec, size, config)
            stacks.append(stack)
            channels, size = spec.filters, stack.out_size
        self.stacks = nn.Sequential(*stacks)
        self.fc = nn.Linear(channels, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)  # NHWC in; a channels-last NCHW view, no copy
        x = F.relu(self.bn(self.conv(x)))
        x = self.stacks(x)
        x = x.mean(dim=(2, 3))  # Keras' AveragePooling2D over the whole final map
        x = self.fc(x)
        return torch.softmax(x, dim=1) if self.config.softmax else x


def fold_batchnorm(model: ResNet8) -> ResNet8:
    """An inference copy of ``model`` with every BatchNorm folded into the convolution before it.

    ``bn(conv(x)) = conv'(x)`` with ``w' = w·γ/√(σ²+ε)`` and ``b' = (b − μ)·γ/√(σ²+ε) + β``,
    computed in float64 and rounded once. Seven fewer passes over the activations; the
    outputs move by rounding only (well under 1e-6 on the test set). The original stays
    untouched, so its state dict keeps the BatchNorm layers for fine-tuning.
    """
    folded = copy.deepcopy(model).eval()
    pairs: list[tuple[nn.Module, str, str]] = [(folded, "conv", "bn")]
    for stack in folded.stacks:
        pairs += [(stack, "conv1", "bn1"), (stack, "conv2", "bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            if not (isinstance(bn, nn.BatchNorm2d) and bn.weight is not None
                    and bn.bias is not None and bn.running_mean is not None
                    and bn.running_var is not None):  # an affine BN with statistics folds
                continue
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
            conv.weight.copy_(weight.to(conv.weight.dtype))
            new_bias = ((bias - bn.running_mean.double()) * scale + bn.bias.double())
            conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype))
            setattr(owner, bn_name, nn.Identity())
    return folded
