"""The records of evaluate, compare/run, verify and benchmark.

Their JSON keys are the ones the reports always had, plus ``schema``/``schema_version``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from resnet8_onnx.records.base import SCHEMA_PREFIX, UNSAVED, Part, Record, tool
from resnet8_onnx.records.parts import (
    Conversion,
    DataInfo,
    DynamicBatch,
    Layerwise,
    Metrics,
    ModelInfo,
    Parity,
    Provenance,
    RunnerInfo,
    RunSettings,
    Structure,
    Timings,
    Verdict,
    Versus,
)
from resnet8_onnx.records.quantization import QuantizationRecord

if TYPE_CHECKING:
    import numpy as np


@dataclass(kw_only=True)
class EvaluationRecord(Record):
    """One model on one set of images: what ran, on what, the metrics, how fast.

    In a comparison each model's record also carries its ``label``, whether it is
    ``quantized`` and, for ``compare``, its ``versus_reference`` agreement and |Δ|.
    The record ``evaluate`` returns also holds the raw ``outputs`` (N, C) and ``labels``
    (N,) that compare, run and quantize measure against each other; they are not saved
    (``None`` in a record read back).
    """

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "evaluation"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"label", "quantized", "versus_reference",
                                                    "warnings"})
    NESTED: ClassVar[Mapping[str, type[Part]]] = {
        "model": ModelInfo, "data": DataInfo, "settings": RunSettings, "metrics": Metrics,
        "timings": Timings, "versus_reference": Versus}

    tool: dict[str, Any] = field(default_factory=tool)
    model: ModelInfo = field(default_factory=ModelInfo)
    data: DataInfo = field(default_factory=DataInfo)
    settings: RunSettings = field(default_factory=RunSettings)
    metrics: Metrics = field(default_factory=Metrics)
    environment: dict[str, Any] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    label: str | None = None
    quantized: bool | None = None
    versus_reference: Versus | None = None
    # One line each, also printed on stderr: e.g. accuracy near chance (the spec looks wrong).
    warnings: list[str] | None = None
    outputs: np.ndarray | None = field(default=None, repr=False, compare=False,
                                       metadata=UNSAVED)
    labels: np.ndarray | None = field(default=None, repr=False, compare=False,
                                      metadata=UNSAVED)

    def live_outputs(self) -> np.ndarray:
        """The raw outputs; only the live record ``evaluate`` returned has them."""
        if self.outputs is None:
            raise ValueError(f"{self.model.path or 'this record'}: a record read back holds "
                             "no outputs (they are not saved)")
        return self.outputs

    @property
    def predictions(self) -> np.ndarray:
        """Top-1 class of each image (of the live record, see :meth:`live_outputs`)."""
        return self.live_outputs().argmax(axis=1)


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
    NESTED: ClassVar[Mapping[str, type[Part]]] = {
        "models": EvaluationRecord, "data": DataInfo, "settings": RunSettings,
        "conversion": Conversion, "structure": Structure, "parity": Parity,
        "verdict": Verdict, "provenance": Provenance, "layerwise": Layerwise,
        "int8": QuantizationRecord}

    models: list[EvaluationRecord] = field(default_factory=list)
    data: DataInfo = field(default_factory=DataInfo)
    settings: RunSettings = field(default_factory=RunSettings)
    tool: dict[str, Any] | None = None
    kind: str | None = None
    reference: dict[str, Any] | None = None
    conversion: Conversion | None = None
    structure: Structure | None = None
    parity: Parity | None = None
    verdict: Verdict | None = None
    provenance: Provenance | None = None
    reference_parameters: int | None = None
    reference_batch_normalization_layers: int | None = None
    layerwise: Layerwise | None = None
    int8: QuantizationRecord | None = None
    files: dict[str, str] | None = None


@dataclass(kw_only=True)
class VerificationRecord(Record):
    """An ONNX model against its reference: structure, interface, dynamic batch, parity."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "verification"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "reference_parameters", "reference_batch_normalization_layers", "layerwise", "data",
        "dynamic_batch"})
    NESTED: ClassVar[Mapping[str, type[Part]]] = {
        "reference": RunnerInfo, "candidate": RunnerInfo, "provenance": Provenance,
        "dynamic_batch": DynamicBatch,
        "structure": Structure, "parity": Parity, "settings": RunSettings,
        "layerwise": Layerwise, "data": DataInfo}

    passed: bool = False
    samples: int = 0
    argmax_agreement: int = 0
    max_abs_diff: float | None = None
    reference: RunnerInfo = field(default_factory=RunnerInfo)
    provenance: Provenance = field(default_factory=Provenance)
    candidate: RunnerInfo = field(default_factory=RunnerInfo)
    structure: Structure = field(default_factory=Structure)
    interface_problems: list[str] = field(default_factory=list)
    dynamic_batch: DynamicBatch | None = None
    parity: Parity = field(default_factory=Parity)
    settings: RunSettings = field(default_factory=RunSettings)
    reference_parameters: int | None = None
    reference_batch_normalization_layers: int | None = None
    layerwise: Layerwise | None = None
    data: DataInfo | None = None

    def full_parity(self) -> Parity:
        """The parity block with the dynamic-batch check and interface problems in it, the
        shape ``run`` records, so one renderer shows both."""
        full = Parity.from_dict({**self.parity.to_dict(), "passed": self.passed,
                                 "dynamic_batch": self.dynamic_batch,
                                 "interface_problems": self.interface_problems})
        return full


# --------------------------------------------------------------------------- benchmark
@dataclass(kw_only=True)
class BenchModel(Part):
    """One benchmarked model: file, runtime, and its MAC count with how it was counted."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"input_description"})  # older records

    label: str = ""
    path: str = ""
    backend: str = ""
    runtime_version: str = ""
    macs_per_image: int | None = None
    macs_source: str | None = None
    notes: list[str] = field(default_factory=list)
    # What was handed to the runtime: dtype, layout and shape of the tensor, the spec in effect.
    input_description: str | None = None


@dataclass(kw_only=True)
class BenchResult(Part):
    """One configuration as measured: model, level, threads, batch, throughput, latency."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"latency_ms"})  # not in ``best``

    model: int = 0
    label: str = ""
    optimization: str | None = None
    threads: int | None = None
    batch_size: int = 0
    images_per_second: float = 0.0
    latency_ms: dict[str, float] | None = None
    gflops: float | None = None
    ratio_to_matmul: float | None = None


@dataclass(kw_only=True)
class BenchInputs(Part):
    """What was fed: real images (``data`` says which) or seeded random pixels."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "images", "repeated", "data", "seed", "description"})
    NESTED: ClassVar[Mapping[str, type[Part]]] = {"data": DataInfo}

    kind: str = "synthetic"
    images: int | None = None
    repeated: bool | None = None
    data: DataInfo | None = None
    seed: int | None = None
    description: str | None = None


@dataclass(kw_only=True)
class MatmulReference(Part):
    """ONNX Runtime's own MatMul throughput, per thread count, measured in the same run."""

    what: str = ""
    size: int = 0
    gflops: dict[str, float | None] = field(default_factory=dict)  # None: it could not run


@dataclass(kw_only=True)
class Machine(Part):
    """The cores, the CPU and how busy other work kept it just before and while measuring."""

    NESTED: ClassVar[Mapping[str, type[Part]]] = {"matmul_reference": MatmulReference}

    cores: int | None = None
    cpu: str | None = None
    cpu_busy_before: float | None = None
    cpu_busy_during: float | None = None  # other work's share while the models were timed
    matmul_reference: MatmulReference = field(default_factory=MatmulReference)


@dataclass(kw_only=True)
class BenchSettings(Part):
    """The grid measured and how long each configuration ran."""

    batch_sizes: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    optimization_levels: list[str] = field(default_factory=list)
    grid: str = "cross"
    min_seconds: float | None = None
    min_iterations: int | None = None
    warmup_seconds: float | None = None


@dataclass(kw_only=True)
class OptimizedModel(Part):
    """The ONNX model as ONNX Runtime optimised it, written by ``--save-optimized``."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"note"})

    path: str = ""
    level: str = ""
    sha256: str = ""
    bytes: int | None = None
    note: str | None = None


@dataclass(kw_only=True)
class BenchmarkRecord(Record):
    """Throughput and latency per configuration, the machine and its MatMul reference."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "benchmark"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"optimized_model"})
    NESTED: ClassVar[Mapping[str, type[Part]]] = {
        "inputs": BenchInputs, "settings": BenchSettings, "machine": Machine,
        "models": BenchModel, "results": BenchResult, "best": BenchResult,
        "optimized_model": OptimizedModel}

    tool: dict[str, Any] = field(default_factory=tool)
    kind: str = "benchmark"
    inputs: BenchInputs = field(default_factory=BenchInputs)
    settings: BenchSettings = field(default_factory=BenchSettings)
    machine: Machine = field(default_factory=Machine)
    environment: dict[str, Any] = field(default_factory=dict)
    models: list[BenchModel] = field(default_factory=list)
    results: list[BenchResult] = field(default_factory=list)
    best: list[BenchResult] = field(default_factory=list)
    optimized_model: OptimizedModel | None = None
    seconds: float | None = None
