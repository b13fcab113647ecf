"""Markdown writer: a self-contained report per record (evaluation, run, compare, quantize)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from resnet8_onnx.records import (
    ComparisonRecord,
    Conversion,
    EvaluationRecord,
    QuantizationRecord,
    Structure,
)
from resnet8_onnx.report.sections import (
    CANDIDATE_LEGEND,
    LAYER_HEADER,
    candidate_header,
    candidate_rows,
    compare_model_lines,
    compare_notes,
    compare_rows,
    comparison_data,
    comparison_rows,
    cpu_line,
    delta_text,
    evaluation_rows,
    int8_verdict_line,
    layer_match_text,
    layer_rows,
    parameters_text,
    parity_lines,
    quantization_header_lines,
    speed_busy_warning,
    speed_line,
    verdict_lines,
)
from resnet8_onnx.report.text import (
    DASH,
    FULL_MATRIX_CLASSES,
    backend_label,
    confused_lines,
    confusion_png_names,
    data_warnings,
    describe_data,
    format_fixed,
    format_int,
    format_pct,
    is_number,
    macro_note,
    model_name,
    model_notes,
    output_note,
    preprocessing_line,
    shown_class_rows,
    speed_warning,
    throughput_text,
    unique_labels,
)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
              align: Sequence[str] | None = None) -> list[str]:
    """GitHub-flavoured Markdown table; ``align`` holds 'l' or 'r' per column."""
    align = align or ["l"] + ["r"] * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _provenance(record: EvaluationRecord) -> list[str]:
    model, data = record.model, record.data
    lines = []
    if model.path:
        lines.append(f"- Model: `{model.path}`"
                     + (f" (sha256 `{model.sha256}`)" if model.sha256 else ""))
    if model.backend:
        version = f" {model.runtime_version}" if model.runtime_version else ""
        provider = f" ({model.provider})" if model.provider else ""
        lines.append(f"- Runtime: {model.backend}{version}{provider}")
    if preprocessing_line(record):
        lines.append(f"- Preprocessing: {preprocessing_line(record)}")
    lines += [f"- Note: {note}" for note in model_notes(record)]
    source = data.source
    if source.path or source.kind:
        lines.append(f"- Data source: {source.kind or 'unknown'} `{source.path}`"
                     + (" (official files, checksums verified)" if source.official else ""))
    lines += [f"  - verified: {check}" for check in source.checks]
    lines += [f"- **Warning:** {warning}" for warning in data_warnings(data)]
    if record.environment:
        lines.append("- Environment: " + ", ".join(
            f"{k} {v}" for k, v in sorted(record.environment.items())))
    if record.tool:
        lines.append(f"- Report by {record.tool.get('name', 'resnet8-onnx')} "
                     f"{record.tool.get('version', '')}".rstrip())
    return lines


def _confusion_md(names: Sequence[str], matrix: Sequence[Sequence[int]]) -> list[str]:
    header = ["true \\ predicted", *names]
    rows = [[f"**{names[i]}**", *(f"**{v:,}**" if i == j else f"{v:,}"
                                  for j, v in enumerate(row))]
            for i, row in enumerate(matrix)]
    return markdown_table(header, rows)


def _image_link(alt: str, name: str) -> str:
    """A Markdown image of the file ``name`` beside the report (a relative link)."""
    from urllib.parse import quote

    return f"![{alt}]({quote(name)})"


def markdown_summary(record: EvaluationRecord, image: str | None = None) -> str:
    """A self-contained Markdown report: which images, key figures, per-class table, matrix.

    ``image``: the confusion-matrix PNG beside the report, linked under the matrix
    (default: ``confusion_<backend>.png``, the name ``write_reports`` gives it).
    """
    metrics = record.metrics
    kind = f" ({backend_label(record)} {record.model.quantization})" \
        if record.model.quantization else ""
    lines = [f"# {record.data.dataset or 'CIFAR-10'} evaluation: {model_name(record)}{kind}", "",
             f"**Images:** {describe_data(record.data)}", ""]
    key = [("Top-1 accuracy", f"{format_pct(metrics.accuracy)} "
            f"({format_int(metrics.correct)} / {format_int(metrics.total)})"),
           *((f"Top-{k} accuracy", format_pct(v)) for k, v in (metrics.top_k or {}).items()
             if k != "5"),
           ("Top-5 accuracy", format_pct(metrics.top5_accuracy)),
           ("Macro ROC AUC (one-vs-rest)", format_fixed(metrics.macro_auc)),
           ("Macro F1", format_fixed(metrics.macro_f1))]
    if throughput := throughput_text(record):
        key.append(("Throughput", throughput))
    lines += markdown_table(["metric", "value"], key, ["l", "r"])
    if speed_warning([record]):
        lines += ["", f"**Warning:** {speed_warning([record])}."]
    for note in (output_note(metrics), macro_note(metrics)):
        if note:
            lines += ["", f"Note: {note}."]
    if metrics.argmax_ties:
        lines += ["", f"Note: {metrics.argmax_ties:,} images had tied top scores; the "
                      "prediction is the lowest tied class index."]
    if metrics.per_class:
        rows, left_out = shown_class_rows(metrics)
        lines += ["", "## Per-class metrics", ""]
        lines += markdown_table(
            ["#", "class", "support", "correct", "accuracy", "precision", "recall", "F1", "AUC"],
            [[c.index, c.name, format_int(c.support), format_int(c.correct),
              format_pct(c.accuracy), format_fixed(c.precision), format_fixed(c.recall),
              format_fixed(c.f1), format_fixed(c.auc)] for c in rows],
            ["r", "l", "r", "r", "r", "r", "r", "r", "r"])
        lines += ["", "Accuracy per class is the recall. Precision of a class that is never "
                      "predicted is 0; accuracy, recall and AUC are undefined (—) for a class "
                      "without images." + (f" {left_out}." if left_out else "")]
    if len(metrics.confusion_matrix) > FULL_MATRIX_CLASSES:
        lines += ["", "## Most confused pairs", "",
                  f"The {len(metrics.confusion_matrix):,}-class matrix is too large to read "
                  "here (it is in the JSON); the largest off-diagonal cells, true → predicted:",
                  "", *(f"- {line}" for line in confused_lines(metrics))]
    elif metrics.confusion_matrix:
        lines += ["", "## Confusion matrix", "", "Rows: true class; columns: predicted class.",
                  ""]
        lines += _confusion_md(metrics.names, metrics.confusion_matrix)
        png = image or f"confusion_{record.model.backend}.png"
        lines += ["", _image_link(f"Confusion matrix of {model_name(record)}", png)]
    provenance = _provenance(record)
    if provenance:
        lines += ["", "## Provenance", "", *provenance]
    return "\n".join(lines) + "\n"


def comparison_markdown(comparison: ComparisonRecord) -> str:
    """The ``run`` report: verdict, which images, side-by-side per-class table, parity."""
    models = comparison.models
    labels = unique_labels(models)
    verdict = comparison.verdict
    lines = ["# Keras → ONNX conversion report", "",
             f"## Verdict: {'PASS' if verdict is not None and verdict.passed else 'FAIL'}", ""]
    lines += [f"- {line}" for line in verdict_lines(verdict)] if verdict else []
    data = comparison_data(comparison)
    lines += ["", f"**Images:** {describe_data(data)}", ""]
    lines += [f"- **Warning:** {w}" for w in data_warnings(data)]

    key_rows = []
    for label, record in zip(labels, models, strict=True):
        m = record.metrics
        key_rows.append([label, model_name(record),
                         f"{format_pct(m.accuracy)} ({format_int(m.correct)}/"
                         f"{format_int(m.total)})",
                         format_pct(m.top5_accuracy), format_fixed(m.macro_auc),
                         format_fixed(m.macro_f1), throughput_text(record) or DASH])
    lines += ["## Models", ""]
    lines += markdown_table(["runtime", "file", "top-1 accuracy", "top-5", "macro AUC", "macro F1",
                        "throughput"], key_rows, ["l", "l", "r", "r", "r", "r", "r"])
    if speed_warning(models, labels):
        lines += ["", f"**Warning:** {speed_warning(models, labels)}."]

    rows = comparison_rows(models)
    if rows:
        header = ["#", "class", "support"]
        for label in labels:
            header += [f"{label} correct", f"{label} accuracy", f"{label} AUC"]
        if len(models) == 2:
            header.append("Δ correct")
        body = []
        for row in rows:
            cells = [row["index"], row["name"], format_int(row["support"])]
            for c in row["models"]:
                cells += [format_int(c and c.correct), format_pct(c and c.accuracy),
                          format_fixed(c and c.auc)]
            if len(models) == 2:
                a, b = row["models"]
                cells.append(delta_text(a and a.correct, b and b.correct))
            body.append(cells)
        lines += ["", "## Per-class accuracy", ""]
        lines += markdown_table(header, body, ["r", "l"] + ["r"] * (len(header) - 2))

    if any(r.metrics.confusion_matrix for r in models):
        lines += ["", "## Confusion matrices", ""]
        lines += [_image_link(f"Confusion matrix of {label}: {model_name(record)}", png)
                  for label, record, png in zip(labels, models, confusion_png_names(models),
                                                strict=True)
                  if record.metrics.confusion_matrix]
    parity = comparison.parity
    if parity is not None:
        lines += ["", f"## Numerical parity: {'passed' if parity.passed else 'FAILED'}", ""]
        lines += [f"- {line}" for line in parity_lines(parity)]
    first = comparison.layerwise.first_diverging_layer if comparison.layerwise else None
    if first:
        lines += [f"- First diverging layer: {layer_match_text(first)}"]
    if comparison.conversion is not None or comparison.structure is not None:
        lines += ["", "## Conversion", "", *_conversion_lines(
            comparison.conversion or Conversion(), comparison.structure or Structure(),
            comparison.reference_parameters, comparison.reference_batch_normalization_layers)]
    for label, record in zip(labels, models, strict=True):
        provenance = _provenance(record)
        if provenance:
            lines += ["", f"## {label} provenance", "", *provenance]
    return "\n".join(lines) + "\n"


def _conversion_lines(conversion: Conversion, structure: Structure,
                      reference_parameters: int | None = None,
                      batch_normalization_layers: int | None = None) -> list[str]:
    lines = []
    source, target = conversion.source_path, conversion.output_path
    if source and target:
        lines.append(f"- `{Path(source).name}` → `{Path(target).name}`"
                     + (f" (ONNX sha256 `{conversion.onnx_sha256}`)"
                        if conversion.onnx_sha256 else ""))
    meta = conversion.metadata
    tools = [f"{name} {meta[key]}" for name, key in (("tf2onnx", "tf2onnx_version"),
                                                     ("TensorFlow", "tensorflow_version"),
                                                     ("Keras", "keras_version"))
             if meta.get(key)]
    opset = conversion.opset
    if opset is not None or tools:
        lines.append("- " + ", ".join(([f"opset {opset}"] if opset is not None else []) + tools)
                     + (f"; {conversion.seconds:.2f} s" if is_number(conversion.seconds)
                        else ""))
    if conversion.output_kind:
        lines.append(f"- model output: {conversion.output_kind}")
    for value, label in ((structure.checker, "ONNX checker"),
                         (structure.shape_inference, "shape inference")):
        if value:
            lines.append(f"- {label}: {value}")
    sizes = [f"{value:,} {label}" for value, label in (
        (structure.nodes, "nodes"), (structure.macs_per_image, "MACs per image"))
        if value is not None]
    parameters = parameters_text(structure, reference_parameters, batch_normalization_layers)
    if parameters:
        sizes.insert(min(1, len(sizes)), parameters)
    if sizes:
        lines.append("- " + ", ".join(sizes))
    if structure.op_inventory:
        lines.append("- operators: " + ", ".join(
            f"{op} ×{n}" for op, n in structure.op_inventory.items()))
    return lines


def compare_markdown(record: ComparisonRecord) -> str:
    """The comparison as a Markdown report: which images, the models, the table, notes."""
    models = record.models
    lines = ["# Model comparison", "",
             f"**Images:** {describe_data(record.data)}", "",
             "The first model is the reference for agreement and output differences.", ""]
    lines += [f"- {line}" for line in compare_model_lines(record)]
    lines += ["", *markdown_table(["", *(str(m.label) for m in models)],
                             [[label.strip() if not label.startswith("  ") else
                               f"&nbsp;&nbsp;{label.strip()}", *cells]
                              for label, cells, _ in compare_rows(record)])]
    notes = compare_notes(record)
    if notes:
        lines += ["", *(f"Note: {n}." for n in notes)]
    warning = speed_warning(models, [str(m.label) for m in models])
    if warning:
        lines += ["", f"**Warning:** {warning}."]
    lines += ["", "## Files", ""]
    lines += markdown_table(["model", "file", "sha256", "runtime"],
                       [[m.label, f"`{m.model.path}`", f"`{m.model.sha256}`",
                         f"{m.model.backend} {m.model.runtime_version}"]
                        for m in models], ["l", "l", "l", "l"])
    return "\n".join(lines) + "\n"


def quantization_markdown(record: QuantizationRecord) -> str:
    """The record as a Markdown report."""
    lines = ["# int8 quantisation report", ""]
    lines += [f"- {line}" for line in quantization_header_lines(record)]
    lines += ["", "## Candidates", "",
              "Scored on held-out images (not the test set) for agreement with fp32; timed "
              "against fp32 in the same run on this machine.", ""]
    lines += markdown_table(candidate_header(record, sizes=True),
                            candidate_rows(record, sizes=True),
                            ["l", "r", "r", "r", "r", "r", "l"])
    lines += ["", CANDIDATE_LEGEND]
    ev = record.evaluation
    if ev is not None:
        lines += ["", "## Test set", "", f"**Images:** {describe_data(ev.data)}", "",
                  f"**{int8_verdict_line(record)}**", ""]
        lines += markdown_table(["", "fp32", "int8"],
                                [[r[0].strip() if not r[0].startswith("  ")
                                  else f"&nbsp;&nbsp;{r[0].strip()}", *r[1:]]
                                 for r in evaluation_rows(record)])
    lines += ["", "## Speed", "", f"- {speed_line(record)}", f"- {record.speed_verdict}",
              f"- CPU: {cpu_line(record)}"]
    busy = speed_busy_warning(record)
    if busy:
        lines.append(f"- **warning:** {busy}")
    layers = layer_rows(record)
    if layers or record.layer_errors_note:
        lines += ["", "## Largest quantisation error", "", record.layer_errors_note or "", ""]
        if layers:
            lines += markdown_table(LAYER_HEADER, layers, ["l", "l", "r", "r"])
    if record.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in record.notes)]
    if record.versions:
        lines += ["", "## Versions", "",
                  "- " + ", ".join(f"{k} {v}" for k, v in sorted(record.versions.items()))]
    return "\n".join(lines) + "\n"
