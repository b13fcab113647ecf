"""The typed blocks records are made of: the model, the data, the metrics, parity, verdict …

Each is a :class:`~resnet8_onnx.records.base.Part`: its fields are the JSON keys the reports
have always written, with the defaults a renderer shows when a producer had nothing to say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from resnet8_onnx.records.base import UNSAVED, Part, plain, saved_fields
from resnet8_onnx.support.fsutil import recorded_path

# What a reader calls each runtime a record names (``ModelInfo.backend``): kept with the
# records so that a saved record is rendered from what it says, with no runtime loaded. The
# backends' registry takes its labels from here unless a loader declares its own.
RUNTIME_LABELS: dict[str, str] = {"onnxruntime": "ONNX", "keras": "Keras", "litert": "LiteRT",
                                  "torch": "PyTorch", "openvino": "OpenVINO"}


def runtime_label(name: str) -> str:
    """'Keras', 'ONNX', 'LiteRT' for a runtime's name (an unknown name is shown as it is)."""
    return RUNTIME_LABELS.get(name, name)


# --------------------------------------------------------------------------- the model
@dataclass(kw_only=True)
class SpecInfo(Part):
    """The preprocessing a model was fed: its one-line description and where each field came
    from (option, metadata, input shape, default); layout, scale, mean … stay in ``extra``."""

    description: str = ""
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(kw_only=True)
class ModelInfo(Part):
    """Which file ran, on which runtime, taking what and returning what."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "output_name", "provider", "preprocessing", "fixed_batch", "notes", "quantization",
        "device", "compute_dtype", "tf32", "inference_precision", "performance_hint",
        "precision_source"})
    NESTED: ClassVar = {"preprocessing": SpecInfo}

    path: str = ""
    sha256: str = ""
    backend: str = "model"
    runtime_version: str = ""
    input_shape: list[int | None] = field(default_factory=list)
    input_dtype: str = "float32"
    output_kind: str | None = None
    output_name: str | None = None
    provider: str | None = None
    preprocessing: SpecInfo | None = None
    fixed_batch: int | None = None
    notes: list[str] | None = None
    quantization: str | None = None
    device: str | None = None
    compute_dtype: str | None = None
    tf32: bool | None = None
    # OpenVINO: the precision in effect, read back from the compiled model, and its hint.
    inference_precision: str | None = None
    performance_hint: str | None = None
    precision_source: str | None = None  # option, metadata (the file's), default


@dataclass(kw_only=True)
class RunnerInfo(Part):
    """What a runner says about itself (every runner's ``info``): verify records it as it is,
    evaluate builds its ``model`` block from it.

    Unlike other parts, ``extra`` is the runner's own block (threads, provider,
    preprocessing …), saved under the key ``extra`` as runners have always written it; keys
    this version does not know travel in ``unknown``. ``model_path`` is the path the runner
    was given (error messages name it so); the JSON holds it absolute and resolved.
    """

    # ``extra`` is one of the JSON keys (written when set), not the unknown keys' holder.
    EXTRA_IS_A_KEY: ClassVar[bool] = True

    name: str = "?"  # "onnxruntime", "keras", "litert", "torch", "openvino"
    model_path: str = ""
    model_sha256: str = ""
    runtime_version: str = ""
    input_shape: tuple[int | None, ...] = ()  # (None, 32, 32, 3): None is a dynamic dimension
    input_dtype: str = "float32"
    num_classes: int | None = None
    # Kept out of ``saved_fields``: its keys are written at the top level, not under a key.
    unknown: dict[str, Any] = field(default_factory=dict, repr=False, metadata=UNSAVED)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: plain(getattr(self, f.name)) for f in saved_fields(self)}
        out["model_path"] = recorded_path(self.model_path) or ""
        if self.extra:
            out["extra"] = plain(self.extra)
        out.update(self.unknown)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunnerInfo:
        data = dict(data)
        names = {f.name for f in saved_fields(cls)}
        kwargs: dict[str, Any] = {key: data.pop(key) for key in list(data) if key in names}
        if "input_shape" in kwargs:
            kwargs["input_shape"] = tuple(kwargs["input_shape"] or ())
        return cls(**kwargs, extra=dict(data.pop("extra", None) or {}), unknown=data)


# --------------------------------------------------------------------------- the data
@dataclass(kw_only=True)
class SourceInfo(Part):
    """Where images came from and what was verified about the files."""

    kind: str = ""
    path: str = ""
    official: bool = False
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class DataInfo(Part):
    """Exactly which images were used (``Dataset.info()`` builds it)."""

    NESTED: ClassVar = {"source": SourceInfo}

    dataset: str = "CIFAR-10"
    source: SourceInfo = field(default_factory=SourceInfo)
    warnings: list[str] = field(default_factory=list)
    split: str = "test"
    subset: str = "full"
    count: int | None = None
    source_count: int | None = None
    limit: int | None = None
    per_class: dict[str, int] = field(default_factory=dict)
    full_official_test_set: bool = False
    indices_file: str | None = None
    indices_sha256: str | None = None


# --------------------------------------------------------------------------- how it ran
@dataclass(kw_only=True)
class RunSettings(Part):
    """Threads, batch size and ONNX Runtime level a model ran with, and the cores there were.

    ``threads`` is ``None`` when the runtime chose (ONNX Runtime and TensorFlow: all cores).
    """

    threads: int | None = None
    available_cores: int | None = None
    batch_size: int | None = None
    ort_optimization: str | None = None


@dataclass(kw_only=True)
class Timings(Part):
    """Seconds spent and the throughput they give."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "inference_seconds", "total_seconds", "images_per_second", "batch_size",
        "requested_batch_size", "load_seconds", "seconds", "cpu_busy"})

    inference_seconds: float | None = None
    total_seconds: float | None = None
    images_per_second: float | None = None
    batch_size: int | None = None
    requested_batch_size: int | None = None
    load_seconds: float | None = None
    seconds: float | None = None
    cpu_busy: float | None = None  # other work's share of the cores while it was measured


# --------------------------------------------------------------------------- the metrics
@dataclass(kw_only=True)
class ClassRow(Part):
    """One class: support, correct, accuracy (= recall), precision, F1, one-vs-rest AUC."""

    name: str = ""
    index: int = 0
    accuracy: float | None = None
    correct: int | None = None
    total: int | None = None
    support: int | None = None
    predicted: int | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    auc: float | None = None


@dataclass(kw_only=True)
class Metrics(Part):
    """Everything computed from labels and outputs; ``metrics.compute_metrics`` builds it."""

    NESTED: ClassVar = {"per_class": ClassRow}

    accuracy: float | None = None
    correct: int | None = None
    total: int | None = None
    top5_accuracy: float | None = None
    macro_auc: float | None = None
    macro_f1: float | None = None
    macro_precision: float | None = None
    macro_recall: float | None = None
    macro_classes: int | None = None
    absent_classes: list[str] = field(default_factory=list)
    num_classes: int | None = None
    class_names: list[str] = field(default_factory=list)
    output_kind: str | None = None
    softmax_applied_for_auc: bool = False
    argmax_ties: int = 0
    per_class: list[ClassRow] = field(default_factory=list)
    confusion_matrix: list[list[int]] = field(default_factory=list)
    top_k: dict[str, float] = field(default_factory=dict)  # "3", "5", "10": below the classes
    most_confused: list[dict] = field(default_factory=list)  # the largest off-diagonal cells

    @property
    def names(self) -> list[str]:
        """Class names: listed, else from the per-class rows, else the matrix's indices."""
        if self.class_names:
            return [str(n) for n in self.class_names]
        if self.per_class:
            return [c.name or str(i) for i, c in enumerate(self.per_class)]
        return [str(i) for i in range(len(self.confusion_matrix))]

    def row(self, index: int) -> ClassRow | None:
        return self.per_class[index] if index < len(self.per_class) else None


# --------------------------------------------------------------------------- agreement
@dataclass(kw_only=True)
class Versus(Part):
    """One model against the reference on the same images: agreement and output |Δ|.

    ``comparable`` is false (and the |Δ| fields absent) when the outputs are of different
    kinds (probabilities against logits); ``note`` then says so.
    """

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "max_abs_diff", "mean_abs_diff", "p99_abs_diff", "min_cosine_similarity", "note"})

    samples: int = 0
    agreement: int = 0
    agreement_fraction: float | None = None
    disagreements: int = 0
    first_disagreements: list[int] = field(default_factory=list)
    comparable: bool = True
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    p99_abs_diff: float | None = None
    min_cosine_similarity: float | None = None
    note: str | None = None


@dataclass(kw_only=True)
class DynamicBatch(Part):
    """The candidate run at several batch sizes against itself at one (``passed`` ``None``:
    not recorded)."""

    passed: bool | None = None
    samples: int | None = None
    batch_sizes: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Parity(Part):
    """Outputs of a candidate against its reference (``verify.compare_outputs`` builds it);
    ``verify`` and ``run`` add the
    dynamic-batch check and the interface problems, so one block holds the whole parity."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"dynamic_batch", "interface_problems"})
    NESTED: ClassVar = {"dynamic_batch": DynamicBatch}

    passed: bool = False
    samples: int | None = None
    argmax_agreement: int | None = None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    p99_abs_diff: float | None = None
    max_rel_diff: float | None = None
    p99_rel_diff: float | None = None
    min_cosine_similarity: float | None = None
    mean_cosine_similarity: float | None = None
    elements_over_tolerance: int | None = None
    nonfinite_reference: int | None = None
    nonfinite_candidate: int | None = None
    atol: float | None = None
    rtol: float | None = None
    first_disagreements: list[int] = field(default_factory=list)
    dynamic_batch: DynamicBatch | None = None
    interface_problems: list[str] | None = None


@dataclass(kw_only=True)
class Verdict(Part):
    """``run``'s verdict: passed, its sentences, and the figures they state (the int8 ones
    only when ``--int8`` ran; they never change ``passed``)."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "int8_accuracy", "int8_agreement", "int8_speedup", "int8_speedup_measurement"})

    passed: bool = False
    summary: list[str] = field(default_factory=list)
    accuracy_threshold: float | None = None
    threshold_rule: str | None = None
    meets_threshold: bool = False
    keras_accuracy: float | None = None
    onnx_accuracy: float | None = None
    keras_correct: int | None = None
    onnx_correct: int | None = None
    same_correct_count: bool | None = None
    prediction_agreement: int | None = None
    int8_accuracy: float | None = None
    int8_agreement: float | None = None
    int8_speedup: float | None = None
    int8_speedup_measurement: str | None = None  # which timing int8_speedup comes from


# --------------------------------------------------------------------------- the ONNX file
@dataclass(kw_only=True)
class Structure(Part):
    """What the converted file is: checker, opsets, nodes, parameters, operators, MACs.

    ``kind`` names a non-ONNX candidate ("PyTorch"); a fact a runner cannot state is absent.
    """

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "kind", "checker", "shape_inference", "opsets", "nodes", "parameters",
        "parameter_dtypes", "macs_per_image", "op_inventory", "batchnorm_mul_add",
        "batchnorm_channels", "quantization"})

    path: str = ""
    kind: str | None = None
    checker: str | None = None
    shape_inference: str | None = None
    opsets: dict[str, int] | None = None
    nodes: int | None = None
    parameters: int | None = None
    parameter_dtypes: dict[str, int] | None = None  # stored weights by dtype
    macs_per_image: int | None = None
    op_inventory: dict[str, int] | None = None
    batchnorm_mul_add: int | None = None  # Conv → Mul → Add by per-channel constants
    batchnorm_channels: int | None = None  # the channels of those Mul+Add pairs
    quantization: dict[str, str] | None = None  # {"type": "int8", "format": "QDQ"}


@dataclass(kw_only=True)
class Provenance(Part):
    """Whether the candidate was converted from the reference, by the checksum in its
    metadata (``None``: could not tell, ``note`` says why)."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "onnx_source_file", "onnx_source_sha256", "reference_sha256", "note"})

    converted_from_reference: bool | None = None
    onnx_source_file: str | None = None
    onnx_source_sha256: str | None = None
    reference_sha256: str | None = None
    note: str | None = None


@dataclass(kw_only=True)
class Conversion(Part):
    """What ``convert`` did: from which file to which, with which tools, how long.

    Every direction builds it (Keras → ONNX, → PyTorch, PyTorch → ONNX) and ``run`` records
    it; files are named resolved, as in every record. A field a direction does not have is
    left out of the JSON (``onnx_sha256``/``opset``/``input_name`` are Keras → ONNX's,
    ``target``/``builder``/``checks``/``output_sha256`` the PyTorch directions').
    """

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "onnx_sha256", "opset", "source_sha256", "input_name", "output_name", "num_classes",
        "output_sha256", "target", "builder", "checks"})

    source_path: str | None = None
    output_path: str | None = None
    onnx_sha256: str | None = None
    opset: int | None = None
    output_kind: str | None = None
    seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_sha256: str | None = None
    input_name: str | None = None
    output_name: str | None = None
    num_classes: int | None = None
    output_sha256: str | None = None
    target: str | None = None  # "pt2", "safetensors" or "onnx" (PyTorch directions)
    builder: str | None = None  # "native", "onnx2torch" or "torch.onnx"
    checks: list[dict[str, Any]] | None = None  # each: against, max_abs_diff, …


@dataclass(kw_only=True)
class LayerMatch(Part):
    """One reference layer against the candidate tensor that matched it."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"matched", "max_abs_diff"})

    layer: str = ""
    matched: bool | None = None
    max_abs_diff: float | None = None

    @property
    def kind(self) -> str:
        """The layer's class ("Conv2D"): ``class`` in the JSON."""
        return str(self.extra.get("class", "?"))


@dataclass(kw_only=True)
class Tolerance(Part):
    """How close a layer must be: atol, or rtol × the layer's largest |activation|."""

    atol: float | None = None
    rtol: float | None = None
    rule: str = ""


@dataclass(kw_only=True)
class Layerwise(Part):
    """The layer-by-layer comparison: every layer, the tolerance, the first that diverges
    (``skipped`` instead, with the reason, when it could not run)."""

    OPTIONAL: ClassVar[frozenset[str]] = frozenset({
        "layers", "first_diverging_layer", "tolerance", "skipped"})
    NESTED: ClassVar = {"layers": LayerMatch, "first_diverging_layer": LayerMatch,
                        "tolerance": Tolerance}

    layers: list[LayerMatch] | None = None
    first_diverging_layer: LayerMatch | None = None
    tolerance: Tolerance | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if "layers" in out and "first_diverging_layer" not in out:
            out["first_diverging_layer"] = None  # said explicitly when every layer matched
        return out
