"""Markdown writer: a self-contained report per record (evaluation, run, compare, quantize)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .jsonio import _plain_input, jsonable
from .sections import (
    _LAYER_HEADER,
    CANDIDATE_LEGEND,
    _candidate_header,
    _candidate_rows,
    _compare_model_lines,
    _compare_notes,
    _compare_rows,
    _comparison_data,
    _comparison_rows,
    _cpu_line,
    _delta,
    _evaluation_rows,
    _header_lines,
    _layer_rows,
    _parity_lines,
    _speed_line,
    _verdict_lines,
    int8_verdict_line,
    parameters_text,
)
from .text import (
    DASH,
    _class_names,
    _data_warnings,
    _fixed,
    _get,
    _macro_note,
    _model_notes,
    _output_note,
    _per_class,
    _throughput,
    _unique_labels,
    describe_data,
    format_int,
    format_pct,
    is_number,
    model_name,
    preprocessing_line,
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


def _provenance(record: Mapping[str, Any]) -> list[str]:
    model = _get(record, "model", default={})
    data = _get(record, "data", default={})
    lines = []
    if model.get("path"):
        lines.append(f"- Model: `{model['path']}`"
                     + (f" (sha256 `{model['sha256']}`)" if model.get("sha256") else ""))
    if model.get("backend"):
        version = f" {model['runtime_version']}" if model.get("runtime_version") else ""
        provider = f" ({model['provider']})" if model.get("provider") else ""
        lines.append(f"- Runtime: {model['backend']}{version}{provider}")
    if preprocessing_line(record):
        lines.append(f"- Preprocessing: {preprocessing_line(record)}")
    lines += [f"- Note: {note}" for note in _model_notes(record)]
    source = _get(data, "source", default={})
    if source.get("path") or source.get("kind"):
        lines.append(f"- Data source: {source.get('kind', 'unknown')} `{source.get('path', '')}`"
                     + (" (official files, checksums verified)" if source.get("official") else ""))
    for check in source.get("checks", []) or []:
        lines.append(f"  - verified: {check}")
    for warning in _data_warnings(data):
        lines.append(f"- **Warning:** {warning}")
    env = _get(record, "environment", default={})
    if env:
        lines.append("- Environment: " + ", ".join(f"{k} {v}" for k, v in sorted(env.items())))
    tool = _get(record, "tool", default={})
    if tool:
        lines.append(f"- Report by {tool.get('name', 'resnet8-onnx')} {tool.get('version', '')}"
                     .rstrip())
    return lines


def _confusion_md(names: Sequence[str], matrix: Sequence[Sequence[int]]) -> list[str]:
    header = ["true \\ predicted", *names]
    rows = [[f"**{names[i]}**", *(f"**{v:,}**" if i == j else f"{v:,}"
                                  for j, v in enumerate(row))]
            for i, row in enumerate(matrix)]
    return markdown_table(header, rows)


@_plain_input
def markdown_summary(record: Mapping[str, Any]) -> str:
    """A self-contained Markdown report: which images, key figures, per-class table, matrix."""
    metrics = _get(record, "metrics", default={})
    data = _get(record, "data", default={})
    lines = [f"# CIFAR-10 evaluation: {model_name(record)}", "",
             f"**Images:** {describe_data(data)}", ""]
    key = [("Top-1 accuracy", f"{format_pct(metrics.get('accuracy'))} "
            f"({format_int(metrics.get('correct'))} / {format_int(metrics.get('total'))})")]
    if "top5_accuracy" in metrics:
        key.append(("Top-5 accuracy", format_pct(metrics.get("top5_accuracy"))))
    key += [("Macro ROC AUC (one-vs-rest)", _fixed(metrics.get("macro_auc"))),
            ("Macro F1", _fixed(metrics.get("macro_f1")))]
    if _throughput(record):
        key.append(("Throughput", _throughput(record)))
    lines += markdown_table(["metric", "value"], key, ["l", "r"])
    for note in (_output_note(metrics), _macro_note(metrics)):
        if note:
            lines += ["", f"Note: {note}."]
    if metrics.get("argmax_ties"):
        lines += ["", f"Note: {metrics['argmax_ties']:,} images had tied top scores; the "
                      "prediction is the lowest tied class index."]
    per_class = _per_class(record)
    if per_class:
        lines += ["", "## Per-class metrics", ""]
        lines += markdown_table(
            ["#", "class", "support", "correct", "accuracy", "precision", "recall", "F1", "AUC"],
            [[c.get("index", i), c.get("name", i), format_int(c.get("support")),
              format_int(c.get("correct")), format_pct(c.get("accuracy")),
              _fixed(c.get("precision")),
              _fixed(c.get("recall")), _fixed(c.get("f1")), _fixed(c.get("auc"))]
             for i, c in enumerate(per_class)],
            ["r", "l", "r", "r", "r", "r", "r", "r", "r"])
        lines += ["", "Accuracy per class is the recall. Precision of a class that is never "
                      "predicted is 0; accuracy, recall and AUC are undefined (—) for a class "
                      "without images."]
    matrix = metrics.get("confusion_matrix")
    if matrix:
        lines += ["", "## Confusion matrix", "", "Rows: true class; columns: predicted class.",
                  ""]
        lines += _confusion_md(_class_names(record), matrix)
    provenance = _provenance(record)
    if provenance:
        lines += ["", "## Provenance", "", *provenance]
    return "\n".join(lines) + "\n"


@_plain_input
def comparison_markdown(comparison: Mapping[str, Any]) -> str:
    """The ``run`` report: verdict, which images, side-by-side per-class table, parity."""
    models = list(comparison.get("models") or [])
    labels = _unique_labels(models)
    verdict = comparison.get("verdict") or {}
    passed = verdict.get("passed")
    lines = ["# Keras → ONNX conversion report", "",
             f"## Verdict: {'PASS' if passed else 'FAIL'}", ""]
    lines += [f"- {line}" for line in _verdict_lines(verdict)]
    lines += ["", f"**Images:** {describe_data(_comparison_data(comparison))}", ""]
    lines += [f"- **Warning:** {w}" for w in _data_warnings(_comparison_data(comparison))]

    key_rows = []
    for label, record in zip(labels, models, strict=True):
        m = _get(record, "metrics", default={})
        key_rows.append([label, model_name(record),
                         f"{format_pct(m.get('accuracy'))} ({format_int(m.get('correct'))}/"
                         f"{format_int(m.get('total'))})",
                         format_pct(m.get("top5_accuracy")), _fixed(m.get("macro_auc")),
                         _fixed(m.get("macro_f1")), _throughput(record) or DASH])
    lines += ["## Models", ""]
    lines += markdown_table(["runtime", "file", "top-1 accuracy", "top-5", "macro AUC", "macro F1",
                        "throughput"], key_rows, ["l", "l", "r", "r", "r", "r", "r"])

    rows = _comparison_rows(models)
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
                cells += [format_int(c.get("correct")), format_pct(c.get("accuracy")),
                          _fixed(c.get("auc"))]
            if len(models) == 2:
                cells.append(_delta(row["models"][0].get("correct"),
                                    row["models"][1].get("correct")))
            body.append(cells)
        lines += ["", "## Per-class accuracy", ""]
        lines += markdown_table(header, body, ["r", "l"] + ["r"] * (len(header) - 2))

    parity = comparison.get("parity") or {}
    if parity:
        lines += ["", f"## Numerical parity: {'passed' if parity.get('passed') else 'FAILED'}",
                  ""]
        lines += [f"- {line}" for line in _parity_lines(parity)]
    first = _get(comparison, "layerwise", "first_diverging_layer")
    if first:
        lines += [f"- First diverging layer: `{first.get('layer')}` ({first.get('class')}), "
                  f"max |Δ| {_fixed(first.get('max_abs_diff'), 6)}"]
    conversion = comparison.get("conversion") or {}
    structure = comparison.get("structure") or {}
    if conversion or structure:
        lines += ["", "## Conversion", "", *_conversion_lines(
            conversion, structure, comparison.get("reference_parameters"),
            comparison.get("reference_batch_normalization_layers"))]
    for label, record in zip(labels, models, strict=True):
        provenance = _provenance(record)
        if provenance:
            lines += ["", f"## {label} provenance", "", *provenance]
    return "\n".join(lines) + "\n"


def _conversion_lines(conversion: Mapping[str, Any], structure: Mapping[str, Any],
                      reference_parameters: Any = None,
                      batch_normalization_layers: Any = None) -> list[str]:
    lines = []
    source, target = conversion.get("source_path"), conversion.get("output_path")
    if source and target:
        lines.append(f"- `{Path(str(source)).name}` → `{Path(str(target)).name}`"
                     + (f" (ONNX sha256 `{conversion['onnx_sha256']}`)"
                        if conversion.get("onnx_sha256") else ""))
    meta = conversion.get("metadata") or {}
    tools = [f"{name} {meta[key]}" for name, key in (("tf2onnx", "tf2onnx_version"),
                                                     ("TensorFlow", "tensorflow_version"),
                                                     ("Keras", "keras_version"))
             if meta.get(key)]
    opset = conversion.get("opset")
    if opset is not None or tools:
        lines.append("- " + ", ".join(([f"opset {opset}"] if opset is not None else []) + tools)
                     + (f"; {conversion['seconds']:.2f} s" if is_number(conversion.get("seconds"))
                        else ""))
    if conversion.get("output_kind"):
        lines.append(f"- model output: {conversion['output_kind']}")
    for key, label in (("checker", "ONNX checker"), ("shape_inference", "shape inference")):
        if structure.get(key):
            lines.append(f"- {label}: {structure[key]}")
    sizes = [f"{structure[key]:,} {label}" for key, label in (
        ("nodes", "nodes"), ("macs_per_image", "MACs per image"))
        if isinstance(structure.get(key), int)]
    parameters = parameters_text(structure, reference_parameters, batch_normalization_layers)
    if parameters:
        sizes.insert(min(1, len(sizes)), parameters)
    if sizes:
        lines.append("- " + ", ".join(sizes))
    ops = structure.get("op_inventory") or {}
    if ops:
        lines.append("- operators: " + ", ".join(f"{op} ×{n}" for op, n in ops.items()))
    return lines


def compare_markdown(record: Mapping[str, Any]) -> str:
    """The comparison as a Markdown report: which images, the models, the table, notes."""
    record = jsonable(record)
    models = list(record.get("models") or [])
    lines = ["# Model comparison", "",
             f"**Images:** {describe_data(record.get('data') or {})}", "",
             "The first model is the reference for agreement and output differences.", ""]
    lines += [f"- {line}" for line in _compare_model_lines(record)]
    lines += ["", *markdown_table(["", *(str(m.get("label")) for m in models)],
                             [[label.strip() if not label.startswith("  ") else
                               f"&nbsp;&nbsp;{label.strip()}", *cells]
                              for label, cells, _ in _compare_rows(record)])]
    notes = _compare_notes(record)
    if notes:
        lines += ["", *(f"Note: {n}." for n in notes)]
    lines += ["", "## Files", ""]
    lines += markdown_table(["model", "file", "sha256", "runtime"],
                       [[m.get("label"), f"`{_get(m, 'model', 'path')}`",
                         f"`{_get(m, 'model', 'sha256')}`",
                         f"{_get(m, 'model', 'backend')} {_get(m, 'model', 'runtime_version')}"]
                        for m in models], ["l", "l", "l", "l"])
    return "\n".join(lines) + "\n"


def quantization_markdown(record: Mapping[str, Any]) -> str:
    """The record as a Markdown report."""
    record = jsonable(record)
    lines = ["# int8 quantisation report", ""]
    lines += [f"- {line}" for line in _header_lines(record)]
    lines += ["", "## Candidates", "",
              "Scored on held-out images (not the test set) for agreement with fp32; timed "
              "against fp32 in the same run on this machine.", ""]
    lines += markdown_table(_candidate_header(record, sizes=True),
                            _candidate_rows(record, sizes=True),
                            ["l", "r", "r", "r", "r", "r", "l"])
    lines += ["", CANDIDATE_LEGEND]
    ev = record.get("evaluation")
    if ev:
        lines += ["", "## Test set", "", f"**Images:** {describe_data(ev.get('data') or {})}", "",
                  f"**{int8_verdict_line(record)}**", ""]
        lines += markdown_table(["", "fp32", "int8"],
                                [[r[0].strip() if not r[0].startswith("  ")
                                  else f"&nbsp;&nbsp;{r[0].strip()}", *r[1:]]
                                 for r in _evaluation_rows(record)])
    lines += ["", "## Speed", "", f"- {_speed_line(record)}", f"- {record.get('speed_verdict')}",
              f"- CPU: {_cpu_line(record)}"]
    layers = _layer_rows(record)
    if layers or record.get("layer_errors_note"):
        lines += ["", "## Largest quantisation error", "",
                  str(record.get("layer_errors_note") or ""), ""]
        if layers:
            lines += markdown_table(_LAYER_HEADER, layers, ["l", "l", "r", "r"])
    notes = record.get("notes") or []
    if notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    versions = record.get("versions") or {}
    if versions:
        lines += ["", "## Versions", "",
                  "- " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))]
    return "\n".join(lines) + "\n"
