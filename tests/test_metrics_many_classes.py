"""Metrics and reports for N classes: top-k against scikit-learn, most-confused pairs, a
report that stays readable at 120 classes."""

from __future__ import annotations

import numpy as np
import pytest

from report_factory import record_dict, terminal_text
from resnet8_onnx import records as r
from resnet8_onnx.metrics import compute_metrics, softmax


def _scores(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    scores = rng.normal(size=(n, classes))
    scores[np.arange(n), y] += 1.5
    return y, softmax(scores).astype(np.float32)


@pytest.mark.parametrize("classes", [3, 7, 120])
def test_top_k_equals_scikit_learn(classes) -> None:
    from sklearn.metrics import top_k_accuracy_score

    y, s = _scores(600, classes)
    metrics = compute_metrics(y, s, [f"c{i}" for i in range(classes)])
    ks = [k for k in (3, 5, 10) if k < classes]
    assert list(metrics.top_k) == [str(k) for k in ks]  # JSON keys: text
    for k in ks:
        expected = top_k_accuracy_score(y, s, k=k, labels=np.arange(classes))
        assert metrics.top_k[str(k)] == pytest.approx(expected, abs=1e-12)
    assert metrics.accuracy == pytest.approx(
        top_k_accuracy_score(y, s, k=1, labels=np.arange(classes)), abs=1e-12)


def test_most_confused_pairs_are_the_largest_off_diagonal_cells() -> None:
    y, s = _scores(2000, 12, seed=3)
    names = [f"c{i}" for i in range(12)]
    record = compute_metrics(y, s, names)
    pred = s.argmax(1)
    cells = {}
    for t, p in zip(y, pred, strict=True):
        if t != p:
            cells[(t, p)] = cells.get((t, p), 0) + 1
    expected = sorted(cells.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    got = [((names.index(p["true"]), names.index(p["predicted"])), p["count"])
           for p in record.most_confused]
    assert got == expected
    first = record.most_confused[0]
    assert first["share"] == pytest.approx(first["count"] / int((y == expected[0][0][0]).sum()))


def test_a_120_class_report_lists_pairs_not_the_matrix_and_only_classes_with_images() -> None:
    from resnet8_onnx.report import render_terminal
    from resnet8_onnx.report.markdown import markdown_summary

    classes = 120
    y, s = _scores(900, classes, seed=5)
    y[y >= 100] = 0  # 20 classes without images, never predicted either
    s[:, 100:] = 0
    payload = record_dict()
    payload["metrics"] = compute_metrics(y, s, [f"k{i}" for i in range(classes)]).to_dict()
    record = r.EvaluationRecord.from_dict(payload)
    md = markdown_summary(record)
    assert "## Most confused pairs" in md
    assert "## Confusion matrix" not in md
    assert "Top-3 accuracy" in md
    assert "Top-10 accuracy" in md
    shown = [line for line in md.splitlines() if line.startswith("| ") and " k1" in line]
    assert shown  # per-class rows are there
    silent = [c for c in record.metrics.per_class if not c.support and not c.predicted]
    assert silent, "the test needs classes with neither images nor predictions"
    assert f"| {silent[0].name} |" not in md
    assert f"{len(silent):,} of the 120 classes have no images" in md
    text = terminal_text(render_terminal, record)
    assert "Most confused:" in text
    assert "top-3" in text


def test_a_120_class_confusion_png_stays_a_readable_size() -> None:
    import io

    from PIL import Image

    from resnet8_onnx.report.png import confusion_matrix_png

    y, s = _scores(600, 120, seed=7)
    payload = record_dict()
    payload["metrics"] = compute_metrics(y, s, [f"k{i}" for i in range(120)]).to_dict()
    png = confusion_matrix_png(r.EvaluationRecord.from_dict(payload))
    width, height = Image.open(io.BytesIO(png)).size
    assert max(width, height) <= 16 * 110  # 14 in + the colour bar at 110 dpi, not 89 in
