"""CSV writer: per-class rows and per-model rows at full precision (undefined → empty cell)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .jsonio import _plain_input, jsonable
from .sections import _class_accuracy, _compare_class_names, _comparison_rows
from .text import _get, _per_class, _unique_labels


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


@_plain_input
def per_class_csv(record: Mapping[str, Any]) -> str:
    """One row per class with full-precision numbers; an undefined AUC is an empty cell."""
    rows: list[Sequence[Any]] = [CSV_COLUMNS]
    for i, c in enumerate(_per_class(record)):
        rows.append([c.get("index", i), c.get("name", i), *(
            csv_number(c.get(k)) for k in ("support", "correct", "predicted", "accuracy",
                                         "precision", "recall", "f1", "auc"))])
    return csv_text(rows)


@_plain_input
def comparison_per_class_csv(comparison: Mapping[str, Any]) -> str:
    """Per-class rows with one column group per model (prefixed keras_, onnx_, ...)."""
    models = list(comparison.get("models") or [])
    prefixes = [label.lower().replace(" ", "") for label in _unique_labels(models)]
    fields = ("correct", "accuracy", "precision", "recall", "f1", "auc")
    header = ["index", "class", "support"]
    for prefix in prefixes:
        header += [f"{prefix}_{f}" for f in fields]
    if len(models) == 2:
        header.append("same_correct")
    rows: list[Sequence[Any]] = [header]
    for row in _comparison_rows(models):
        cells = [row["index"], row["name"], csv_number(row["support"])]
        for c in row["models"]:
            cells += [csv_number(c.get(f)) for f in fields]
        if len(models) == 2:
            a, b = (c.get("correct") for c in row["models"])
            cells.append(str(a == b).lower())
        rows.append(cells)
    return csv_text(rows)


_SUMMARY_FIELDS = ("label", "file", "backend", "runtime_version", "input_dtype", "quantized",
                   "accuracy", "correct", "total", "agreement", "agreement_fraction",
                   "max_abs_diff", "mean_abs_diff", "images_per_second")


def compare_csv(record: Mapping[str, Any]) -> str:
    """One row per model, full precision, per-class accuracies as ``acc_<class>`` columns."""
    record = jsonable(record)
    models = list(record.get("models") or [])
    names = _compare_class_names(models)
    rows: list[Sequence[Any]] = [[*_SUMMARY_FIELDS, *(f"acc_{n}" for n in names)]]
    for m in models:
        v = m.get("versus_reference") or {}
        values = {
            "label": m.get("label"), "file": _get(m, "model", "path"),
            "backend": _get(m, "model", "backend"),
            "runtime_version": _get(m, "model", "runtime_version"),
            "input_dtype": _get(m, "model", "input_dtype"), "quantized": m.get("quantized"),
            "accuracy": _get(m, "metrics", "accuracy"), "correct": _get(m, "metrics", "correct"),
            "total": _get(m, "metrics", "total"), "agreement": v.get("agreement"),
            "agreement_fraction": v.get("agreement_fraction"),
            "max_abs_diff": v.get("max_abs_diff"), "mean_abs_diff": v.get("mean_abs_diff"),
            "images_per_second": _get(m, "timings", "images_per_second"),
        }
        rows.append([csv_number(values[f]) for f in _SUMMARY_FIELDS]
                    + [csv_number(_class_accuracy(m, i)) for i in range(len(names))])
    return csv_text(rows)


def compare_per_class_csv(record: Mapping[str, Any]) -> str:
    """One row per class: support, then correct and accuracy per model (``m1_correct``...)."""
    record = jsonable(record)
    models = list(record.get("models") or [])
    header = ["index", "class", "support"]
    for i in range(len(models)):
        header += [f"m{i + 1}_correct", f"m{i + 1}_accuracy"]
    rows: list[Sequence[Any]] = [header]
    for c, name in enumerate(_compare_class_names(models)):
        per = [(_get(m, "metrics", "per_class") or [{}] * (c + 1))[c] for m in models]
        cells = [c, name, csv_number(per[0].get("support") if per else None)]
        for entry in per:
            cells += [csv_number(entry.get("correct")), csv_number(entry.get("accuracy"))]
        rows.append(cells)
    return csv_text(rows)
