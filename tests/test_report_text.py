"""report/text.py: the data statement, number formatting, model names."""

from __future__ import annotations

import numpy as np
import pytest

from report_factory import make_record, record_dict, terminal_text
from resnet8_onnx import records as r
from resnet8_onnx import report


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"count": 10000, "subset": "full", "full_official_test_set": True},
         "CIFAR-10 test, full official set, 10,000 images"),
        ({"count": 200, "subset": "perf", "source_count": 10000},
         "CIFAR-10 test, MLPerf Tiny perf subset: 200 of 10,000 images — NOT the full test set"),
        ({"count": 500, "subset": "first-500 of full", "source_count": 10000, "limit": 500},
         "CIFAR-10 test, first 500 of 10,000 images — NOT the full test set"),
        ({"count": 200, "subset": "full", "source_count": 200, "source": {"path": "/x/perf-png"}},
         "CIFAR-10 test from perf-png: 200 images — not verified as the full official test set"),
    ],
)
def test_describe_data(data: dict, expected: str) -> None:
    assert report.describe_data(r.DataInfo(**data)) == expected  # as a producer builds it
    assert report.describe_data(r.DataInfo.from_dict(data)) == expected  # as saved


def test_describe_data_limited_perf_subset_names_both() -> None:
    text = report.describe_data(r.DataInfo(count=50, subset="first-50 of perf",
                                           source_count=10000, limit=50))
    assert "first 50 images of the MLPerf Tiny perf subset" in text
    assert "NOT the full test set" in text


def test_describe_data_never_claims_official_without_the_flag() -> None:
    text = report.describe_data(r.DataInfo(count=10000, subset="full"))
    assert "official set" not in text.replace("not verified as the full official", "")
    assert report.describe_data(r.DataInfo.from_dict({}))  # missing keys: still a sentence


def test_numbers_format_and_undefined_is_a_dash() -> None:
    assert report.format_pct(0.87191) == "87.19%"
    assert report.format_pct(None) == report.DASH
    assert report.format_pct(float("nan")) == report.DASH
    assert report.format_int(8719) == "8,719"
    assert report.format_int(True) == report.DASH
    assert report.format_threshold(0.895) == "89.5%"


def test_model_name_and_backend_label() -> None:
    rec = make_record(backend="keras")
    assert report.model_name(rec) == "pretrainedResnet.h5"
    assert report.backend_label(rec) == "Keras"
    assert report.model_name(r.EvaluationRecord()) == "model"


def test_renderers_read_numpy_values_as_numbers() -> None:
    """A record built from numpy values reads them as numbers, NaN as undefined."""
    d = record_dict()
    d["metrics"]["correct"] = np.int64(d["metrics"]["correct"])
    d["metrics"]["accuracy"] = np.float32(d["metrics"]["accuracy"])
    d["metrics"]["per_class"][0]["auc"] = float("nan")
    d["data"]["count"] = np.int64(d["data"]["count"])
    rec = r.EvaluationRecord.from_dict(d)
    assert type(rec.metrics.correct) is int
    text = terminal_text(report.render_terminal, rec)
    assert f"{rec.metrics.correct:,}/" in text
    assert "2,000 images" in text
    assert report.per_class_csv(rec).splitlines()[1].endswith(",")  # NaN AUC: empty cell
    assert f"{rec.metrics.accuracy * 100:.2f}%" in report.markdown_summary(rec)


def test_a_re_rendered_record_keeps_the_preprocessing_sources_in_order(tmp_path) -> None:
    """The JSON sorts keys; the line a re-rendered record prints is the live record's."""
    import json

    from model_factory import SPEC, make_classifier, synthetic_dataset
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.evaluate import evaluate

    model = make_classifier(tmp_path / "m.onnx", layout="nchw")
    spec = dict(zip(SPEC[::2], SPEC[1::2], strict=True))
    backend = load_backend(model, preprocessing={"scale": 1 / 255, "mean": spec["--mean"],
                                                 "std": spec["--std"]})
    live = evaluate(backend, synthetic_dataset(20))
    again = r.record_from_dict(json.loads(report.to_json(live)))
    line = report.preprocessing_line(live)
    assert line is not None
    # the live order is the spec's: layout (input shape), channels, scale, mean, std, dtype
    assert line.index("layout") < line.index("channels") < line.index("scale")
    assert report.preprocessing_line(again) == line
