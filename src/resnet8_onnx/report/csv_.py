"""CSV writer: per-class rows and per-model rows at full precision (undefined → empty cell)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

from resnet8_onnx.records import ComparisonRecord, EvaluationRecord
from resnet8_onnx.report.sections import class_accuracy, compare_class_names, comparison_rows
from resnet8_onnx.report.text import unique_labels


def csv_number(value: Any) -> str:
    """Full precision (shortest round-trip repr) for machines; empty when undefined."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


CSV_COLUMNS = ("index", "class", "support", "correct", "predicted", "accuracy", "precision",
               "recall", "f1", "auc")


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


def per_class_csv(record: EvaluationRecord) -> str:
    """One row per class with full-precision numbers; an undefined AUC is an empty cell."""
    rows: list[Sequence[Any]] = [CSV_COLUMNS]
    for c in record.metrics.per_class:
        rows.append([c.index, c.name, *(csv_number(getattr(c, k)) for k in (
            "support", "correct", "predicted", "accuracy", "precision", "recall", "f1", "auc"))])
    return csv_text(rows)


def comparison_per_class_csv(comparison: ComparisonRecord) -> str:
    """Per-class rows with one column group per model (prefixed keras_, onnx_, ...)."""
    models = comparison.models
    prefixes = [label.lower().replace(" ", "") for label in unique_labels(models)]
    fields = ("correct", "accuracy", "precision", "recall", "f1", "auc")
    header = ["index", "class", "support"]
    for prefix in prefixes:
        header += [f"{prefix}_{f}" for f in fields]
    if len(models) == 2:
        header.append("same_correct")
    rows: list[Sequence[Any]] = [header]
    for row in comparison_rows(models):
        cells = [row["index"], row["name"], csv_number(row["support"])]
        for c in row["models"]:
            cells += [csv_number(None if c is None else getattr(c, f)) for f in fields]
        if len(models) == 2:
            a, b = (None if c is None else c.correct for c in row["models"])
            cells.append(str(a == b).lower())
        rows.append(cells)
    return csv_text(rows)


_SUMMARY_FIELDS = ("label", "file", "backend", "runtime_version", "input_dtype", "quantized",
                   "accuracy", "correct", "total", "agreement", "agreement_fraction",
                   "max_abs_diff", "mean_abs_diff", "images_per_second")


def compare_csv(record: ComparisonRecord) -> str:
    """One row per model, full precision, per-class accuracies as ``acc_<class>`` columns."""
    models = record.models
    names = compare_class_names(models)
    rows: list[Sequence[Any]] = [[*_SUMMARY_FIELDS, *(f"acc_{n}" for n in names)]]
    for m in models:
        v = m.versus_reference
        values = {
            "label": m.label, "file": m.model.path or None, "backend": m.model.backend,
            "runtime_version": m.model.runtime_version, "input_dtype": m.model.input_dtype,
            "quantized": m.quantized, "accuracy": m.metrics.accuracy,
            "correct": m.metrics.correct, "total": m.metrics.total,
            "agreement": v and v.agreement, "agreement_fraction": v and v.agreement_fraction,
            "max_abs_diff": v and v.max_abs_diff, "mean_abs_diff": v and v.mean_abs_diff,
            "images_per_second": m.timings.images_per_second,
        }
        rows.append([csv_number(values[f]) for f in _SUMMARY_FIELDS]
                    + [csv_number(class_accuracy(m, i)) for i in range(len(names))])
    return csv_text(rows)


def compare_per_class_csv(record: ComparisonRecord) -> str:
    """One row per class: support, then correct and accuracy per model (``m1_correct``...)."""
    models = record.models
    header = ["index", "class", "support"]
    for i in range(len(models)):
        header += [f"m{i + 1}_correct", f"m{i + 1}parse_accuracy"]
    rows: list[Sequence[Any]] = [header]
    for c, name in enumerate(compare_class_names(models)):
        per = [m.metrics.row(c) for m in models]
        cells = [c, name, csv_number(per[0].support if per and per[0] else None)]
        for entry in per:
            cells += [csv_number(entry and entry.correct), csv_number(entry and entry.accuracy)]
        rows.append(cells)
    return csv_text(rows)
