"""Lines and rows built from a record, shared by the terminal and the Markdown writers.

One function per piece of content (the verdict's sentences, parity lines, the comparison
table's rows, the quantisation candidates …), so both formats say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .jsonio import jsonable
from .text import (
    DASH,
    _get,
    _per_class,
    format_int,
    format_pct,
    format_threshold,
    is_number,
    model_name,
)


def _comparison_data(comparison: Mapping[str, Any]) -> Mapping[str, Any]:
    models = comparison.get("models") or [{}]
    return comparison.get("data") or _get(models[0], "data", default={})


def _verdict_lines(verdict: Mapping[str, Any]) -> list[str]:
    summary = [str(s) for s in verdict.get("summary", []) or []]
    if summary:
        return summary
    lines = []
    if is_number(verdict.get("onnx_accuracy")):
        lines.append(f"ONNX accuracy {format_pct(verdict['onnx_accuracy'])}"
                     + (f", Keras {format_pct(verdict['keras_accuracy'])}"
                        if is_number(verdict.get("keras_accuracy")) else ""))
    if is_number(verdict.get("accuracy_threshold")):
        meets = verdict.get("meets_threshold", verdict.get("above_threshold"))
        lines.append(f"threshold {format_threshold(verdict['accuracy_threshold'])}: "
                     + ("met (≥)" if meets else "NOT met"))
    return lines


def _parity_lines(parity: Mapping[str, Any]) -> list[str]:
    if not parity:
        return []
    lines = []
    samples = parity.get("samples")
    agree = parity.get("argmax_agreement")
    if isinstance(samples, int) and isinstance(agree, int):
        lines.append(f"top-1 agreement {agree:,}/{samples:,} images")
    if is_number(parity.get("max_abs_diff")):
        tol = ""
        if is_number(parity.get("atol")) and is_number(parity.get("rtol")):
            tol = f" (tolerance atol {parity['atol']:g}, rtol {parity['rtol']:g})"
        lines.append(f"max |Δ output| {parity['max_abs_diff']:.3g}{tol}")
    if is_number(parity.get("min_cosine_similarity")):
        lines.append(f"min cosine similarity {parity['min_cosine_similarity']:.9f}")
    if isinstance(parity.get("elements_over_tolerance"), int):
        lines.append(f"{parity['elements_over_tolerance']:,} output elements over tolerance")
    dynamic = parity.get("dynamic_batch")
    if isinstance(dynamic, Mapping) and "passed" in dynamic:
        sizes = ", ".join(dynamic.get("batch_sizes", {}) or [])
        lines.append(f"dynamic batch ({sizes}): {'ok' if dynamic['passed'] else 'FAILED'}")
    first = parity.get("first_disagreements") or []
    if first and parity.get("argmax_agreement") != parity.get("samples"):
        lines.append("first disagreeing images: " + ", ".join(str(i) for i in first))
    for problem in parity.get("interface_problems", []) or []:
        lines.append(f"interface problem: {problem}")
    return lines


def _comparison_rows(models: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-class rows aligned across models by class index."""
    tables = [_per_class(m) for m in models]
    n = max((len(t) for t in tables), default=0)
    rows = []
    for i in range(n):
        cells = [t[i] if i < len(t) else {} for t in tables]
        first = next((c for c in cells if c), {})
        rows.append({"index": first.get("index", i), "name": first.get("name", str(i)),
                     "support": first.get("support"), "models": cells})
    return rows


def _delta(a: Any, b: Any) -> str:
    if not (isinstance(a, int) and isinstance(b, int)):
        return DASH
    return "0" if a == b else f"{b - a:+,}"


def parameters_text(structure: Mapping[str, Any], reference_parameters: Any = None,
                    batch_normalization_layers: Any = None) -> str | None:
    """'78,188 parameters' and, beside the Keras count, why the two differ.

    tf2onnx folds each BatchNormalization into the convolution before it (scale into the
    weights, shift into the bias), so its four per-channel vectors are not stored any more.
    """
    count = structure.get("parameters")
    if not isinstance(count, int):
        return None
    text = f"{count:,} parameters"
    if not isinstance(reference_parameters, int) or reference_parameters == count:
        return text
    folded = (isinstance(batch_normalization_layers, int) and batch_normalization_layers > 0
              and "BatchNormalization" not in (structure.get("op_inventory") or {}))
    reason = (f": its {batch_normalization_layers} BatchNormalization layers are folded into "
              "the convolutions" if folded else "")
    return f"{text} (the Keras model has {reference_parameters:,}{reason})"


def provenance_line(provenance: Mapping[str, Any], onnx_path: Any = None,
                    reference_path: Any = None) -> str | None:
    """Whether the ONNX file was converted from the reference, as a sentence (None: unknown).

    Said before any parity figure: when the files are unrelated, "first diverging layer"
    answers a question nobody asked.
    """
    state = provenance.get("converted_from_reference")
    onnx = Path(str(onnx_path)).name if onnx_path else "the ONNX model"
    reference = Path(str(reference_path)).name if reference_path else "the reference"
    claimed, actual = provenance.get("onnx_source_sha256"), provenance.get("reference_sha256")
    if state is False:
        source = provenance.get("onnx_source_file") or "another file"
        return (f"{onnx} was NOT converted from {reference}: its metadata names {source} "
                f"(sha256 {str(claimed)[:12]}…) as its source, {reference} has sha256 "
                f"{str(actual)[:12]}…; the comparison below is between two different models")
    if state is True:
        return f"{onnx} was converted from {reference} (sha256 {str(actual)[:12]}… in its metadata)"
    if provenance.get("note"):
        return f"not checked: {provenance['note']}"
    return None


_RAW_FLOAT = "NHWC RGB float32, raw 0-255 pixels, no normalisation"  # not worth a mention


def _sci(value: Any) -> str:
    if not is_number(value):
        return DASH
    return "0" if value == 0 else f"{value:.2e}"


def _delta_cell(versus: Mapping[str, Any], key: str) -> str:
    if versus.get("comparable") is False:
        return "n/a"
    return _sci(versus.get(key))


def _compare_class_names(models: Sequence[Mapping[str, Any]]) -> list[str]:
    for record in models:
        names = _get(record, "metrics", "class_names")
        if names:
            return [str(n) for n in names]
    return []


def _class_accuracy(record: Mapping[str, Any], index: int) -> Any:
    per_class = _get(record, "metrics", "per_class") or []
    return per_class[index].get("accuracy") if index < len(per_class) else None


def _compare_rows(record: Mapping[str, Any]) -> list[tuple[str, list[str], bool]]:
    """(row label, one cell per model, starts a new section) for the one comparison table."""
    models = list(record.get("models") or [])
    ref = models[0]["label"] if models else "#1"
    rows: list[tuple[str, list[str], bool]] = []

    def add(label: str, cells: list[str], section: bool = False) -> None:
        rows.append((label, cells, section))

    add("top-1 accuracy", [format_pct(_get(m, "metrics", "accuracy")) for m in models])
    totals = {_get(m, "metrics", "total") for m in models}
    label = f"correct of {format_int(totals.pop())}" if len(totals) == 1 else "correct"
    add(label, [format_int(_get(m, "metrics", "correct")) for m in models])
    names = _compare_class_names(models)
    for i, name in enumerate(names):
        add(f"  {name}", [format_pct(_class_accuracy(m, i), 1) for m in models], section=i == 0)
    versus = [m.get("versus_reference") or {} for m in models]
    add(f"agreement with {ref}", [format_pct(v.get("agreement_fraction")) for v in versus],
        section=True)
    add("disagreeing images", [format_int(v.get("disagreements")) for v in versus])
    add(f"max |Δ output| vs {ref}", [_delta_cell(v, "max_abs_diff") for v in versus])
    add("mean |Δ output|", [_delta_cell(v, "mean_abs_diff") for v in versus])
    add("images/s", [f"{ips:,.0f}" if is_number(ips := _get(m, "timings", "images_per_second"))
                     else DASH for m in models], section=True)
    return rows


def _compare_model_lines(record: Mapping[str, Any]) -> list[str]:
    lines = []
    for m in record.get("models") or []:
        model = m.get("model") or {}
        version = str(model.get("runtime_version") or "")
        # "1.32.0" needs its runtime's name; "ai-edge-litert 2.3.0" already has it.
        runtime = f"{model.get('backend')} {version}".strip() if version[:1].isdigit() \
            or not version else version
        extra = f", input {model['input_dtype']}" if m.get("quantized") else ""
        spec = model.get("preprocessing") or {}
        if spec.get("description") and spec.get("description") != _RAW_FLOAT:
            extra += f"; input {spec['description']}"
        lines.append(f"{m.get('label')}: {model_name(m)} ({runtime}{extra})")
    return lines


def _compare_notes(record: Mapping[str, Any]) -> list[str]:
    notes = []
    for m in record.get("models") or []:
        v = m.get("versus_reference") or {}
        if v.get("note"):
            notes.append(f"{m.get('label')}: {v['note']}")
    if any(m.get("quantized") for m in record.get("models") or []):
        notes.append("int8 models: their |Δ| measures quantisation error (mean of the order of "
                     "the output grid step), not a conversion fault; int8 inputs are quantised "
                     "and int8 outputs dequantised with the scale and zero point stored in the "
                     "file (an int8 ONNX model from quantize keeps float input and output)")
    return notes


def _size(value: Any) -> str:
    if not isinstance(value, int):
        return DASH
    return f"{value / 1024:,.1f} KiB" if value >= 1024 else f"{value} B"


def _ratio(value: Any) -> str:
    return f"{value:.2f}×" if is_number(value) else DASH


def _ips(value: Any) -> str:
    return f"{value:,.0f}" if is_number(value) else DASH


def calibration_phrase(record: Mapping[str, Any]) -> str:
    """'1,000 training images of train-2000-png (sha256 1a2b3c4d…)', TEST marked loudly."""
    cal = record.get("calibration") or {}
    path = _get(cal, "source", "path")
    name = Path(str(path)).name if path else "an unknown source"
    if cal.get("test_images"):
        kind = "TEST images"
    elif cal.get("split") == "train":
        kind = "training images"
    else:
        kind = "images of unknown origin"
    digest = str(cal.get("sha256") or "")[:12]
    return (f"{format_int(cal.get('count'))} {kind} of {name}"
            + (f" (pixels sha256 {digest}…)" if digest else ""))


def test_images_warning(record: Mapping[str, Any]) -> str | None:
    """The warning every accuracy figure carries when calibration saw test images."""
    if _get(record, "calibration", "test_images"):
        return "calibrated on TEST images"
    return None


def int8_verdict_line(record: Mapping[str, Any]) -> str:
    """'int8 accuracy 87.21% vs fp32 87.19%, agreement 98.35%, 2.0× faster (recipe)'."""
    record = jsonable(record)
    ev = record.get("evaluation") or {}
    speed = record.get("speed") or {}
    parts = []
    if ev:
        parts.append(f"int8 accuracy {format_pct(_get(ev, 'int8', 'accuracy'))} vs fp32 "
                     f"{format_pct(_get(ev, 'fp32', 'accuracy'))}")
        parts.append(f"agreement {format_pct(ev.get('agreement_fraction'))}")
    speedup = speed.get("speedup")
    if is_number(speedup):
        parts.append(f"{speedup:.1f}× faster" if speedup >= 1.05 else
                     f"{speedup:.2f}× the speed of fp32" + (" (slower)" if speedup < 0.95
                                                             else ""))
    recipe = _get(record, "recipe", "label")
    line = ", ".join(parts) + (f" ({recipe})" if recipe else "")
    warning = test_images_warning(record)
    return line + (f" — {warning}" if warning else "") + "."


def _candidate_rows(record: Mapping[str, Any], *, sizes: bool = False) -> list[list[str]]:
    rows = []
    candidates = sorted(record.get("candidates") or [],
                        key=lambda c: (not c.get("chosen"), c.get("error") is not None,
                                       -(c.get("images_per_second") or 0)))
    for c in candidates:
        label = str(_get(c, "recipe", "label") or DASH)
        mad = c.get("holdout_mean_abs_diff")
        size = [f"{mad:.2e}" if is_number(mad) else DASH, _size(c.get("size_bytes"))] \
            if sizes else []
        if c.get("error"):
            rows.append([label, DASH, DASH, DASH, *([DASH, DASH] if sizes else []),
                         f"failed: {str(c['error'])[:50]}"])
            continue
        if c.get("chosen"):
            mark = "chosen"
        elif c.get("pruned"):
            mark = "slow"
        else:
            mark = "eligible" if c.get("eligible") else "too far"
        n = c.get("holdout_count")
        agreement = format_pct(c.get("holdout_agreement_fraction")) if n else DASH
        rows.append([label, agreement, _ips(c.get("images_per_second")),
                     _ratio(c.get("speedup")), *size, mark])
    return rows


CANDIDATE_LEGEND = ("agreement: top-1 equal to fp32's on the held-out images; eligible: within "
                    "the tolerance of the best; too far: outside it; slow: under half the "
                    "fastest candidate's speed after one timed pass, so not scored; chosen: the "
                    "fastest eligible candidate.")


def _candidate_header(record: Mapping[str, Any], *, sizes: bool = False) -> list[str]:
    counts = {c.get("holdout_count") for c in record.get("candidates") or []
              if c.get("holdout_count")}
    n = f" ({format_int(counts.pop())})" if len(counts) == 1 else ""
    return ["recipe", f"agreement{n}", "images/s", "× fp32",
            *(["mean |Δ|", "size"] if sizes else []), ""]


def _evaluation_rows(record: Mapping[str, Any]) -> list[list[str]]:
    ev = record.get("evaluation") or {}
    fp32, int8 = ev.get("fp32") or {}, ev.get("int8") or {}
    warning = test_images_warning(record)

    def acc(m: Mapping[str, Any]) -> str:
        return f"{format_pct(m.get('accuracy'))} ({format_int(m.get('correct'))})"

    rows = [["top-1 accuracy", acc(fp32), acc(int8) + (f" [{warning}]" if warning else "")],
            ["agreement with fp32", DASH,
             f"{format_pct(ev.get('agreement_fraction'))} ({format_int(ev.get('agreement'))})"],
            ["max / mean |Δ output|", DASH,
             f"{ev.get('max_abs_diff', 0):.3g} / {ev.get('mean_abs_diff', 0):.3g}"
             if is_number(ev.get("max_abs_diff")) else DASH],
            ["images/s (same run)", _ips(fp32.get("images_per_second")),
             _ips(int8.get("images_per_second"))],
            ["file size", _size(fp32.get("size_bytes")), _size(int8.get("size_bytes"))]]
    names = [c.get("name") for c in fp32.get("per_class") or []]
    for i, name in enumerate(names):
        a = (fp32.get("per_class") or [])[i]
        b = (int8.get("per_class") or [{}] * (i + 1))[i]
        rows.append([f"  {name}", format_pct(a.get("accuracy"), 1),
                     format_pct(b.get("accuracy"), 1)])
    return rows


def _layer_rows(record: Mapping[str, Any]) -> list[list[str]]:
    return [[str(e.get("node") or DASH), str(e.get("op_type") or DASH),
             f"{e['local_sqnr_db']:.1f}" if is_number(e.get("local_sqnr_db")) else DASH,
             f"{e['vs_float_sqnr_db']:.1f}" if is_number(e.get("vs_float_sqnr_db")) else DASH]
            for e in record.get("layer_errors") or []]


_LAYER_HEADER = ["node (for --exclude)", "op", "own SQNR dB", "SQNR vs fp32 dB"]


def _cpu_line(record: Mapping[str, Any]) -> str:
    cpu = record.get("cpu") or {}
    flags = ", ".join(cpu.get("flags") or []) or "none of the int8-relevant flags"
    return (f"{cpu.get('model_name') or 'unknown CPU'}, {format_int(cpu.get('cores'))} cores "
            f"available; flags: {flags} (from {cpu.get('source')})")


def _speed_line(record: Mapping[str, Any]) -> str:
    s = record.get("speed") or {}
    return (f"fp32 {_ips(s.get('fp32_images_per_second'))} vs int8 "
            f"{_ips(s.get('int8_images_per_second'))} images/s on {format_int(s.get('images'))} "
            f"{s.get('measured_on') or 'images'}, batch {s.get('batch_size')}, best of "
            f"{s.get('rounds')} interleaved passes")


def _header_lines(record: Mapping[str, Any]) -> list[str]:
    src, out = record.get("source") or {}, record.get("output") or {}
    sel = record.get("selection") or {}
    lines = [f"{out.get('path')} ({_size(out.get('size_bytes'))}) from {src.get('path')} "
             f"({_size(src.get('size_bytes'))})",
             f"Recipe: {_get(record, 'recipe', 'label')} — {sel.get('reason')}",
             f"Calibration: {calibration_phrase(record)}; "
             f"{_get(record, 'calibration', 'selection')}"]
    hold = record.get("holdout")
    if hold:
        lines.append(f"Held out: {format_int(hold.get('count'))} other images of the same source "
                     f"({'TEST images' if hold.get('test_images') else 'not test images'}), "
                     "to score and time each candidate")
    return lines


def _g(value: Any, digits: int = 3) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}" if value < 10 ** digits else f"{value:,.0f}"


def _threads_text(threads: Any) -> str:
    return "dflt threads" if threads is None else f"{threads}t"
