"""Preprocessing as data: parsing, resolution order, apply against a naive reference, metadata
round trips and the embedded ONNX graph."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_factory import CIFAR_MEAN, CIFAR_STD, make_classifier
from resnet8_onnx.convert.keras_to_onnx import PREPROCESSING
from resnet8_onnx.preprocess import (
    METADATA_SPEC,
    Preprocessing,
    embed,
    format_scale,
    layout_from_shape,
    parse_scale,
    parse_triple,
    raw_uint8,
    resolve,
)
from resnet8_onnx.support.errors import InvalidInputError, UsageError

PYTORCH = Preprocessing(layout="nchw", scale=1 / 255, mean=CIFAR_MEAN, std=CIFAR_STD)


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(("text", "value"), [("1/255", 1 / 255), ("0.5", 0.5), ("255", 255.0),
                                             (" 2 / 4 ", 0.5), ("1e-3", 1e-3)])
def test_scale_parses_numbers_and_fractions(text, value) -> None:
    assert parse_scale(text) == value


@pytest.mark.parametrize(("text", "fragment"), [
    ("0", "greater than 0"), ("0/5", "greater than 0"), ("-1", "greater than 0"),
    ("abc", "not a number"), ("1/0", "divides by zero"), ("nan", "finite"), ("inf", "finite"),
    ("", "not a number"), ("1/2/3", "not a number"), ("/255", "not a number")])
def test_bad_scales_are_usage_errors(text, fragment) -> None:
    with pytest.raises(UsageError, match=fragment):
        parse_scale(text)


def test_triples_need_three_finite_numbers() -> None:
    assert parse_triple("0.1, 0.2,0.3", "mean") == (0.1, 0.2, 0.3)
    for text, fragment in (("1,2", "2 values"), ("1,2,3,4", "4 values"), ("a,b,c", "not three"),
                           ("1,nan,2", "finite")):
        with pytest.raises(UsageError, match=fragment):
            parse_triple(text, "mean")
    with pytest.raises(UsageError, match="greater than 0"):
        parse_triple("0.2,0,0.2", "std", positive=True)
    with pytest.raises(UsageError, match="greater than 0"):
        Preprocessing(std=(1.0, -1.0, 1.0))


def test_spec_fields_are_validated() -> None:
    with pytest.raises(UsageError, match="layout"):
        Preprocessing(layout="chwn")
    with pytest.raises(UsageError, match="channels"):
        Preprocessing(channels="rgba")
    with pytest.raises(UsageError, match="unknown preprocessing field"):
        Preprocessing.from_dict({"layout": "nchw", "gamma": 2})


def test_scale_is_shown_as_a_fraction() -> None:
    assert format_scale(1 / 255) == "1/255"
    assert format_scale(0.5) == "0.5"


# --------------------------------------------------------------------------- apply
def _naive(batch: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """Pixel by pixel (per channel), float32 arithmetic in the documented order."""
    n, h, w, _ = batch.shape
    out = np.empty((n, h, w, 3), np.float32)
    for c in range(3):
        x = batch[..., c].astype(np.float32) * np.float32(spec.scale)
        x = (x - np.float32(spec.mean[c])) / np.float32(spec.std[c])
        out[..., c] = x
    if spec.channels == "bgr":
        out = out[..., [2, 1, 0]]
    if spec.layout == "nchw":
        out = np.stack([out[..., c] for c in range(3)], axis=1)
    return out


@pytest.mark.parametrize("spec", [
    Preprocessing(), PYTORCH, Preprocessing(channels="bgr", mean=(103.9, 116.8, 123.7)),
    Preprocessing(layout="nchw", channels="bgr", scale=2 / 255, mean=(1, 1, 1),
                  std=(0.5, 0.5, 0.5))], ids=["raw", "pytorch", "caffe", "nchw-bgr"])
def test_apply_matches_a_naive_reference(spec) -> None:
    batch = np.random.default_rng(3).integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    got = spec.apply(batch)
    want = _naive(batch, spec)
    assert got.dtype == np.float32
    assert got.flags.c_contiguous
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert batch.dtype == np.uint8  # the input is never modified in place
    np.testing.assert_array_equal(spec.apply(batch.astype(np.float32)), got)


def test_raw_float_input_is_not_copied_and_uint8_models_get_uint8() -> None:
    batch = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)).astype(np.float32)
    assert Preprocessing().apply(batch) is batch
    pixels = batch.astype(np.uint8)
    assert raw_uint8().apply(pixels) is pixels


# --------------------------------------------------------------------------- metadata
def test_dict_and_metadata_round_trip() -> None:
    assert Preprocessing.from_dict(PYTORCH.to_dict()) == PYTORCH
    meta = PYTORCH.to_metadata()
    fields = Preprocessing.from_metadata(meta)
    assert Preprocessing(**fields) == PYTORCH
    assert json.loads(meta[METADATA_SPEC])["layout"] == "nchw"


def test_the_converters_sentence_means_raw_pixels() -> None:
    fields = Preprocessing.from_metadata({"preprocessing": PREPROCESSING})
    assert Preprocessing(**fields) == Preprocessing()
    assert set(fields) == {"layout", "channels", "scale", "mean", "std"}
    assert Preprocessing.from_metadata({"preprocessing": "whatever the exporter wrote"}) == {}


@pytest.mark.parametrize("value", ["not json", "[1, 2]", '{"layout": "sideways"}',
                                   '{"std": [1, 0, 1]}', '{"scale": 0}'])
def test_malformed_metadata_is_invalid_input(value) -> None:
    with pytest.raises(InvalidInputError, match="preprocessing_spec"):
        Preprocessing.from_metadata({METADATA_SPEC: value}, where="m.onnx")


# --------------------------------------------------------------------------- resolution
@pytest.mark.parametrize(("shape", "layout"), [
    ((None, 3, 32, 32), "nchw"), ((1, 32, 32, 3), "nhwc"), ((None, 32, 32, 1), None),
    ((None, 3, 3, 3), None), ((None, 3072), None), ((None, None, None, None), None)])
def test_layout_from_shape(shape, layout) -> None:
    assert layout_from_shape(shape) == layout


def test_resolution_order_option_metadata_shape_default() -> None:
    meta = Preprocessing(layout="nchw", scale=0.5, mean=(1, 2, 3)).to_metadata()
    spec, sources = resolve({"mean": (0.1, 0.2, 0.3), "std": None}, meta, (None, 3, 32, 32))
    assert spec == Preprocessing(layout="nchw", scale=0.5, mean=(0.1, 0.2, 0.3))
    assert sources == {"layout": "metadata", "channels": "metadata", "scale": "metadata",
                       "mean": "option", "std": "metadata", "dtype": "input type"}
    spec, sources = resolve({}, {}, (1, 3, 32, 32), "float16")
    assert spec == Preprocessing(layout="nchw", dtype="float16")
    assert sources["layout"] == "input shape"
    assert sources["scale"] == "default"
    spec, sources = resolve(None, None, (None, None, None, None))
    assert spec == Preprocessing()
    assert set(sources.values()) == {"default", "input type"}


def test_a_layout_contradicting_the_shape_is_refused() -> None:
    with pytest.raises(UsageError, match="contradicts the model input 3×32×32"):
        resolve({"layout": "nhwc"}, {}, (1, 3, 32, 32))
    meta = Preprocessing(layout="nchw").to_metadata()
    with pytest.raises(InvalidInputError, match=r"nchw \(metadata\) contradicts"):
        resolve({}, meta, (None, 32, 32, 3))
    # an unknown dimension contradicts nothing
    assert resolve({"layout": "nchw"}, {}, (None, None, None, None))[0].layout == "nchw"


# --------------------------------------------------------------------------- embedding
@pytest.mark.parametrize(("opset", "spec"), [
    (9, PYTORCH), (17, Preprocessing(layout="nchw", channels="bgr", scale=1 / 255,
                                     mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)))])
def test_embedded_graph_equals_apply(tmp_path, opset, spec) -> None:
    path = make_classifier(tmp_path / "m.onnx", layout="nchw", opset=opset, batch=1,
                           ir_version=4 if opset < 11 else 8, softmax=False)
    model = onnx.load(str(path))
    embedded = embed(model, spec)
    onnx.checker.check_model(embedded, full_check=True)
    assert [n.op_type for n in model.graph.node] == [
        n.op_type for n in embedded.graph.node][-len(model.graph.node):]
    inp = embedded.graph.input[0]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 32, 32, 3]
    pixels = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(embedded.SerializeToString(), providers=["CPUExecutionProvider"])
    want = original.run(None, {"input": spec.apply(pixels)})[0]
    got = new.run(None, {inp.name: pixels})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
