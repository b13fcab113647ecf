"""One model description for every stage (issue 18): the spec ``evaluate`` resolves is the one
``convert``, ``verify``, ``benchmark`` and ``annotate`` feed, the ``--output-name`` option is
the same everywhere, and a spec that looks wrong (accuracy near chance) is said so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from PIL import Image

from cli_runner import run
from conftest import shared_path
from model_factory import CIFAR_MEAN, CIFAR_STD, SPEC, make_classifier
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


# --------------------------------------------------------------------------- foreign models
def fixed_batch_nchw(path: Path) -> Path:
    """A PyTorch 1.x-style export: NCHW, wants ToTensor+Normalize, opset 9, batch fixed at 1
    by the input *and* by a Reshape to (1, -1), as ``x.view(1, -1)`` exports."""
    make_classifier(path, layout="nchw", batch=1, opset=9, softmax=False, seed=3)
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "flat_shape":
            init.CopyFrom(numpy_helper.from_array(np.array([1, -1], np.int64), "flat_shape"))
    onnx.save(model, str(path))
    return path


def nhwc_unit_range(path: Path) -> Path:
    """A tf2onnx-style opset-9 NHWC model trained on pixels/255: fed raw 0-255 pixels its
    logits reach ~1e3, where float32 rounding alone exceeds an absolute 1e-5."""
    make_classifier(path, opset=9, softmax=False, seed=5)
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name == "dense_w":
            weights = numpy_helper.to_array(init) * np.float32(200)
            init.CopyFrom(numpy_helper.from_array(weights, "dense_w"))
    onnx.save(model, str(path))
    return path


def normalise(images: np.ndarray, *, nchw: bool, normalize: bool) -> np.ndarray:
    """ToTensor (+ Normalize), written by hand."""
    x = images.astype(np.float32) / np.float32(255)
    if normalize:
        x = (x - np.array(CIFAR_MEAN, np.float32)) / np.array(CIFAR_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x)


def correct_of(capsys, model: Path, data: Path, *extra: str) -> int:
    code, out, err = run(capsys, "evaluate", str(model), "--data-dir", str(data), "--json",
                         "-", *extra)
    assert code == 0, err
    return json.loads(out)["metrics"]["correct"]


def ok(capsys, *args: str) -> str:
    code, _out, err = run(capsys, *args)
    assert code == 0, err
    return err


@pytest.mark.slow
def test_fixed_batch_nchw_model_through_every_stage(tmp_path, capsys, perf_png) -> None:
    """annotate → convert .pt2 → verify → benchmark → evaluate → back to ONNX, and the
    embedded variant: every count equals a bare ONNX Runtime loop's."""
    source = fixed_batch_nchw(tmp_path / "pt.onnx")
    images, labels = perf_images(perf_png)
    expected = ort_correct(source, normalise(images, nchw=True, normalize=True), labels)
    annotated, pt2, back = tmp_path / "ann.onnx", tmp_path / "m.pt2", tmp_path / "back.onnx"
    ok(capsys, "annotate", str(source), "-o", str(annotated), *SPEC)
    code, out, err = run(capsys, "convert", str(annotated), "-o", str(pt2), "--json", "-")
    assert code == 0, err
    converted = json.loads(out)
    # the Reshape to (1, -1) cannot run batch 7: the batch stays fixed, checked at 1 only
    assert converted["metadata"]["fixed_batch"] == 1
    assert converted["metadata"]["input_shape"] == [1, 3, 32, 32]
    assert {tuple(c["batch_sizes"]) for c in converted["checks"]} == {(1,)}
    assert all(c["elements_over_tolerance"] == 0 for c in converted["checks"])
    ok(capsys, "verify", str(annotated), str(pt2), "--data-dir", str(perf_png))
    ok(capsys, "benchmark", str(pt2), "--quick", "--batch-sizes", "1,8", "--threads", "1")
    assert correct_of(capsys, annotated, perf_png) == expected
    assert correct_of(capsys, pt2, perf_png) == expected
    ok(capsys, "convert", str(pt2), "-o", str(back))
    assert correct_of(capsys, back, perf_png) == expected
    embedded, embedded_pt2 = tmp_path / "emb.onnx", tmp_path / "emb.pt2"
    ok(capsys, "annotate", str(annotated), "-o", str(embedded), "--embed", "--data-dir",
       str(perf_png))
    ok(capsys, "convert", str(embedded), "-o", str(embedded_pt2))
    assert correct_of(capsys, embedded_pt2, perf_png) == expected


@pytest.mark.slow
def test_unit_range_nhwc_model_converts_with_the_spec_option(tmp_path, capsys,
                                                             perf_png) -> None:
    """convert takes the spec options for an ONNX source: the check feeds pixels/255, not
    raw pixels, and the .pt2 and the ONNX back from it carry the spec."""
    source = nhwc_unit_range(tmp_path / "tf.onnx")
    images, labels = perf_images(perf_png)
    expected = ort_correct(source, normalise(images, nchw=False, normalize=False), labels)
    pt2, back = tmp_path / "m.pt2", tmp_path / "back.onnx"
    ok(capsys, "convert", str(source), "-o", str(pt2), "--scale", "1/255")
    assert correct_of(capsys, source, perf_png, "--scale", "1/255") == expected
    assert correct_of(capsys, pt2, perf_png) == expected
    ok(capsys, "verify", str(source), str(pt2), "--data-dir", str(perf_png), "--scale",
       "1/255")
    ok(capsys, "convert", str(pt2), "-o", str(back))
    assert correct_of(capsys, back, perf_png) == expected


# --------------------------------------------------------------------------- annotate (issue 19.10)
def test_class_names_annotate_writes_are_the_ones_evaluate_reports(tmp_path, capsys,
                                                                   perf_png) -> None:
    """Folders are matched to the model's class names by name (issue 23): names the folder
    does not use are refused naming them (exit 4), reordered names relabel the images."""
    from cli_runner import assert_refused
    from resnet8_onnx.support import errors

    source = make_classifier(tmp_path / "m.onnx")
    renamed = ["plane", "car", *CLASSES[2:]]
    (tmp_path / "renamed.txt").write_text("\n".join(renamed))
    annotated = tmp_path / "renamed.onnx"
    ok(capsys, "annotate", str(source), "-o", str(annotated), "--class-names",
       str(tmp_path / "renamed.txt"))
    assert_refused(capsys, errors.INVALID_INPUT, "the model does not know", "evaluate",
                   str(annotated), "--data-dir", str(perf_png))
    names = list(reversed(CLASSES))
    (tmp_path / "names.txt").write_text("\n".join(names))
    annotated = tmp_path / "named.onnx"
    ok(capsys, "annotate", str(source), "-o", str(annotated), "--class-names",
       str(tmp_path / "names.txt"))
    code, out, err = run(capsys, "evaluate", str(annotated), "--data-dir", str(perf_png),
                         "--json", "-")
    assert code == 0, err
    record = json.loads(out)
    assert record["metrics"]["class_names"] == names
    assert [c["name"] for c in record["metrics"]["per_class"]] == names
    assert record["data"]["per_class"] == {n: 20 for n in names}
    # the same names as the data: no note
    code, out, _ = run(capsys, "evaluate", str(source), "--data-dir", str(perf_png), "--json",
                       "-")
    assert not any("class names" in n for n in json.loads(out)["model"].get("notes") or [])


def test_annotate_refuses_a_non_onnx_output_name_and_writes_nothing(tmp_path, capsys) -> None:
    from cli_runner import assert_refused
    from resnet8_onnx.support import errors

    source = make_classifier(tmp_path / "m.onnx")
    for name in ("a.txt", "a", "a.pt2"):
        assert_refused(capsys, errors.USAGE, "annotate writes an ONNX model", "annotate",
                       str(source), "-o", str(tmp_path / name), "--scale", "1/255",
                       outputs=(tmp_path / name,))


def test_embedding_twice_is_refused(tmp_path, capsys, perf_png) -> None:
    """An embedded model takes raw uint8 pixels: --embed again (or a new spec for it) would
    apply the spec twice, so it is refused in one line, nothing written."""
    from cli_runner import assert_refused
    from resnet8_onnx.support import errors

    source = make_classifier(tmp_path / "m.onnx", layout="nchw")
    embedded, again = tmp_path / "e.onnx", tmp_path / "e2.onnx"
    ok(capsys, "annotate", str(source), "-o", str(embedded), *SPEC, "--embed", "--data-dir",
       str(perf_png), "--limit", "20")
    assert_refused(capsys, errors.USAGE, "already embedded", "annotate", str(embedded), "-o",
                   str(again), "--embed", "--data-dir", str(perf_png), "--limit", "20",
                   outputs=(again,))
    assert_refused(capsys, errors.USAGE, "--scale would apply it twice", "annotate",
                   str(embedded), "-o", str(again), "--scale", "1/255", outputs=(again,))


@pytest.mark.slow
@pytest.mark.parametrize("batch", ["N", 1])
def test_real_resnet8_pytorch_style_keeps_its_count_through_pt2(tmp_path, capsys, perf_png,
                                                                resnet8_onnx, resnet8_h5,
                                                                batch) -> None:
    """The real ResNet8 behind a PyTorch-style interface (NCHW, ToTensor+Normalize, dynamic
    or fixed batch 1): annotated, converted to .pt2 and verified against the Keras file
    (raw pixels on its side, the spec on the other); evaluate of the .pt2 counts what a bare
    ONNX Runtime loop on hand-normalised pixels counts."""
    from model_factory import wrap_pytorch_style

    source = wrap_pytorch_style(resnet8_onnx, tmp_path / "pt.onnx", batch=batch)
    images, labels = perf_images(perf_png)
    expected = ort_correct(source, normalise(images, nchw=True, normalize=True), labels)
    assert expected > 150  # the premise: with the right spec the model is accurate
    annotated, pt2 = tmp_path / "ann.onnx", tmp_path / "m.pt2"
    ok(capsys, "annotate", str(source), "-o", str(annotated), *SPEC)
    code, out, err = run(capsys, "convert", str(annotated), "-o", str(pt2), "--json", "-")
    assert code == 0, err
    # a fixed batch of 1 becomes dynamic only because the module is proven at batch 7
    assert json.loads(out)["metadata"]["input_shape"][0] == "N"
    ok(capsys, "verify", str(resnet8_h5), str(pt2), "--data-dir", str(perf_png))
    assert correct_of(capsys, pt2, perf_png) == expected
    err = ok(capsys, "evaluate", str(pt2), "--data-dir", str(perf_png))
    assert "near chance" not in err


@pytest.mark.slow
def test_convert_takes_the_output_name_and_refuses_specs_for_keras(tmp_path, capsys,
                                                                    perf_png) -> None:
    """--output-name picks the output an ONNX source's .pt2 returns (counts equal ONNX
    Runtime's on that output); spec options for a Keras source are refused (exit 2)."""
    from cli_runner import assert_refused
    from resnet8_onnx.support import errors

    source = make_classifier(tmp_path / "two.onnx", outputs=2, layout="nchw")
    pt2 = tmp_path / "two.pt2"
    ok(capsys, "convert", str(source), "-o", str(pt2), "--output-name", "probabilities",
       *SPEC)
    images, labels = perf_images(perf_png)
    expected = ort_correct(source, normalise(images, nchw=True, normalize=True), labels)
    assert correct_of(capsys, pt2, perf_png) == expected
    assert_refused(capsys, errors.USAGE, "--output-name applies to ONNX and OpenVINO models only",
                   "evaluate", str(pt2), "--data-dir", str(perf_png), "--output-name", "x")
    keras = tmp_path / "m.h5"
    keras.write_bytes(b"")
    assert_refused(capsys, errors.USAGE, "a Keras model takes raw 0-255", "convert",
                   str(keras), "-o", str(tmp_path / "m.onnx"), "--scale", "1/255",
                   outputs=(tmp_path / "m.onnx",))


def test_below_threshold_and_near_chance_is_one_line(tmp_path, capsys, perf_png) -> None:
    """--min-accuracy failing on a near-chance model: exit 7 in one line that also says the
    spec looks wrong (no separate warning line)."""
    from cli_runner import assert_refused
    from resnet8_onnx.support import errors

    model = make_classifier(tmp_path / "nchw.onnx", layout="nchw")
    assert_refused(capsys, errors.ACCURACY_BELOW_THRESHOLD, "near chance (10% for 10 classes)",
                   "evaluate", str(model), "--data-dir", str(perf_png), "--min-accuracy",
                   "85%")


def test_verify_refuses_spec_options_no_side_takes(tmp_path, capsys, tiny_pt2) -> None:
    """A Keras or LiteRT reference takes raw pixels and a .pt2 states its own spec: spec
    options neither side takes are refused, not dropped."""
    from cli_runner import assert_refused
    from resnet8_onnx.support import errors

    assert_refused(capsys, errors.USAGE, "spec options (--scale) describe ONNX models", "verify",
                   str(tiny_pt2), str(tiny_pt2), "--data-dir", str(tmp_path), "--scale",
                   "1/255")
