"""report/terminal.py: what each command prints (verdict first, the images always named)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_path
from report_factory import (
    NAMES,
    PNG_MAGIC,
    data_block,
    make_comparison,
    make_record,
    record_dict,
    terminal_text,
)
from resnet8_onnx import records as r
from resnet8_onnx import report
from resnet8_onnx.cli import main


def test_terminal_shows_classes_accuracy_and_images() -> None:
    record = make_record()
    text = terminal_text(report.render_terminal, record)
    for name in NAMES:
        assert name in text
    assert f"{record.metrics.accuracy * 100:.2f}%" in text
    assert "CIFAR-10 test, full official set, 2,000 images" in text
    assert "pretrainedResnet.onnx" in text


def test_terminal_warns_about_subsets_and_data_warnings() -> None:
    rec = make_record(n=200, subset="perf")
    rec.data.source.warnings = ["indices file differs from the official one"]
    text = terminal_text(report.render_terminal, rec)
    assert "NOT the full test set" in text
    assert "indices file differs from the official one" in text


def test_renderers_take_a_minimal_record(tmp_path: Path) -> None:
    """Only metrics known: every writer still renders, missing facts as defaults."""
    minimal = r.EvaluationRecord.from_dict({"metrics": record_dict(n=300)["metrics"]})
    text = terminal_text(report.render_terminal, minimal)
    assert "airplane" in text
    assert report.markdown_summary(minimal).startswith("# ")
    assert len(report.per_class_csv(minimal).splitlines()) == 11
    assert report.confusion_matrix_png(minimal).startswith(PNG_MAGIC)
    assert set(report.write_reports(minimal, tmp_path / "out")) == {"json", "markdown", "csv",
                                                                    "png"}


def test_comparison_terminal_puts_the_verdict_first() -> None:
    text = terminal_text(report.render_comparison_terminal, make_comparison(passed=True))
    assert text.index("VERDICT: PASS") < text.index("airplane")
    assert "Keras and ONNX agree on every prediction." in text
    assert "Keras acc." in text
    assert "ONNX acc." in text
    assert "full official set" in text
    failed = terminal_text(report.render_comparison_terminal, make_comparison(passed=False))
    assert "VERDICT: FAIL" in failed
    assert "FAILED" in failed
    assert "4, 17, 933" in failed


def test_comparison_terminal_shows_per_class_differences() -> None:
    comparison = make_comparison(passed=False)
    onnx = comparison.models[1].metrics
    onnx.per_class[3].correct -= 2  # the "ONNX" model lost two cats
    onnx.correct -= 2
    text = terminal_text(report.render_comparison_terminal, comparison)
    cat_line = next(line for line in text.splitlines() if line.startswith("cat "))
    assert cat_line.rstrip().endswith("-2")


def test_verification_terminal() -> None:
    base = {"passed": True, "structure": {"path": "m.onnx", "checker": "passed (full_check)",
                                          "nodes": 30, "parameters": 78666},
            "reference": {"model_path": "m.h5", "name": "keras"},
            "parity": {"samples": 200, "argmax_agreement": 200, "max_abs_diff": 1e-7,
                       "atol": 1e-5, "rtol": 1e-5, "passed": True},
            "dynamic_batch": {"batch_sizes": {"1": {}, "7": {}}, "passed": True},
            "interface_problems": [], "data": data_block(200, "perf")}
    text = terminal_text(report.render_verification_terminal,
                         r.VerificationRecord.from_dict(base))
    assert "VERIFIED" in text
    assert "78,666 parameters" in text
    assert "200/200" in text
    assert "dynamic batch (1, 7): ok" in text
    assert "NOT the full test set" in text
    failing = {**base, "passed": False,
               "parity": {**base["parity"], "passed": False, "argmax_agreement": 199,
                          "first_disagreements": [42]},
               "layerwise": {"layers": [{"layer": "conv2d", "matched": True},
                                        {"layer": "dense", "matched": False}],
                             "first_diverging_layer": {"layer": "dense", "class": "Dense",
                                                       "max_abs_diff": 0.5}}}
    text = terminal_text(report.render_verification_terminal,
                         r.VerificationRecord.from_dict(failing))
    assert "VERIFICATION FAILED" in text
    assert "first diverging layer: dense (Dense)" in text
    assert "Layer by layer: 1/2 Keras layers matched" in text
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


def test_render_picks_the_view_by_the_records_type_and_kind() -> None:
    """``report.render`` prints each record as its command did: ``run``'s comparison with its
    verdict, ``compare``'s (kind "compare") as the model table, an evaluation as metrics."""
    run = make_comparison(passed=True)
    compared = r.ComparisonRecord.from_dict({**run.to_dict(), "kind": "compare"})
    evaluation = make_record()
    assert terminal_text(report.render, run) == terminal_text(
        report.render_comparison_terminal, run)
    assert terminal_text(report.render, compared) == terminal_text(
        report.render_compare_terminal, compared)
    assert terminal_text(report.render, compared) != terminal_text(report.render, run)
    assert terminal_text(report.render, evaluation) == terminal_text(
        report.render_terminal, evaluation)
    assert terminal_text(report.render, evaluation.data) == terminal_text(
        report.render_data_terminal, evaluation.data)
    with pytest.raises(TypeError, match="no terminal view for a str"):
        report.render("report.json")  # type: ignore[arg-type]


def test_a_saved_record_renders_again_through_load_record(tmp_path: Path) -> None:
    """The JSON a command wrote, read back, prints the same lines without any model."""
    from resnet8_onnx.records import load_record

    record = make_record()
    path = tmp_path / "report.json"
    path.write_text(report.to_json(record), encoding="utf-8")
    assert terminal_text(report.render, load_record(path)) == terminal_text(
        report.render_terminal, record)
