"""The one interface every runtime implements.

A backend loads a model file and turns an NHWC batch of raw 0–255 RGB pixels (uint8, or float32
holding the same values) into a ``(N, num_classes)`` float32 array; whatever the model itself
wants (a cast, scaling, NCHW, a fixed batch) the backend does per batch. Everything else
(batching, metrics, parity) is written once against this protocol, so adding a runtime is
adding a module here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

OutputKind = Literal["probabilities", "logits"]


@dataclass(frozen=True)
class BackendInfo:
    """What a backend says about itself; ends up verbatim in reports."""

    name: str  # "onnxruntime", "keras", "litert"
    model_path: str
    model_sha256: str
    runtime_version: str
    input_shape: tuple[int | None, ...]  # (None, 32, 32, 3): None is a dynamic dimension
    num_classes: int
    input_dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_path": self.model_path,
            "model_sha256": self.model_sha256,
            "runtime_version": self.runtime_version,
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "num_classes": self.num_classes,
            **({"extra": self.extra} if self.extra else {}),
        }


@runtime_checkable
class Backend(Protocol):
    """Load once, predict many batches, describe itself."""

    info: BackendInfo

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for a uint8/float32 ``(N, H, W, C)`` batch of 0–255 pixels."""
        ...
