"""pipeline: the whole job (``run``): its outputs checked before work, the verdict, the
int8 column, and the report directory on the real model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import shared_path


@pytest.mark.slow
def test_run_int8_adds_a_column_and_a_verdict_line(tmp_path) -> None:
    """``run --int8`` on 500 test images, calibrated on 200 real training images (quick)."""
    import shutil

    shared_path("models", "pretrainedResnet.h5")
    train = shared_path("cifar-10", "train-2000-png")
    calibration = tmp_path / "train-200"
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        (calibration / folder.name).mkdir(parents=True)
        for png in sorted(folder.glob("*.png"))[:20]:
            shutil.copy(png, calibration / folder.name / png.name)
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "resnet8_onnx", "-q", "run", "--data-dir", str(shared_path()),
         "--out", str(out), "--limit", "500", "--int8", "--calibration-data", str(calibration)],
        capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((out / "report.json").read_text())
    _keras, _fp32, int8 = report["models"]
    assert int8["model"]["quantization"] == "int8"
    assert int8["metrics"]["total"] == 500
    assert report["int8"]["calibration"]["count"] == 100  # half of 200; the rest held out
    assert report["int8"]["calibration"]["test_images"] is False
    line = next(s for s in report["verdict"]["summary"] if s.startswith("Int8 accuracy"))
    assert "agreement" in line
    assert "fp32" in line
    assert report["verdict"]["passed"] is True
    assert "ONNX int8" in proc.stdout
    assert (out / "model_int8.onnx").is_file()
    assert (out / "confusion_onnxruntime.png").is_file()
    assert (out / "confusion_onnxruntime_int8.png").is_file()
