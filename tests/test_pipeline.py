"""pipeline: the whole job (``run``): its outputs checked before work, the model it uses, the
verdict with its int8 line, and the report directory on the real model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_runner import assert_one_line_error, cli
from conftest import SHARED, shared_path, train_subset
from resnet8_onnx.pipeline import add_int8_to_verdict, check_outputs, resolve_model
from resnet8_onnx.quantize import Recipe
from resnet8_onnx.records import QuantizationRecord, Verdict
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InputNotFoundError, OutputError

RUN_REPORTS = ["report.json", "report.md", "per_class.csv", "confusion_keras.png",
               "confusion_onnxruntime.png"]


# --------------------------------------------------------------------------- before the work
def test_check_outputs_lists_every_file_run_writes_and_creates_nothing(tmp_path) -> None:
    out = tmp_path / "report"
    assert sorted(p.name for p in check_outputs(out)) == sorted(["model.onnx", *RUN_REPORTS])
    with_int8 = sorted(p.name for p in check_outputs(out, int8=True))
    assert with_int8 == sorted(["model.onnx", "model_int8.onnx", *RUN_REPORTS,
                                "confusion_onnxruntime_int8.png"])
    assert all(p.parent == out for p in check_outputs(out, int8=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", ["model.onnx", "report.md", "model_int8.onnx"])
def test_check_outputs_refuses_an_existing_file_without_force(tmp_path, existing) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / existing).write_text("a previous run")
    with pytest.raises(OutputError, match=f"{existing}: already exists"):
        check_outputs(out, int8=True)
    assert len(check_outputs(out, force=True, int8=True)) == len(RUN_REPORTS) + 3
    assert [p.name for p in out.iterdir()] == [existing]
    assert (out / existing).read_text() == "a previous run"


def test_resolve_model_is_the_users_or_the_official_one(tmp_path) -> None:
    assert resolve_model(tmp_path / "mine.h5", None) == tmp_path / "mine.h5"  # taken as given
    with pytest.raises(InputNotFoundError, match="--model FILE"):
        resolve_model(None, tmp_path, download=False)
    official = shared_path("models", "pretrainedResnet.h5")
    assert resolve_model(None, SHARED, download=False) == official


def test_the_int8_line_goes_before_the_verdict_and_changes_nothing_else() -> None:
    verdict = Verdict(passed=True, summary=["Keras accuracy 87.19%.", "VERDICT: PASS."])
    record = QuantizationRecord(
        evaluation={"fp32": {"accuracy": 0.8719}, "int8": {"accuracy": 0.8702},
                    "agreement_fraction": 0.9861},
        speed={"speedup": 2.04}, recipe=Recipe(format="qdq", method="minmax"))
    new = add_int8_to_verdict(verdict, record)
    assert new.passed is True
    assert new.summary[0] == verdict.summary[0]
    assert new.summary[-1] == "VERDICT: PASS."
    line = new.summary[1]
    assert line.startswith("Int8 accuracy 87.02% vs fp32 87.19%")
    assert "98.61%" in line
    assert "2.0× faster" in line
    assert (new.int8_accuracy, new.int8_agreement, new.int8_speedup) == (0.8702, 0.9861, 2.04)
    assert verdict.summary == ["Keras accuracy 87.19%.", "VERDICT: PASS."]  # not mutated
    assert "int8_accuracy" not in verdict.to_dict()  # written only when --int8 ran


def test_the_int8_verdict_states_the_tables_speed_up_not_the_quantisers() -> None:
    """The quantiser timed 1.8× on its own images; the table beneath the verdict shows the
    evaluation passes (4,466 vs 6,222 images/s). The verdict states the table's one figure
    and says which measurement it is."""
    from report_factory import make_record
    from resnet8_onnx.records import ComparisonRecord
    from resnet8_onnx.report.sections import compare_rows, evaluation_speedup

    models = [make_record(backend="keras"), make_record(), make_record()]
    for m, ips in zip(models, (3_000.0, 6_222.0, 4_466.0), strict=True):
        m.timings.images_per_second = ips
    models[2].quantized = True
    table = dict((label, cells) for label, cells, _ in
                 compare_rows(ComparisonRecord(models=models)))["images/s"]
    assert table == ["3,000", "6,222", "4,466"]
    record = QuantizationRecord(
        evaluation={"fp32": {"accuracy": 0.8719}, "int8": {"accuracy": 0.8702},
                    "agreement_fraction": 0.9861},
        speed={"speedup": 1.8, "fp32_images_per_second": 1000.0,
               "int8_images_per_second": 1800.0}, recipe=Recipe())
    verdict = Verdict(passed=True, summary=["VERDICT: PASS."])
    new = add_int8_to_verdict(verdict, record, evaluation_speedup(models[1], models[2]))
    line = new.summary[0]
    assert f"{4_466 / 6_222:.2f}× the speed of fp32 (slower)" in line
    assert "int8 4,466 vs fp32 6,222 images/s: the table's evaluation passes" in line
    assert "batch 250" in line
    assert "1.8×" not in line
    assert new.int8_speedup == pytest.approx(4_466 / 6_222, abs=1e-4)
    assert "evaluation passes" in new.int8_speedup_measurement


@pytest.mark.slow
def test_run_whole_job(tmp_path) -> None:
    """The README's main command, on the real model and the full official test set."""
    shared_path("models", "pretrainedResnet.h5")
    shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    out = tmp_path / "report"
    proc = cli("-q", "run", "--data-dir", str(SHARED), "--out", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for name in ("report.json", "report.md", "model.onnx"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.csv"))
    assert list(out.glob("*.png"))
    report = json.loads((out / "report.json").read_text())
    keras, onnx_ = report["models"]
    assert keras["model"]["backend"] == "keras"
    assert onnx_["model"]["backend"] == "onnxruntime"
    for record in (keras, onnx_):
        metrics = record["metrics"]
        assert metrics["total"] == 10_000
        assert 0.85 < metrics["accuracy"] <= 1.0
        assert len(metrics["per_class"]) == 10
        assert {"name", "accuracy", "correct", "total"} <= set(metrics["per_class"][0])
        assert len(metrics["confusion_matrix"]) == 10
        assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
        assert record["data"]["full_official_test_set"] is True
    assert keras["metrics"]["correct"] == onnx_["metrics"]["correct"]
    assert report["parity"]["passed"] is True
    assert report["parity"]["argmax_agreement"] == 10_000
    assert report["verdict"]["passed"] is True
    assert "10,000" in (out / "report.md").read_text()
    assert "PASS" in proc.stdout
    foreign = [line for line in proc.stderr.splitlines()
               if line.strip() and not line.startswith("reports: ")]
    assert foreign == [], "run -q printed lines the project did not write"


def test_run_refuses_missing_parent_before_work(tmp_path) -> None:
    proc = cli("-q", "run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "a" / "b"))
    assert_one_line_error(proc, errors.OUTPUT_ERROR, "does not exist")
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_run_passes_a_threshold_equal_to_the_accuracy(tmp_path) -> None:
    """`run --min-accuracy 0.8719` on a model at exactly 87.19 % passes (≥, like evaluate)."""
    shared_path("models", "pretrainedResnet.h5")
    shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    out = tmp_path / "report"
    proc = cli("-q", "run", "--data-dir", str(SHARED), "--out", str(out),
               "--min-accuracy", "0.8719")
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["onnx_correct"] == 8_719, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["verdict"]["meets_threshold"] is True
    assert report["verdict"]["accuracy_threshold"] == 0.8719
    for record in (report, *report["models"]):
        assert record["settings"]["batch_size"] == 128
        assert record["settings"]["threads"] is None  # the runtimes' default
    assert "at least 87.19%" in proc.stdout
    assert "NOT" not in proc.stdout
    # The written files are listed on stderr, as by evaluate and compare.
    listed = [line for line in proc.stderr.splitlines() if line.startswith("reports: ")]
    assert len(listed) == 1, proc.stderr
    for name in ("report.json", "per_class.csv", "confusion_onnxruntime.png", "model.onnx"):
        assert str(out / name) in listed[0]
    assert "report files" not in proc.stdout
    assert str(out / "per_class.csv") not in proc.stdout


def test_run_without_a_model_names_the_option_that_gives_one(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("-q", "run", "--data-dir", str(empty), "--offline", "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, errors.NOT_FOUND, "pretrainedResnet.h5")
    assert "--model FILE" in proc.stderr


# --------------------------------------------------------------------------- failed runs
@pytest.mark.parametrize("existing", [False, True], ids=["new-dir", "existing-dir"])
def test_failed_run_leaves_nothing_it_created(tmp_path, existing: bool) -> None:
    """A run that fails (here: no data, offline) removes the report directory it created, and
    in a directory that existed leaves no file of its own but the hidden lock."""
    from test_hardening import LOCK_NAME, keras_layer, keras_model, write_h5

    model = write_h5(tmp_path / "safe.h5", keras_model(
        keras_layer("Conv2D", "conv", "in", filters=4, kernel_size=[1, 1])))
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    if existing:
        out.mkdir()
    argv = ["-q", "run", "--model", str(model), "--data-dir", str(empty), "--offline",
            "--out", str(out)]
    for _ in range(2):  # and the same command fails the same way again, not on its leftovers
        proc = cli(*argv)
        assert_one_line_error(proc, errors.NOT_FOUND, "CIFAR-10")
        assert out.exists() == existing
        if existing:
            assert [p.name for p in out.iterdir() if p.name != LOCK_NAME] == []


@pytest.mark.slow
def test_run_int8_adds_a_column_and_a_verdict_line(tmp_path) -> None:
    """``run --int8`` on 500 test images, calibrated on 200 real training images (quick)."""
    shared_path("models", "pretrainedResnet.h5")
    calibration = train_subset(tmp_path / "train-200")
    out = tmp_path / "report"
    cwd = tmp_path / "cwd"  # an empty current directory: nothing may appear in it
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "resnet8_onnx", "-q", "run", "--data-dir", str(shared_path()),
         "--out", str(out), "--limit", "500", "--int8", "--calibration-data", str(calibration),
         "--min-agreement", "90%"],
        capture_output=True, text=True, check=False, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((out / "report.json").read_text())
    _keras, _fp32, int8 = report["models"]
    assert int8["model"]["quantization"] == "int8"
    assert int8["metrics"]["total"] == 500
    assert report["int8"]["calibration"]["count"] == 100  # half of 200; the rest held out
    assert report["int8"]["calibration"]["test_images"] is False
    assert report["int8"]["selection"]["min_agreement"] == 0.9  # run's gate, recorded
    assert list(cwd.iterdir()) == []  # no calibrator or pre-processing file strayed here
    line = next(s for s in report["verdict"]["summary"] if s.startswith("Int8 accuracy"))
    assert "agreement" in line
    assert "fp32" in line
    assert report["verdict"]["passed"] is True
    assert "ONNX int8" in proc.stdout
    assert (out / "model_int8.onnx").is_file()
    assert (out / "confusion_onnxruntime.png").is_file()
    assert (out / "confusion_onnxruntime_int8.png").is_file()
