"""Where quantisation hurts: the tensors with the largest error, from ``qdq_loss_debug``."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from resnet8_onnx.quantize.engine import (
    Feed,
    FloatModel,
    calibration_reader,
    ort_quantization,
    quantize_static,
)
from resnet8_onnx.records import LayerError, Recipe
from resnet8_onnx.support.errors import one_line
from resnet8_onnx.support.progress import status

DIAGNOSIS_IMAGES = 200


def layer_errors(float_model: str | os.PathLike[str], qdq_model: str | os.PathLike[str],
                 feed: Feed | str, images: np.ndarray, *, top: int = 8) -> list[LayerError]:
    """The tensors with the largest quantisation error, worst first (``qdq_loss_debug``).

    Runs the float and the QDQ model with every intermediate tensor as an output (graph
    optimisations off, so the QDQ model is the reference simulation of its int8 kernels) and
    ranks tensors by the error their own quantisation adds.
    """
    import onnx

    ort_quantization()
    from onnxruntime.quantization import qdq_loss_debug as dbg

    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-debug.") as tmp:
        aug_float, aug_qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        dbg.modify_model_output_intermediate_tensors(str(float_model), str(aug_float))
        dbg.modify_model_output_intermediate_tensors(str(qdq_model), str(aug_qdq))
        float_acts = dbg.collect_activations(str(aug_float), calibration_reader(feed, images))
        qdq_acts = dbg.collect_activations(str(aug_qdq), calibration_reader(feed, images))
    matched = dbg.create_activation_matching(qdq_acts, float_acts)
    errors = dbg.compute_activation_error(matched)
    producers = {out: (n.name, n.op_type)
                 for n in onnx.load(str(float_model), load_external_data=False).graph.node
                 for out in n.output}
    found = []
    for tensor, err in errors.items():
        local = err.get("qdq_err")
        if local is None or not np.isfinite(local):
            continue
        node, op = producers.get(tensor, (None, None))
        found.append(LayerError(tensor=tensor, node=node, op_type=op,
                                local_sqnr_db=round(float(local), 2),
                                vs_float_sqnr_db=None if err.get("xmodel_err") is None
                                else round(float(err["xmodel_err"]), 2)))
    found.sort(key=lambda e: e.local_sqnr_db)
    return found[:top]



def diagnose_chosen(pre: Path, tmp: Path, recipe: Recipe, chosen_path: Path, model: FloatModel,
              cal_images: np.ndarray, hold_images: np.ndarray
              ) -> tuple[list[LayerError] | None, str]:
    images = (hold_images if len(hold_images) else cal_images)[:DIAGNOSIS_IMAGES]
    qdq_path, note = chosen_path, ""
    if recipe.format != "qdq":
        # qdq_loss_debug reads Q/DQ pairs: measure the QDQ twin of the chosen recipe.
        qdq_path = tmp / "diagnosis_qdq.onnx"
        quantize_static(pre, qdq_path, dataclasses.replace(recipe, format="qdq"),
                        model.feed, cal_images, None)
        note = "measured on the QDQ form of the chosen recipe (same calibration); "
    with status("Measuring per-layer quantisation error (qdq_loss_debug)…"):
        try:
            found = layer_errors(pre, qdq_path, model.feed, images)
        except Exception as exc:  # a diagnosis must not sink the quantised model
            return None, f"per-layer error could not be measured: {one_line(exc)}"
    where = "held-out" if len(hold_images) else "calibration"
    return found, (f"{note}{len(images):,} {where} images; SQNR in dB, lowest first; node "
                   "names are what --exclude takes")

