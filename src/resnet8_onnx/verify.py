"""Prove an ONNX model equals its source: structure, dynamic batch, numerical parity, and —
when parity fails — the first layer where the two diverge.

Comparison is done on data, not on runners: :func:`compare_outputs` takes two output arrays,
so the same code compares Keras with ONNX, ONNX with LiteRT, or two ONNX files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.backends.base import (
    CONVERSION_SOURCE,
    HasLayerOutputs,
    HasParameters,
    HasSession,
    HasStructure,
    HasTensorOutputs,
    able,
)
from resnet8_onnx.backends.onnxrt.graph import QOPERATOR_OPS
from resnet8_onnx.data.format import IMAGE_SHAPE, NUM_CLASSES
from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE, predict_all, run_settings
from resnet8_onnx.machine import check_batch_fits
from resnet8_onnx.records import (
    DynamicBatch,
    LayerMatch,
    Layerwise,
    Parity,
    Provenance,
    Structure,
    Tolerance,
    VerificationRecord,
)
from resnet8_onnx.support.errors import InvalidInputError, UsageError
from resnet8_onnx.support.facade import callable_module

if TYPE_CHECKING:
    from resnet8_onnx.backends.base import Backend
    from resnet8_onnx.preprocess import Preprocessing

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
DYNAMIC_BATCH_SIZES = (1, 7, 256)


def check_io_contract(
    structure: dict[str, Any], *, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
    num_classes: int = NUM_CLASSES, spec: Preprocessing | None = None, output: str | None = None,
    reference_batch: int | None = None,
) -> list[str]:
    """Problems with the model's interface, as sentences (empty when it fits the task).

    Without ``spec`` the contract is the converter's: float32 NHWC. With one (an ONNX model
    whose preprocessing was stated or resolved), the input must have the spec's layout and
    dtype; ``output`` names the output checked when the model has several. A fixed batch is
    a problem unless the reference's batch is fixed at the same size (``reference_batch``):
    a conversion keeps the source's contract, it need not widen it.
    """
    problems = []
    outputs = [o for o in structure["outputs"] if output is None or o["name"] == output]
    if len(structure["inputs"]) != 1 or len(outputs) != 1:
        return [f"expected one input and one output, got {len(structure['inputs'])} and "
                f"{len(structure['outputs'])}"]
    inp, out = structure["inputs"][0], outputs[0]
    dtype = spec.dtype if spec is not None else "float32"
    if inp["dtype"] != dtype:
        problems.append(f"input {inp['name']!r} is {inp['dtype']}, expected {dtype}")
    want = spec.model_shape(image_shape) if spec is not None else image_shape
    if len(inp["shape"]) != 4 or list(inp["shape"][1:]) != list(want):
        problems.append(f"input {inp['name']!r} has shape {inp['shape']}, expected "
                        f"[N, {', '.join(map(str, want))}]")
    elif isinstance(inp["shape"][0], int) and inp["shape"][0] != reference_batch:
        problems.append(f"input {inp['name']!r} has a fixed batch of {inp['shape'][0]}, "
                        "expected a dynamic batch dimension")
    if len(out["shape"]) != 2 or out["shape"][1] != num_classes:
        problems.append(f"output {out['name']!r} has shape {out['shape']}, expected "
                        f"[N, {num_classes}]")
    return problems


# --------------------------------------------------------------------------- numerics
def agreement(reference_predictions: np.ndarray, candidate_predictions: np.ndarray,
              indices: np.ndarray | None = None) -> tuple[int, list[int]]:
    """(how many predictions agree, the first ten that differ), the latter as ``indices``
    (the images' data-set indices) when given, else positions. The one place agreement is
    counted: parity here, ``compare`` and ``run``'s verdict all come through it."""
    differ = np.flatnonzero(np.asarray(reference_predictions)
                            != np.asarray(candidate_predictions))
    first = differ[:10] if indices is None else np.asarray(indices)[differ[:10]]
    return len(reference_predictions) - len(differ), [int(i) for i in first]


def compare_outputs(
    reference: np.ndarray, candidate: np.ndarray, *, atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL, indices: np.ndarray | None = None,
) -> Parity:
    """Element-wise comparison; an element fails only if it exceeds both ``atol`` and ``rtol``.

    Relative error is ``|Δ| / max(|ref|, atol)`` so that near-zero probabilities do not turn
    float32 rounding into huge relative figures. The result is the record's parity block
    itself: ``passed`` when every element is within tolerance, every top-1 agrees and every
    output is finite.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise InvalidInputError(
            f"output shapes differ: reference {ref.shape}, candidate {cand.shape}")
    n = ref.shape[0]
    ref_bad = int((~np.isfinite(ref)).sum())
    cand_bad = int((~np.isfinite(cand)).sum())
    diff = np.abs(ref - cand)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    rel = diff / np.maximum(np.abs(ref), atol)
    over = (diff > atol) & (diff > rtol * np.abs(ref))
    with np.errstate(invalid="ignore", divide="ignore"):
        dots = (ref * cand).sum(axis=1)
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
        cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 1.0)
    agreeing, first = agreement(ref.argmax(axis=1), cand.argmax(axis=1), indices)
    finite = diff[np.isfinite(diff)]
    over_count = int(over.sum())
    return Parity(
        passed=(over_count == 0 and agreeing == n and ref_bad == 0 and cand_bad == 0),
        samples=int(n),
        argmax_agreement=agreeing,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(finite.mean()) if finite.size else 0.0,
        p99_abs_diff=float(np.percentile(finite, 99)) if finite.size else 0.0,
        max_rel_diff=float(rel.max()) if rel.size else 0.0,
        p99_rel_diff=float(np.percentile(rel[np.isfinite(rel)], 99)) if rel.size else 0.0,
        min_cosine_similarity=float(np.nanmin(cosine)) if n else 1.0,
        mean_cosine_similarity=float(np.nanmean(cosine)) if n else 1.0,
        elements_over_tolerance=over_count,
        nonfinite_reference=ref_bad,
        nonfinite_candidate=cand_bad,
        atol=atol,
        rtol=rtol,
        first_disagreements=first,
    )


def check_dynamic_batch(
    backend: Backend, images: np.ndarray, *, sizes: tuple[int, ...] = DYNAMIC_BATCH_SIZES,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
) -> DynamicBatch:
    """Same per-sample outputs whatever the batch size (1, a prime, a large one)?

    The largest batch is the reference; every other size must reproduce it per sample.
    """
    largest = min(max(sizes), len(images))
    x = np.asarray(images[:largest], dtype=np.float32)
    reference = backend.predict(x)
    results = {}
    for size in sizes:
        size = min(size, largest)
        chunks = [backend.predict(x[i:i + size]) for i in range(0, largest, size)]
        cmp = compare_outputs(reference, np.concatenate(chunks), atol=atol, rtol=rtol)
        results[str(size)] = {"max_abs_diff": cmp.max_abs_diff, "passed": cmp.passed}
    return DynamicBatch(passed=all(r["passed"] for r in results.values()), samples=largest,
                        batch_sizes=results)


# --------------------------------------------------------------------------- layerwise
_CONV = frozenset({"Conv", "ConvInteger", "QLinearConv", "ConvTranspose"})
_MATMUL = frozenset({"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "QGemm"})
_ACTIVATION = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Max",
                         "QLinearSoftmax", "QLinearLeakyRelu", "QLinearSigmoid"})
_POOL = frozenset({"AveragePool", "GlobalAveragePool", "MaxPool", "GlobalMaxPool", "ReduceMean",
                   "QLinearAveragePool", "QLinearGlobalAveragePool"})
_RESHAPE = frozenset({"Reshape", "Flatten", "Transpose", "Squeeze", "Identity"})
# Which ONNX operators can compute a Keras layer's output, and whether a tensor that went
# through quantisation since (a DequantizeLinear after QuantizeLinear: a fused ReLU's clip)
# may stand for it. A class not listed may match any tensor.
_LAYER_OPS: dict[str, tuple[frozenset[str], bool]] = {
    # A convolution or dense layer may carry its activation (Dense(…, "softmax")).
    **{c: (_CONV | _ACTIVATION, False) for c in ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D",
                                                 "SeparableConv2D", "Conv2DTranspose")},
    "Dense": (_MATMUL | _ACTIVATION | {"Add"}, False),
    "BatchNormalization": (frozenset({"BatchNormalization", "Mul", "Add"}) | _CONV, False),
    "Add": (frozenset({"Add", "Sum", "QLinearAdd"}), False),
    "Multiply": (frozenset({"Mul", "QLinearMul"}), False),
    **{c: (_ACTIVATION, True) for c in ("Activation", "ReLU", "LeakyReLU", "Softmax")},
    **{c: (_POOL, True) for c in ("AveragePooling2D", "GlobalAveragePooling2D",
                                  "MaxPooling2D", "GlobalMaxPooling2D")},
    **{c: (_RESHAPE, True) for c in ("Flatten", "Reshape")},
}


def _candidates_for(layer_class: str, tensors: dict[str, np.ndarray],
                    origins: dict[str, tuple[str, bool]]) -> dict[str, np.ndarray]:
    """The ONNX tensors that may be ``layer_class``'s output, by the operator that computed
    them: a Keras Conv2D is matched to a convolution's output, never to a tensor after the
    BatchNormalization or ReLU that follow it. Without origins, every tensor."""
    rule = _LAYER_OPS.get(layer_class)
    if rule is None or not origins:
        return tensors
    ops, requantised_ok = rule
    keep = {}
    for name, value in tensors.items():
        op, requantised = origins.get(name, ("", False))
        # A quantised operator's own output (QLinearConv …) is the only one it has; a float
        # operator's output read back through Q/DQ is clipped, so only where allowed.
        if (op in ops and (not requantised or op in QOPERATOR_OPS)) \
                or (requantised and requantised_ok):
            keep[name] = value
    return keep


def _best_match(
    ref: np.ndarray, candidates: dict[str, np.ndarray]
) -> tuple[str | None, float, float]:
    """The ONNX tensor closest to a Keras activation, trying NHWC and NCHW layouts.

    Returns (name, max |Δ|, max |Δ| / max |ref|).
    """
    best: tuple[str | None, float, float] = (None, float("inf"), float("inf"))
    scale = max(float(np.abs(ref).max()), 1e-12)
    views = [ref]
    if ref.ndim == 4:
        views.append(ref.transpose(0, 3, 1, 2))  # tf2onnx computes convolutions in NCHW
    for name, value in candidates.items():
        for view in views:
            if value.shape == view.shape:
                err = float(np.abs(value.astype(np.float64) - view).max())
                if err < best[1]:
                    best = (name, err, err / scale)
    return best


LAYER_TOLERANCE_RULE = ("a layer matches when the max |Δ| of its closest ONNX tensor is "
                        "within atol or within rtol × the layer's largest |activation|")


def _match_layers(
    order: list[tuple[str, str]], keras_values: dict[str, np.ndarray],
    onnx_values: dict[str, np.ndarray], origins: dict[str, tuple[str, bool]], *,
    atol: float, rtol: float,
) -> list[LayerMatch]:
    """Each Keras layer against its closest ONNX tensor among those its class allows.

    One tensor stands for one layer: when several layers' closest tensor is the same (an
    int8 Conv that also computes the BatchNormalization folded into it), the layer it
    matches best keeps it and the others are ``fused_into`` that layer — no tensor of their
    own, so not a divergence.
    """
    layers: list[dict[str, Any]] = []
    for layer_name, layer_class in order:
        if layer_name not in keras_values:
            continue
        ref = np.asarray(keras_values[layer_name], dtype=np.float64)
        name, err, rel = _best_match(ref, _candidates_for(layer_class, onnx_values, origins))
        allowed = max(atol, rtol * float(np.abs(ref).max(initial=0.0)))
        entry: dict[str, Any] = {
            "layer": layer_name, "class": layer_class, "onnx_tensor": name,
            "max_abs_diff": err, "max_rel_diff": rel, "allowed_abs_diff": allowed,
            "matched": bool(name is not None and err <= allowed)}
        if name in origins:
            entry["onnx_op"], entry["through_quantisation"] = origins[name]
        layers.append(entry)
    best: dict[str, dict[str, Any]] = {}
    for entry in layers:
        if (tensor := entry["onnx_tensor"]) is not None and (tensor not in best
                                 or entry["max_rel_diff"] < best[tensor]["max_rel_diff"]):
            best[tensor] = entry
    for entry in layers:
        owner = best.get(entry["onnx_tensor"])
        if owner is not None and owner is not entry and not entry["matched"]:
            entry["fused_into"] = owner["layer"]
    return [LayerMatch(layer=e.pop("layer"), matched=e.pop("matched"),
                       max_abs_diff=e.pop("max_abs_diff"), extra=e) for e in layers]


def localise_divergence(
    reference: Backend, candidate: Backend, images: np.ndarray, *,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
) -> Layerwise:
    """Find the first reference layer whose output no candidate tensor reproduces.

    ``reference`` declares the ``layer_outputs`` ability (Keras), ``candidate`` the
    ``tensor_outputs`` one (an ONNX file; it applies its own preprocessing to its copy).
    Names are not trusted (tf2onnx renames scopes), so each Keras activation is matched by
    value against every ONNX tensor of the same size, in NHWC or NCHW layout. The tolerance
    is the parity tolerance (``atol``, ``rtol``), with ``rtol`` scaled by the layer's largest
    activation rather than element by element: an intermediate element near zero carries the
    float32 rounding of partial sums hundreds of times larger (the first convolution sees raw
    0–255 pixels), so an element-wise rule would flag a correct conversion. A layer fused
    away by the converter (no tensor of its own) is not a divergence as long as some layer
    after it matches again; so the first diverging layer is the earliest unmatched layer none
    of whose descendants match.
    """
    layered, tensors = able(reference, HasLayerOutputs), able(candidate, HasTensorOutputs)
    if layered is None or tensors is None:
        raise UsageError("a layer-by-layer comparison needs a reference with layer outputs "
                         "(Keras) and a candidate with tensor outputs (ONNX)")
    batch = np.asarray(images, dtype=np.float32)
    keras_values = layered.layer_outputs(batch)
    onnx_values = tensors.tensor_outputs(batch)
    origins = tensors.tensor_origins()
    order, parents = layered.layer_graph()
    layers = _match_layers(order, keras_values, onnx_values, origins, atol=atol, rtol=rtol)

    children: dict[str, set[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(child)

    def descendants(name: str) -> set[str]:
        seen, stack = set(), [name]
        while stack:
            for c in children.get(stack.pop(), ()):
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return seen

    matched = {entry.layer for entry in layers if entry.matched}
    first = next((entry for entry in layers
                  if not entry.matched and "fused_into" not in entry.extra
                  and not (descendants(entry.layer) & matched)), None)
    return Layerwise(layers=layers, first_diverging_layer=first,
                     tolerance=Tolerance(atol=atol, rtol=rtol, rule=LAYER_TOLERANCE_RULE),
                     extra={"samples": len(batch)})


def check_provenance(reference: Backend, structure: dict[str, Any]) -> Provenance:
    """Was the ONNX file converted from this reference? Its metadata names its source's sha256.

    ``converted_from_reference`` is ``None`` when that cannot be told: the ONNX file records
    no source checksum (another converter wrote it) or the reference does not declare the
    ``conversion_source`` ability (Keras, ONNX and PyTorch runners do: ``convert`` reads them).
    """
    meta = structure.get("metadata") or {}
    claimed = meta.get("source_sha256")
    result = Provenance(onnx_source_file=meta.get("source_file"), onnx_source_sha256=claimed,
                        reference_sha256=reference.info.model_sha256)
    if not claimed:
        result.note = "the ONNX metadata records no source checksum"
    elif CONVERSION_SOURCE not in reference.abilities:
        result.note = "the reference is not a file convert reads, so not a conversion source"
    else:
        result.converted_from_reference = claimed == reference.info.model_sha256
    return result


# --------------------------------------------------------------------------- the whole check
def structure_checks(
    reference: Backend, candidate: Backend, *, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
    num_classes: int = NUM_CLASSES,
) -> dict[str, Any]:
    """The checks that need no images: the candidate's structure report, whether it was
    converted from ``reference`` and its interface problems (empty when it fits the task)."""
    described = able(candidate, HasStructure)
    if described is None:
        raise UsageError(f"{candidate.info.model_path}: verify checks an ONNX or PyTorch model "
                         "against its source")
    structure = described.structure()
    with_session = able(candidate, HasSession)
    return {
        "structure": structure,
        "provenance": check_provenance(reference, structure),
        "interface_problems": check_io_contract(
            structure, image_shape=image_shape, num_classes=num_classes,
            spec=candidate.input_spec.preprocessing,
            output=with_session.onnx_session().output_name if with_session else None,
            reference_batch=reference.input_spec.fixed_batch),
    }


def verify_outputs(
    reference: Backend, candidate: Backend, images: np.ndarray,
    reference_outputs: np.ndarray, candidate_outputs: np.ndarray, *,
    checks: dict[str, Any] | None = None, indices: np.ndarray | None = None,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, layerwise: bool = False,
    image_shape: tuple[int, int, int] = IMAGE_SHAPE, num_classes: int = NUM_CLASSES,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> VerificationRecord:
    """The verification record from the two runners' outputs on ``images``: their
    comparison (:func:`compare_outputs`), the structure checks (``checks``, computed when not
    given), the dynamic-batch check and, when asked or when parity fails, the first
    diverging layer. ``run`` calls this with the outputs its evaluations already hold."""
    if checks is None:
        checks = structure_checks(reference, candidate, image_shape=image_shape,
                                  num_classes=num_classes)
    problems = checks["interface_problems"]
    parity = compare_outputs(reference_outputs, candidate_outputs, atol=atol, rtol=rtol,
                             indices=indices)
    dynamic = check_dynamic_batch(candidate, images, atol=atol, rtol=rtol)
    report = VerificationRecord(
        passed=bool(parity.passed and dynamic.passed and not problems),
        samples=parity.samples or 0,  # compare_outputs counts both
        argmax_agreement=parity.argmax_agreement or 0,
        max_abs_diff=parity.max_abs_diff,
        reference=reference.info,
        provenance=checks["provenance"],
        candidate=candidate.info,
        structure=Structure.from_dict(checks["structure"]),
        interface_problems=problems,
        dynamic_batch=dynamic,
        parity=parity,
        settings=run_settings(candidate.info, batch_size),
    )
    if (counted := able(reference, HasParameters)) is not None:
        # tf2onnx folds BatchNormalization into the convolutions: fewer ONNX parameters.
        counts = counted.source_parameters()
        report.reference_parameters = counts["reference_parameters"]
        report.reference_batch_normalization_layers = \
            counts["reference_batch_normalization_layers"]
    if layerwise or not parity.passed:
        if able(candidate, HasTensorOutputs) is None:
            report.layerwise = Layerwise(
                skipped="layer-by-layer comparison needs an ONNX candidate")
        elif able(reference, HasLayerOutputs) is not None:
            count = candidate.input_spec.fixed_batch or 32
            report.layerwise = localise_divergence(
                reference, candidate, images[:count], atol=atol, rtol=rtol)
        else:
            report.layerwise = Layerwise(
                skipped=f"{reference.info.name} exposes no layer outputs")
    return report


def verify(
    reference: Backend, candidate: Backend, images: np.ndarray, *,
    indices: np.ndarray | None = None, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
    layerwise: bool = False, image_shape: tuple[int, int, int] = IMAGE_SHAPE,
    num_classes: int = NUM_CLASSES, batch_size: int = DEFAULT_BATCH_SIZE,
) -> VerificationRecord:
    """Structure, interface, dynamic batch and parity of ``candidate`` against ``reference``.

    The structure checks run first (a file failing the checker fails in seconds), then both
    runners go once over ``images`` through the package's one inference loop, then
    :func:`verify_outputs` compares. Returns the typed record; its ``passed`` is the verdict.
    """
    check_batch_fits(max(1, min(batch_size, len(images))))
    checks = structure_checks(reference, candidate, image_shape=image_shape,
                              num_classes=num_classes)

    def outputs_of(backend: Backend, label: str) -> np.ndarray:
        batches = (np.asarray(images[i:i + batch_size], np.float32)
                   for i in range(0, len(images), batch_size))
        outputs, _ = predict_all(backend, batches, len(images), label)
        if outputs is None:
            raise InvalidInputError("verify needs at least one image")
        return outputs

    ref_out = outputs_of(reference, f"{reference.info.name}: reference")
    cand_out = outputs_of(candidate, f"{candidate.info.name}: candidate")
    return verify_outputs(reference, candidate, images, ref_out, cand_out, checks=checks,
                          indices=indices, atol=atol, rtol=rtol, layerwise=layerwise,
                          image_shape=image_shape, num_classes=num_classes,
                          batch_size=batch_size)


# The facade's resnet8_onnx.verify(...) is this module called (see support.facade).
callable_module(__name__, "verify")
