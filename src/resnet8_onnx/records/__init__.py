"""The typed results every command produces, one dataclass per kind, each with a schema.

Evaluation, comparison (``compare`` and ``run``; ``run``'s adds the conversion, verification
and verdict), verification, benchmark and quantisation records. Every record's JSON carries
``schema`` (``"resnet8-onnx/<kind>"``) and ``schema_version`` beside the keys it always had,
so a reader can tell what a saved file holds and whether it understands that version.

Nested blocks are typed too (:mod:`.parts`): ``record.metrics.accuracy``, not
``record["metrics"]["accuracy"]``. ``to_dict()`` gives the JSON-ready mapping (the keys of
the reports, unchanged); ``from_dict()`` reads one back, keeping keys it does not know in
``extra`` so that a round trip loses nothing. Records hold data only: the writers are in
:mod:`resnet8_onnx.report`.

  base.py          Part and Record: typed fields, to_dict/from_dict, schema
  parts.py         the blocks: model, data, settings, metrics, timings, parity, verdict …
  results.py       evaluation, comparison, verification and benchmark records
  quantization.py  the quantisation record, its candidates, figures and layer errors
  recipe.py        Recipe: what a quantisation recipe is (the quantizer runs it)
  tuning.py        the tuning record: runtime × precision × recipe candidates, the choice
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resnet8_onnx.records.base import SCHEMA_PREFIX, Part, Record, tool
from resnet8_onnx.records.parts import (
    RUNTIME_LABELS,
    ClassRow,
    Conversion,
    DataInfo,
    DynamicBatch,
    LayerMatch,
    Layerwise,
    Metrics,
    ModelInfo,
    Parity,
    Provenance,
    RunnerInfo,
    RunSettings,
    SourceInfo,
    SpecInfo,
    Structure,
    Timings,
    Tolerance,
    Verdict,
    Versus,
    runtime_label,
)
from resnet8_onnx.records.quantization import (
    Candidate,
    ClassFigures,
    Figures,
    FileFigures,
    ImageRole,
    LayerError,
    QuantEvaluation,
    QuantizationRecord,
    Selection,
    Speed,
)
from resnet8_onnx.records.recipe import Recipe
from resnet8_onnx.records.results import (
    BenchInputs,
    BenchmarkRecord,
    BenchModel,
    BenchResult,
    BenchSettings,
    ComparisonRecord,
    EvaluationRecord,
    Machine,
    MatmulReference,
    OptimizedModel,
    VerificationRecord,
)
from resnet8_onnx.records.tuning import TuneCandidate, TuneChoice, TuningRecord

RECORD_TYPES: tuple[type[Record], ...] = (EvaluationRecord, ComparisonRecord,
                                          VerificationRecord, BenchmarkRecord,
                                          QuantizationRecord, TuningRecord)


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """The record a saved JSON holds, chosen by its ``schema``."""
    schema = data.get("schema")
    for kind in RECORD_TYPES:
        if schema == kind.SCHEMA:
            return kind.from_dict(data)
    raise ValueError(f"unknown record schema {schema!r}")


def load_record(path: str | os.PathLike[str]) -> Record:
    """The record a saved ``report.json`` holds (plain JSON: nothing in it is executed).

    A missing file, a file that is not JSON and one without a known ``schema`` are refused
    with the CLI's errors, so a caller can tell "not there" from "not a record".
    """
    from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError

    source = Path(path)
    if not source.is_file():
        raise InputNotFoundError(f"{source}: record file not found")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"{source}: not a JSON record ({exc})") from exc
    if not isinstance(data, Mapping):
        raise InvalidInputError(f"{source}: not a JSON record (a {type(data).__name__})")
    try:
        return record_from_dict(data)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInputError(f"{source}: {exc}") from exc


__all__ = [
    "RECORD_TYPES", "RUNTIME_LABELS", "SCHEMA_PREFIX", "BenchInputs", "BenchModel", "BenchResult",
    "BenchSettings", "BenchmarkRecord", "Candidate", "ClassFigures", "ClassRow",
    "ComparisonRecord", "Conversion", "DataInfo", "DynamicBatch", "EvaluationRecord",
    "Figures", "FileFigures", "ImageRole", "LayerError", "LayerMatch", "Layerwise", "Machine",
    "MatmulReference", "Metrics", "ModelInfo", "OptimizedModel", "Parity", "Part",
    "Provenance", "QuantEvaluation", "QuantizationRecord", "Recipe", "Record", "RunSettings",
    "RunnerInfo", "Selection", "SourceInfo", "SpecInfo", "Speed", "Structure", "Timings",
    "Tolerance", "TuneCandidate", "TuneChoice", "TuningRecord", "Verdict", "VerificationRecord",
    "Versus", "load_record", "record_from_dict", "runtime_label", "tool",
]
