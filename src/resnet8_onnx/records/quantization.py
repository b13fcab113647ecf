"""The record of ``quantize``: the recipe grid as measured, the choice, the images of each
role, the speed on this CPU and, optionally, test-set figures."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from resnet8_onnx.machine import CpuInfo
from resnet8_onnx.records.base import SCHEMA_PREFIX, Part, Record, fraction, tool
from resnet8_onnx.records.parts import DataInfo, Metrics, ModelInfo, SourceInfo
from resnet8_onnx.records.recipe import Recipe


class Evaluated(Protocol):
    """What Figures.of_result reads of an evaluation (an ``EvaluationRecord`` fits): its
    model and metrics blocks, so this module needs not import the records that nest it."""

    @property
    def model(self) -> ModelInfo: ...
    @property
    def metrics(self) -> Metrics: ...


# --------------------------------------------------------------------------- quantisation
@dataclass(frozen=True)
class Candidate:
    """One recipe of the grid, as measured."""

    recipe: Recipe | None  # None only in a partial record read back
    holdout_agreement: int | None  # images whose top-1 equals fp32's
    holdout_count: int
    holdout_mean_abs_diff: float | None
    images_per_second: float | None
    speedup: float | None  # images/s over fp32's, same run, same images
    size_bytes: int | None
    quantize_seconds: float | None
    eligible: bool = False
    chosen: bool = False
    error: str | None = None  # quantisation failed for this recipe (the others go on)
    pruned: bool = False  # under half the fastest candidate's speed beyond the noise: not scored

    @property
    def agreement_fraction(self) -> float | None:
        return fraction(self.holdout_agreement, self.holdout_count)

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": None if self.recipe is None else self.recipe.to_dict(),
                "holdout_agreement": self.holdout_agreement,
                "holdout_count": self.holdout_count,
                "holdout_agreement_fraction": self.agreement_fraction,
                "holdout_mean_abs_diff": self.holdout_mean_abs_diff,
                "images_per_second": self.images_per_second, "speedup": self.speedup,
                "size_bytes": self.size_bytes, "quantize_seconds": self.quantize_seconds,
                "eligible": self.eligible, "chosen": self.chosen, "error": self.error,
                "pruned": self.pruned}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        names = {f.name for f in dataclasses.fields(cls)}
        # What a partial record leaves unsaid stays unsaid: shown as "—", never invented.
        missing = {"holdout_agreement": None, "holdout_count": 0, "holdout_mean_abs_diff": None,
                   "images_per_second": None, "speedup": None, "size_bytes": None,
                   "quantize_seconds": None}
        recipe = data.get("recipe")
        return cls(**{**missing, **{k: v for k, v in data.items() if k in names},
                      "recipe": Recipe.from_dict(recipe) if recipe else None})


@dataclass(frozen=True)
class LayerError:
    """Quantisation error at one tensor, from ONNX Runtime's ``qdq_loss_debug``.

    Both figures are signal-to-quantisation-noise ratios in dB (higher is better):
    ``local_sqnr_db`` compares the tensor before and after its own quantise/dequantise step
    (the error this layer adds), ``vs_float_sqnr_db`` compares it with the float model's
    tensor (the error accumulated up to here).
    """

    tensor: str
    node: str | None  # the node producing the tensor: what --exclude takes
    op_type: str | None
    local_sqnr_db: float
    vs_float_sqnr_db: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerError:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"tensor": "", "node": None, "op_type": None, "local_sqnr_db": float("nan"),
                   "vs_float_sqnr_db": None}
        return cls(**{**missing, **{k: v for k, v in data.items() if k in names}})


# --------------------------------------------------------------------------- its blocks
@dataclass(kw_only=True)
class FileFigures(Part):
    """A model file: where, which bytes, how big."""

    path: str = ""
    sha256: str = ""
    size_bytes: int | None = None


@dataclass(kw_only=True)
class Selection(Part):
    """How the recipe was chosen: fixed or by measurement, within which tolerance, and why."""

    mode: str = ""
    tolerance: float | None = None
    reason: str = ""
    candidates: int = 0
    min_agreement: float | None = None
    calibration_reused: bool = False


@dataclass(kw_only=True)
class ImageRole(Part):
    """The images of one role (calibration, hold-out): which, how chosen, whether they are
    test images (then every test figure is suspect and says so)."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "source", "split", "subset", "source_count", "test_indices", "purpose"})
    NESTED: ClassVar = {"source": SourceInfo}

    source: SourceInfo | None = None
    split: str | None = None
    subset: str | None = None
    count: int = 0
    source_count: int | None = None
    sha256: str = ""
    test_images: bool = False
    selection: str = ""
    test_indices: list[int] | None = None
    purpose: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.source is not None and "test_indices" not in out:
            out["test_indices"] = None  # calibration says "none" explicitly
        return out


@dataclass(kw_only=True)
class Speed(Part):
    """fp32 against int8 in one process, interleaved passes, same images and batch."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"threads", "cpu_busy"})

    fp32_images_per_second: float | None = None
    int8_images_per_second: float | None = None
    speedup: float | None = None
    images: int | None = None
    rounds: int | None = None
    batch_size: int | None = None
    measured_on: str = ""
    method: str = ""
    threads: int | None = None
    # Other work's share of the cores while the candidates and the speed block were timed.
    cpu_busy: float | None = None


@dataclass(kw_only=True)
class ClassFigures(Part):
    """One class of a model's test figures."""

    name: str = ""
    correct: int | None = None
    support: int | None = None
    accuracy: float | None = None


@dataclass(kw_only=True)
class Figures(Part):
    """One model (fp32 or int8) on the test images; ``run`` keeps only the first three."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "path", "sha256", "size_bytes", "per_class", "images_per_second", "argmax_ties"})
    NESTED: ClassVar = {"per_class": ClassFigures}

    accuracy: float | None = None
    correct: int | None = None
    total: int | None = None
    path: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    per_class: list[ClassFigures] | None = None
    images_per_second: float | None = None
    argmax_ties: int | None = None

    @classmethod
    def of_result(cls, result: Evaluated, path: str | os.PathLike[str],
                  images_per_second: float | None, *, shown_path: str | None = None) -> Figures:
        """The figures of one evaluation of the model file at ``path``."""
        m = result.metrics
        return cls(path=shown_path or str(path), sha256=result.model.sha256,
                   size_bytes=Path(path).stat().st_size, accuracy=m.accuracy,
                   correct=m.correct, total=m.total,
                   per_class=[ClassFigures(name=c.name, correct=c.correct, support=c.support,
                                           accuracy=c.accuracy) for c in m.per_class],
                   images_per_second=images_per_second, argmax_ties=m.argmax_ties)


@dataclass(kw_only=True)
class QuantEvaluation(Part):
    """fp32 and int8 on the test images: accuracy, agreement, |Δ| of outputs."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"disagreements", "first_disagreements"})
    NESTED: ClassVar = {"data": DataInfo, "fp32": Figures, "int8": Figures}

    data: DataInfo = field(default_factory=DataInfo)
    fp32: Figures = field(default_factory=Figures)
    int8: Figures = field(default_factory=Figures)
    agreement: int | None = None
    agreement_fraction: float | None = None
    disagreements: int | None = None
    first_disagreements: list[int] | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None


@dataclass(kw_only=True)
class QuantizationRecord(Record):
    """Everything ``quantize`` measured and decided: the recipe grid as measured, the choice,
    the images of each role, the speed on this CPU and, optionally, test-set figures."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "quantization-record"

    NESTED: ClassVar = {"source": FileFigures, "output": FileFigures, "selection": Selection,
                        "calibration": ImageRole, "holdout": ImageRole, "speed": Speed,
                        "evaluation": QuantEvaluation}

    tool: dict[str, Any] = field(default_factory=tool)
    kind: str = "quantize"
    source: FileFigures = field(default_factory=FileFigures)  # the fp32 model
    output: FileFigures = field(default_factory=FileFigures)  # the int8 model
    recipe: Recipe = field(default_factory=Recipe)
    selection: Selection = field(default_factory=Selection)
    candidates: tuple[Candidate, ...] = ()
    calibration: ImageRole = field(default_factory=ImageRole)
    holdout: ImageRole | None = None
    # The spec every image was prepared by (``preprocess.record``: fields and their sources).
    preprocessing: dict[str, Any] | None = None
    standard_ops: bool | None = None  # the int8 file uses standard ONNX ops only
    opset: dict[str, Any] | None = None  # the source's opset, the one quantised at, the proof
    speed: Speed = field(default_factory=Speed)
    cpu: CpuInfo | None = None
    speed_verdict: str = ""
    evaluation: QuantEvaluation | None = None  # test-set figures
    layer_errors: tuple[LayerError, ...] | None = None
    layer_errors_note: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # One line each, printed on stderr: e.g. the fp32 model near chance on labelled images.
    warnings: tuple[str, ...] = ()
    seconds: float | None = None

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.chosen), None)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update({
            "recipe": self.recipe.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "cpu": None if self.cpu is None else self.cpu.to_dict(),
            "layer_errors": None if self.layer_errors is None
            else [e.to_dict() for e in self.layer_errors],
            "notes": list(self.notes),
        })
        if self.warnings:
            out["warnings"] = list(self.warnings)
        else:  # absent, as in records written before it existed
            out.pop("warnings", None)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizationRecord:
        record = super().from_dict(data)
        errors = data.get("layer_errors")  # read from the JSON: the fields hold it as given
        return dataclasses.replace(
            record, recipe=Recipe.from_dict(record.recipe) if isinstance(record.recipe, Mapping)
            else record.recipe,
            candidates=tuple(Candidate.from_dict(c) for c in data.get("candidates") or ()),
            cpu=CpuInfo.from_dict(record.cpu) if isinstance(record.cpu, Mapping) else record.cpu,
            layer_errors=None if errors is None else tuple(LayerError.from_dict(e)
                                                           for e in errors),
            notes=tuple(record.notes), warnings=tuple(record.warnings or ()))
