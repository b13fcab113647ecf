"""Several models on the same images, side by side: accuracy, per-class accuracy, agreement
with the first model, output differences and throughput.

The question a user asks with ``compare`` is "do these files behave like the first one?" —
the Keras original against its ONNX conversion, the float TFLite and the int8 TFLite. So the
first model is the reference: every other model's predictions and raw outputs are measured
against it with :func:`resnet8_onnx.verify.compare_outputs`, the same comparison ``verify``
uses. An int8 model's outputs are dequantised by its backend, so its |Δ| is computable; it is
simply large (of the order of the 1/256 output grid) and the table marks the model as int8.

:func:`compare_results` is a pure function over evaluation results; :func:`compare_models`
loads and runs the models; the renderers read only the JSON-ready record, so a saved
``compare.json`` can be re-rendered without the models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .errors import UsageError
from .evaluate import DEFAULT_BATCH_SIZE
from .progress import console as make_console
from .report import (
    DASH,
    backend_label,
    csv_number,
    csv_text,
    describe_data,
    format_int,
    format_pct,
    is_number,
    jsonable,
    markdown_table,
    model_name,
    to_json,
    write_all,
)

if TYPE_CHECKING:
    from rich.console import Console

    from .data import Dataset
    from .evaluate import EvaluationResult


# --------------------------------------------------------------------------- building
def _label(index: int, record: Mapping[str, Any]) -> str:
    """'#2 ONNX', '#4 LiteRT int8': short enough for a column header, unique by number."""
    model = record.get("model") or {}
    dtype = model.get("input_dtype") or "float32"
    quant = f" {dtype}" if dtype not in ("float32", "float64") else (
        f" {model['quantization']}" if model.get("quantization") else "")
    return f"#{index + 1} {backend_label(record)}{quant}"


def _versus(reference: EvaluationResult, result: EvaluationResult,
            indices: np.ndarray | None) -> dict[str, Any]:
    """Agreement and output differences of ``result`` against the reference model."""
    from .verify import compare_outputs

    n = len(result.predictions)
    differ = np.flatnonzero(reference.predictions != result.predictions)
    first = differ[:10] if indices is None else np.asarray(indices)[differ[:10]]
    entry: dict[str, Any] = {
        "samples": n,
        "agreement": n - len(differ),
        "agreement_fraction": (n - len(differ)) / n if n else None,
        "disagreements": len(differ),
        "first_disagreements": [int(i) for i in first],
    }
    kinds = (reference.metrics.output_kind, result.metrics.output_kind)
    if kinds[0] != kinds[1]:
        entry.update(comparable=False,
                     note=f"outputs are not of the same kind ({kinds[1]} vs the reference's "
                          f"{kinds[0]}): |Δ| not computed")
        return entry
    cmp = compare_outputs(reference.outputs, result.outputs)
    entry.update(
        comparable=True,
        max_abs_diff=cmp.max_abs_diff,
        mean_abs_diff=cmp.mean_abs_diff,
        p99_abs_diff=cmp.p99_abs_diff,
        min_cosine_similarity=cmp.min_cosine_similarity,
    )
    return entry


def compare_results(
    results: Sequence[EvaluationResult], *, indices: np.ndarray | None = None
) -> dict[str, Any]:
    """The comparison record of evaluations of several models on the same images.

    The first result is the reference; ``indices`` (the images' test-set indices) name the
    first disagreeing images. Raises :class:`UsageError` when the results were not
    computed on the same images (different counts or labels), since agreement would be
    meaningless.
    """
    if len(results) < 2:
        raise UsageError("compare needs at least two models")
    first = results[0]
    for result in results[1:]:
        if result.labels.shape != first.labels.shape or not np.array_equal(
                result.labels, first.labels):
            raise UsageError(
                f"{result.backend['model_path']}: evaluated on different images than "
                f"{first.backend['model_path']}; cannot compare")
    models = []
    for i, result in enumerate(results):
        record = result.to_record()
        record["label"] = _label(i, record)
        record["quantized"] = (record["model"]["input_dtype"] not in ("float32", "float64")
                               or bool(record["model"].get("quantization")))
        record["versus_reference"] = _versus(first, result, indices)
        models.append(record)
    return {
        "tool": {"name": "resnet8-onnx", "version": __version__},
        "kind": "compare",
        "data": results[0].data,
        "reference": {"index": 0, "label": models[0]["label"],
                      "path": models[0]["model"]["path"]},
        "models": models,
    }


def per_model_options(
    paths: Sequence[str | os.PathLike[str]], values: Mapping[str, Sequence[Any] | None], *,
    backends: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Spread repeated options over the models: ``--layout nhwc --layout nchw`` for two models.

    Per option: no value → nothing; one value → every ONNX model (Keras and LiteRT models
    keep their fixed raw-pixel input); as many values as models → one each, in model order,
    ``None`` (``-`` on the command line) meaning "not given". Any other count is exit 2.
    """
    from .backends import backend_for

    names = [b or backend_for(p) for b, p in
             zip(backends if backends is not None else [None] * len(paths), paths, strict=True)]
    per_model: list[dict[str, Any]] = [{} for _ in paths]
    for option, given in values.items():
        given = [None if v == "-" else v for v in (given or [])]
        if not given:
            continue
        if len(given) == 1 and len(paths) != 1:
            for entry, name in zip(per_model, names, strict=True):
                if name == "onnxruntime":
                    entry[option] = given[0]
        elif len(given) == len(paths):
            for entry, value in zip(per_model, given, strict=True):
                if value is not None:
                    entry[option] = value
        else:
            raise UsageError(
                f"--{option} given {len(given)} times for {len(paths)} models: give it once "
                f"(for every ONNX model) or once per model in model order ('-' for none)")
    return per_model


def compare_models(
    paths: Sequence[str | os.PathLike[str]], dataset: Dataset, *,
    backends: Sequence[str | None] | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None, options: Sequence[Mapping[str, Any]] | None = None,
    provider: str | None = None, device: str | None = None,
) -> dict[str, Any]:
    """Load each model with its backend, evaluate it on ``dataset`` and compare (first = ref).

    ``options`` holds one mapping per model (see :func:`per_model_options`): the spec fields
    (``layout``, ``channels``, ``scale``, ``mean``, ``std``) and ``output``; ``provider``
    applies to the ONNX models, ``device`` to the PyTorch models. Every model is loaded once
    before any is run, so a bad spec or model fails in seconds rather than after the first
    evaluations; models are then evaluated one after another.
    """
    from .backends import load_backend
    from .evaluate import available_cores, evaluate

    if len(paths) < 2:
        raise UsageError("compare needs at least two models")
    names = list(backends) if backends is not None else [None] * len(paths)
    if len(names) != len(paths):
        raise UsageError(f"{len(names)} backends given for {len(paths)} models")
    from .backends import backend_for
    from .evaluate import check_compatible

    per_model = list(options) if options is not None else [{} for _ in paths]
    if len(per_model) != len(paths):
        raise UsageError(f"{len(per_model)} option sets given for {len(paths)} models")
    loaded = []
    for path, name, opts in zip(paths, names, per_model, strict=True):
        opts = dict(opts)
        output = opts.pop("output", None)
        kind = name or backend_for(path)
        backend = load_backend(path, name, threads=threads, preprocessing=opts, output=output,
                               provider=provider if kind == "onnxruntime" else None,
                               device=device if kind == "torch" else None)
        check_compatible(backend, dataset)
        loaded.append(backend)
    results = []
    while loaded:
        backend = loaded.pop(0)
        results.append(evaluate(backend, dataset, batch_size=batch_size))
        del backend
    record = compare_results(results, indices=dataset.indices)
    record["settings"] = {"threads": threads, "available_cores": available_cores(),
                          "batch_size": batch_size, "ort_optimization": "all"}
    return record


# --------------------------------------------------------------------------- rendering helpers
_RAW_FLOAT = "NHWC RGB float32, raw 0-255 pixels, no normalisation"  # not worth a mention

def _get(record: Mapping[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _sci(value: Any) -> str:
    if not is_number(value):
        return DASH
    return "0" if value == 0 else f"{value:.2e}"


def _delta_cell(versus: Mapping[str, Any], key: str) -> str:
    if versus.get("comparable") is False:
        return "n/a"
    return _sci(versus.get(key))


def _class_names(models: Sequence[Mapping[str, Any]]) -> list[str]:
    for record in models:
        names = _get(record, "metrics", "class_names")
        if names:
            return [str(n) for n in names]
    return []


def _class_accuracy(record: Mapping[str, Any], index: int) -> Any:
    per_class = _get(record, "metrics", "per_class") or []
    return per_class[index].get("accuracy") if index < len(per_class) else None


def _rows(record: Mapping[str, Any]) -> list[tuple[str, list[str], bool]]:
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
    names = _class_names(models)
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


def _model_lines(record: Mapping[str, Any]) -> list[str]:
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


def _notes(record: Mapping[str, Any]) -> list[str]:
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


# --------------------------------------------------------------------------- renderers
def render_compare_terminal(record: Mapping[str, Any], console: Console | None = None) -> None:
    """One table: a column per model, a row per figure (fits 80 columns for four models)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    record = jsonable(record)
    out = console or make_console()
    out.print(f"[bold]Compared[/bold] {len(record.get('models') or [])} models; the first is "
              "the reference")
    out.print(f"[bold]Images:[/bold] {escape(describe_data(record.get('data') or {}))}")
    for line in _model_lines(record):
        out.print(f"  {escape(line)}")
    out.print()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    for m in record.get("models") or []:
        table.add_column(escape(str(m.get("label"))), justify="right")
    for label, cells, section in _rows(record):
        if section and table.row_count:
            table.rows[-1].end_section = True
        table.add_row(escape(label), *cells)
    out.print(table)
    for note in _notes(record):
        out.print(f"[dim]{escape(note)}[/dim]")


def compare_markdown(record: Mapping[str, Any]) -> str:
    """The comparison as a Markdown report: which images, the models, the table, notes."""
    record = jsonable(record)
    models = list(record.get("models") or [])
    lines = ["# Model comparison", "",
             f"**Images:** {describe_data(record.get('data') or {})}", "",
             "The first model is the reference for agreement and output differences.", ""]
    lines += [f"- {line}" for line in _model_lines(record)]
    lines += ["", *markdown_table(["", *(str(m.get("label")) for m in models)],
                             [[label.strip() if not label.startswith("  ") else
                               f"&nbsp;&nbsp;{label.strip()}", *cells]
                              for label, cells, _ in _rows(record)])]
    notes = _notes(record)
    if notes:
        lines += ["", *(f"Note: {n}." for n in notes)]
    lines += ["", "## Files", ""]
    lines += markdown_table(["model", "file", "sha256", "runtime"],
                       [[m.get("label"), f"`{_get(m, 'model', 'path')}`",
                         f"`{_get(m, 'model', 'sha256')}`",
                         f"{_get(m, 'model', 'backend')} {_get(m, 'model', 'runtime_version')}"]
                        for m in models], ["l", "l", "l", "l"])
    return "\n".join(lines) + "\n"


_SUMMARY_FIELDS = ("label", "file", "backend", "runtime_version", "input_dtype", "quantized",
                   "accuracy", "correct", "total", "agreement", "agreement_fraction",
                   "max_abs_diff", "mean_abs_diff", "images_per_second")


def compare_csv(record: Mapping[str, Any]) -> str:
    """One row per model, full precision, per-class accuracies as ``acc_<class>`` columns."""
    record = jsonable(record)
    models = list(record.get("models") or [])
    names = _class_names(models)
    rows: list[Sequence[Any]] = [[*_SUMMARY_FIELDS, *(f"acc_{n}" for n in names)]]
    for m in models:
        v = m.get("versus_reference") or {}
        values = {
            "label": m.get("label"), "file": _get(m, "model", "path"),
            "backend": _get(m, "model", "backend"),
            "runtime_version": _get(m, "model", "runtime_version"),
            "input_dtype": _get(m, "model", "input_dtype"), "quantized": m.get("quantized"),
            "accuracy": _get(m, "metrics", "accuracy"), "correct": _get(m, "metrics", "correct"),
            "total": _get(m, "metrics", "total"), "agreement": v.get("agreement"),
            "agreement_fraction": v.get("agreement_fraction"),
            "max_abs_diff": v.get("max_abs_diff"), "mean_abs_diff": v.get("mean_abs_diff"),
            "images_per_second": _get(m, "timings", "images_per_second"),
        }
        rows.append([csv_number(values[f]) for f in _SUMMARY_FIELDS]
                    + [csv_number(_class_accuracy(m, i)) for i in range(len(names))])
    return csv_text(rows)


def compare_per_class_csv(record: Mapping[str, Any]) -> str:
    """One row per class: support, then correct and accuracy per model (``m1_correct``...)."""
    record = jsonable(record)
    models = list(record.get("models") or [])
    header = ["index", "class", "support"]
    for i in range(len(models)):
        header += [f"m{i + 1}_correct", f"m{i + 1}_accuracy"]
    rows: list[Sequence[Any]] = [header]
    for c, name in enumerate(_class_names(models)):
        per = [(_get(m, "metrics", "per_class") or [{}] * (c + 1))[c] for m in models]
        cells = [c, name, csv_number(per[0].get("support") if per else None)]
        for entry in per:
            cells += [csv_number(entry.get("correct")), csv_number(entry.get("accuracy"))]
        rows.append(cells)
    return csv_text(rows)


def write_compare_reports(record: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                          force: bool = False, check_only: bool = False) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.md``, ``compare.csv``, ``compare_per_class.csv``.

    Every target is checked before anything is written (see ``report.write_all``, also for
    ``check_only``).
    """
    return write_all(out_dir, {
        "json": ("compare.json", lambda: to_json(record)),
        "markdown": ("compare.md", lambda: compare_markdown(record)),
        "csv": ("compare.csv", lambda: compare_csv(record)),
        "per_class_csv": ("compare_per_class.csv", lambda: compare_per_class_csv(record)),
    }, force=force, check_only=check_only)
