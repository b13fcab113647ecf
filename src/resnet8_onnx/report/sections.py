"""Lines and rows built from a record, shared by the terminal and the Markdown writers.

One function per piece of content (the verdict's sentences, parity lines, the comparison
table's rows, the quantisation candidates …), so both formats say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from resnet8_onnx.machine import busy_warning
from resnet8_onnx.preprocess import SPEC_FIELDS, sources_line
from resnet8_onnx.records import (
    ComparisonRecord,
    DataInfo,
    EvaluationRecord,
    LayerMatch,
    Parity,
    Provenance,
    QuantizationRecord,
    Structure,
    Verdict,
    Versus,
)
from resnet8_onnx.report.text import (
    DASH,
    format_fixed,
    format_int,
    format_pct,
    is_number,
    model_name,
)


def comparison_data(comparison: ComparisonRecord) -> DataInfo:
    """The comparison's images: its own ``data``, else its first model's."""
    if comparison.data.count is not None or not comparison.models:
        return comparison.data
    return comparison.models[0].data


def verdict_lines(verdict: Verdict) -> list[str]:
    return [str(s) for s in verdict.summary]


def parity_lines(parity: Parity) -> list[str]:
    lines = []
    if parity.argmax_agreement is not None and parity.samples is not None:
        lines.append(f"top-1 agreement {parity.argmax_agreement:,}/{parity.samples:,} images")
    if is_number(parity.max_abs_diff):
        tol = ""
        if is_number(parity.atol) and is_number(parity.rtol):
            tol = f" (tolerance atol {parity.atol:g}, rtol {parity.rtol:g})"
        lines.append(f"max |Δ output| {parity.max_abs_diff:.3g}{tol}")
    if is_number(parity.min_cosine_similarity):
        lines.append(f"min cosine similarity {parity.min_cosine_similarity:.9f}")
    if parity.elements_over_tolerance is not None:
        lines.append(f"{parity.elements_over_tolerance:,} output elements over tolerance")
    dynamic = parity.dynamic_batch
    if dynamic is not None and dynamic.passed is not None:
        sizes = ", ".join(dynamic.batch_sizes)
        lines.append(f"dynamic batch ({sizes}): {'ok' if dynamic.passed else 'FAILED'}")
    if parity.first_disagreements and parity.argmax_agreement != parity.samples:
        lines.append("first disagreeing images: "
                     + ", ".join(str(i) for i in parity.first_disagreements))
    lines += [f"interface problem: {p}" for p in parity.interface_problems or []]
    return lines


def comparison_rows(models: Sequence[EvaluationRecord]) -> list[dict[str, Any]]:
    """Per-class rows aligned across models by class index (a missing class: ``None``)."""
    n = max((len(m.metrics.per_class) for m in models), default=0)
    rows = []
    for i in range(n):
        cells = [m.metrics.row(i) for m in models]
        first = next(c for c in cells if c is not None)
        rows.append({"index": first.index, "name": first.name, "support": first.support,
                     "models": cells})
    return rows


def delta_text(a: Any, b: Any) -> str:
    if not (isinstance(a, int) and isinstance(b, int)):
        return DASH
    return "0" if a == b else f"{b - a:+,}"


def parameters_text(structure: Structure, reference_parameters: int | None = None,
                    batch_normalization_layers: int | None = None) -> str | None:
    """'78,186 parameters' and, beside the Keras count, what the graph does with its
    BatchNormalization layers — measured from the graph, never assumed.

    tf2onnx writes each BatchNormalization after a Conv as a Mul and an Add by per-channel
    constants: two stored vectors where Keras counts four (γ, β, moving mean and variance),
    so the ONNX count is lower by two per channel. Parameters are stored weights only: a
    Reshape's shape and quantisation scales are not.
    """
    count = structure.parameters
    if count is None:
        return None
    dtypes = structure.parameter_dtypes or {}
    stored = (f" ({', '.join(f'{n:,} {d}' for d, n in dtypes.items())})"
              if dtypes and set(dtypes) != {"float32"} else "")
    text = f"{count:,} parameters{stored}"
    if reference_parameters is None or reference_parameters == count:
        return text
    return f"{text} (the Keras model has {reference_parameters:,}" \
           f"{_batchnorm_reason(structure, reference_parameters, batch_normalization_layers)})"


def _batchnorm_reason(structure: Structure, reference_parameters: int,
                      layers: int | None) -> str:
    """What the graph shows of the Keras model's BatchNormalization layers ('' when none)."""
    if not layers:
        return ""
    s = "s" if layers != 1 else ""
    mul_add, channels = structure.batchnorm_mul_add or 0, structure.batchnorm_channels or 0
    if mul_add == layers:
        why = (", two per-channel vectors each where Keras stores four"
               if reference_parameters - (structure.parameters or 0) == 2 * channels else "")
        return f": its {layers} BatchNormalization layer{s} appear as Mul+Add after their " \
               f"Conv{why}"
    # ONNX BatchNormalization, torch's batch_norm ops, nn.BatchNorm2d modules.
    found = {op: n for op, n in (structure.op_inventory or {}).items()
             if "batchnorm" in op.lower().replace("_", "")}
    if sum(found.values()) == layers:
        return f": its {layers} BatchNormalization layer{s} are {', '.join(found)} nodes"
    if not found and not mul_add and structure.op_inventory is not None:
        none = ("no batch-norm operation" if structure.kind else
                "no BatchNormalization node, no Mul+Add after a Conv")
        return f": its {layers} BatchNormalization layer{s} have no node of their own ({none})"
    return ""


def structure_kind(structure: Structure) -> str:
    """'ONNX', 'ONNX int8', 'PyTorch': what the candidate is, from its structure report."""
    kind = structure.kind or "ONNX"
    quantized = structure.quantization or {}
    return f"{kind} {quantized['type']}" if quantized.get("type") else kind


def layer_match_text(entry: LayerMatch) -> str:
    """"conv2d (Conv2D) against 'x' (a Conv output), max |Δ| 1.5": which ONNX tensor a
    Keras layer was compared with, and what computed it."""
    tensor, op = entry.extra.get("onnx_tensor"), entry.extra.get("onnx_op")
    what = ""
    if tensor:
        how = (f", a {op} output" + (" read through quantisation"
                                     if entry.extra.get("through_quantisation") else "")
               if op else "")
        what = f" against {tensor!r}{how}"
    return f"{entry.layer} ({entry.kind}){what}, max |Δ| {format_fixed(entry.max_abs_diff, 6)}"


def provenance_line(provenance: Provenance, onnx_path: str | None = None,
                    reference_path: str | None = None) -> str | None:
    """Whether the ONNX file was converted from the reference, as a sentence (None: unknown).

    Said before any parity figure: when the files are unrelated, "first diverging layer"
    answers a question nobody asked.
    """
    state = provenance.converted_from_reference
    onnx = Path(onnx_path).name if onnx_path else "the ONNX model"
    reference = Path(reference_path).name if reference_path else "the reference"
    claimed, actual = provenance.onnx_source_sha256, provenance.reference_sha256
    if state is False:
        source = provenance.onnx_source_file or "another file"
        return (f"{onnx} was NOT converted from {reference}: its metadata names {source} "
                f"(sha256 {str(claimed)[:12]}…) as its source, {reference} has sha256 "
                f"{str(actual)[:12]}…; unless {source} was itself converted from {reference}, "
                "the comparison below is between two different models")
    if state is True:
        return f"{onnx} was converted from {reference} (sha256 {str(actual)[:12]}… in its metadata)"
    if provenance.note:
        return f"not checked: {provenance.note}"
    return None


_RAW_FLOAT = "NHWC RGB float32, raw 0-255 pixels, no normalisation"  # not worth a mention


def _sci(value: Any) -> str:
    if not is_number(value):
        return DASH
    return "0" if value == 0 else f"{value:.2e}"


def _delta_cell(versus: Versus | None, key: str) -> str:
    if versus is None:
        return DASH
    if not versus.comparable:
        return "n/a"
    return _sci(getattr(versus, key))


def compare_class_names(models: Sequence[EvaluationRecord]) -> list[str]:
    return next((m.metrics.names for m in models if m.metrics.class_names), [])


def class_accuracy(record: EvaluationRecord, index: int) -> float | None:
    row = record.metrics.row(index)
    return None if row is None else row.accuracy


def compare_rows(record: ComparisonRecord) -> list[tuple[str, list[str], bool]]:
    """(row label, one cell per model, starts a new section) for the one comparison table."""
    models = record.models
    ref = models[0].label if models else "#1"
    rows: list[tuple[str, list[str], bool]] = []

    def add(label: str, cells: list[str], section: bool = False) -> None:
        rows.append((label, cells, section))

    add("top-1 accuracy", [format_pct(m.metrics.accuracy) for m in models])
    totals = {m.metrics.total for m in models}
    label = f"correct of {format_int(totals.pop())}" if len(totals) == 1 else "correct"
    add(label, [format_int(m.metrics.correct) for m in models])
    for i, name in enumerate(compare_class_names(models)):
        add(f"  {name}", [format_pct(class_accuracy(m, i), 1) for m in models], section=i == 0)
    versus = [m.versus_reference for m in models]
    add(f"agreement with {ref}", [format_pct(v and v.agreement_fraction) for v in versus],
        section=True)
    add("disagreeing images", [format_int(v and v.disagreements) for v in versus])
    add(f"max |Δ output| vs {ref}", [_delta_cell(v, "max_abs_diff") for v in versus])
    add("mean |Δ output|", [_delta_cell(v, "mean_abs_diff") for v in versus])
    add("images/s", [_ips(m.timings.images_per_second) for m in models], section=True)
    return rows


def compare_model_lines(record: ComparisonRecord) -> list[str]:
    lines = []
    for m in record.models:
        model = m.model
        version = model.runtime_version
        # "1.32.0" needs its runtime's name; "ai-edge-litert 2.3.0" already has it.
        runtime = f"{model.backend} {version}".strip() if version[:1].isdigit() \
            or not version else version
        extra = f", input {model.input_dtype}" if m.quantized else ""
        if model.inference_precision:  # OpenVINO: the precision in effect
            extra += f", inference precision {model.inference_precision}"
        spec = model.preprocessing
        if spec is not None and spec.description and spec.description != _RAW_FLOAT:
            extra += f"; input {spec.description}"
        lines.append(f"{m.label}: {model_name(m)} ({runtime}{extra})")
    return lines


def compare_notes(record: ComparisonRecord) -> list[str]:
    notes = [f"{m.label}: {m.versus_reference.note}" for m in record.models
             if m.versus_reference is not None and m.versus_reference.note]
    if any(m.quantized for m in record.models):
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


def calibration_phrase(record: QuantizationRecord) -> str:
    """'1,000 training images of train-2000-png (sha256 1a2b3c4d…)', TEST marked loudly."""
    cal = record.calibration
    path = cal.source.path if cal.source is not None else ""
    name = Path(path).name if path else "an unknown source"
    if cal.test_images:
        kind = "TEST images"
    elif cal.split == "train":
        kind = "training images"
    else:
        kind = "images of unknown origin"
    digest = cal.sha256[:12]
    return (f"{format_int(cal.count)} {kind} of {name}"
            + (f" (pixels sha256 {digest}…)" if digest else ""))


def test_images_warning(record: QuantizationRecord) -> str | None:
    """The warning every accuracy figure carries when calibration saw test images."""
    return "calibrated on TEST images" if record.calibration.test_images else None


def int8_verdict_line(record: QuantizationRecord,
                      speed: tuple[float, str] | None = None) -> str:
    """'int8 accuracy 87.21% vs fp32 87.19%, agreement 98.35%, 2.0× faster (recipe)'.

    ``speed``: (speed-up, the measurement it comes from) to state instead of the quantiser's
    own timing — ``run`` passes its table's evaluation figures, so one speed-up is printed.
    """
    ev = record.evaluation
    parts = []
    if ev is not None:
        parts.append(f"int8 accuracy {format_pct(ev.int8.accuracy)} vs fp32 "
                     f"{format_pct(ev.fp32.accuracy)}")
        parts.append(f"agreement {format_pct(ev.agreement_fraction)}")
    speedup, measured = speed if speed is not None else (record.speed.speedup, "")
    if is_number(speedup):
        parts.append((f"{speedup:.1f}× faster" if speedup >= 1.05 else
                      f"{speedup:.2f}× the speed of fp32" + (" (slower)" if speedup < 0.95
                                                              else ""))
                     + (f" ({measured})" if measured else ""))
    recipe = record.recipe.label
    line = ", ".join(parts) + (f" ({recipe})" if recipe else "")
    warning = test_images_warning(record)
    return line + (f" — {warning}" if warning else "") + "."


def evaluation_speedup(fp32: EvaluationRecord, int8: EvaluationRecord) -> tuple[float, str] | None:
    """(int8 images/s over fp32's, what was measured) from the two models' evaluation
    passes — the images/s a comparison table prints — or None when either is missing."""
    a, b = fp32.timings.images_per_second, int8.timings.images_per_second
    if not (is_number(a) and is_number(b)) or a <= 0:
        return None
    settings = int8.settings
    threads = settings.threads if settings is not None else None
    batch = int8.timings.batch_size
    how = ", ".join(x for x in (
        f"{format_int(int8.metrics.total)} images each" if int8.metrics.total else "",
        f"batch {batch}" if batch else "",
        f"{threads} thread{'s' if threads != 1 else ''}" if isinstance(threads, int)
        else "ONNX Runtime's default threads") if x)
    return b / a, (f"int8 {_ips(b)} vs fp32 {_ips(a)} images/s: the table's evaluation "
                   f"passes, {how}, time inside ONNX Runtime")


def candidate_rows(record: QuantizationRecord, *, sizes: bool = False) -> list[list[str]]:
    rows = []
    candidates = sorted(record.candidates,
                        key=lambda c: (not c.chosen, c.error is not None,
                                       -(c.images_per_second or 0)))
    for c in candidates:
        label = c.recipe.label if c.recipe is not None else DASH
        mad = c.holdout_mean_abs_diff
        size = [f"{mad:.2e}" if is_number(mad) else DASH, _size(c.size_bytes)] if sizes else []
        if c.error:
            rows.append([label, DASH, DASH, DASH, *([DASH, DASH] if sizes else []),
                         f"failed: {c.error[:50]}"])
            continue
        if c.chosen:
            mark = "chosen"
        elif c.pruned:
            mark = "slow"
        else:
            mark = "eligible" if c.eligible else "too far"
        agreement = format_pct(c.agreement_fraction) if c.holdout_count else DASH
        rows.append([label, agreement, _ips(c.images_per_second), _ratio(c.speedup), *size,
                     mark])
    return rows


CANDIDATE_LEGEND = ("agreement: top-1 equal to fp32's on the held-out images; eligible: within "
                    "the tolerance of the best and at least --min-agreement; too far: outside "
                    "it; slow: under half the fastest candidate's speed by more than the "
                    "noise of two probe passes (none on a busy machine), so not scored; "
                    "chosen: the fastest eligible candidate, speeds within the measured timing "
                    "noise counting as equal (then standard ONNX ops, "
                    "agreement, mean |Δ| decide).")


def candidate_header(record: QuantizationRecord, *, sizes: bool = False) -> list[str]:
    counts = {c.holdout_count for c in record.candidates if c.holdout_count}
    n = f" ({format_int(counts.pop())})" if len(counts) == 1 else ""
    return ["recipe", f"agreement{n}", "images/s", "× fp32",
            *(["mean |Δ|", "size"] if sizes else []), ""]


def evaluation_rows(record: QuantizationRecord) -> list[list[str]]:
    ev = record.evaluation
    if ev is None:
        return []
    fp32, int8 = ev.fp32, ev.int8
    warning = test_images_warning(record)

    def acc(m: Any) -> str:
        return f"{format_pct(m.accuracy)} ({format_int(m.correct)})"

    rows = [["top-1 accuracy", acc(fp32), acc(int8) + (f" [{warning}]" if warning else "")],
            ["agreement with fp32", DASH,
             f"{format_pct(ev.agreement_fraction)} ({format_int(ev.agreement)})"],
            ["max / mean |Δ output|", DASH,
             f"{ev.max_abs_diff:.3g} / {ev.mean_abs_diff or 0:.3g}"
             if is_number(ev.max_abs_diff) else DASH],
            ["images/s (same run)", _ips(fp32.images_per_second), _ips(int8.images_per_second)],
            ["file size", _size(fp32.size_bytes), _size(int8.size_bytes)]]
    int8_rows = int8.per_class or []
    for i, a in enumerate(fp32.per_class or []):
        b = int8_rows[i] if i < len(int8_rows) else None
        rows.append([f"  {a.name}", format_pct(a.accuracy, 1),
                     format_pct(None if b is None else b.accuracy, 1)])
    return rows


def layer_rows(record: QuantizationRecord) -> list[list[str]]:
    return [[e.node or DASH, e.op_type or DASH,
             f"{e.local_sqnr_db:.1f}" if is_number(e.local_sqnr_db) else DASH,
             f"{e.vs_float_sqnr_db:.1f}" if is_number(e.vs_float_sqnr_db) else DASH]
            for e in record.layer_errors or ()]


LAYER_HEADER = ["node (for --exclude)", "op", "own SQNR dB", "SQNR vs fp32 dB"]


def cpu_line(record: QuantizationRecord) -> str:
    cpu = record.cpu
    if cpu is None:
        return "unknown CPU"
    flags = ", ".join(cpu.flags) or "none of the int8-relevant flags"
    return (f"{cpu.model_name or 'unknown CPU'}, {format_int(cpu.cores)} cores "
            f"available; flags: {flags} (from {cpu.source})")


def speed_line(record: QuantizationRecord) -> str:
    s = record.speed
    return (f"fp32 {_ips(s.fp32_images_per_second)} vs int8 "
            f"{_ips(s.int8_images_per_second)} images/s on {format_int(s.images)} "
            f"{s.measured_on or 'images'}, batch {s.batch_size}, best of "
            f"{s.rounds} interleaved passes")


def speed_busy_warning(record: QuantizationRecord) -> str | None:
    """The busy-machine line for quantize's timings (its speed line and the candidates'
    images/s), as evaluate/compare/benchmark give it; None when idle or unknown."""
    return busy_warning(record.speed.cpu_busy, record.cpu.cores if record.cpu else None,
                        "while quantize timed fp32 and int8", "images/s and speed-ups")


def quantization_header_lines(record: QuantizationRecord,
                  shown: Callable[[str], str] = str) -> list[str]:
    """``shown``: how a path is written (the terminal's shorter form; Markdown keeps it)."""
    src, out, sel = record.source, record.output, record.selection
    lines = [f"{shown(out.path)} ({_size(out.size_bytes)}) from {shown(src.path)} "
             f"({_size(src.size_bytes)})",
             f"Recipe: {record.recipe.label} — {sel.reason}",
             f"Calibration: {calibration_phrase(record)}; {record.calibration.selection}"]
    hold = record.holdout
    if hold is not None and hold.count:
        lines.append(f"Held out: {format_int(hold.count)} other "
                     f"image{'' if hold.count == 1 else 's'} of the same source "
                     f"({'TEST images' if hold.test_images else 'not test images'}), to "
                     f"{hold.purpose or 'score and time each candidate'}")
    spec = record.preprocessing
    if spec:
        given = spec.get("sources") or {}
        ordered = {k: given[k] for k in (*SPEC_FIELDS, "dtype") if k in given}  # JSON sorts
        lines.append(f"Preprocessing: {spec.get('description', DASH)} "
                     f"({sources_line(ordered)})")
    if record.standard_ops is not None:
        lines.append("Operators: " + ("standard ONNX ops only" if record.standard_ops else
                                      "uses ONNX Runtime contrib ops (com.microsoft), which "
                                      "other runtimes may not load"))
    return lines


def format_g(value: Any, digits: int = 3) -> str:
    if not is_number(value):
        return DASH
    return f"{value:.{digits}g}" if value < 10 ** digits else f"{value:,.0f}"


def threads_text(threads: int | None) -> str:
    return "dflt threads" if threads is None else f"{threads}t"
