"""report/markdown.py: self-contained Markdown reports."""

from __future__ import annotations

from report_factory import NAMES, make_comparison, make_record
from resnet8_onnx import report


def test_markdown_states_the_images_and_the_numbers() -> None:
    record = make_record()
    md = report.markdown_summary(record)
    assert report.describe_data(record.data) in md
    assert "full official set, 2,000 images" in md
    m = record.metrics
    assert f"{m.accuracy * 100:.2f}%" in md
    assert f"{m.correct:,} / {m.total:,}" in md
    for name in NAMES:
        assert f"| {name} |" in md
    assert md.count("\n| ") >= 2 + 10 + 10  # key figures, per-class and confusion tables


def test_markdown_of_a_subset_says_so() -> None:
    md = report.markdown_summary(make_record(n=200, subset="perf"))
    assert "MLPerf Tiny perf subset: 200 of 10,000 images — NOT the full test set" in md
    assert "full official set" not in md


def test_markdown_mentions_softmax_for_logits() -> None:
    rec = make_record(logits=True)
    assert rec.metrics.softmax_applied_for_auc is True
    assert "softmax applied before computing ROC AUC" in report.markdown_summary(rec)


def test_comparison_markdown_verdict_images_and_files() -> None:
    comparison = make_comparison()
    md = report.comparison_markdown(comparison)
    assert "## Verdict: PASS" in md
    assert report.describe_data(comparison.data) in md
    assert "pretrainedResnet.h5" in md
    assert "pretrainedResnet.onnx" in md


def test_comparison_markdown_shows_a_per_class_difference() -> None:
    comparison = make_comparison(passed=False)
    onnx = comparison.models[1].metrics
    onnx.per_class[3].correct -= 2
    onnx.correct -= 2
    md = report.comparison_markdown(comparison)
    assert "| cat |" in md
    assert "| -2 |" in md
    assert "## Numerical parity: FAILED" in md


def _image_links(markdown: str) -> list[str]:
    import re
    from urllib.parse import unquote

    return [unquote(target) for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)]


def test_report_md_links_the_confusion_pngs_written_beside_it(tmp_path) -> None:
    """Every report directory's Markdown shows its confusion PNGs by relative links that
    resolve to the files written (evaluate --out, another stem, run's directory)."""
    for out, written in (
            (tmp_path / "e", report.write_reports(make_record(), tmp_path / "e")),
            (tmp_path / "s", report.write_reports(make_record(), tmp_path / "s", stem="perf")),
            (tmp_path / "r", report.write_comparison_reports(make_comparison(), tmp_path / "r"))):
        links = _image_links(written["markdown"].read_text(encoding="utf-8"))
        pngs = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
        assert len(pngs) >= 1
        assert sorted(links) == pngs, (links, pngs)
        assert all(not link.startswith("/") for link in links)
