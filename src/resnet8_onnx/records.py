"""The typed results every command produces, one dataclass per kind, each with a schema.

Evaluation, comparison (``compare`` and ``run``; ``run``'s adds the conversion, verification
and verdict), verification, benchmark and quantisation records. Every record's JSON carries
``schema`` (``"resnet8-onnx/<kind>"``) and ``schema_version`` beside the keys it always had,
so a reader can tell what a saved file holds and whether it understands that version.

``to_dict()`` gives the JSON-ready mapping (the keys of the reports, unchanged); ``from_dict()``
reads one back, keeping keys it does not know in ``extra`` so that a round trip loses
nothing. Records hold data only: the writers are in :mod:`resnet8_onnx.report`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import __version__

if TYPE_CHECKING:
    from .evaluate import EvaluationResult
    from .quantize.cpu import CpuInfo
    from .quantize.recipe import Recipe

SCHEMA_PREFIX = "resnet8-onnx/"

R = TypeVar("R", bound="Record")


def tool() -> dict[str, str]:
    """The ``tool`` entry of every record: which program, which version wrote it."""
    return {"name": "resnet8-onnx", "version": __version__}


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(kw_only=True)
class Record:
    """Base of the records: schema fields, ``to_dict``/``from_dict``, unknown keys kept."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "record"
    SCHEMA_VERSION: ClassVar[int] = 1
    # Keys written only when set (the producers leave them out otherwise).
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    # Fields holding a list of nested records, and their type.
    NESTED: ClassVar[Mapping[str, type[Record]]] = {}

    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.SCHEMA, "schema_version": self.SCHEMA_VERSION}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = _plain(value)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record of ``data`` (as ``to_dict`` or an older version wrote it).

        A ``schema`` naming another kind of record is refused with ``ValueError``; a record
        written before schemas existed has none and is read as this kind.
        """
        data = dict(data)
        schema = data.pop("schema", None)
        data.pop("schema_version", None)
        if schema is not None and schema != cls.SCHEMA:
            raise ValueError(f"a {schema} record is not a {cls.SCHEMA} record")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs: dict[str, Any] = {key: data.pop(key) for key in list(data) if key in names}
        for key, kind in cls.NESTED.items():
            if isinstance(kwargs.get(key), list):
                kwargs[key] = [kind.from_dict(v) if isinstance(v, Mapping) else v
                               for v in kwargs[key]]
        return cls(**kwargs, extra=data)


@dataclass(kw_only=True)
class EvaluationRecord(Record):
    """One model on one set of images: what ran, on what, the metrics, how fast.

    In a comparison each model's record also carries its ``label``, whether it is
    ``quantized`` and, for ``compare``, its ``versus_reference`` agreement and |Δ|.
    """

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "evaluation"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"label", "quantized", "versus_reference"})

    tool: dict[str, Any] = field(default_factory=tool)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    quantized: bool | None = None
    versus_reference: dict[str, Any] | None = None


@dataclass(kw_only=True)
class ComparisonRecord(Record):
    """Several models on the same images, the first the reference.

    ``compare`` fills ``tool``, ``kind``, ``reference`` and each model's ``versus_reference``;
    ``run`` fills the conversion, structure, parity (with the dynamic-batch check),
    provenance, layer-by-layer comparison, verdict, the int8 record and the files written.
    """

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "comparison"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "tool", "kind", "reference", "conversion", "structure", "parity", "verdict",
        "provenance", "reference_parameters", "reference_batch_normalization_layers",
        "layerwise", "int8", "files"})
    NESTED: ClassVar[Mapping[str, type[Record]]] = {"models": EvaluationRecord}

    models: list[EvaluationRecord] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    tool: dict[str, Any] | None = None
    kind: str | None = None
    reference: dict[str, Any] | None = None
    conversion: dict[str, Any] | None = None
    structure: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    reference_parameters: int | None = None
    reference_batch_normalization_layers: int | None = None
    layerwise: dict[str, Any] | None = None
    int8: dict[str, Any] | None = None
    files: dict[str, str] | None = None


@dataclass(kw_only=True)
class VerificationRecord(Record):
    """An ONNX model against its reference: structure, interface, dynamic batch, parity."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "verification"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "reference_parameters", "reference_batch_normalization_layers", "layerwise", "data"})

    passed: bool = False
    samples: int = 0
    argmax_agreement: int = 0
    max_abs_diff: float | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    structure: dict[str, Any] = field(default_factory=dict)
    interface_problems: list[str] = field(default_factory=list)
    dynamic_batch: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    reference_parameters: int | None = None
    reference_batch_normalization_layers: int | None = None
    layerwise: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


@dataclass(kw_only=True)
class BenchmarkRecord(Record):
    """Throughput and latency per configuration, the machine and its MatMul reference."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "benchmark"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"optimized_model"})

    tool: dict[str, Any] = field(default_factory=tool)
    kind: str = "benchmark"
    inputs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    best: list[dict[str, Any]] = field(default_factory=list)
    optimized_model: dict[str, Any] | None = None
    seconds: float | None = None


# --------------------------------------------------------------------------- quantisation
@dataclass(frozen=True)
class Candidate:
    """One recipe of the grid, as measured."""

    recipe: Recipe
    holdout_agreement: int | None  # images whose top-1 equals fp32's
    holdout_count: int
    holdout_mean_abs_diff: float | None
    images_per_second: float | None
    speedup: float | None  # images/s over fp32's, same run, same images
    size_bytes: int
    quantize_seconds: float
    eligible: bool = False
    chosen: bool = False
    error: str | None = None  # quantisation failed for this recipe (the others go on)
    pruned: bool = False  # under half the fastest candidate's speed: timed once, not scored

    @property
    def agreement_fraction(self) -> float | None:
        if self.holdout_agreement is None or not self.holdout_count:
            return None
        return self.holdout_agreement / self.holdout_count

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "holdout_agreement": self.holdout_agreement,
                "holdout_count": self.holdout_count,
                "holdout_agreement_fraction": self.agreement_fraction,
                "holdout_mean_abs_diff": self.holdout_mean_abs_diff,
                "images_per_second": self.images_per_second, "speedup": self.speedup,
                "size_bytes": self.size_bytes, "quantize_seconds": self.quantize_seconds,
                "eligible": self.eligible, "chosen": self.chosen, "error": self.error,
                "pruned": self.pruned}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        from .quantize.recipe import Recipe

        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in names},
                      "recipe": Recipe.from_dict(data["recipe"])})


@dataclass(frozen=True)
class ModelFigures:
    """One model (fp32 or int8) on the evaluation images."""

    path: str
    sha256: str
    size_bytes: int
    accuracy: float
    correct: int
    total: int
    per_class: tuple[dict[str, Any], ...]  # name, correct, support, accuracy
    images_per_second: float | None
    argmax_ties: int = 0

    @classmethod
    def from_result(cls, result: EvaluationResult, path: str | os.PathLike[str],
                    images_per_second: float | None) -> ModelFigures:
        m = result.metrics
        return cls(path=str(path), sha256=result.backend["model_sha256"],
                   size_bytes=Path(path).stat().st_size, accuracy=m.accuracy,
                   correct=m.correct, total=m.total,
                   per_class=tuple({"name": c.name, "correct": c.correct,
                                    "support": c.support, "accuracy": c.accuracy}
                                   for c in m.per_class),
                   images_per_second=images_per_second, argmax_ties=m.argmax_ties)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "accuracy": self.accuracy, "correct": self.correct, "total": self.total,
                "per_class": [dict(c) for c in self.per_class],
                "images_per_second": self.images_per_second, "argmax_ties": self.argmax_ties}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelFigures:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        return cls(**{**kwargs, "per_class": tuple(kwargs.get("per_class") or ())})


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
        return cls(**{k: v for k, v in data.items() if k in names})


def _default_recipe() -> Recipe:
    from .quantize.recipe import Recipe

    return Recipe()


@dataclass(kw_only=True)
class QuantizationRecord(Record):
    """Everything ``quantize`` measured and decided: the recipe grid as measured, the choice,
    the images of each role, the speed on this CPU and, optionally, test-set figures."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "quantization-record"

    tool: dict[str, Any] = field(default_factory=tool)
    kind: str = "quantize"
    source: dict[str, Any] = field(default_factory=dict)  # the fp32 model: path, sha256, size
    output: dict[str, Any] = field(default_factory=dict)  # the int8 model: path, sha256, size
    recipe: Recipe = field(default_factory=_default_recipe)
    selection: dict[str, Any] = field(default_factory=dict)  # mode, tolerance, reason
    candidates: tuple[Candidate, ...] = ()
    calibration: dict[str, Any] = field(default_factory=dict)  # source, count, sha256, rule
    holdout: dict[str, Any] | None = None
    speed: dict[str, Any] = field(default_factory=dict)  # fp32/int8 images/s, speedup, ...
    cpu: CpuInfo | None = None
    speed_verdict: str = ""
    evaluation: dict[str, Any] | None = None  # test-set figures: fp32, int8, agreement, |Δ|
    layer_errors: tuple[LayerError, ...] | None = None
    layer_errors_note: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
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
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantizationRecord:
        from .quantize.cpu import CpuInfo
        from .quantize.recipe import Recipe

        record = super().from_dict(data)
        errors = record.layer_errors
        return dataclasses.replace(
            record, recipe=Recipe.from_dict(record.recipe) if isinstance(record.recipe, Mapping)
            else record.recipe,
            candidates=tuple(Candidate.from_dict(c) for c in record.candidates),
            cpu=CpuInfo.from_dict(record.cpu) if isinstance(record.cpu, Mapping) else record.cpu,
            layer_errors=None if errors is None else tuple(LayerError.from_dict(e)
                                                           for e in errors),
            notes=tuple(record.notes))


RECORD_TYPES: tuple[type[Record], ...] = (EvaluationRecord, ComparisonRecord,
                                          VerificationRecord, BenchmarkRecord,
                                          QuantizationRecord)


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """The record a saved JSON holds, chosen by its ``schema``."""
    schema = data.get("schema")
    for kind in RECORD_TYPES:
        if schema == kind.SCHEMA:
            return kind.from_dict(data)
    raise ValueError(f"unknown record schema {schema!r}")
