"""quantize.diagnosis: the per-layer quantisation error, named by the model's own nodes."""

from __future__ import annotations

import numpy as np
import onnx

from model_factory import synthetic_dataset
from quantize_helpers import float_model, quick
from resnet8_onnx import quantize as q
from resnet8_onnx.quantize.diagnosis import diagnose_chosen
from resnet8_onnx.quantize.engine import inspect_float_model, quantize_static


def test_layer_errors_name_nodes_of_the_model(tmp_path) -> None:
    model, _, record = quick(tmp_path, q.Recipe(float_pooling=False), diagnose=True)
    errors_ = record.layer_errors
    assert errors_, record.layer_errors_note
    names = {n.name for n in onnx.load(str(model)).graph.node}
    assert any(e.node in names for e in errors_)
    sqnr = [e.local_sqnr_db for e in errors_]
    assert sqnr == sorted(sqnr)


def _qdq(tmp_path, recipe: q.Recipe):
    model = float_model(tmp_path / "m.onnx")
    images = synthetic_dataset(60, seed=3).images
    out = tmp_path / "m_qdq.onnx"
    quantize_static(model, out, recipe, "input", images, None)
    return model, out, images


def test_layer_errors_are_the_worst_first_and_at_most_top(tmp_path) -> None:
    model, qdq, images = _qdq(tmp_path, q.Recipe())
    every = q.layer_errors(model, qdq, "input", images, top=100)
    two = q.layer_errors(model, qdq, "input", images, top=2)
    assert len(every) > 2
    assert two == every[:2]
    assert all(np.isfinite(e.local_sqnr_db) for e in every)
    producers = {o: n.op_type for n in onnx.load(str(model)).graph.node for o in n.output}
    for e in every:
        assert producers.get(e.tensor) == e.op_type  # the float model's producer of the tensor


def test_a_qoperator_recipe_is_measured_on_its_qdq_twin(tmp_path) -> None:
    """qdq_loss_debug reads Q/DQ pairs; a QOperator model is diagnosed through its QDQ form."""
    recipe = q.Recipe(format="qoperator")
    model, chosen, images = _qdq(tmp_path, recipe)
    found, note = diagnose_chosen(model, tmp_path, recipe, chosen, inspect_float_model(model),
                                  images[:30], images[30:])
    assert found, note
    assert note.startswith("measured on the QDQ form")
    assert "30 held-out images" in note
    assert (tmp_path / "diagnosis_qdq.onnx").is_file()


def test_a_failed_diagnosis_is_a_note_not_an_error(tmp_path) -> None:
    """The diagnosis must never sink the quantised model it describes."""
    model = float_model(tmp_path / "m.onnx")
    images = synthetic_dataset(20).images
    found, note = diagnose_chosen(model, tmp_path, q.Recipe(), tmp_path / "missing.onnx",
                                  inspect_float_model(model), images, images[:0])
    assert found is None
    assert note.startswith("per-layer error could not be measured")
