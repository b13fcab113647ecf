"""The typed results every command produces, one dataclass per kind, each with a schema.

Evaluation, comparison (``compare`` and ``run``; ``run``'s adds the conversion, verification
and verdict), verification and benchmark records. The quantisation record is typed in
:mod:`resnet8_onnx.quantize`, whose convention these follow: every record's JSON carries
``schema`` (``"resnet8-onnx/<kind>"``) and ``schema_version`` beside the keys it always had,
so a reader can tell what a saved file holds and whether it understands that version.

``to_dict()`` gives the JSON-ready mapping (the keys of the reports, unchanged); ``from_dict()``
reads one back, keeping keys it does not know in ``extra`` so that a round trip loses
nothing. Records hold data only: the writers are in :mod:`resnet8_onnx.report`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from . import __version__

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


RECORD_TYPES: tuple[type[Record], ...] = (EvaluationRecord, ComparisonRecord,
                                          VerificationRecord, BenchmarkRecord)


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """The record a saved JSON holds, chosen by its ``schema``."""
    schema = data.get("schema")
    for kind in RECORD_TYPES:
        if schema == kind.SCHEMA:
            return kind.from_dict(data)
    raise ValueError(f"unknown record schema {schema!r}")
