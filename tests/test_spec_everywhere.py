"""One model description for every stage (issue 18): the spec ``evaluate`` resolves is the one
``convert``, ``verify``, ``benchmark`` and ``annotate`` feed, the ``--output-name`` option is
the same everywhere, and a spec that looks wrong (accuracy near chance) is said so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from cli_runner import run
from conftest import shared_path
from model_factory import make_classifier
from resnet8_onnx.preprocess import near_chance, near_chance_warning

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


@pytest.fixture(scope="module")
def perf_png() -> Path:
    return shared_path("cifar-10", "perf-png")


def perf_images(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 200 perf PNGs and labels, read with PIL in sorted order (independent of
    resnet8_onnx.data)."""
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((folder / name).glob("*.png")):
            images.append(np.asarray(Image.open(path).convert("RGB")))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def ort_correct(model: Path, x: np.ndarray, labels: np.ndarray) -> int:
    """Correct predictions of a bare ONNX Runtime loop, one image at a time."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predictions = [int(session.run(None, {name: x[i:i + 1]})[0].argmax())
                   for i in range(len(x))]
    return int((np.asarray(predictions) == labels).sum())


# --------------------------------------------------------------------------- near chance
def test_near_chance_is_at_most_twice_chance() -> None:
    assert near_chance(20, 100, 10)
    assert near_chance(0, 5, 10)
    assert not near_chance(21, 100, 10)
    assert not near_chance(0, 0, 10)
    line = near_chance_warning(11, 100, 10, model="m.onnx", preprocessing={
        "description": "NCHW RGB float32", "sources": {"layout": "input shape",
                                                       "scale": "default"}})
    assert line is not None
    assert "m.onnx: accuracy 11.0% (11/100) is near chance" in line
    assert "layout: input shape; scale: default" in line
    assert near_chance_warning(90, 100, 10, model="m.onnx") is None


def test_evaluate_and_compare_warn_once_per_model_near_chance(tmp_path, capsys,
                                                              perf_png) -> None:
    """A foreign NCHW model evaluated without a spec scores near chance: one warning line on
    stderr naming the spec in effect and its sources, and the same line in the JSON."""
    model = make_classifier(tmp_path / "nchw.onnx", layout="nchw", batch=1, opset=9)
    images, labels = perf_images(perf_png)
    x = np.ascontiguousarray(images.astype(np.float32).transpose(0, 3, 1, 2))
    correct = ort_correct(model, x, labels)
    assert near_chance(correct, len(labels), 10)  # the premise: this model is near chance
    code, out, err = run(capsys, "evaluate", str(model), "--data-dir", str(perf_png),
                         "--json", "-")
    assert code == 0, err
    record = json.loads(out)
    assert record["metrics"]["correct"] == correct
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1, err
    assert "near chance" in warnings[0]
    assert "layout: input shape" in warnings[0]
    assert record["warnings"] == [warnings[0].removeprefix("resnet8-onnx: warning: ")]
    code, out, err = run(capsys, "compare", str(model), str(model), "--data-dir",
                         str(perf_png), "--json", "-")
    assert code == 0, err
    assert sum("near chance" in line for line in err.splitlines()) == 2, err
    assert all(m["warnings"] for m in json.loads(out)["models"])
