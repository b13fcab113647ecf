"""Issue 18 on real data: other people's exports of a trained classifier through
``annotate`` → ``quantize`` → ``evaluate``, the counts checked against a bare ONNX Runtime loop
written here. Calibration on real training images (train-2000-png), scoring on 500 test
images; the exports are the real ResNet8 rebuilt as PyTorch 1.x (NCHW, Normalize, opset 9,
fixed batch 1) and tf2onnx (NHWC, /255, opset 9) write them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli_runner import run
from conftest import shared_path, train_subset
from model_factory import SPEC, hand_preprocess
from quantize_helpers import foreign_resnet8
from resnet8_onnx import quantize as q
from resnet8_onnx.support import errors

LIMIT = 500
SPECS = {"pytorch": SPEC, "tf2onnx": ["--scale", "1/255"]}


def _bare_predictions(path, style: str, images: np.ndarray) -> np.ndarray:
    """A plain ONNX Runtime loop with the preprocessing written by hand."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if style == "pytorch":  # fixed batch 1: one image per call
        x = hand_preprocess(images)
        return np.array([session.run(None, {name: x[i:i + 1]})[0][0].argmax()
                         for i in range(len(x))])
    return session.run(None, {name: images.astype(np.float32) * np.float32(1 / 255)})[0].argmax(1)


@pytest.fixture(scope="module")
def test_images():
    from resnet8_onnx.data import load_dataset

    data = shared_path("cifar-10", "cifar-10-batches-bin")
    return str(data), load_dataset(data, download=False).with_limit(LIMIT)


@pytest.mark.slow
@pytest.mark.parametrize("style", ["pytorch", "tf2onnx"])
def test_foreign_exports_annotate_quantize_evaluate(style, resnet8_onnx, tmp_path, capsys,
                                                    test_images) -> None:
    data_dir, chosen = test_images
    calibration = str(shared_path("cifar-10", "train-2000-png"))
    export = foreign_resnet8(resnet8_onnx, tmp_path / f"{style}.onnx", style)
    annotated, int8 = tmp_path / "annotated.onnx", tmp_path / "int8.onnx"
    code, _, err = run(capsys, "annotate", str(export), "-o", str(annotated), *SPECS[style])
    assert code == errors.OK, err
    # --auto (its QDQ u8 minmax candidates, per-channel: opset 13 needed) with no spec flags
    code, out, err = run(capsys, "quantize", str(annotated), "-o", str(int8),
                         "--calibration-data", calibration, "--method", "minmax",
                         "--activations", "uint8", "--json", "-")
    assert code == errors.OK, err
    record = json.loads(out)
    spec = record["preprocessing"]
    assert spec["sources"]["scale"] == "metadata"
    assert spec["layout"] == ("nchw" if style == "pytorch" else "nhwc")
    assert record["opset"] == {**record["opset"], "source": 9, "quantised_at": 13}
    assert record["opset"]["proof"]["passed"] is True
    assert record["calibration"]["test_images"] is False
    assert record["holdout"]["count"] == 1000
    assert record["candidates"][record["candidates"].index(
        next(c for c in record["candidates"] if c["chosen"]))]["holdout_agreement"] >= 970
    written = onnx.load(str(int8))
    meta = {p.key: p.value for p in written.metadata_props}
    source_meta = {p.key: p.value for p in onnx.load(str(annotated)).metadata_props}
    # every stated field is carried over; dtype is always the model's own input type
    # (float32 here), so the int8 file states it only where it was given
    stated = json.loads(source_meta["preprocessing_spec"])
    stated.pop("dtype", None)
    carried = json.loads(meta["preprocessing_spec"])
    carried.pop("dtype", None)
    assert carried == stated

    # evaluate both without flags, against the bare loop on the same 500 test images
    figures = {}
    for name, path in (("fp32", annotated), ("int8", int8)):
        code, out, err = run(capsys, "evaluate", str(path), "--data-dir", data_dir,
                             "--limit", str(LIMIT), "--json", "-")
        assert code == errors.OK, err
        figures[name] = json.loads(out)["metrics"]["correct"]
    bare = {name: _bare_predictions(path, style, chosen.images)
            for name, path in (("fp32", export), ("int8", int8))}
    for name in ("fp32", "int8"):
        assert figures[name] == int((bare[name] == chosen.labels).sum()), name
    assert figures["fp32"] >= 0.8 * LIMIT  # a trained model, fed right
    assert abs(figures["int8"] - figures["fp32"]) <= LIMIT // 100  # within 1 point
    assert (bare["int8"] == bare["fp32"]).mean() >= 0.97


@pytest.mark.slow
def test_calibrating_on_the_wrong_pixels_fails_the_gate(resnet8_onnx, tmp_path, capsys,
                                                        monkeypatch) -> None:
    """Issue 18 item 3: calibration on raw 0–255 pixels for a model that wants /255 (what
    quantize used to do) wrote a 14 % model with exit 0. Forced back here, the gate refuses."""
    export = foreign_resnet8(resnet8_onnx, tmp_path / "tf.onnx", "tf2onnx")
    annotated = tmp_path / "annotated.onnx"
    code, _, err = run(capsys, "annotate", str(export), "-o", str(annotated), "--scale", "1/255")
    assert code == errors.OK, err
    real = q.job.quantize_static

    def raw_pixels(pre, out, recipe, feed, images, cache):  # the old calibration reader
        real(pre, out, recipe, q.Feed(feed.input_name), images, cache)

    monkeypatch.setattr(q.job, "quantize_static", raw_pixels)
    int8, js, rep = tmp_path / "int8.onnx", tmp_path / "q.json", tmp_path / "rep"
    code, _, err = run(capsys, "quantize", str(annotated), "-o", str(int8), "--calibration-data",
                       str(shared_path("cifar-10", "train-2000-png")), "--no-auto",
                       "--per-tensor", "--json", str(js), "--out", str(rep))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == errors.VERIFICATION_FAILED, err
    assert len(lines) == 1, err
    assert "below --min-agreement 95%" in lines[0]
    assert not int8.exists()
    assert not js.exists()
    assert not rep.exists()


@pytest.mark.slow
def test_run_int8_below_the_gate_reports_it_and_exits_6(resnet8_h5, tmp_path, capsys,
                                                        monkeypatch) -> None:
    """run --int8 with a quantiser producing garbage: the conversion's reports are written,
    the verdict says the int8 step failed the gate, no int8 model, exit 6."""
    from onnx import numpy_helper

    from resnet8_onnx.cli import main

    calibration = train_subset(tmp_path / "train-200")
    real = q.job.quantize_static

    def garbage(pre, out, recipe, feed, images, cache):
        real(pre, out, recipe, feed, images, cache)
        model = onnx.load(str(out))
        rng = np.random.default_rng(0)
        for init in model.graph.initializer:
            w = numpy_helper.to_array(init)
            if w.dtype == np.int8 and w.size > 1:
                init.CopyFrom(numpy_helper.from_array(
                    rng.integers(-127, 128, w.shape).astype(np.int8), init.name))
        onnx.save(model, str(out))

    monkeypatch.setattr(q.job, "quantize_static", garbage)
    out = tmp_path / "report"
    code = main(["-q", "run", "--model", str(resnet8_h5), "--data-dir", str(shared_path()),
                 "--out", str(out), "--limit", "100", "--int8", "--calibration-data",
                 str(calibration)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == errors.VERIFICATION_FAILED, err
    assert any("below --min-agreement 95%" in line for line in err), err
    report = json.loads((out / "report.json").read_text())
    assert "below --min-agreement 95%" in report["int8_failed"]
    assert any(s.startswith("Int8 step FAILED the quality gate")
               for s in report["verdict"]["summary"])
    assert report["verdict"]["passed"] is True  # the conversion itself is fine
    assert len(report["models"]) == 2
    assert not (out / "model_int8.onnx").exists()
    assert (out / "model.onnx").is_file()
