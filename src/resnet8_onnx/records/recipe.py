"""What a quantisation recipe is: the data a quantisation record states and ``quantize`` runs.

It lives with the records (which read it back from saved files) so that records import
nothing of the quantizer; the grid and the choice among measured recipes stay in
:mod:`resnet8_onnx.quantize.recipe`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resnet8_onnx.support.errors import UsageError

FORMATS = ("qdq", "qoperator")
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
METHODS = ("minmax", "entropy", "percentile")

# ONNX Runtime's int8 kernels take uint8 weights only with uint8 activations.
UNSUPPORTED_TYPES = frozenset({("int8", "uint8")})


def unsupported_types_message(activations: str, weights: str) -> str:
    """The one line for a type combination ONNX Runtime cannot run (a usage error)."""
    return (f"--activations {activations} with --weights {weights} is not supported by ONNX "
            "Runtime's int8 kernels (use --weights int8, or --activations uint8)")


_ABBREVIATION = {"uint8": "u8", "int8": "s8"}


@dataclass(frozen=True)
class Recipe:
    """One way to quantise: what ``onnxruntime.quantization.quantize_static`` is asked for."""

    format: str = "qdq"
    activations: str = "uint8"
    weights: str = "int8"
    per_channel: bool = True
    method: str = "minmax"
    exclude: tuple[str, ...] = ()
    # Average pooling computed in float between dequantise and quantise. ONNX Runtime's QDQ
    # quantiser gives an AveragePool output the scale of its input, far too coarse for an
    # 8×8 mean; on ResNet8 that alone costs a point of agreement with fp32 (measured).
    float_pooling: bool = False

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.format, FORMATS, "format"),
                                     (self.activations, ACTIVATION_TYPES, "activation type"),
                                     (self.weights, WEIGHT_TYPES, "weight type"),
                                     (self.method, METHODS, "calibration method")):
            if value not in allowed:
                raise UsageError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        if (self.activations, self.weights) in UNSUPPORTED_TYPES:
            raise UsageError(unsupported_types_message(self.activations, self.weights))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def label(self) -> str:
        """'QDQ u8/s8 minmax float-pool': short enough for a table row (per-channel implied)."""
        text = (f"{'QDQ' if self.format == 'qdq' else 'QOperator'} "
                f"{_ABBREVIATION[self.activations]}/{_ABBREVIATION[self.weights]} {self.method}")
        if not self.per_channel:
            text += " per-tensor"
        if self.float_pooling:
            text += " float-pool"
        if self.exclude:
            text += f" +{len(self.exclude)} float node{'s' if len(self.exclude) > 1 else ''}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "activations": self.activations, "weights": self.weights,
                "per_channel": self.per_channel, "method": self.method,
                "exclude": list(self.exclude), "float_pooling": self.float_pooling,
                "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe ``to_dict`` wrote; a missing field takes its default."""
        default = cls()
        return cls(format=data.get("format", default.format),
                   activations=data.get("activations", default.activations),
                   weights=data.get("weights", default.weights),
                   per_channel=bool(data.get("per_channel", default.per_channel)),
                   method=data.get("method", default.method),
                   exclude=tuple(data.get("exclude") or ()),
                   float_pooling=bool(data.get("float_pooling", default.float_pooling)))
