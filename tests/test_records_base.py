"""records/base.py: schemas, to_dict/from_dict, unknown keys kept, typed on assignment."""

from __future__ import annotations

import numpy as np
import pytest

from resnet8_onnx import records as r


def test_every_record_names_its_schema_and_version():
    for kind in r.RECORD_TYPES:
        d = kind().to_dict()
        assert d["schema"] == kind.SCHEMA
        assert d["schema"].startswith("resnet8-onnx/")
        assert d["schema_version"] == kind.SCHEMA_VERSION
    assert len({k.SCHEMA for k in r.RECORD_TYPES}) == len(r.RECORD_TYPES)


def test_optional_keys_left_out_until_set_and_unknown_keys_kept():
    rec = r.ComparisonRecord(models=[r.EvaluationRecord(label="#1 Keras")])
    d = rec.to_dict()
    assert "verdict" not in d
    assert "layerwise" not in d
    assert "label" in d["models"][0]
    back = r.ComparisonRecord.from_dict({**d, "future_key": [1, 2]})
    assert back.extra == {"future_key": [1, 2]}
    assert isinstance(back.models[0], r.EvaluationRecord)
    assert back.to_dict()["future_key"] == [1, 2]


def test_a_record_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="not a resnet8-onnx/verification"):
        r.VerificationRecord.from_dict(r.BenchmarkRecord().to_dict())
    with pytest.raises(ValueError, match="unknown record schema"):
        r.record_from_dict({"schema": "other/thing"})


def test_a_record_written_before_schemas_is_read():
    old = {"passed": True, "samples": 3, "argmax_agreement": 3, "max_abs_diff": 0.0}
    rec = r.VerificationRecord.from_dict(old)
    assert rec.passed
    assert rec.samples == 3
    assert rec.extra == {}


def test_nested_blocks_are_typed_however_the_record_was_built():
    """A block handed over as a mapping becomes its part: renderers read attributes only."""
    rec = r.EvaluationRecord(metrics={"accuracy": 0.5, "per_class": [{"name": "cat"}]},
                             data={"count": 3, "source": {"kind": "array"}})
    assert isinstance(rec.metrics, r.Metrics)
    assert isinstance(rec.metrics.per_class[0], r.ClassRow)
    assert rec.metrics.per_class[0].name == "cat"
    assert rec.data.source.kind == "array"
    assert rec.model.backend == "model"  # a missing block takes its defaults
    rec.versus_reference = {"agreement": 3, "comparable": False}  # set later: typed too
    assert isinstance(rec.versus_reference, r.Versus)
    assert rec.versus_reference.agreement == 3


def test_numpy_figures_become_python_numbers_however_they_arrive() -> None:
    """A figure set as a numpy scalar renders as a number, not as "—"."""
    from resnet8_onnx.report import format_int, format_pct

    metrics = r.Metrics(accuracy=np.float32(0.5), correct=np.int64(9))
    metrics.total = np.int64(18)
    assert (type(metrics.accuracy), type(metrics.correct), type(metrics.total)) == (
        float, int, int)
    assert (format_pct(metrics.accuracy), format_int(metrics.correct)) == ("50.00%", "9")


def test_assigning_keeps_the_callers_containers_unless_they_hold_numpy_values() -> None:
    from collections import namedtuple

    versus = r.Versus()
    first = [1, 2]
    versus.first_disagreements = first
    assert versus.first_disagreements is first  # no copy: nothing to convert
    versus.first_disagreements = [np.int64(3)]
    assert type(versus.first_disagreements[0]) is int
    pair = namedtuple("Pair", "a b")(1, 2)
    comparison = r.ComparisonRecord()
    comparison.reference = {"pair": pair}  # a namedtuple is no plain tuple to rebuild
    assert comparison.reference["pair"] is pair
    metrics = r.Metrics(accuracy=np.array(0.25))  # a 0-d array
    assert metrics.accuracy == 0.25
    assert type(metrics.accuracy) is float


def test_a_held_out_agreement_of_nothing_is_no_fraction():
    """Both quantize's and tune's candidates write ``holdout_agreement_fraction`` this way."""
    from resnet8_onnx.records.base import fraction

    assert fraction(3, 4) == 0.75
    assert fraction(None, 4) is None
    assert fraction(0, 0) is None
    assert fraction(0, 5) == 0.0
    assert r.TuneCandidate(holdout_agreement=9, holdout_count=10).to_dict()[
        "holdout_agreement_fraction"] == 0.9
    assert r.TuneCandidate(holdout_agreement=9, holdout_count=0).to_dict()[
        "holdout_agreement_fraction"] is None
