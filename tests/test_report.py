"""Renderers over a report record built from compute_metrics on synthetic predictions."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from conftest import shared_path
from resnet8_onnx import report
from resnet8_onnx.cli import main
from resnet8_onnx.errors import OutputError
from resnet8_onnx.metrics import compute_metrics, softmax

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(count: int, subset: str = "full", official: bool = True) -> dict:
    return {
        "dataset": "CIFAR-10",
        "source": {"kind": "binary-dir", "path": "/data/cifar-10-batches-bin",
                   "checks": ["test_batch.bin md5 matches the official file"],
                   "official": official, "warnings": [] if official else ["unofficial files"]},
        "split": "test", "subset": subset, "count": count, "source_count": 10_000,
        "limit": None, "per_class": {}, "full_official_test_set": official and subset == "full",
    }


def make_record(n: int = 2000, seed: int = 0, *, subset: str = "full", backend: str = "onnxruntime",
                logits: bool = False, drop_class: int | None = None) -> dict:
    """A record shaped like ``EvaluationResult.to_record()``, metrics from compute_metrics."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    if drop_class is not None:
        y[y == drop_class] = (drop_class + 1) % 10
    scores = rng.normal(size=(n, 10))
    scores[np.arange(n), y] += 2.5
    if not logits:
        scores = softmax(scores).astype(np.float32)
    metrics = compute_metrics(y, scores, NAMES)
    suffix = {"onnxruntime": ".onnx", "keras": ".h5"}.get(backend, ".bin")
    return {
        "tool": {"name": "resnet8-onnx", "version": "0.1.0"},
        "model": {"path": f"/models/pretrainedResnet{suffix}", "sha256": "0" * 64,
                  "backend": backend, "runtime_version": "1.0", "output_kind": metrics.output_kind},
        "data": _data(n, subset),
        "metrics": metrics.to_dict(),
        "environment": {"python": "3.11", "numpy": np.__version__},
        "timings": {"inference_seconds": 0.5, "images_per_second": n / 0.5, "batch_size": 250},
    }


@pytest.fixture(scope="module")
def record() -> dict:
    return make_record()


@pytest.fixture(scope="module")
def png(record: dict) -> bytes:
    """Rendered once per module: a PNG takes about half a second."""
    return report.confusion_matrix_png(record)


def make_comparison(passed: bool = True) -> dict:
    keras, onnx = make_record(backend="keras"), make_record(backend="onnxruntime")
    summary = ["Keras and ONNX agree on every prediction.",
               "VERDICT: PASS — the conversion lost nothing." if passed else "VERDICT: FAIL."]
    return {
        "models": [keras, onnx],
        "parity": {"passed": passed, "samples": 2000, "argmax_agreement": 2000 if passed else 1997,
                   "max_abs_diff": 3e-7, "atol": 1e-5, "rtol": 1e-5,
                   "first_disagreements": [] if passed else [4, 17, 933]},
        "verdict": {"accuracy_threshold": 0.85, "onnx_accuracy": onnx["metrics"]["accuracy"],
                    "keras_accuracy": keras["metrics"]["accuracy"], "same_correct_count": True,
                    "above_threshold": True, "passed": passed, "summary": summary},
        "data": onnx["data"],
    }


def _terminal(render, payload) -> str:
    console = Console(record=True, width=120, color_system=None)
    render(payload, console)
    return console.export_text()


# --------------------------------------------------------------------------- describe_data
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
    assert report.describe_data(data) == expected


def test_describe_data_limited_perf_subset_names_both() -> None:
    text = report.describe_data({"count": 50, "subset": "first-50 of perf",
                                 "source_count": 10000, "limit": 50})
    assert "first 50 images of the MLPerf Tiny perf subset" in text
    assert "NOT the full test set" in text


def test_describe_data_never_claims_official_without_the_flag() -> None:
    text = report.describe_data({"count": 10000, "subset": "full"})
    assert "official set" not in text.replace("not verified as the full official", "")
    assert report.describe_data({})  # missing keys: still a sentence, no exception


# --------------------------------------------------------------------------- JSON
def test_json_round_trips_with_required_fields(record: dict) -> None:
    back = json.loads(report.to_json(record))
    assert back == json.loads(json.dumps(record))
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


def test_json_is_deterministic_and_sorted(record: dict) -> None:
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


def test_renderers_accept_numpy_values_in_the_record(record: dict) -> None:
    rec = copy.deepcopy(record)
    rec["metrics"]["correct"] = np.int64(rec["metrics"]["correct"])
    rec["metrics"]["accuracy"] = np.float32(rec["metrics"]["accuracy"])
    rec["metrics"]["per_class"][0]["auc"] = float("nan")
    rec["data"]["count"] = np.int64(rec["data"]["count"])
    text = _terminal(report.render_terminal, rec)
    assert f"{int(rec['metrics']['correct']):,}/" in text
    assert "2,000 images" in text
    assert report.per_class_csv(rec).splitlines()[1].endswith(",")  # NaN AUC: empty cell
    assert f"{float(rec['metrics']['accuracy']) * 100:.2f}%" in report.markdown_summary(rec)


def test_json_undefined_auc_is_null() -> None:
    back = json.loads(report.to_json(make_record(drop_class=6)))
    assert back["metrics"]["per_class"][6]["auc"] is None
    assert back["metrics"]["per_class"][6]["support"] == 0


# --------------------------------------------------------------------------- CSV
def test_per_class_csv_matches_metrics(record: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(report.per_class_csv(record))))
    assert len(rows) == 10
    for row, c in zip(rows, record["metrics"]["per_class"], strict=True):
        assert row["class"] == c["name"]
        assert int(row["index"]) == c["index"]
        assert int(row["support"]) == c["support"]
        assert int(row["correct"]) == c["correct"]
        for key in ("accuracy", "precision", "recall", "f1", "auc"):
            assert float(row[key]) == c[key]  # full precision: exact round trip
    assert sum(int(r["correct"]) for r in rows) == record["metrics"]["correct"]


def test_per_class_csv_undefined_auc_is_empty() -> None:
    rows = list(csv.DictReader(io.StringIO(report.per_class_csv(make_record(drop_class=2)))))
    assert rows[2]["auc"] == ""
    assert rows[2]["support"] == "0"


# --------------------------------------------------------------------------- Markdown
def test_markdown_states_the_images_and_the_numbers(record: dict) -> None:
    md = report.markdown_summary(record)
    assert report.describe_data(record["data"]) in md
    assert "full official set, 2,000 images" in md
    m = record["metrics"]
    assert f"{m['accuracy'] * 100:.2f}%" in md
    assert f"{m['correct']:,} / {m['total']:,}" in md
    for name in NAMES:
        assert f"| {name} |" in md
    assert md.count("\n| ") >= 2 + 10 + 10  # key figures, per-class and confusion tables


def test_markdown_of_a_subset_says_so() -> None:
    md = report.markdown_summary(make_record(n=200, subset="perf"))
    assert "MLPerf Tiny perf subset: 200 of 10,000 images — NOT the full test set" in md
    assert "full official set" not in md


def test_markdown_mentions_softmax_for_logits() -> None:
    rec = make_record(logits=True)
    assert rec["metrics"]["softmax_applied_for_auc"] is True
    assert "softmax applied before computing ROC AUC" in report.markdown_summary(rec)


# --------------------------------------------------------------------------- PNG
def test_confusion_png_is_a_readable_image(png: bytes) -> None:
    assert png.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert 600 <= image.width <= 2500
    assert 600 <= image.height <= 2500
    pixels = np.asarray(image.convert("RGB")).astype(np.uint32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 50  # not blank: shades of blue, anti-aliased text


def test_confusion_png_decodes_with_matplotlib(png: bytes) -> None:
    import matplotlib.image as mpimg

    array = mpimg.imread(io.BytesIO(png), format="png")
    assert array.ndim == 3
    assert array.shape[2] in (3, 4)


def test_confusion_png_is_deterministic(record: dict, png: bytes) -> None:
    assert report.confusion_matrix_png(copy.deepcopy(record)) == png


def test_confusion_png_needs_a_matrix() -> None:
    with pytest.raises(ValueError, match="confusion matrix"):
        report.confusion_matrix_png({"metrics": {}})


def test_importing_report_loads_neither_matplotlib_nor_sklearn() -> None:
    code = ("import sys, resnet8_onnx.report; "
            "sys.exit(any(n.split('.')[0] in ('matplotlib', 'sklearn', 'tensorflow', 'rich') "
            "for n in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------- terminal
def test_terminal_shows_classes_accuracy_and_images(record: dict) -> None:
    text = _terminal(report.render_terminal, record)
    for name in NAMES:
        assert name in text
    assert f"{record['metrics']['accuracy'] * 100:.2f}%" in text
    assert "CIFAR-10 test, full official set, 2,000 images" in text
    assert "pretrainedResnet.onnx" in text


def test_terminal_warns_about_subsets_and_data_warnings() -> None:
    rec = make_record(n=200, subset="perf")
    rec["data"]["source"]["warnings"] = ["indices file differs from the official one"]
    text = _terminal(report.render_terminal, rec)
    assert "NOT the full test set" in text
    assert "indices file differs from the official one" in text


def test_renderers_tolerate_a_minimal_record(tmp_path: Path) -> None:
    minimal = {"metrics": make_record(n=300)["metrics"]}
    text = _terminal(report.render_terminal, minimal)
    assert "airplane" in text
    assert report.markdown_summary(minimal).startswith("# ")
    assert len(report.per_class_csv(minimal).splitlines()) == 11
    assert report.confusion_matrix_png(minimal).startswith(PNG_MAGIC)
    assert set(report.write_reports(minimal, tmp_path / "out")) == {"json", "markdown", "csv",
                                                                    "png"}


# --------------------------------------------------------------------------- writing
def test_write_reports_writes_everything_atomically(record: dict, tmp_path: Path) -> None:
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


def test_write_reports_refuses_existing_files_without_force(record: dict,
                                                            tmp_path: Path) -> None:
    report.write_reports(record, tmp_path)
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


def test_write_reports_stem_and_missing_parent(record: dict, tmp_path: Path) -> None:
    written = report.write_reports(record, tmp_path, stem="onnx")
    assert written["png"].name == "onnx_confusion.png"
    with pytest.raises(OutputError, match="does not exist"):
        report.write_reports(record, tmp_path / "missing" / "deeper")
    assert not (tmp_path / "missing").exists()


def test_write_reports_into_a_file_path_fails(record: dict, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(OutputError):
        report.write_reports(record, target)


# --------------------------------------------------------------------------- comparison
def test_comparison_terminal_puts_the_verdict_first() -> None:
    text = _terminal(report.render_comparison_terminal, make_comparison(passed=True))
    assert text.index("VERDICT: PASS") < text.index("airplane")
    assert "Keras and ONNX agree on every prediction." in text
    assert "Keras acc." in text
    assert "ONNX acc." in text
    assert "full official set" in text
    failed = _terminal(report.render_comparison_terminal, make_comparison(passed=False))
    assert "VERDICT: FAIL" in failed
    assert "FAILED" in failed
    assert "4, 17, 933" in failed


def test_comparison_markdown_and_csv() -> None:
    comparison = make_comparison()
    md = report.comparison_markdown(comparison)
    assert "## Verdict: PASS" in md
    assert report.describe_data(comparison["data"]) in md
    assert "pretrainedResnet.h5" in md
    assert "pretrainedResnet.onnx" in md
    rows = list(csv.DictReader(io.StringIO(report.comparison_per_class_csv(comparison))))
    assert len(rows) == 10
    keras, onnx = (m["metrics"]["per_class"] for m in comparison["models"])
    for row, k, o in zip(rows, keras, onnx, strict=True):
        assert row["class"] == k["name"]
        assert int(row["keras_correct"]) == k["correct"]
        assert int(row["onnx_correct"]) == o["correct"]
        assert float(row["onnx_auc"]) == o["auc"]
        assert row["same_correct"] == str(k["correct"] == o["correct"]).lower()


def test_comparison_shows_per_class_differences() -> None:
    comparison = make_comparison(passed=False)
    onnx = comparison["models"][1]["metrics"]
    onnx["per_class"][3]["correct"] -= 2  # the "ONNX" model lost two cats
    onnx["correct"] -= 2
    rows = list(csv.DictReader(io.StringIO(report.comparison_per_class_csv(comparison))))
    assert [r["same_correct"] for r in rows] == ["false" if i == 3 else "true" for i in range(10)]
    text = _terminal(report.render_comparison_terminal, comparison)
    cat_line = next(line for line in text.splitlines() if line.startswith("cat "))
    assert cat_line.rstrip().endswith("-2")
    assert "| cat |" in report.comparison_markdown(comparison)
    assert "| -2 |" in report.comparison_markdown(comparison)


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


# --------------------------------------------------------------------------- verification
def test_verification_terminal() -> None:
    base = {"passed": True, "structure": {"path": "m.onnx", "checker": "passed (full_check)",
                                          "nodes": 30, "parameters": 78666},
            "reference": {"model_path": "m.h5", "name": "keras"},
            "parity": {"samples": 200, "argmax_agreement": 200, "max_abs_diff": 1e-7,
                       "atol": 1e-5, "rtol": 1e-5, "passed": True},
            "dynamic_batch": {"batch_sizes": {"1": {}, "7": {}}, "passed": True},
            "interface_problems": [], "data": _data(200, "perf")}
    text = _terminal(report.render_verification_terminal, base)
    assert "VERIFIED" in text
    assert "78,666 parameters" in text
    assert "200/200" in text
    assert "NOT the full test set" in text
    failing = {**base, "passed": False,
               "parity": {**base["parity"], "passed": False, "argmax_agreement": 199,
                          "first_disagreements": [42]},
               "layerwise": {"layers": [{"layer": "conv2d", "matched": True},
                                        {"layer": "dense", "matched": False}],
                             "first_diverging_layer": {"layer": "dense", "class": "Dense",
                                                       "max_abs_diff": 0.5}}}
    text = _terminal(report.render_verification_terminal, failing)
    assert "VERIFICATION FAILED" in text
    assert "first diverging layer: dense (Dense)" in text
    assert "42" in text


# --------------------------------------------------------------------------- through the CLI
@pytest.mark.slow
def test_empty_class_folder_warns_shows_a_dash_and_macro_averages_follow_sklearn(
        tmp_path, resnet8_onnx, capsys) -> None:
    """The MLPerf perf images with an empty frog/ folder, evaluated by the real model."""
    import onnxruntime as ort
    import sklearn.metrics as skm

    folder = tmp_path / "no-frogs"
    shutil.copytree(shared_path("cifar-10", "perf-png"), folder,
                    ignore=lambda d, names: names if Path(d).name == "frog" else [])
    assert (folder / "frog").is_dir()
    assert not any((folder / "frog").iterdir())
    out = tmp_path / "r.json"
    assert main(["-q", "evaluate", str(resnet8_onnx), "--data-dir", str(folder),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    metrics = json.loads(out.read_text())["metrics"]

    frog = metrics["per_class"][NAMES.index("frog")]
    assert frog["support"] == 0
    assert frog["accuracy"] is None
    assert frog["recall"] is None
    assert metrics["absent_classes"] == ["frog"]
    row = next(line for line in text.splitlines() if line.strip().startswith("frog"))
    assert report.DASH in row
    assert "0.00%" not in row
    assert "warning: no images of class frog" in " ".join(text.split())
    assert "average the" in " ".join(text.split())  # the macro convention is stated

    # Independently: the images read with Pillow, predicted by a bare ONNX Runtime session.
    files = sorted(folder.glob("*/*.png"))
    y_true = np.array([NAMES.index(f.parent.name) for f in files])
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype(
        np.float32)
    session = ort.InferenceSession(str(resnet8_onnx), providers=["CPUExecutionProvider"])
    y_pred = session.run(None, {session.get_inputs()[0].name: images})[0].argmax(axis=1)
    for key, sk in (("macro_f1", skm.f1_score), ("macro_recall", skm.recall_score),
                    ("macro_precision", skm.precision_score)):
        assert metrics[key] == pytest.approx(
            sk(y_true, y_pred, average="macro", zero_division=0), abs=1e-12), key
    assert metrics["macro_classes"] == len(np.union1d(y_true, y_pred))
