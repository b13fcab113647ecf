"""annotate: the spec and class names recorded in metadata (graph untouched), or the spec
embedded in the graph once it proves equal to the original plus its spec; refusals write
nothing. The embedded model is checked against ONNX Runtime fed hand-preprocessed pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli_runner import assert_refused, run, run_json
from conftest import cifar_test_images, shared_path
from model_factory import (
    CIFAR_MEAN,
    CIFAR_STD,
    SPEC,
    hand_preprocess,
    make_classifier,
    synthetic_dataset,
)
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.convert.annotate import annotate, read_class_names
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError

PYTORCH_SPEC = {"scale": 1 / 255, "mean": CIFAR_MEAN, "std": CIFAR_STD}


@pytest.fixture(scope="module")
def data_dir() -> str:
    return str(shared_path("cifar-10", "cifar-10-batches-bin"))


# --------------------------------------------------------------------------- class names
def test_class_names_from_lines_or_a_json_list(tmp_path: Path) -> None:
    lines = tmp_path / "names.txt"
    lines.write_text("\n cat \n\ndog\n")
    assert read_class_names(lines) == ["cat", "dog"]
    listed = tmp_path / "names.json"
    listed.write_text('  ["cat", "dog "]')
    assert read_class_names(listed) == ["cat", "dog "]


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "holds no class names"), ("cat\ncat\n", "class names repeat"),
    ("[1, 2]", "JSON list of strings"), ("[\"cat\"", "not a JSON list"),
])
def test_bad_class_name_files_are_invalid_input(tmp_path: Path, text: str,
                                                fragment: str) -> None:
    path = tmp_path / "names.txt"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=fragment):
        read_class_names(path)
    with pytest.raises(InputNotFoundError):
        read_class_names(tmp_path / "missing.txt")


# --------------------------------------------------------------------------- metadata
def test_recorded_spec_is_what_a_later_load_uses_and_the_graph_is_untouched(
        tmp_path: Path) -> None:
    source = make_classifier(tmp_path / "m.onnx", layout="nchw")
    model = onnx.load(str(source))
    onnx.helper.set_model_props(model, {"author": "someone", "annotated_by": "old"})
    onnx.save(model, str(source))
    out = tmp_path / "annotated.onnx"
    account = annotate(source, out, preprocessing=PYTORCH_SPEC, class_names=list("abcdefghij"))
    after = onnx.load(str(out))
    assert after.graph.SerializeToString() == onnx.load(str(source)).graph.SerializeToString()
    props = {p.key: p.value for p in after.metadata_props}
    assert props["author"] == "someone"  # other entries kept
    assert props["annotated_by"].startswith("resnet8-onnx ")  # ours replaced, not doubled
    assert [p.key for p in after.metadata_props].count("annotated_by") == 1
    assert json.loads(props["class_names"]) == list("abcdefghij")
    assert account["output_sha256"] != account["source_sha256"]
    loaded = onnxrt.load(out)  # no options: the metadata says it all
    assert loaded.preprocessing == onnxrt.load(source, preprocessing=PYTORCH_SPEC).preprocessing
    assert set(loaded.preprocessing_sources.values()) <= {"metadata", "input type"}


def test_what_annotate_refuses_before_writing(tmp_path: Path) -> None:
    source = make_classifier(tmp_path / "m.onnx")
    with pytest.raises(UsageError, match="overwrite the source model"):
        annotate(source, source, force=True)
    with pytest.raises(UsageError, match="needs images"):
        annotate(source, tmp_path / "o.onnx", embed_preprocessing=True)
    with pytest.raises(InvalidInputError, match="3 class names given for a model with 10"):
        annotate(source, tmp_path / "o.onnx", class_names=["a", "b", "c"])
    with pytest.raises(InvalidInputError,
                       match=r"model input is 32×32×3 \(NHWC\), expected 16×16×3"):
        annotate(source, tmp_path / "o.onnx", embed_preprocessing=True,
                 images=synthetic_dataset(4, height=16, width=16).images)
    with pytest.raises(InputNotFoundError):
        annotate(tmp_path / "missing.onnx", tmp_path / "o.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


# --------------------------------------------------------------------------- embedding
def test_an_embedded_spec_takes_raw_uint8_pixels_and_equals_the_original(
        tmp_path: Path) -> None:
    source = make_classifier(tmp_path / "m.onnx", layout="nchw", seed=5)
    images = synthetic_dataset(40, seed=6).images
    out = tmp_path / "embedded.onnx"
    account = annotate(source, out, preprocessing=PYTORCH_SPEC, embed_preprocessing=True,
                       images=images, batch_size=16)
    assert account["parity"]["samples"] == 40
    assert account["input"]["dtype"] == "uint8"
    new = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    old = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    assert new.get_inputs()[0].type == "tensor(uint8)"
    got = new.run(None, {new.get_inputs()[0].name: images})[0]
    want = old.run(None, {"input": hand_preprocess(images)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    loaded = onnxrt.load(out)  # no options: the file says it takes raw uint8 pixels
    assert loaded.input_dtype == np.uint8
    np.testing.assert_array_equal(loaded.predict(images), got)


@pytest.mark.shared
@pytest.mark.slow
def test_pytorch_style_resnet8_annotate_then_evaluate_without_flags(
        pytorch_resnet8, keras_full_outputs, cifar_test, tmp_path, capsys, data_dir) -> None:
    flagged = run_json(capsys, "evaluate", str(pytorch_resnet8), "--data-dir", data_dir, *SPEC)
    # the wrapped model is the original ResNet8 exactly when given its spec
    keras_correct = int((keras_full_outputs.argmax(1) == cifar_test.labels).sum())
    assert flagged["metrics"]["correct"] == keras_correct
    assert flagged["metrics"]["accuracy"] > 0.85
    unflagged = run_json(capsys, "evaluate", str(pytorch_resnet8), "--data-dir", data_dir,
                         "--limit", "500")
    assert unflagged["metrics"]["accuracy"] < 0.5  # raw pixels into a normalised model

    annotated = tmp_path / "annotated.onnx"
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(flagged["metrics"]["class_names"]) + "\n")
    code, _, err = run(capsys, "annotate", str(pytorch_resnet8), "-o", str(annotated), *SPEC,
                       "--class-names", str(names))
    assert code == 0, err
    before, after = onnx.load(str(pytorch_resnet8)), onnx.load(str(annotated))
    assert after.graph.SerializeToString() == before.graph.SerializeToString()
    props = {p.key: p.value for p in after.metadata_props}
    assert json.loads(props["class_names"]) == flagged["metrics"]["class_names"]

    again = run_json(capsys, "evaluate", str(annotated), "--data-dir", data_dir)
    assert again["metrics"] == flagged["metrics"]
    assert set(again["model"]["preprocessing"]["sources"].values()) == {"metadata",
                                                                        "input type"}


@pytest.mark.shared
@pytest.mark.slow
def test_annotate_embed_gives_a_raw_pixel_model_equal_to_original_plus_spec(
        pytorch_resnet8, tmp_path, capsys, data_dir) -> None:
    embedded = tmp_path / "embedded.onnx"
    account = run_json(capsys, "annotate", str(pytorch_resnet8), "-o", str(embedded), *SPEC,
                       "--embed", "--data-dir", data_dir)
    assert account["parity"]["samples"] == 10_000
    assert account["parity"]["argmax_agreement"] == 10_000

    assert account["parity"]["max_abs_diff"] <= 1e-5

    # Independently of the tool: the file itself on raw pixels vs the original on
    # hand-preprocessed ones (a slice: annotate already compared all 10,000).
    images, _ = cifar_test_images(2_000)
    new = ort.InferenceSession(str(embedded), providers=["CPUExecutionProvider"])
    old = ort.InferenceSession(str(pytorch_resnet8), providers=["CPUExecutionProvider"])
    inp = new.get_inputs()[0]
    assert inp.type == "tensor(uint8)"
    assert inp.shape[1:] == [32, 32, 3]
    got = new.run(None, {inp.name: images.astype(np.uint8)})[0]
    want = old.run(None, {"x": hand_preprocess(images)})[0]
    assert np.abs(got - want).max() <= 1e-5
    assert int((got.argmax(1) == want.argmax(1)).sum()) == 2_000
    ops = {n.op_type for n in onnx.load(str(embedded)).graph.node[:8]}
    assert {"Cast", "Mul", "Sub", "Div", "Transpose"} <= ops


@pytest.mark.shared
def test_annotate_refusals_write_nothing(pytorch_resnet8, tmp_path, capsys, data_dir,
                                         monkeypatch) -> None:
    out = tmp_path / "out.onnx"
    # --embed proves parity on real images: none found (offline, empty cache) → exit 3
    assert_refused(capsys, errors.NOT_FOUND, "CIFAR-10", "annotate", str(pytorch_resnet8),
                   "-o", str(out), "--embed", *SPEC, outputs=(out,))
    out.write_bytes(b"keep")
    assert_refused(capsys, errors.OUTPUT_ERROR, "already exists", "annotate",
                   str(pytorch_resnet8), "-o", str(out), *SPEC)
    assert out.read_bytes() == b"keep"
    out.unlink()
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    assert_refused(capsys, errors.INVALID_INPUT, "2 class names given for a model with 10",
                   "annotate", str(pytorch_resnet8), "-o", str(out), "--class-names",
                   str(names), outputs=(out,))
    assert_refused(capsys, errors.USAGE, "contradicts", "annotate", str(pytorch_resnet8),
                   "-o", str(out), "--layout", "nhwc", outputs=(out,))

    # An embedding that does not reproduce original + spec is caught before writing.
    import resnet8_onnx.convert.annotate as annotate_module
    from resnet8_onnx.preprocess import Preprocessing, embed

    monkeypatch.setattr(annotate_module, "embed",
                        lambda model, spec, **kw: embed(model, Preprocessing(layout="nchw"),
                                                        **kw))
    assert_refused(capsys, errors.VERIFICATION_FAILED, "nothing written", "annotate",
                   str(pytorch_resnet8), "-o", str(out), "--embed", *SPEC, "--data-dir",
                   data_dir, "--limit", "64", outputs=(out,))
