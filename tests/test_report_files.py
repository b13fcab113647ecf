"""report/files.py: each command's report set, checked first, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from report_factory import PNG_MAGIC, make_comparison, make_record
from resnet8_onnx import report
from resnet8_onnx.support.errors import OutputError


def test_write_reports_writes_everything_atomically(tmp_path: Path) -> None:
    record = make_record()
    out = tmp_path / "reports"  # created: its parent exists
    written = report.write_reports(record, out)
    assert {k: p.name for k, p in written.items()} == {
        "json": "report.json", "markdown": "report.md", "csv": "per_class.csv",
        "png": "confusion_onnxruntime.png"}  # the names of the run report directory
    assert json.loads(written["json"].read_text()) == json.loads(report.to_json(record))
    assert written["markdown"].read_text() == report.markdown_summary(record)
    assert written["csv"].read_text() == report.per_class_csv(record)
    assert written["png"].read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written.values())


def test_write_reports_refuses_existing_files_without_force(tmp_path: Path) -> None:
    report.write_reports(make_record(), tmp_path)
    other = make_record(seed=5)
    csv_path = tmp_path / "per_class.csv"
    (tmp_path / "report.md").unlink()  # one missing, the others present: still all-or-nothing
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputError, match="already exists"):
        report.write_reports(other, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    report.write_reports(other, tmp_path, force=True)
    assert csv_path.read_text() == report.per_class_csv(other)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_write_reports_stem_and_missing_parent(tmp_path: Path) -> None:
    record = make_record(n=200)
    written = report.write_reports(record, tmp_path, stem="onnx")
    assert written["png"].name == "onnx_confusion.png"
    with pytest.raises(OutputError, match="does not exist"):
        report.write_reports(record, tmp_path / "missing" / "deeper")
    assert not (tmp_path / "missing").exists()


def test_write_reports_into_a_file_path_fails(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(OutputError):
        report.write_reports(make_record(n=200), target)


def test_a_planned_report_set_is_checked_without_a_record(tmp_path: Path) -> None:
    """Commands check their report set before any model runs, when no record exists yet."""
    targets = report.check_planned(tmp_path / "new", report.evaluation_files("keras"),
                                   force=False)
    assert {p.name for p in targets.values()} == {
        "report.json", "report.md", "per_class.csv", "confusion_keras.png"}
    assert not (tmp_path / "new").exists()
    (tmp_path / "compare.md").write_text("x")
    with pytest.raises(OutputError, match="already exists"):
        report.check_planned(tmp_path, report.compare_files(), force=False)
    assert report.check_planned(tmp_path, report.compare_files(), force=True)


def _written(record, out: Path, **opts) -> dict[str, str]:
    return {k: p.name for k, p in report.write(record, out, **opts).items()}


def test_every_plan_names_what_its_writer_writes(tmp_path: Path) -> None:
    """The names checked before a run are the names written after it, for every report set
    (``run`` with its int8 model included); ``write`` dispatches on the record's type."""
    from resnet8_onnx.records import QuantizationRecord

    evaluation = make_record()
    assert _written(evaluation, tmp_path / "e") == report.evaluation_files("onnxruntime")
    assert (_written(evaluation, tmp_path / "s", stem="m")
            == report.evaluation_files("onnxruntime", stem="m")
            == report.files_for(evaluation, stem="m"))
    comparison = make_comparison()
    int8 = make_record(backend="onnxruntime")
    int8.model.quantization = "int8"
    comparison.models.append(int8)
    assert _written(comparison, tmp_path / "r") == report.comparison_files(
        [("keras", None), ("onnxruntime", None), ("onnxruntime", "int8")])
    assert "png_onnxruntime_int8" in report.files_for(comparison)
    comparison.kind = "compare"
    assert _written(comparison, tmp_path / "c") == report.compare_files()
    quantization = QuantizationRecord()
    assert _written(quantization, tmp_path / "q") == report.quantization_files()
    with pytest.raises(TypeError):
        report.files_for(object())  # type: ignore[arg-type]


def test_run_plans_every_file_it_writes(tmp_path: Path) -> None:
    from resnet8_onnx.pipeline import planned_outputs

    names = [p.name for p in planned_outputs(tmp_path, int8=True)]
    assert names == ["model.onnx", "model_int8.onnx", "report.json", "report.md",
                     "per_class.csv", "confusion_keras.png", "confusion_onnxruntime.png",
                     "confusion_onnxruntime_int8.png"]


def test_write_comparison_reports(tmp_path: Path) -> None:
    comparison = make_comparison()
    written = report.write_comparison_reports(comparison, tmp_path / "run")
    names = sorted(p.name for p in written.values())
    assert names == ["confusion_keras.png", "confusion_onnxruntime.png", "per_class.csv",
                     "report.json", "report.md"]
    assert json.loads(written["json"].read_text())["verdict"]["passed"] is True
    for key in ("png_keras", "png_onnxruntime"):
        assert written[key].read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(OutputError):
        report.write_comparison_reports(comparison, tmp_path / "run")
    report.write_comparison_reports(comparison, tmp_path / "run", force=True)
