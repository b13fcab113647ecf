"""int8 post-training static quantisation with ONNX Runtime, chosen and judged by measurement.

Which int8 recipe is right depends on the CPU: on x86 with VNNI, uint8 activations × int8
weights in QDQ form run about twice as fast as float, while int8 activations — the advice
usually given — run several times *slower*. A user cannot know that without measuring, so
:func:`quantize` measures for them: it quantises a small grid of recipes (format × activation
type × calibration method), scores each on held-out images for agreement with the float model,
times each against the float model in the same run on this machine, and keeps the fastest
recipe within a stated agreement tolerance. Every candidate stays in the record.

Images have three distinct roles, and the record says which images played which:

- **calibration** — the images whose activation ranges set the int8 scales;
- **held-out** — other images of the *same source* (disjoint positions, see
  :func:`split_positions`) on which the candidates are scored and timed;
- **evaluation** — optionally, the test set, used only for the final figures, never to choose.

Calibration never uses test images unless the caller asks for it (the MLCommons recipe used
500 test images); a record that did says so next to its accuracy.

Nothing here imports TensorFlow; ``onnxruntime.quantization`` is imported when first needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import (
    InputNotFoundError,
    InvalidInputError,
    UsageError,
    interrupts_deferred,
    one_line,
)
from .evaluate import DEFAULT_BATCH_SIZE
from .fsutil import check_writable, file_digest, write_bytes_atomic
from .progress import status, track

if TYPE_CHECKING:
    from .data import Dataset
    from .evaluate import EvaluationResult

SCHEMA = "resnet8-onnx/quantization-record"
SCHEMA_VERSION = 1

FORMATS = ("qdq", "qoperator")
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
METHODS = ("minmax", "entropy", "percentile")

DEFAULT_CALIBRATION_COUNT = 1000
DEFAULT_HOLDOUT_COUNT = 1000
MIN_HOLDOUT = 100  # fewer held-out images cannot tell recipes 1 % apart
# A candidate is eligible when its held-out agreement is at most this far below the best
# candidate's: 0.5 points is about one standard error of agreement on 1,000 images.
DEFAULT_TOLERANCE = 0.005
# Below this agreement with fp32 the record lists the layers with the largest error.
DEFAULT_MIN_AGREEMENT = 0.98
TIMING_IMAGES = 512
TIMING_ROUNDS = 3
PRUNE_BELOW = 0.5  # candidates under half the fastest one's speed are not scored
SPEED_NOISE = 0.05  # speeds this close to the fastest count as equal when choosing
DIAGNOSIS_IMAGES = 200
CALIBRATION_BATCH = 100

# Operators that only a quantised model contains (ai.onnx and com.microsoft domains).
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "ConvInteger",
    "MatMulInteger", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
    "QLinearGlobalAveragePool", "QLinearSoftmax", "QLinearConcat", "QLinearSigmoid",
    "QLinearLeakyRelu", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})

# CPU features that decide int8 speed, as /proc/cpuinfo names them. VNNI (x86) and the
# dot-product extension (ARM "asimddp") multiply-accumulate 8-bit values in one instruction;
# without them int8 convolutions take several instructions per product.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


# --------------------------------------------------------------------------- recipe
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
        return cls(format=data["format"], activations=data["activations"],
                   weights=data["weights"], per_channel=bool(data["per_channel"]),
                   method=data["method"], exclude=tuple(data.get("exclude") or ()),
                   float_pooling=bool(data.get("float_pooling", False)))


def auto_grid(
    formats: Sequence[str] | None = None, activations: Sequence[str] | None = None,
    methods: Sequence[str] | None = None, *, weights: str = "int8", per_channel: bool = True,
    exclude: Sequence[str] = (), float_pooling: Sequence[bool] | None = None,
) -> list[Recipe]:
    """Every combination of the given formats, activation types and methods (default: all),
    QDQ candidates with and without float pooling (QOperator pools with its own scales)."""
    grid = []
    for m in methods or METHODS:
        for f in formats or FORMATS:
            pools = float_pooling if float_pooling is not None else (
                (False, True) if f == "qdq" else (False,))
            for a in activations or ACTIVATION_TYPES:
                grid += [Recipe(format=f, activations=a, weights=weights,
                                per_channel=per_channel, method=m, exclude=tuple(exclude),
                                float_pooling=p) for p in pools]
    return grid


# --------------------------------------------------------------------------- CPU
@dataclass(frozen=True)
class CpuInfo:
    """What the OS says about the CPU: its name and the features that decide int8 speed."""

    model_name: str | None
    flags: tuple[str, ...]  # the CPU_FLAGS present
    cores: int
    source: str  # where the flags came from, or why they are unknown
    known: bool = True

    @property
    def int8_dot_product(self) -> bool | None:
        """True with VNNI (or ARM's dot product), False without, None when unknown."""
        if not self.known:
            return None
        return any(f in self.flags for f in INT8_DOT_FLAGS)

    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "flags": list(self.flags), "cores": self.cores,
                "int8_dot_product": self.int8_dot_product, "source": self.source}


def read_cpuinfo(path: str | os.PathLike[str] = "/proc/cpuinfo") -> CpuInfo:
    """CPU name and int8-relevant flags from ``/proc/cpuinfo`` (Linux); unknown elsewhere."""
    from .bench import available_cores

    cores = available_cores()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return CpuInfo(None, (), cores, f"{path} unreadable: CPU features unknown", known=False)
    name = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and name is None:
            name = value.strip() or None
        elif key in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return CpuInfo(name, (), cores, f"{path} lists no CPU flags: features unknown",
                       known=False)
    return CpuInfo(name, tuple(f for f in CPU_FLAGS if f in flags), cores, str(path))


def speed_verdict(speedup: float | None, cpu: CpuInfo) -> str:
    """One honest sentence: is int8 faster *here*, as measured, and what the CPU has."""
    if speedup is None or not np.isfinite(speedup) or speedup <= 0:
        return "int8 speed was not measured."
    if speedup >= 1.05:
        claim = f"int8 is {speedup:.1f}× as fast as fp32 on this CPU (measured in the same run)"
    elif speedup > 0.95:
        claim = (f"int8 is about as fast as fp32 on this CPU ({speedup:.2f}×, measured in the "
                 "same run): no speed gain")
    else:
        claim = (f"int8 is SLOWER than fp32 on this CPU ({speedup:.2f}×, measured in the same "
                 "run): keep the fp32 model where speed matters")
    dot = cpu.int8_dot_product
    if dot is None:
        cpu_text = "CPU features unknown"
    elif dot:
        cpu_text = "CPU has int8 dot-product instructions (" + ", ".join(
            f for f in cpu.flags if f in INT8_DOT_FLAGS) + ")"
    else:
        cpu_text = ("CPU has no VNNI / int8 dot-product instructions, so int8 convolutions "
                    "need several instructions per product")
    return f"{claim}; {cpu_text}."


# --------------------------------------------------------------------------- the float model
@dataclass(frozen=True)
class FloatModel:
    """What quantisation needs to know about the float ONNX file, checked up front."""

    path: str
    sha256: str
    size_bytes: int
    input_name: str
    image_shape: tuple[int, ...]  # (H, W, C); 0 where dynamic
    metadata: dict[str, str]
    node_names: tuple[str, ...]


def inspect_float_model(path: str | os.PathLike[str]) -> FloatModel:
    """Refuse what cannot be quantised: a missing file, a non-ONNX or already-quantised model."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: model file not found")
    if p.suffix.lower() != ".onnx":
        raise InvalidInputError(f"{p}: quantize takes an ONNX model (.onnx), not "
                                f"{p.suffix or 'a file without suffix'}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise InvalidInputError(f"{p}: not an ONNX model ({one_line(exc)})") from None
    graph = model.graph
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        raise InvalidInputError(f"{p}: models with external tensor data are not supported")
    quantized = sorted({n.op_type for n in graph.node if n.op_type in QUANTIZED_OPS})
    if quantized:
        raise InvalidInputError(f"{p}: model is already quantised (contains "
                                f"{', '.join(quantized[:3])}); quantize takes a float model")
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not graph.node or len(inputs) != 1 or len(graph.output) < 1:
        raise InvalidInputError(f"{p}: expected an image classifier with one input, found "
                                f"{len(inputs)} inputs and {len(graph.node)} nodes")
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise InvalidInputError(f"{p}: input {inputs[0].name!r} is not float32; quantize takes "
                                "the float model")
    dims = [d.dim_value for d in tensor_type.shape.dim]
    if len(dims) != 4:
        raise InvalidInputError(f"{p}: input {inputs[0].name!r} has rank {len(dims)}, expected "
                                "an NHWC image batch of rank 4")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise InvalidInputError(f"{p}: fails the ONNX checker ({one_line(exc)})") from None
    return FloatModel(
        path=str(p), sha256=file_digest(p), size_bytes=p.stat().st_size,
        input_name=inputs[0].name, image_shape=tuple(dims[1:]),
        metadata={prop.key: prop.value for prop in model.metadata_props},
        node_names=tuple(n.name for n in graph.node if n.name),
    )


# --------------------------------------------------------------------------- images
def split_positions(
    available: int, calibration_count: int, holdout_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint positions into a source of ``available`` images: calibration, then held-out.

    Calibration takes ``calibration_count`` positions spread evenly over the whole source
    (``floor(k * available / count)``), held-out takes up to ``holdout_count`` of the rest,
    spread the same way. Spreading matters for image folders, which are sorted by class: the
    first 1,000 images would be five classes only. For the 2,000-image ``train-2000-png``
    folder and the default 1,000 this is exactly the even positions for calibration and the
    odd positions held out, 100 images of each class in each part.
    """
    if calibration_count < 1:
        raise UsageError(f"calibration count must be at least 1, got {calibration_count}")
    if calibration_count > available:
        raise InvalidInputError(f"calibration source holds {available:,} images, fewer than "
                                f"the {calibration_count:,} asked for (--calibration-count)")
    calibration = (np.arange(calibration_count) * available) // calibration_count
    rest = np.setdiff1d(np.arange(available), calibration)
    take = min(holdout_count, len(rest))
    holdout = rest[(np.arange(take) * len(rest)) // take] if take else rest[:0]
    return calibration.astype(np.int64), holdout.astype(np.int64)


def images_sha256(images: np.ndarray) -> str:
    """sha256 of the exact uint8 pixels (N, H, W, C, C order): identifies a calibration set."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _looks_like_test_indices(folder: Path) -> bool:
    """An image folder whose files are named by number is named by test-set index (perf-png)."""
    stems = [f.stem for d in folder.iterdir() if d.is_dir() for f in d.iterdir()
             if not f.name.startswith(".")]
    return bool(stems) and all(s.isascii() and s.isdigit() for s in stems)


def load_calibration_data(
    source: str | os.PathLike[str] | None, *, indices_file: str | os.PathLike[str] | None = None,
    download: bool | None = None,
) -> Dataset:
    """The calibration images: the *training* split of ``source`` unless told otherwise.

    ``indices_file`` (test-set indices, e.g. MLCommons' ``calibration_samples_idxs.npy``)
    selects those images of the *test* split — the MLCommons recipe; the data set is then
    marked ``split="test"`` and every report says calibration used test images. An image
    folder named by test-set index (like ``perf-png``) is test images too.
    """
    from .data import load_dataset, load_indices

    if indices_file is not None:
        path = Path(indices_file).expanduser()
        if not path.is_file():
            raise InputNotFoundError(f"{indices_file}: calibration indices file not found")
        indices = load_indices(path)
        dataset = load_dataset(source, split="test", download=download)
        return dataset.select(indices, f"calibration indices {path.name}")
    split = "train"
    if source is not None:
        folder = Path(source).expanduser()
        if folder.is_dir() and _is_image_folder(folder) and _looks_like_test_indices(folder):
            split = "test"
    try:
        dataset = load_dataset(source, split=split, download=download)
    except InputNotFoundError as exc:
        raise InputNotFoundError(
            f"{exc} (calibration reads training images: an image folder such as "
            "train-2000-png or an official archive; test images only with "
            "--calibration-indices)") from None
    if len(dataset) == 0:
        raise InvalidInputError(f"{dataset.source.path}: calibration source holds no images")
    return dataset


def _is_image_folder(folder: Path) -> bool:
    from .data import CLASS_NAMES

    return any((folder / name).is_dir() for name in CLASS_NAMES)


def find_calibration_source(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """Training images near ``data_dir``: an official layout holding the training batches,
    else an image folder whose name starts with ``train`` (e.g. ``train-2000-png``).

    Searched like the test set (the data directories, two levels down); ``None`` when there
    is none, and the caller may then download the official archive.
    """
    from .data import BINARY_DIR, BINARY_TAR, PYTHON_DIR, PYTHON_TAR
    from .data.locations import data_dirs, walk

    folders: list[Path] = []
    for root in data_dirs(data_dir):
        for path in [root, *walk(root)]:
            name = path.name
            if name in (BINARY_TAR, PYTHON_TAR) and path.is_file():
                return path
            if name == BINARY_DIR and (path / "data_batch_1.bin").is_file():
                return path
            if name == PYTHON_DIR and (path / "data_batch_1").is_file():
                return path
            if name.lower().startswith("train") and path.is_dir() and _is_image_folder(path):
                folders.append(path)
    return folders[0] if folders else None


# --------------------------------------------------------------------------- records
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


@dataclass(frozen=True)
class QuantizationRecord:
    """Everything ``quantize`` measured and decided, JSON-ready through :meth:`to_dict`."""

    source: dict[str, Any]  # the fp32 model: path, sha256, size_bytes
    output: dict[str, Any]  # the int8 model: path, sha256, size_bytes
    recipe: Recipe
    selection: dict[str, Any]  # mode ("auto"/"fixed"), tolerance, reason
    candidates: tuple[Candidate, ...]
    calibration: dict[str, Any]  # source, count, sha256, test_images, positions rule
    holdout: dict[str, Any] | None
    speed: dict[str, Any]  # fp32/int8 images/s, speedup, images, rounds, measured_on
    cpu: CpuInfo
    speed_verdict: str
    evaluation: dict[str, Any] | None = None  # test-set figures: fp32, int8, agreement, |Δ|
    layer_errors: tuple[LayerError, ...] | None = None
    layer_errors_note: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float | None = None
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    @property
    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.chosen), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "schema_version": self.schema_version,
            "kind": "quantize",
            "tool": {"name": "resnet8-onnx", "version": __version__},
            "source": self.source, "output": self.output, "recipe": self.recipe.to_dict(),
            "selection": self.selection,
            "candidates": [c.to_dict() for c in self.candidates],
            "calibration": self.calibration, "holdout": self.holdout,
            "speed": self.speed, "cpu": self.cpu.to_dict(), "speed_verdict": self.speed_verdict,
            "evaluation": self.evaluation,
            "layer_errors": None if self.layer_errors is None
            else [e.to_dict() for e in self.layer_errors],
            "layer_errors_note": self.layer_errors_note,
            "versions": self.versions, "notes": list(self.notes), "seconds": self.seconds,
        }


# --------------------------------------------------------------------------- ORT plumbing
def _ort_quantization() -> Any:
    with interrupts_deferred():  # Ctrl-C inside a C++ import becomes an ImportError
        import onnxruntime.quantization as q
    return q


def _reader(input_name: str, images: np.ndarray, batch: int = CALIBRATION_BATCH) -> Any:
    """A ``CalibrationDataReader`` over uint8 images, fed as float32 NHWC raw 0–255 pixels
    (the converted model's preprocessing) one batch at a time."""
    q = _ort_quantization()

    class _Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._start = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._start >= len(images):
                return None
            chunk = images[self._start:self._start + batch].astype(np.float32)
            self._start += batch
            return {input_name: chunk}

        def rewind(self) -> None:
            self._start = 0

        def __len__(self) -> int:
            return -(-len(images) // batch)

    return _Reader()


def _session(path: str | os.PathLike[str], threads: int | None) -> Any:
    with interrupts_deferred():
        import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])


def _outputs(session: Any, input_name: str, images: np.ndarray, batch_size: int) -> np.ndarray:
    parts = [session.run(None, {input_name: images[i:i + batch_size].astype(np.float32)})[0]
             for i in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def _time_sessions(sessions: Sequence[Any], input_name: str, images: np.ndarray,
                   batch_size: int, rounds: int) -> list[float]:
    """Best images/s of each session over ``rounds`` interleaved passes over ``images``.

    Interleaving (fp32, A, B, …, fp32, A, B, …) exposes every model to the same background
    load, and the best pass is the least disturbed one: the figure to compare.
    """
    batches = [images[i:i + batch_size].astype(np.float32)
               for i in range(0, len(images), batch_size)]
    for session in sessions:  # warm-up: first-run allocations and kernel selection
        session.run(None, {input_name: batches[0]})
    best = [float("inf")] * len(sessions)
    with track(f"Timing {len(sessions)} models against each other",
               rounds * len(sessions)) as advance:
        for _ in range(rounds):
            for k, session in enumerate(sessions):
                start = time.perf_counter()
                for batch in batches:
                    session.run(None, {input_name: batch})
                best[k] = min(best[k], time.perf_counter() - start)
                advance(1)
    return [len(images) / t if t > 0 else 0.0 for t in best]


_QUANT_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def _pooling_nodes(pre: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node
            if n.op_type in ("AveragePool", "GlobalAveragePool") and n.name]


def _quantize_static(pre: Path, out: Path, recipe: Recipe, input_name: str,
                     images: np.ndarray, cache: Path | None) -> None:
    q = _ort_quantization()
    exclude = list(recipe.exclude)
    if recipe.float_pooling:
        exclude += [n for n in _pooling_nodes(pre) if n not in exclude]
    kwargs: dict[str, Any] = {}
    if cache is not None:
        kwargs["calibration_cache_path"] = str(cache)
    import logging

    quiet = [logging.getLogger(), logging.getLogger("onnxruntime")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # ORT's quantiser logs recommendations at WARNING; the record says more
        lg.setLevel(logging.ERROR)
    try:
        # Entropy/percentile calibration prints its histogram settings: not our user's concern.
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            q.quantize_static(
                str(pre), str(out), _reader(input_name, images),
                quant_format=q.QuantFormat.QDQ if recipe.format == "qdq"
                else q.QuantFormat.QOperator,
                activation_type=getattr(q.QuantType, _QUANT_TYPES[recipe.activations]),
                weight_type=getattr(q.QuantType, _QUANT_TYPES[recipe.weights]),
                per_channel=recipe.per_channel,
                calibrate_method=getattr(q.CalibrationMethod, _METHODS[recipe.method]),
                nodes_to_exclude=exclude or None,
                **kwargs,
            )
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def _supports_calibration_cache() -> bool:
    """ONNX Runtime ≥ 1.26 can reuse one calibration for every format × type of a method."""
    q = _ort_quantization()
    return "calibration_cache_path" in inspect.signature(q.quantize_static).parameters


def _pre_process(model_path: Path, out: Path) -> None:
    """ONNX Runtime's recommended pre-processing: symbolic shape inference, then graph
    optimisation (Conv+BatchNorm fusion), then ONNX shape inference."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with interrupts_deferred():
            import sympy  # noqa: F401 - symbolic shape inference needs it; fail clearly here
    except ImportError:  # pragma: no cover - sympy is a declared dependency
        raise InvalidInputError("quantize needs sympy (pip install sympy)") from None
    try:
        quant_pre_process(str(model_path), str(out))
    except Exception as exc:
        raise InvalidInputError(f"{model_path}: ONNX Runtime's quantisation pre-processing "
                                f"failed ({one_line(exc)})") from exc


def _excluded_nodes_exist(recipe: Recipe, pre: Path, model: FloatModel) -> None:
    if not recipe.exclude:
        return
    import onnx

    names = {n.name for n in onnx.load(str(pre), load_external_data=False).graph.node}
    unknown = [n for n in recipe.exclude if n not in names]
    if unknown:
        sample = ", ".join(sorted(names)[:4])
        raise UsageError(f"--exclude {unknown[0]!r}: no such node in {Path(model.path).name} "
                         f"after pre-processing (e.g. {sample})")


# --------------------------------------------------------------------------- diagnosis
def layer_errors(float_model: str | os.PathLike[str], qdq_model: str | os.PathLike[str],
                 input_name: str, images: np.ndarray, *, top: int = 8) -> list[LayerError]:
    """The tensors with the largest quantisation error, worst first (``qdq_loss_debug``).

    Runs the float and the QDQ model with every intermediate tensor as an output (graph
    optimisations off, so the QDQ model is the reference simulation of its int8 kernels) and
    ranks tensors by the error their own quantisation adds.
    """
    import onnx

    _ort_quantization()
    from onnxruntime.quantization import qdq_loss_debug as dbg

    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-debug.") as tmp:
        aug_float, aug_qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        dbg.modify_model_output_intermediate_tensors(str(float_model), str(aug_float))
        dbg.modify_model_output_intermediate_tensors(str(qdq_model), str(aug_qdq))
        float_acts = dbg.collect_activations(str(aug_float), _reader(input_name, images))
        qdq_acts = dbg.collect_activations(str(aug_qdq), _reader(input_name, images))
    matched = dbg.create_activation_matching(qdq_acts, float_acts)
    errors = dbg.compute_activation_error(matched)
    producers = {out: (n.name, n.op_type)
                 for n in onnx.load(str(float_model), load_external_data=False).graph.node
                 for out in n.output}
    found = []
    for tensor, err in errors.items():
        local = err.get("qdq_err")
        if local is None or not np.isfinite(local):
            continue
        node, op = producers.get(tensor, (None, None))
        found.append(LayerError(tensor=tensor, node=node, op_type=op,
                                local_sqnr_db=round(float(local), 2),
                                vs_float_sqnr_db=None if err.get("xmodel_err") is None
                                else round(float(err["xmodel_err"]), 2)))
    found.sort(key=lambda e: e.local_sqnr_db)
    return found[:top]


# --------------------------------------------------------------------------- the job
def _calibration_account(dataset: Dataset, positions: np.ndarray, images: np.ndarray,
                         indices_note: str | None) -> dict[str, Any]:
    test_images = dataset.split == "test"
    described = dataset.describe()
    return {
        "source": described["source"],
        "split": dataset.split,
        "subset": dataset.subset,
        "count": len(images),
        "source_count": len(dataset),
        "sha256": images_sha256(images),
        "test_images": test_images,
        "selection": (indices_note or
                      f"{len(images):,} of {len(dataset):,} images at evenly spread positions "
                      f"floor(k × {len(dataset):,} / {len(images):,})"),
        "test_indices": None if dataset.indices is None or not test_images
        else [int(i) for i in np.asarray(dataset.indices)[positions][:20]],
    }


def _as_dataset(calibration: Dataset | np.ndarray) -> Dataset:
    from .data import CLASS_NAMES, Dataset, DataSource

    if not isinstance(calibration, np.ndarray):
        return calibration
    images = np.asarray(calibration)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise InvalidInputError(f"calibration images must be uint8 NHWC, got {images.dtype} "
                                f"{images.shape}")
    source = DataSource(kind="array", path="<array>",
                        checks=(f"{len(images):,} images given as an array",), official=False,
                        warnings=("calibration images given as an array: their origin (training "
                                  "or test set) is not known",))
    return Dataset(images=images, labels=np.zeros(len(images), dtype=np.int64),
                   class_names=CLASS_NAMES, source=source, split="unknown")


def quantize(
    model_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
    calibration: Dataset | np.ndarray, recipe: Recipe | Sequence[Recipe] | None = None, *,
    calibration_count: int | None = None, holdout_count: int = DEFAULT_HOLDOUT_COUNT,
    tolerance: float = DEFAULT_TOLERANCE, min_agreement: float = DEFAULT_MIN_AGREEMENT,
    test_data: Dataset | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None, timing_images: int = TIMING_IMAGES,
    timing_rounds: int = TIMING_ROUNDS, diagnose: bool | None = None, force: bool = False,
) -> QuantizationRecord:
    """Quantise ``model_path`` to int8, write ``output_path``, and return what was measured.

    ``recipe``: ``None`` measures the default grid (:func:`auto_grid`) and keeps the fastest
    candidate whose held-out agreement with fp32 is within ``tolerance`` of the best; a
    sequence of recipes is a custom grid; one :class:`Recipe` is used as given (still scored
    and timed when held-out images remain). ``calibration_count`` images of ``calibration``
    calibrate (default: 1,000, or all of them for a fixed recipe, or half of them when a grid
    must keep the rest for scoring); up to ``holdout_count`` of the remaining images are
    held out. ``test_data`` adds test-set figures of both models to the record; it is never
    used to choose. ``diagnose`` forces (True) or suppresses (False) the per-layer error
    table, which by default appears when agreement is below ``min_agreement``.
    """
    started = time.perf_counter()
    out = check_writable(output_path, force=force)
    model = inspect_float_model(model_path)
    if out.resolve() == Path(model.path).resolve():
        raise UsageError(f"{out}: output would overwrite the float model")
    if not 0 <= tolerance < 1:
        raise UsageError(f"agreement tolerance must be in [0, 1), got {tolerance}")
    if isinstance(recipe, Recipe):
        grid, mode = [recipe], "fixed"
    else:
        grid = list(recipe) if recipe is not None else auto_grid()
        mode = "auto"
        if not grid:
            raise UsageError("the recipe grid is empty")
    dataset = _as_dataset(calibration)
    expected = tuple(model.image_shape)
    got = tuple(dataset.images.shape[1:])
    if any(e and e != g for e, g in zip(expected, got, strict=True)):
        raise InvalidInputError(
            f"{dataset.source.path}: calibration images are {'×'.join(map(str, got))}, the "
            f"model takes {'×'.join(str(d or '?') for d in expected)} (H×W×C)")
    n = len(dataset)
    if n == 0:
        raise InvalidInputError(f"{dataset.source.path}: calibration source holds no images")
    if calibration_count is None:
        calibration_count = min(DEFAULT_CALIBRATION_COUNT, n if mode == "fixed" else n // 2)
        calibration_count = max(calibration_count, 1)
    cal_pos, hold_pos = split_positions(n, calibration_count, holdout_count)
    if mode == "auto" and len(hold_pos) < MIN_HOLDOUT:
        raise InvalidInputError(
            f"{dataset.source.path}: {n:,} images leave {len(hold_pos):,} held out after "
            f"{calibration_count:,} for calibration; choosing a recipe needs at least "
            f"{MIN_HOLDOUT} (lower --calibration-count, or fix the recipe with --no-auto)")
    cal_images = np.ascontiguousarray(dataset.images[cal_pos])
    hold_images = np.ascontiguousarray(dataset.images[hold_pos])
    cpu = read_cpuinfo()

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-quantize.") as tmp_name:
        tmp = Path(tmp_name)
        pre = tmp / "preprocessed.onnx"
        with status("Pre-processing (shape inference, Conv+BatchNorm fusion)…"):
            _pre_process(Path(model.path), pre)
        for r in grid:
            _excluded_nodes_exist(r, pre, model)
        cache_ok = _supports_calibration_cache()
        candidates: list[dict[str, Any]] = []
        with track(f"Quantising {len(grid)} recipe{'s' if len(grid) > 1 else ''} "
                   f"({len(cal_images):,} calibration images)", len(grid)) as advance:
            for k, r in enumerate(grid):
                path = tmp / f"candidate_{k}.onnx"
                cache = tmp / f"calibration_{r.method}.json"  # ranges depend on the method only
                t0 = time.perf_counter()
                try:
                    _quantize_static(pre, path, r, model.input_name, cal_images,
                                     cache if cache_ok else None)
                    error = None
                except (ValueError, RuntimeError, KeyError, TypeError) as exc:
                    if len(grid) == 1:
                        raise InvalidInputError(f"{model.path}: ONNX Runtime could not quantise "
                                                f"with {r.label}: {one_line(exc)}") from exc
                    error = one_line(exc)
                candidates.append({"recipe": r, "path": path, "error": error,
                                   "seconds": round(time.perf_counter() - t0, 2)})
                advance(1)
        working = [c for c in candidates if c["error"] is None]
        if not working:
            raise InvalidInputError(f"{model.path}: no recipe could be quantised "
                                    f"({candidates[0]['error']})")

        fp32 = _session(model.path, threads)
        for c in working:
            c["session"] = _session(c["path"], threads)
            c["size"] = c["path"].stat().st_size
        timing_set = (hold_images if len(hold_images) else cal_images)[:timing_images]
        # A first timed pass of every candidate; those under half the fastest one's speed
        # cannot be chosen unless every faster one fails the tolerance, so they are listed
        # with that speed and not scored (int8 activations in QOperator form run at a fifth
        # of fp32's speed on x86: scoring them would double the run time).
        probe = _time_sessions([fp32, *(c["session"] for c in working)], model.input_name,
                               timing_set, batch_size, 1)
        fastest = max(probe[1:])
        for c, ips in zip(working, probe[1:], strict=True):
            c["ips"] = ips
            c["pruned"] = len(working) > 1 and ips < PRUNE_BELOW * fastest
        measured = [c for c in working if not c["pruned"]]
        if len(hold_images):
            reference = _outputs(fp32, model.input_name, hold_images, batch_size)
            with track(f"Scoring on {len(hold_images):,} held-out images",
                       len(measured)) as advance:
                for c in measured:
                    outputs = _outputs(c["session"], model.input_name, hold_images, batch_size)
                    c["agreement"] = int((outputs.argmax(1) == reference.argmax(1)).sum())
                    c["mean_abs_diff"] = float(np.abs(outputs - reference).mean())
                    advance(1)
        fp32_ips = probe[0]
        if timing_rounds > 1:
            more = _time_sessions([fp32, *(c["session"] for c in measured)], model.input_name,
                                  timing_set, batch_size, timing_rounds - 1)
            fp32_ips = max(fp32_ips, more[0])
            for c, ips in zip(measured, more[1:], strict=True):
                c["ips"] = max(c["ips"], ips)
        for c in working:
            c["speedup"] = c["ips"] / fp32_ips if fp32_ips > 0 else None

        chosen, reason = select_candidate(measured, mode, tolerance, len(hold_images))
        chosen_path = Path(chosen["path"])
        final = _finalise(chosen_path, model, chosen["recipe"], dataset, cal_images)
        size = len(final)

        # The record's speed block: on the test images when given (same run, same images).
        evaluation = None
        speed_images, measured_on = len(timing_set), (
            "held-out images" if len(hold_images) else "calibration images")
        int8_ips, speedup = chosen["ips"], chosen["speedup"]
        written_path = tmp / "final.onnx"
        written_path.write_bytes(final)
        if test_data is not None:
            evaluation, fp32_test_ips, int8_test_ips = _evaluate_pair(
                model.path, written_path, str(out), test_data, batch_size, threads,
                timing_images, timing_rounds)
            fp32_ips, int8_ips = fp32_test_ips, int8_test_ips
            speedup = int8_ips / fp32_ips if fp32_ips > 0 else None
            speed_images = min(len(test_data), timing_images)
            measured_on = "test images"
        agreement = (evaluation["agreement_fraction"] if evaluation is not None
                     else (chosen["agreement"] / len(hold_images) if len(hold_images) else None))
        want_diagnosis = (diagnose if diagnose is not None
                          else agreement is not None and agreement < min_agreement)
        errors_found: list[LayerError] | None = None
        errors_note = None
        if want_diagnosis:
            errors_found, errors_note = _diagnose(pre, tmp, chosen["recipe"], chosen_path,
                                                  model, cal_images, hold_images)
        write_bytes_atomic(out, final, force=force)

    if dataset.split == "test":
        notes.append("calibration used TEST images: test-set accuracy of the int8 model is "
                     "not an unbiased estimate")
        if mode == "auto" and len(hold_pos):
            notes.append("the held-out images that chose the recipe are test images too")
    if dataset.split == "unknown":
        notes.append("calibration images were given as an array: whether they are test "
                     "images is not known")
    cand_records = []
    for c in candidates:
        ok = c["error"] is None
        cand_records.append(Candidate(
            recipe=c["recipe"],
            holdout_agreement=c.get("agreement") if ok else None,
            holdout_count=len(hold_images) if c.get("agreement") is not None else 0,
            holdout_mean_abs_diff=c.get("mean_abs_diff"),
            images_per_second=round(c["ips"], 1) if ok else None,
            speedup=round(c["speedup"], 3) if ok and c["speedup"] is not None else None,
            size_bytes=c.get("size", 0), quantize_seconds=c["seconds"],
            eligible=bool(c.get("eligible")), chosen=c is chosen, error=c["error"],
            pruned=bool(c.get("pruned"))))
    versions = _versions()
    indices_note = (f"{len(cal_images):,} test images selected by {dataset.subset}"
                    if dataset.subset.startswith("calibration indices") else None)
    return QuantizationRecord(
        source={"path": model.path, "sha256": model.sha256, "size_bytes": model.size_bytes},
        output={"path": str(out), "sha256": hashlib.sha256(final).hexdigest(),
                "size_bytes": size},
        recipe=chosen["recipe"],
        selection={"mode": mode, "tolerance": tolerance, "reason": reason,
                   "candidates": len(candidates), "min_agreement": min_agreement,
                   "calibration_reused": cache_ok},
        candidates=tuple(cand_records),
        calibration=_calibration_account(dataset, cal_pos, cal_images, indices_note),
        holdout=None if not len(hold_images) else {
            "count": len(hold_images), "sha256": images_sha256(hold_images),
            "selection": "evenly spread over the source positions not used for calibration",
            "test_images": dataset.split == "test",
            "purpose": "score (agreement with fp32) and time each candidate"},
        speed={"fp32_images_per_second": round(fp32_ips, 1),
               "int8_images_per_second": round(int8_ips, 1),
               "speedup": None if speedup is None else round(speedup, 3),
               "images": speed_images, "rounds": timing_rounds, "batch_size": batch_size,
               "threads": threads or cpu.cores, "measured_on": measured_on,
               "method": "best of interleaved passes (fp32, int8, fp32, int8, …) in one process"},
        cpu=cpu,
        speed_verdict=speed_verdict(speedup, cpu),
        evaluation=evaluation,
        layer_errors=None if errors_found is None else tuple(errors_found),
        layer_errors_note=errors_note,
        versions=versions,
        notes=tuple(notes),
        seconds=round(time.perf_counter() - started, 2),
    )


def select_candidate(working: list[dict[str, Any]], mode: str, tolerance: float,
                     holdout: int) -> tuple[dict[str, Any], str]:
    """The fastest candidate whose held-out agreement is within ``tolerance`` of the best.

    ``working`` holds dicts with ``agreement`` (images out of ``holdout``), ``ips`` and
    optionally ``mean_abs_diff`` (mean |Δ| of outputs against fp32); each gets ``eligible``
    set. Speeds within :data:`SPEED_NOISE` of the fastest eligible one count as equal (on a
    shared machine such differences change from run to run), and among those the most
    faithful wins: higher agreement, then lower mean |Δ| — a finer signal than top-1
    agreement, which 1,000 held-out images resolve only to 0.1 %. Returns the chosen dict
    and the reason, in words.
    """
    if len(working) == 1 or not holdout:
        working[0]["eligible"] = True
        return working[0], ("recipe fixed by the user" if mode == "fixed" else
                            "the only candidate that could be scored")
    best = max(c["agreement"] for c in working)
    for c in working:
        c["eligible"] = c["agreement"] / holdout >= best / holdout - tolerance - 1e-12
    eligible = [c for c in working if c["eligible"]]
    fastest = max(c["ips"] for c in eligible)
    tied = [c for c in eligible if c["ips"] >= (1 - SPEED_NOISE) * fastest]
    chosen = max(tied, key=lambda c: (c["agreement"], -c.get("mean_abs_diff", 0.0), c["ips"]))
    which = (f"the most faithful of the {len(tied)} fastest (within {SPEED_NOISE:.0%} of the "
             "top speed)" if len(tied) > 1 else "the fastest")
    return chosen, (f"{which} of {len(eligible)} candidates whose held-out agreement with fp32 "
                    f"is within {tolerance:.1%} of the best ({best:,}/{holdout:,} = "
                    f"{best / holdout:.2%})")


def _finalise(path: Path, model: FloatModel, recipe: Recipe, dataset: Dataset,
              cal_images: np.ndarray) -> bytes:
    """The chosen model with the source's metadata plus the quantisation's, checked."""
    import onnx

    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(model.metadata)  # preprocessing, class names, output kind of the source
    versions = _versions()
    props.update({
        "quantization_recipe": json.dumps(recipe.to_dict(), sort_keys=True),
        "quantization_calibration_source": dataset.source.path,
        "quantization_calibration_split": dataset.split,
        "quantization_calibration_count": str(len(cal_images)),
        "quantization_calibration_sha256": images_sha256(cal_images),
        "quantization_calibration_test_images": str(dataset.split == "test").lower(),
        "quantization_source_sha256": model.sha256,
        "quantization_tool": f"resnet8-onnx {__version__}",
        "quantization_versions": json.dumps(versions, sort_keys=True),
    })
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (f"int8 ({recipe.label}) of {Path(model.path).name} (sha256 "
                        f"{model.sha256}), quantised by resnet8-onnx {__version__} with ONNX "
                        f"Runtime {versions.get('onnxruntime')}; calibrated on "
                        f"{len(cal_images):,} {'TEST' if dataset.split == 'test' else ''} "
                        f"images. Input is float: {model.metadata.get('preprocessing', '')}"
                        .replace("  ", " "))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # pragma: no cover - ORT's quantiser output should always pass
        raise InvalidInputError(f"{model.path}: the quantised model fails the ONNX checker "
                                f"({one_line(exc)})") from exc
    return proto.SerializeToString()


def _evaluate_pair(fp32_path: str, int8_path: Path, shown_path: str, test_data: Dataset,
                   batch_size: int, threads: int | None, timing_images: int,
                   rounds: int) -> tuple[dict[str, Any], float, float]:
    """Both models on the test images: accuracy, per class, agreement, |Δ|, speed."""
    from .backends import onnxrt
    from .evaluate import evaluate
    from .verify import compare_outputs

    fp32_backend = onnxrt.load(fp32_path, threads=threads)
    int8_backend = onnxrt.load(int8_path, threads=threads)
    fp32 = evaluate(fp32_backend, test_data, batch_size=batch_size)
    int8 = evaluate(int8_backend, test_data, batch_size=batch_size)
    fp32_ips, int8_ips = _time_sessions(
        [fp32_backend.session, int8_backend.session], fp32_backend.input_name,
        test_data.images[:timing_images], batch_size, rounds)
    cmp = compare_outputs(fp32.outputs, int8.outputs, indices=test_data.indices)
    n = len(test_data)
    int8_figures = ModelFigures.from_result(int8, int8_path, round(int8_ips, 1))
    int8_dict = {**int8_figures.to_dict(), "path": shown_path}
    return {
        "data": test_data.describe(),
        "fp32": ModelFigures.from_result(fp32, fp32_path, round(fp32_ips, 1)).to_dict(),
        "int8": int8_dict,
        "agreement": cmp.argmax_agreement,
        "agreement_fraction": cmp.argmax_agreement / n if n else None,
        "disagreements": n - cmp.argmax_agreement,
        "first_disagreements": [int(i) for i in cmp.first_disagreements][:10],
        "max_abs_diff": cmp.max_abs_diff,
        "mean_abs_diff": cmp.mean_abs_diff,
    }, fp32_ips, int8_ips


def _diagnose(pre: Path, tmp: Path, recipe: Recipe, chosen_path: Path, model: FloatModel,
              cal_images: np.ndarray, hold_images: np.ndarray
              ) -> tuple[list[LayerError] | None, str]:
    images = (hold_images if len(hold_images) else cal_images)[:DIAGNOSIS_IMAGES]
    qdq_path, note = chosen_path, ""
    if recipe.format != "qdq":
        # qdq_loss_debug reads Q/DQ pairs: measure the QDQ twin of the chosen recipe.
        qdq_path = tmp / "diagnosis_qdq.onnx"
        _quantize_static(pre, qdq_path, dataclasses.replace(recipe, format="qdq"),
                         model.input_name, cal_images, None)
        note = "measured on the QDQ form of the chosen recipe (same calibration); "
    with status("Measuring per-layer quantisation error (qdq_loss_debug)…"):
        try:
            found = layer_errors(pre, qdq_path, model.input_name, images)
        except Exception as exc:  # a diagnosis must not sink the quantised model
            return None, f"per-layer error could not be measured: {one_line(exc)}"
    where = "held-out" if len(hold_images) else "calibration"
    return found, (f"{note}{len(images):,} {where} images; SQNR in dB, lowest first; node "
                   "names are what --exclude takes")


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {"resnet8_onnx": __version__, "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__, "numpy": np.__version__}
    with contextlib.suppress(ImportError):
        import sympy

        versions["sympy"] = sympy.__version__
    return versions

