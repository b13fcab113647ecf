"""Opsets: what each recipe needs, the proven upgrade of an older model, the int8 file's imports.

A PyTorch 1.x or tf2onnx export is often opset 9. ONNX Runtime's quantiser then either
writes per-channel ``DequantizeLinear`` (an ``axis`` attribute, opset 13) into the old graph,
which no runtime loads, or bumps the opset itself without checking the result. Here an older
model is upgraded once with ``onnx.version_converter`` and the upgraded float model is proven
equal to the original on real images (verify's rule: an element fails only beyond both atol
and rtol × |ref|) before anything is quantised; when that fails, the recipes the old opset
cannot hold are left out of the grid with the reason, never an internal error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.records import Recipe
from resnet8_onnx.support.errors import one_line
from resnet8_onnx.support.progress import status
from resnet8_onnx.verify import DEFAULT_ATOL, DEFAULT_RTOL, compare_outputs

# Per-channel QDQ: DequantizeLinear's ``axis`` attribute exists from opset 13.
PER_CHANNEL_QDQ_OPSET = 13
# QuantizeLinear/QLinearConv exist from opset 10; below it ONNX Runtime converts on its own.
MIN_QUANT_OPSET = 10
TARGET_OPSET = 13
STANDARD_DOMAINS = ("", "ai.onnx")


def needed_opset(recipe: Recipe) -> int:
    """The lowest opset of the default domain the recipe's int8 file can be written in."""
    if recipe.format == "qdq" and recipe.per_channel:
        return PER_CHANNEL_QDQ_OPSET
    return MIN_QUANT_OPSET


@dataclass
class OpsetPlan:
    """The float model to quantise and what happened to the opset on the way."""

    path: Path
    source_opset: int
    quantised_opset: int
    left_out: list[tuple[Recipe, str]] = field(default_factory=list)
    proof: dict[str, Any] | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source_opset, "quantised_at": self.quantised_opset,
                "converter": "onnx.version_converter" if self.proof else None,
                "proof": self.proof, "note": self.note}


def plan_opset(path: Path, opset: int, grid: list[Recipe], tmp: Path,
               outputs: Any, images: np.ndarray) -> OpsetPlan:
    """Upgrade the float model to :data:`TARGET_OPSET` when a recipe of ``grid`` needs more
    than ``opset``, proven equal on ``images`` (``outputs(path, images)`` runs a model);
    when the upgrade fails or differs, the recipes needing it are left out with the reason."""
    need = max(needed_opset(r) for r in grid)
    if opset >= need:
        return OpsetPlan(path=path, source_opset=opset, quantised_opset=opset)
    upgraded = tmp / "upgraded.onnx"
    with status(f"Upgrading opset {opset} → {TARGET_OPSET} (onnx.version_converter)…"):
        failure, proof = _upgrade_and_prove(path, upgraded, outputs, images)
    if failure is None and proof is not None:
        return OpsetPlan(path=upgraded, source_opset=opset, quantised_opset=TARGET_OPSET,
                         proof=proof,
                         note=f"opset {opset} upgraded to {TARGET_OPSET} with "
                              f"onnx.version_converter before quantising; the upgraded float "
                              f"model equals the original on {proof['images']:,} held-out "
                              f"images (max |Δ| {proof['max_abs_diff']:.2e})")
    left_out = [(r, f"needs opset {needed_opset(r)}; the model is opset {opset} and {failure}")
                for r in grid if needed_opset(r) > opset]
    return OpsetPlan(path=path, source_opset=opset, quantised_opset=opset, left_out=left_out,
                     proof=proof, note=f"opset {opset} kept: {failure}")


def _upgrade_and_prove(path: Path, upgraded: Path, outputs: Any, images: np.ndarray
                       ) -> tuple[str | None, dict[str, Any] | None]:
    """(why the upgrade cannot be used or None, the proof's figures)."""
    import onnx
    from onnx import version_converter

    try:
        model = version_converter.convert_version(onnx.load(str(path)), TARGET_OPSET)
        onnx.checker.check_model(model)
        onnx.save(model, str(upgraded))
        reference, candidate = outputs(path, images), outputs(upgraded, images)
    except Exception as exc:  # the converter's and the runtime's errors are many
        return f"onnx.version_converter could not upgrade it ({one_line(exc)})", None
    cmp = compare_outputs(reference, candidate, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL)
    proof = {"images": cmp.samples, "max_abs_diff": cmp.max_abs_diff,
             "elements_over_tolerance": cmp.elements_over_tolerance,
             "argmax_agreement": cmp.argmax_agreement, "atol": DEFAULT_ATOL,
             "rtol": DEFAULT_RTOL, "passed": cmp.passed}
    if not cmp.passed:
        return (f"the upgraded model differs from it on {cmp.samples:,} held-out images "
                f"({cmp.elements_over_tolerance:,} outputs beyond atol {DEFAULT_ATOL:g} and "
                f"rtol {DEFAULT_RTOL:g}, max |Δ| {cmp.max_abs_diff:.2e})"), proof
    return None, proof


def prune_opset_imports(model: Any) -> list[str]:
    """Drop opset imports no node uses (ONNX Runtime's quantiser adds ``com.microsoft`` to
    QDQ files too); the default domain always stays. Returns the dropped domains."""
    used = {n.domain or "" for n in model.graph.node}
    used |= {f.domain for f in model.functions}
    kept = [o for o in model.opset_import if (o.domain or "") in used
            or o.domain in STANDARD_DOMAINS]
    dropped = [o.domain for o in model.opset_import if o not in kept]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return dropped


def uses_standard_ops_only(model: Any) -> bool:
    """Whether every node is a standard ONNX op (QDQ), not ONNX Runtime's ``com.microsoft``
    contrib ops (QOperator's QLinearAdd, QLinearGlobalAveragePool, …)."""
    return all((n.domain or "") in STANDARD_DOMAINS for n in model.graph.node)
