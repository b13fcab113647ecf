"""report/csv_.py: per-class and per-model rows at full precision."""

from __future__ import annotations

import csv
import io

from report_factory import make_comparison, make_record
from resnet8_onnx import report


def test_per_class_csv_matches_metrics() -> None:
    record = make_record()
    rows = list(csv.DictReader(io.StringIO(report.per_class_csv(record))))
    assert len(rows) == 10
    for row, c in zip(rows, record.metrics.per_class, strict=True):
        assert row["class"] == c.name
        assert int(row["index"]) == c.index
        assert int(row["support"]) == c.support
        assert int(row["correct"]) == c.correct
        for key in ("accuracy", "precision", "recall", "f1", "auc"):
            assert float(row[key]) == getattr(c, key)  # full precision: exact round trip
    assert sum(int(r["correct"]) for r in rows) == record.metrics.correct


def test_per_class_csv_undefined_auc_is_empty() -> None:
    rows = list(csv.DictReader(io.StringIO(report.per_class_csv(make_record(drop_class=2)))))
    assert rows[2]["auc"] == ""
    assert rows[2]["support"] == "0"


def test_comparison_per_class_csv_one_column_group_per_model() -> None:
    comparison = make_comparison()
    rows = list(csv.DictReader(io.StringIO(report.comparison_per_class_csv(comparison))))
    assert len(rows) == 10
    keras, onnx = (m.metrics.per_class for m in comparison.models)
    for row, k, o in zip(rows, keras, onnx, strict=True):
        assert row["class"] == k.name
        assert int(row["keras_correct"]) == k.correct
        assert int(row["onnx_correct"]) == o.correct
        assert float(row["onnx_auc"]) == o.auc
        assert row["same_correct"] == str(k.correct == o.correct).lower()


def test_comparison_per_class_csv_marks_a_differing_class() -> None:
    comparison = make_comparison(passed=False)
    onnx = comparison.models[1].metrics
    onnx.per_class[3].correct -= 2  # the "ONNX" model lost two cats
    onnx.correct -= 2
    rows = list(csv.DictReader(io.StringIO(report.comparison_per_class_csv(comparison))))
    assert [r["same_correct"] for r in rows] == ["false" if i == 3 else "true" for i in range(10)]
