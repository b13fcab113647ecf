"""report/jsonio.py: deterministic, strict JSON of records."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from report_factory import make_record
from resnet8_onnx import records as r
from resnet8_onnx import report


@pytest.fixture(scope="module")
def record() -> r.EvaluationRecord:
    return make_record()


def test_json_round_trips_with_required_fields(record: r.EvaluationRecord) -> None:
    back = json.loads(report.to_json(record))
    assert back == json.loads(json.dumps(record.to_dict()))
    assert r.EvaluationRecord.from_dict(back) == record
    m = back["metrics"]
    assert isinstance(m["accuracy"], float)
    assert isinstance(m["correct"], int)
    assert isinstance(m["total"], int)
    assert isinstance(m["top5_accuracy"], float)
    assert isinstance(m["macro_auc"], float)
    assert len(m["per_class"]) == 10
    for c in m["per_class"]:
        assert {"name", "index", "accuracy", "correct", "total", "precision", "recall", "f1",
                "support", "auc"} <= set(c)
        assert isinstance(c["support"], int)
        assert isinstance(c["auc"], float)
    assert len(m["confusion_matrix"]) == 10
    assert all(len(row) == 10 and all(isinstance(v, int) for v in row)
               for row in m["confusion_matrix"])
    assert sum(map(sum, m["confusion_matrix"])) == m["total"]


def test_json_is_deterministic_and_sorted(record: r.EvaluationRecord) -> None:
    first, second = report.to_json(record), report.to_json(copy.deepcopy(record))
    assert first == second
    assert first.endswith("\n")

    def check_sorted(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        assert keys == sorted(keys)
        return dict(pairs)

    json.loads(first, object_pairs_hook=check_sorted)


def test_json_converts_numpy_and_nan() -> None:
    payload = {"a": np.float32(0.5), "b": np.int64(7), "c": np.arange(3), "d": float("nan"),
               "e": np.float64("inf"), "f": (1, 2), "g": Path("/tmp/x"), "h": np.bool_(True),
               "i": [np.nan, 1.0]}
    text = report.to_json(payload)
    assert "NaN" not in text
    assert "Infinity" not in text
    assert json.loads(text) == {"a": 0.5, "b": 7, "c": [0, 1, 2], "d": None, "e": None,
                                "f": [1, 2], "g": "/tmp/x", "h": True, "i": [None, 1.0]}


def test_json_undefined_auc_is_null() -> None:
    back = json.loads(report.to_json(make_record(drop_class=6)))
    assert back["metrics"]["per_class"][6]["auc"] is None
    assert back["metrics"]["per_class"][6]["support"] == 0
