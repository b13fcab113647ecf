"""The record of ``tune``: every runtime × precision × recipe candidate as measured on this
machine, the one chosen, and what proves it (held-out agreement with ONNX Runtime fp32, the
speed against it in the same run, the test-set agreement, the reproduction from the written
file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from resnet8_onnx.records.base import SCHEMA_PREFIX, Part, Record, fraction, tool
from resnet8_onnx.records.quantization import FileFigures, ImageRole


@dataclass(kw_only=True)
class TuneCandidate(Part):
    """One configuration (runtime, precision or int8 recipe) as measured."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"recipe"})

    name: str = ""  # "onnxruntime-fp32", "openvino-bf16", "openvino-int8" …
    runtime: str = ""
    arithmetic: str = ""  # fp32, bf16, f16, int8
    settings: dict[str, Any] = field(default_factory=dict)  # what the runtime is told
    recipe: str | None = None  # the int8 recipe, for ONNX Runtime int8 (quantize's choice)
    holdout_agreement: int | None = None  # held-out images whose top-1 equals fp32's
    holdout_count: int = 0
    holdout_mean_abs_diff: float | None = None
    holdout_max_abs_diff: float | None = None
    images_per_second: float | None = None
    speedup: float | None = None  # images/s over ONNX Runtime fp32, same run, same images
    eligible: bool = False  # within the tolerance
    chosen: bool = False
    error: str | None = None  # why it was not measured (the CPU lacks it, it failed …)

    @property
    def agreement_fraction(self) -> float | None:
        return fraction(self.holdout_agreement, self.holdout_count)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "holdout_agreement_fraction": self.agreement_fraction}

    @classmethod
    def from_dict(cls, data: Any) -> TuneCandidate:
        data = {k: v for k, v in dict(data).items() if k != "holdout_agreement_fraction"}
        return super().from_dict(data)


@dataclass(kw_only=True)
class TuneChoice(Part):
    """The configuration written, and the figures that justify it."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"test_images"})

    name: str = ""
    runtime: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the model file(s) written
    speedup: float | None = None  # images/s over ONNX Runtime fp32, same run
    holdout_agreement: float | None = None  # fraction of held-out images agreeing with fp32
    test_agreement: float | None = None  # fraction, on the test set (--data-dir)
    test_images: int | None = None
    reason: str = ""
    # The written file reloaded as a user would (settings from its metadata): its held-out
    # outputs against the measured candidate's.
    reproduced: dict[str, Any] = field(default_factory=dict)
    command: str = ""  # how to run it: the flags that reproduce the figures


@dataclass(kw_only=True)
class TuningRecord(Record):
    """``tune``'s record (``resnet8-onnx/tuning``)."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "tuning"
    SCHEMA_VERSION: ClassVar[int] = 1
    NESTED: ClassVar = {"source": FileFigures, "chosen": TuneChoice,
                        "candidates": TuneCandidate, "calibration": ImageRole,
                        "holdout": ImageRole}

    tool: dict[str, str] = field(default_factory=tool)
    source: FileFigures = field(default_factory=FileFigures)
    chosen: TuneChoice = field(default_factory=TuneChoice)
    candidates: list[TuneCandidate] = field(default_factory=list)
    tolerance: float | None = None  # agreement a candidate may lose (a fraction)
    calibration: ImageRole = field(default_factory=ImageRole)
    holdout: ImageRole = field(default_factory=ImageRole)
    speed: dict[str, Any] = field(default_factory=dict)  # how the candidates were timed
    evaluation: dict[str, Any] | None = None  # test-set figures of fp32 and the choice
    cpu: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float | None = None
