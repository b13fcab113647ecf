"""records/parts.py: the blocks read older and partial reports without inventing figures."""

from __future__ import annotations

from resnet8_onnx import records as r


def test_older_and_partial_records_read_without_inventing_failures() -> None:
    """A verification without a dynamic-batch block says nothing about one; a run report's
    partial int8 block reads with defaults."""
    from resnet8_onnx.report.sections import parity_lines

    old = r.VerificationRecord.from_dict({"passed": True, "parity": {"passed": True}})
    assert old.dynamic_batch is None
    assert parity_lines(old.full_parity()) == []
    assert "dynamic_batch" not in old.to_dict()
    empty = r.VerificationRecord.from_dict({"dynamic_batch": {}})
    assert not [line for line in parity_lines(empty.full_parity()) if "dynamic" in line]
    run = r.ComparisonRecord.from_dict({"int8": {"candidates": [{"recipe": {}}],
                                                 "layer_errors": [{"node": "conv"}]}})
    assert run.int8.candidates[0].recipe is None  # not invented
    assert run.int8.candidates[0].size_bytes is None
    assert run.int8.layer_errors[0].node == "conv"


def test_metrics_names_come_from_the_list_the_rows_or_the_matrix() -> None:
    assert r.Metrics(class_names=["cat", "dog"]).names == ["cat", "dog"]
    rows = r.Metrics.from_dict({"per_class": [{"name": "cat"}, {"name": "dog", "index": 1}]})
    assert rows.names == ["cat", "dog"]
    assert r.Metrics(confusion_matrix=[[1, 0], [0, 1]]).names == ["0", "1"]
    assert rows.row(1).name == "dog"
    assert rows.row(2) is None


def test_a_partial_candidate_renders_dashes_not_made_up_figures() -> None:
    from resnet8_onnx.report.sections import candidate_rows

    record = r.QuantizationRecord.from_dict({"candidates": [{"holdout_agreement": 99,
                                                             "holdout_count": 100}]})
    (row,) = candidate_rows(record, sizes=True)
    assert row[0] == "—"  # no recipe recorded
    assert row[5] == "—"  # no size recorded
