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
  :func:`split_positions`) on which the candidates are scored and timed, and on which the
  chosen one must agree with fp32 at least ``min_agreement`` (the quality gate) to be written;
- **evaluation** — optionally, the test set, used only for the final figures, never to choose.

Calibration never uses test images unless the caller asks for it (the MLCommons recipe used
500 test images; ``allow_test``); a record that did says so next to its accuracy. Every tensor
the model is fed is prepared by its preprocessing spec, resolved once as ``evaluate`` resolves
it (:class:`Feed`).

Nothing here imports TensorFlow; ``onnxruntime.quantization`` is imported when first needed.

Modules: :mod:`.recipe` (recipes, the grid, the choice), :mod:`.calibration` (images and
their roles), :mod:`.cpu` (CPU features, the speed verdict), :mod:`.engine` (ONNX Runtime's
quantiser, the model's feed and sessions), :mod:`.opsets` (the proven opset upgrade, opset
imports), :mod:`.output` (the written file, test figures), :mod:`.diagnosis` (per-layer
error), :mod:`.job` (the measured search and the quality gate). The record types are in
:mod:`resnet8_onnx.records`.
"""

from __future__ import annotations

from resnet8_onnx.machine import CPU_FLAGS, INT8_DOT_FLAGS, CpuInfo, read_cpuinfo
from resnet8_onnx.quantize.calibration import (
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_HOLDOUT_COUNT,
    MIN_HOLDOUT,
    calibration_source,
    find_calibration_source,
    images_sha256,
    load_calibration_data,
    split_positions,
)
from resnet8_onnx.quantize.cpu import speed_verdict
from resnet8_onnx.quantize.diagnosis import DIAGNOSIS_IMAGES, layer_errors
from resnet8_onnx.quantize.engine import (
    CALIBRATION_BATCH,
    QUANTIZED_OPS,
    Feed,
    FloatModel,
    inspect_float_model,
)
from resnet8_onnx.quantize.job import (
    DEFAULT_MIN_AGREEMENT,
    DIAGNOSE_BELOW,
    TIMING_IMAGES,
    TIMING_ROUNDS,
    quantize,
)
from resnet8_onnx.quantize.opsets import (
    TARGET_OPSET,
    needed_opset,
    prune_opset_imports,
    uses_standard_ops_only,
)
from resnet8_onnx.quantize.recipe import (
    DEFAULT_TOLERANCE,
    PRUNE_BELOW,
    SPEED_NOISE,
    Trial,
    auto_grid,
    select_candidate,
)
from resnet8_onnx.records import Candidate, Figures, LayerError, QuantizationRecord
from resnet8_onnx.records.recipe import ACTIVATION_TYPES, FORMATS, METHODS, WEIGHT_TYPES, Recipe
from resnet8_onnx.support.facade import callable_module

SCHEMA = QuantizationRecord.SCHEMA
SCHEMA_VERSION = QuantizationRecord.SCHEMA_VERSION

__all__ = [
    "ACTIVATION_TYPES",
    "CALIBRATION_BATCH",
    "CPU_FLAGS",
    "DEFAULT_CALIBRATION_COUNT",
    "DEFAULT_HOLDOUT_COUNT",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_TOLERANCE",
    "DIAGNOSE_BELOW",
    "DIAGNOSIS_IMAGES",
    "FORMATS",
    "INT8_DOT_FLAGS",
    "METHODS",
    "MIN_HOLDOUT",
    "PRUNE_BELOW",
    "QUANTIZED_OPS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SPEED_NOISE",
    "TARGET_OPSET",
    "TIMING_IMAGES",
    "TIMING_ROUNDS",
    "WEIGHT_TYPES",
    "Candidate",
    "CpuInfo",
    "Feed",
    "Figures",
    "FloatModel",
    "LayerError",
    "QuantizationRecord",
    "Recipe",
    "Trial",
    "auto_grid",
    "calibration_source",
    "find_calibration_source",
    "images_sha256",
    "inspect_float_model",
    "layer_errors",
    "load_calibration_data",
    "needed_opset",
    "prune_opset_imports",
    "quantize",
    "read_cpuinfo",
    "select_candidate",
    "speed_verdict",
    "split_positions",
    "uses_standard_ops_only",
]


# The facade's resnet8_onnx.quantize(...) is this module called (see support.facade).
callable_module(__name__, "quantize")
