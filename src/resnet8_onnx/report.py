"""One result record, many renderers: terminal table, JSON, per-class CSV, Markdown, PNG.

Everything here reads a plain JSON-ready dict — the *report record* built by
``EvaluationResult.to_record()`` — or a *comparison* of several records built by the ``run``
pipeline, so a report can be re-rendered from a saved ``report.json`` without the model.
Renderers tolerate missing optional keys (a record from an older version, a hand-made one)
and compute nothing themselves beyond formatting; the numbers come from ``metrics.py``.

Text renderers return strings and the writers put them on disk atomically, so a failed or
interrupted run never leaves half a report. matplotlib (PNG) and rich (terminal) are imported
inside the functions that need them: importing this module stays cheap.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .fsutil import (
    check_output_dir,
    check_writable,
    prepare_output_dir,
    write_bytes_atomic,
    write_text_atomic,
)

if TYPE_CHECKING:
    from rich.console import Console

CIFAR10_TEST_SIZE = 10_000
DASH = "—"

BACKEND_LABELS = {"keras": "Keras", "onnxruntime": "ONNX", "onnx": "ONNX", "litert": "LiteRT",
                   "tflite": "LiteRT", "torch": "PyTorch"}


# --------------------------------------------------------------------------- small helpers
def _get(mapping: Any, *keys: str, default: Any = None) -> Any:
    """``mapping[k1][k2]...`` or ``default`` when any level is missing or not a mapping."""
    value = mapping
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return default
        value = value[key]
    return default if value is None else value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def format_pct(value: Any, digits: int = 2) -> str:
    return f"{value * 100:.{digits}f}%" if is_number(value) else DASH


def format_threshold(value: Any) -> str:
    """A threshold exactly as given, as a percentage: 0.8719 → '87.19%', 0.895 → '89.5%'."""
    if not is_number(value):
        return DASH
    from decimal import Decimal

    text = format((Decimal(repr(float(value))) * 100).normalize(), "f")
    return f"{text}%"


def _fixed(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if is_number(value) else DASH


def format_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else DASH


def csv_number(value: Any) -> str:
    """Full precision (shortest round-trip repr) for machines; empty when undefined."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


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


def _per_class(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(_get(record, "metrics", "per_class", default=[]))


def _class_names(record: Mapping[str, Any]) -> list[str]:
    names = _get(record, "metrics", "class_names")
    if names:
        return [str(n) for n in names]
    per_class = _per_class(record)
    if per_class:
        return [str(c.get("name", i)) for i, c in enumerate(per_class)]
    matrix = _get(record, "metrics", "confusion_matrix", default=[])
    return [str(i) for i in range(len(matrix))]


def model_name(record: Mapping[str, Any]) -> str:
    """Short human name of the evaluated model: its file name, or the backend when unknown."""
    path = _get(record, "model", "path")
    if path:
        return Path(str(path)).name
    return str(_get(record, "model", "backend", default="model"))


def backend_label(record: Mapping[str, Any]) -> str:
    """'Keras', 'ONNX', 'LiteRT' — what a reader calls the runtime, for column headers."""
    backend = str(_get(record, "model", "backend", default="model"))
    return BACKEND_LABELS.get(backend.lower(), backend)


def _model_line(record: Mapping[str, Any]) -> str:
    backend = _get(record, "model", "backend", default="unknown backend")
    version = _get(record, "model", "runtime_version")
    runtime = f"{backend} {version}" if version else str(backend)
    provider = _get(record, "model", "provider")
    return f"{model_name(record)} ({runtime}{f', {provider}' if provider else ''})"


def preprocessing_line(record: Mapping[str, Any]) -> str | None:
    """'NCHW RGB float32, ×1/255, mean …, std … (layout: input shape; …: option)', or None."""
    spec = _get(record, "model", "preprocessing")
    if not isinstance(spec, Mapping) or not spec.get("description"):
        return None
    grouped: dict[str, list[str]] = {}
    for name, source in (spec.get("sources") or {}).items():
        grouped.setdefault(str(source), []).append(str(name))
    origin = "; ".join(f"{', '.join(names)}: {source}" for source, names in grouped.items())
    return f"{spec['description']}" + (f" ({origin})" if origin else "")


def _model_notes(record: Mapping[str, Any]) -> list[str]:
    notes = _get(record, "model", "notes", default=[]) or []
    return [str(n) for n in notes]


def _output_note(metrics: Mapping[str, Any]) -> str | None:
    kind = metrics.get("output_kind")
    if kind == "logits" or metrics.get("softmax_applied_for_auc"):
        return "model outputs logits: softmax applied before computing ROC AUC"
    if kind == "probabilities":
        return "model outputs probabilities; ROC AUC computed on them directly"
    return None


def _macro_note(metrics: Mapping[str, Any]) -> str | None:
    """How macro averages treat classes without images; said only when there are some."""
    absent = metrics.get("absent_classes") or []
    if not absent:
        return None
    count = metrics.get("macro_classes")
    over = f"the {count} classes" if isinstance(count, int) else "the classes"
    predicted = {str(c.get("name")): c.get("predicted") for c in metrics.get("per_class") or []}
    named = [f"{name} (predicted {predicted[name]:,} times, so it counts with recall and F1 0)"
             if isinstance(predicted.get(name), int) and predicted[name] > 0 else
             f"{name} (never predicted, so left out)" for name in map(str, absent)]
    return (f"no images of {', '.join(named)}: accuracy and recall shown as {DASH}; macro "
            f"precision, recall and F1 average {over} present in the labels or the "
            "predictions (scikit-learn's convention)")


def _throughput(record: Mapping[str, Any]) -> str | None:
    timings = _get(record, "timings", default={})
    ips = timings.get("images_per_second")
    if not is_number(ips):
        return None
    seconds = timings.get("inference_seconds", timings.get("seconds"))
    parts = [f"{ips:,.0f} images/s"]
    if is_number(seconds):
        parts.append(f"{seconds:.2f} s inference")
    if is_number(timings.get("load_seconds")):
        parts.append(f"{timings['load_seconds']:.2f} s loading")
    if timings.get("batch_size"):
        parts.append(f"batch {timings['batch_size']}")
    settings = _get(record, "settings", default={})
    threads, cores = settings.get("threads"), settings.get("available_cores")
    if isinstance(threads, int):
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}"
                     + (f" on {cores} cores" if isinstance(cores, int) and threads > cores else ""))
    elif isinstance(cores, int):
        parts.append(f"default threads, {cores} core{'s' if cores != 1 else ''}")
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def _unique_labels(records: Sequence[Mapping[str, Any]]) -> list[str]:
    labels = [backend_label(r) + (f" {q}" if (q := _get(r, "model", "quantization")) else "")
              for r in records]
    return [f"{lab} {i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


# --------------------------------------------------------------------------- data statement
def _selected_by(data: Mapping[str, Any]) -> str:
    """'the images selected by my.npy (sha256 c619b84e9ea7…)': a subset chosen by an indices
    file that is not the official perf one is named by that file, never as the perf subset."""
    path = data.get("indices_file")
    name = Path(str(path)).name if path else "an indices file"
    sha = data.get("indices_sha256")
    return f"the images selected by {name}" + (f" (sha256 {sha[:12]}…)" if sha else "")


def _subset_phrase(subset: str, limit: Any, selected_by: str = "",
                   balanced: str = "") -> tuple[str, bool]:
    """Human phrase for a subset name and whether it is a part of the source.

    ``balanced`` words a ``--limit`` ("balanced-500 of full"); "first-500 of full" is how
    records written before limits were class-balanced name theirs.
    """
    base, first, rule = subset, limit if isinstance(limit, int) else None, "first"
    for prefix in ("balanced-", "first-"):  # "balanced-500 of full", "first-50 of perf"
        if subset.startswith(prefix):
            head, _, rest = subset.partition(" of ")
            base = rest or "full"
            digits = head.removeprefix(prefix)
            first = int(digits) if digits.isdigit() else first
            rule = prefix[:-1]
    names = {"full": "", "perf": "the MLPerf Tiny perf subset",
             "indices": selected_by or "the images selected by an indices file"}
    named = names.get(base, f"the {base} subset")
    if first is not None:
        if rule == "balanced":
            what = balanced or "class-balanced (the first images of each class in turn)"
            return what + (f" of {named}" if named else ""), True
        return (f"first {first:,} images" + (f" of {named}" if named else "")), True
    return (named[4:] if named.startswith("the ") else named), base != "full"


def _balanced_phrase(data: Mapping[str, Any]) -> str:
    """'the first 50 of each class' when a --limit got every class the same count."""
    counts = [v for v in (data.get("per_class") or {}).values() if isinstance(v, int)]
    if counts and len(set(counts)) == 1:
        return "the first of each class" if counts[0] == 1 else (
            f"the first {counts[0]:,} of each class")
    return "class-balanced (the first images of each class in turn)"


_SPLIT_IMAGES = {"test": "test images", "train": "training images",
                 "unknown": "images of unknown split"}


def describe_data(data: Mapping[str, Any]) -> str:
    """The one-line statement of exactly which images were evaluated, used by every renderer.

    A number without this line is ambiguous (full test set? the 200-image perf subset? 500
    of them?), so it is printed above every table and written into every report, e.g.
    "CIFAR-10 test, full official set, 10,000 images", "CIFAR-10 test, MLPerf Tiny perf
    subset: 200 of 10,000 images — NOT the full test set" or "CIFAR-10 training images,
    image folder train-2000-png: 2,000 images — not the test set". An image folder is named
    as one, with the split its file names show ("unknown" when they show none).
    """
    data = jsonable(data or {})
    dataset, split = data.get("dataset") or "CIFAR-10", str(data.get("split") or "test")
    path = _get(data, "source", "path")
    folder = _get(data, "source", "kind") == "image-folder"
    count = data.get("count")
    shown = f"{count:,} images" if isinstance(count, int) else "an unknown number of images"
    if data.get("full_official_test_set"):
        return f"{dataset} {split}, full official set, {shown}"
    if folder:
        name = Path(str(path)).name if path else "?"
        base = f"{dataset} {_SPLIT_IMAGES.get(split, split + ' images')}, image folder {name}"
        whole = "the whole folder"
    else:
        base = f"{dataset} {split}"
        whole = {"test": "the full test set", "train": "the full training set"}.get(
            split, "a whole CIFAR-10 split")
    what, partial = _subset_phrase(str(data.get("subset") or "full"), data.get("limit"),
                                   _selected_by(data), _balanced_phrase(data))
    if partial:
        total = data.get("source_count")
        if not isinstance(total, int) and split == "test" and not folder:
            total = CIFAR10_TEST_SIZE
        known = isinstance(count, int) and isinstance(total, int)
        if known and what == f"first {count:,} images":
            return f"{base}, first {count:,} of {total:,} images {DASH} NOT {whole}"
        if known and what == _balanced_phrase(data):  # a limit of the whole source
            return f"{base}, {count:,} of {total:,} images, {what} {DASH} NOT {whole}"
        amount = f"{count:,} of {total:,} images" if known else shown
        return f"{base}, {what}: {amount} {DASH} NOT {whole}"
    if folder:
        tail = {"test": "not verified as the full official test set",
                "train": "not the test set"}.get(split, "not the official test set")
        return f"{base}: {shown} {DASH} {tail}"
    where = f" from {Path(str(path)).name}" if path else ""
    tail = ("training images, not the test set" if split == "train"
            else "not verified as the full official test set")
    return f"{base}{where}: {shown} {DASH} {tail}"


def _data_warnings(data: Mapping[str, Any]) -> list[str]:
    """Warnings about the data (unverified source, unofficial files), from source and top."""
    found = list(_get(data, "source", "warnings", default=[])) + list(
        _get(data, "warnings", default=[]))
    return [str(w) for w in found]


# --------------------------------------------------------------------------- JSON
def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf → None, paths → str."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    raise TypeError(f"cannot put {type(value).__name__} into a JSON report")


F = TypeVar("F", bound=Callable[..., Any])


def _plain_input(func: F) -> F:
    """Renderers accept records holding numpy scalars or NaN; they see plain JSON values."""

    @functools.wraps(func)
    def wrapper(record: Any, *args: Any, **kwargs: Any) -> Any:
        return func(jsonable(record or {}), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_json(record: Mapping[str, Any]) -> str:
    """Deterministic JSON: sorted keys, indent 2, NaN as null, trailing newline."""
    return json.dumps(jsonable(record), sort_keys=True, indent=2, allow_nan=False,
                      ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("index", "class", "support", "correct", "predicted", "accuracy", "precision",
               "recall", "f1", "auc")


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


@_plain_input
def per_class_csv(record: Mapping[str, Any]) -> str:
    """One row per class with full-precision numbers; an undefined AUC is an empty cell."""
    rows: list[Sequence[Any]] = [CSV_COLUMNS]
    for i, c in enumerate(_per_class(record)):
        rows.append([c.get("index", i), c.get("name", i), *(
            csv_number(c.get(k)) for k in ("support", "correct", "predicted", "accuracy",
                                         "precision", "recall", "f1", "auc"))])
    return csv_text(rows)


# --------------------------------------------------------------------------- terminal
def _console_or_default(console: Console | None) -> Console:
    if console is not None:
        return console
    from .progress import console as make_console

    return make_console()


def _metrics_table(record: Mapping[str, Any]):
    from rich import box
    from rich.table import Table

    metrics = _get(record, "metrics", default={})
    # Fits an 80-column terminal: no outer edge, light rules, no index column.
    table = Table(title=f"Per-class metrics {DASH} {model_name(record)}", title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  caption="all: overall accuracy; macro means of precision, recall, F1, AUC",
                  caption_justify="left")
    table.add_column("class", no_wrap=True)
    for header in ("support", "correct", "accuracy", "precision", "recall", "F1", "AUC"):
        table.add_column(header, justify="right", no_wrap=True)
    per_class = _per_class(record)
    for i, c in enumerate(per_class):
        table.add_row(str(c.get("name", i)), format_int(c.get("support")),
                      format_int(c.get("correct")), format_pct(c.get("accuracy")),
                      _fixed(c.get("precision")), _fixed(c.get("recall")), _fixed(c.get("f1")),
                      _fixed(c.get("auc")), end_section=i == len(per_class) - 1)
    table.add_row("[bold]all[/bold]", format_int(metrics.get("total")),
                  format_int(metrics.get("correct")),
                  f"[bold]{format_pct(metrics.get('accuracy'))}[/bold]",
                  _fixed(metrics.get("macro_precision")), _fixed(metrics.get("macro_recall")),
                  _fixed(metrics.get("macro_f1")), _fixed(metrics.get("macro_auc")))
    return table


def _headline(metrics: Mapping[str, Any]) -> str:
    parts = [f"top-1 [bold]{format_pct(metrics.get('accuracy'))}[/bold] "
             f"({format_int(metrics.get('correct'))}/{format_int(metrics.get('total'))})"]
    if is_number(metrics.get("top5_accuracy")):
        parts.append(f"top-5 {format_pct(metrics['top5_accuracy'])}")
    if is_number(metrics.get("macro_auc")):
        parts.append(f"macro AUC {_fixed(metrics['macro_auc'])}")
    if is_number(metrics.get("macro_f1")):
        parts.append(f"macro F1 {_fixed(metrics['macro_f1'])}")
    return " · ".join(parts)


@_plain_input
def render_terminal(record: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the evaluation of one model: which images, per-class table, headline figures."""
    from rich.markup import escape

    out = _console_or_default(console)
    metrics = _get(record, "metrics", default={})
    data = _get(record, "data", default={})
    out.print(f"[bold]Evaluated[/bold] {escape(_model_line(record))}")
    out.print(f"[bold]Images:[/bold] {escape(describe_data(data))}")
    if preprocessing_line(record):
        out.print(f"[bold]Preprocessing:[/bold] {escape(preprocessing_line(record) or '')}")
    for warning in _data_warnings(data):
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    out.print()
    out.print(_metrics_table(record))
    out.print()
    out.print(_headline(metrics))
    notes = [n for n in (_output_note(metrics), _macro_note(metrics), _throughput(record)) if n]
    notes += _model_notes(record)
    if metrics.get("argmax_ties"):
        notes.append(f"{metrics['argmax_ties']:,} images had tied top scores "
                     "(counted as the lowest class index)")
    for note in notes:
        out.print(f"[dim]{escape(note)}[/dim]")


# --------------------------------------------------------------------------- Markdown
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


# --------------------------------------------------------------------------- PNG
@_plain_input
def confusion_matrix_png(record: Mapping[str, Any], *, dpi: int = 110) -> bytes:
    """The confusion matrix as a PNG: counts in cells, colour = share of the true class.

    Row-normalised colour makes classes comparable even when their support differs (a perf
    subset has 20 images per class, a custom set may be unbalanced); the counts stay exact.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    metrics = _get(record, "metrics", default={})
    matrix = np.asarray(metrics.get("confusion_matrix") or [], dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise ValueError("the record holds no square confusion matrix")
    n = matrix.shape[0]
    names = _class_names(record)
    row_sums = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, dtype=float),
                      where=row_sums > 0)

    side = max(6.0, 0.72 * n + 2.6)
    fig = Figure(figsize=(side + 1.1, side), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # Square-root colour scale: a 5 % confusion is visibly tinted, not lost next to a 90 % diagonal.
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    image = ax.imshow(share, cmap="Blues", norm=norm, interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    colorbar.set_ticks([0.0, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
    colorbar.set_label("share of the true class (row-normalised, square-root scale)")
    colorbar.ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")

    small = n > 12
    for i in range(n):
        for j in range(n):
            count = int(matrix[i, j])
            dark = float(norm(share[i, j])) > 0.6  # white text on the darker blues
            if count == 0:
                ax.text(j, i, "0", ha="center", va="center", fontsize=7, color="#b0b0b0",
                        in_layout=False)
                continue
            label = f"{count:,}"
            if i == j and not small:
                label += f"\n{share[i, j]:.1%}"
            ax.text(j, i, label, ha="center", va="center", fontsize=7 if small else 8.5,
                    color="white" if dark else "#1a1a1a",
                    fontweight="bold" if i == j else "normal", linespacing=1.1,
                    in_layout=False)  # inside the axes: nothing for the layout to measure

    ax.set_xticks(range(n), labels=names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted class", fontsize=10, labelpad=6)
    ax.set_ylabel("true class", fontsize=10, labelpad=6)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.2)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)

    accuracy = metrics.get("accuracy")
    headline = f"{model_name(record)} ({_get(record, 'model', 'backend', default='model')})"
    figures = f"top-1 accuracy {format_pct(accuracy)} ({format_int(metrics.get('correct'))} / " \
              f"{format_int(metrics.get('total'))})"
    fig.suptitle(f"{headline}\n{figures}", fontsize=12, fontweight="bold")
    data = _get(record, "data", default={})
    official = bool(_get(data, "full_official_test_set", default=False))
    ax.set_title(describe_data(data), fontsize=9.5, pad=8,
                 color="#444444" if official else "#b22222",
                 fontweight="normal" if official else "bold")

    buffer = io.BytesIO()
    # No "Software"/date metadata: identical records give byte-identical PNGs.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


# --------------------------------------------------------------------------- writing
Renderer = Callable[[], str | bytes]


def write_all(out_dir: str | os.PathLike[str], contents: Mapping[str, tuple[str, Renderer]],
               *, force: bool, check_only: bool = False) -> dict[str, Path]:
    """Check every target, then render and write each file atomically.

    Checking all targets before rendering or writing anything means a refused overwrite
    fails fast and leaves the directory exactly as it was, not with half a new report.
    ``check_only`` does just the checks, creating and rendering nothing, and returns the
    paths: commands call it before their expensive work, so a report that would be refused
    is refused before the models run, not after.
    """
    if check_only:
        directory = check_output_dir(out_dir)
        targets = {key: directory / name for key, (name, _) in contents.items()}
        if directory.is_dir():
            for path in targets.values():
                check_writable(path, force=force)
        return targets
    directory = prepare_output_dir(out_dir)
    targets = {key: directory / name for key, (name, _) in contents.items()}
    for path in targets.values():
        check_writable(path, force=force)
    payloads = {key: render() for key, (_, render) in contents.items()}
    written: dict[str, Path] = {}
    for key, payload in payloads.items():
        if isinstance(payload, bytes):
            written[key] = write_bytes_atomic(targets[key], payload, force=force)
        else:
            written[key] = write_text_atomic(targets[key], payload, force=force)
    return written


def write_reports(record: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                  force: bool = False, stem: str = "report",
                  check_only: bool = False) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class.csv``, ``confusion_<backend>.png``.

    The same names as the ``run`` report directory (:func:`write_comparison_reports`), so a
    script reads either. Another ``stem`` writes ``{stem}.json``, ``{stem}.md``,
    ``{stem}_per_class.csv`` and ``{stem}_confusion.png``. ``out_dir`` is created if missing
    (its parent must exist). Existing files are refused unless ``force``. Returns
    ``{"json", "markdown", "csv", "png"}`` → path.
    """
    backend = str(_get(record, "model", "backend", default="model"))
    plain = stem == "report"
    contents: dict[str, tuple[str, Renderer]] = {
        "json": (f"{stem}.json", lambda: to_json(record)),
        "markdown": (f"{stem}.md", lambda: markdown_summary(record)),
        "csv": ("per_class.csv" if plain else f"{stem}_per_class.csv",
                lambda: per_class_csv(record)),
        "png": (f"confusion_{backend}.png" if plain else f"{stem}_confusion.png",
                lambda: confusion_matrix_png(record)),
    }
    return write_all(out_dir, contents, force=force, check_only=check_only)


# --------------------------------------------------------------------------- comparison
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


@_plain_input
def render_comparison_terminal(comparison: Mapping[str, Any],
                               console: Console | None = None) -> None:
    """Keras-vs-ONNX side by side, with the verdict first and impossible to miss."""
    from rich import box
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    out = _console_or_default(console)
    models = list(comparison.get("models") or [])
    labels = _unique_labels(models)
    verdict = comparison.get("verdict") or {}
    passed = verdict.get("passed")
    colour = "green" if passed else "red"
    title = "PASS" if passed else "FAIL"
    body = "\n".join(escape(line) for line in _verdict_lines(verdict)) or "(no verdict)"
    out.print(Panel(body, title=f"[bold {colour}]VERDICT: {title}[/bold {colour}]",
                    border_style=colour, expand=False))
    out.print(f"[bold]Images:[/bold] {escape(describe_data(_comparison_data(comparison)))}")
    for warning in _data_warnings(_comparison_data(comparison)):
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for label, record in zip(labels, models, strict=True):
        out.print(f"[bold]{escape(label)}:[/bold] {escape(_model_line(record))}")
    out.print()

    table = Table(title="Per-class accuracy, side by side", title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("class", no_wrap=True)
    table.add_column("support", justify="right", no_wrap=True)
    for label in labels:
        table.add_column(f"{label} correct", justify="right")
        table.add_column(f"{label} acc.", justify="right", no_wrap=True)
    if len(models) == 2:
        table.add_column("Δ correct", justify="right")
    rows = _comparison_rows(models)
    for k, row in enumerate(rows):
        cells = [str(row["name"]), format_int(row["support"])]
        for c in row["models"]:
            cells += [format_int(c.get("correct")), format_pct(c.get("accuracy"))]
        if len(models) == 2:
            cells.append(_delta(row["models"][0].get("correct"), row["models"][1].get("correct")))
        table.add_row(*cells, end_section=k == len(rows) - 1)
    totals = ["[bold]all[/bold]", format_int(_get(models[0], "metrics", "total")) if models else ""]
    for record in models:
        totals += [format_int(_get(record, "metrics", "correct")),
                   f"[bold]{format_pct(_get(record, 'metrics', 'accuracy'))}[/bold]"]
    if len(models) == 2:
        totals.append(_delta(_get(models[0], "metrics", "correct"),
                             _get(models[1], "metrics", "correct")))
    table.add_row(*totals)
    out.print(table)
    out.print()
    for label, record in zip(labels, models, strict=True):
        m = _get(record, "metrics", default={})
        parts = [f"top-1 [bold]{format_pct(m.get('accuracy'))}[/bold]"]
        if is_number(m.get("top5_accuracy")):
            parts.append(f"top-5 {format_pct(m['top5_accuracy'])}")
        if is_number(m.get("macro_auc")):
            parts.append(f"macro AUC {_fixed(m['macro_auc'])}")
        ips = _get(record, "timings", "images_per_second")
        if is_number(ips):
            parts.append(f"{ips:,.0f} images/s")
        out.print(f"[bold]{escape(label)}[/bold]: " + " · ".join(parts))
    parity = comparison.get("parity") or {}
    if parity:
        state = "[green]passed[/green]" if parity.get("passed") else "[red]FAILED[/red]"
        out.print(f"[bold]Parity[/bold] {state}:")
        for line in _parity_lines(parity):
            out.print(f"  {escape(line)}")
    first = _get(comparison, "layerwise", "first_diverging_layer")
    if first:
        out.print(f"[red]first diverging layer:[/red] {escape(str(first.get('layer')))} "
                  f"({escape(str(first.get('class')))}), max |Δ| "
                  f"{_fixed(first.get('max_abs_diff'), 6)}")


def _delta(a: Any, b: Any) -> str:
    if not (isinstance(a, int) and isinstance(b, int)):
        return DASH
    return "0" if a == b else f"{b - a:+,}"


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


@_plain_input
def comparison_per_class_csv(comparison: Mapping[str, Any]) -> str:
    """Per-class rows with one column group per model (prefixed keras_, onnx_, ...)."""
    models = list(comparison.get("models") or [])
    prefixes = [label.lower().replace(" ", "") for label in _unique_labels(models)]
    fields = ("correct", "accuracy", "precision", "recall", "f1", "auc")
    header = ["index", "class", "support"]
    for prefix in prefixes:
        header += [f"{prefix}_{f}" for f in fields]
    if len(models) == 2:
        header.append("same_correct")
    rows: list[Sequence[Any]] = [header]
    for row in _comparison_rows(models):
        cells = [row["index"], row["name"], csv_number(row["support"])]
        for c in row["models"]:
            cells += [csv_number(c.get(f)) for f in fields]
        if len(models) == 2:
            a, b = (c.get("correct") for c in row["models"])
            cells.append(str(a == b).lower())
        rows.append(cells)
    return csv_text(rows)


def write_comparison_reports(comparison: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                             force: bool = False, check_only: bool = False) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class.csv`` and ``confusion_<backend>.png``.

    Returns ``{"json", "markdown", "csv", "png_<backend>"...}`` → path.
    """
    contents: dict[str, tuple[str, Renderer]] = {
        "json": ("report.json", lambda: to_json(comparison)),
        "markdown": ("report.md", lambda: comparison_markdown(comparison)),
        "csv": ("per_class.csv", lambda: comparison_per_class_csv(comparison)),
    }
    models = list(comparison.get("models") or [])
    backends = [str(_get(r, "model", "backend", default="model"))
                + (f"_{q}" if (q := _get(r, "model", "quantization")) else "") for r in models]
    for i, (backend, record) in enumerate(zip(backends, models, strict=True)):
        name = backend if backends.count(backend) == 1 else f"{backend}_{i + 1}"
        contents[f"png_{name}"] = (f"confusion_{name}.png",
                                   lambda record=record: confusion_matrix_png(record))
    return write_all(out_dir, contents, force=force, check_only=check_only)


# --------------------------------------------------------------------------- verification
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



@_plain_input
def render_verification_terminal(report: Mapping[str, Any],
                                 console: Console | None = None) -> None:
    """The ``verify`` result: structure, interface, dynamic batch, parity, then PASS/FAIL."""
    from rich.markup import escape

    out = _console_or_default(console)
    structure = report.get("structure") or {}
    reference = report.get("reference") or {}
    out.print(f"[bold]Verified[/bold] {escape(str(structure.get('path', 'ONNX model')))} "
              f"against {escape(str(reference.get('model_path', 'the reference')))} "
              f"({escape(str(reference.get('name', '?')))})")
    provenance = report.get("provenance") or {}
    line = provenance_line(provenance, structure.get("path"), reference.get("model_path"))
    if line and provenance.get("converted_from_reference") is False:
        out.print(f"[bold red]warning:[/bold red] {escape(line)}")
    elif line:
        out.print(f"[dim]provenance: {escape(line)}[/dim]")
    if report.get("data"):
        out.print(f"[bold]Images:[/bold] {escape(describe_data(report['data']))}")
    if structure:
        opsets = ", ".join(f"{k} {v}" for k, v in (structure.get("opsets") or {}).items())
        facts = [f"checker {structure.get('checker', '?')}",
                 f"shape inference {structure.get('shape_inference', '?')}"]
        if opsets:
            facts.append(f"opset {opsets}")
        if isinstance(structure.get("nodes"), int):
            facts.append(f"{structure['nodes']:,} nodes")
        parameters = parameters_text(structure, report.get("reference_parameters"),
                                     report.get("reference_batch_normalization_layers"))
        if parameters:
            facts.append(parameters)
        if isinstance(structure.get("macs_per_image"), int):
            facts.append(f"{structure['macs_per_image']:,} MACs/image")
        out.print("[bold]Structure:[/bold] " + escape("; ".join(facts)))
    parity = {**(report.get("parity") or {}),
              "dynamic_batch": report.get("dynamic_batch"),
              "interface_problems": report.get("interface_problems")}
    lines = _parity_lines(parity)
    if lines:
        state = "[green]passed[/green]" if parity.get("passed") else "[red]FAILED[/red]"
        out.print(f"[bold]Parity[/bold] {state}:")
        for line in lines:
            out.print(f"  {escape(line)}")
    layerwise = report.get("layerwise") or {}
    if layerwise.get("skipped"):
        out.print(f"[dim]layer-by-layer comparison skipped: {escape(layerwise['skipped'])}[/dim]")
    elif "layers" in layerwise:
        first = layerwise.get("first_diverging_layer")
        matched = sum(1 for entry in layerwise["layers"] if entry.get("matched"))
        tolerance = layerwise.get("tolerance") or {}
        within = (f" within atol {tolerance['atol']:g} or rtol {tolerance['rtol']:g} × the "
                  "layer's largest |activation|"
                  if is_number(tolerance.get("atol")) and is_number(tolerance.get("rtol"))
                  else "")
        out.print(f"Layer by layer: {matched}/{len(layerwise['layers'])} Keras layers matched "
                  f"an ONNX tensor{within}")
        if not first and not parity.get("passed") and matched == len(layerwise["layers"]):
            out.print("[dim]every layer is within tolerance at its own scale; the outputs "
                      "differ element by element beyond atol/rtol[/dim]")
        if first:
            out.print(f"[red]first diverging layer:[/red] {escape(str(first.get('layer')))} "
                      f"({escape(str(first.get('class')))}), max |Δ| "
                      f"{_fixed(first.get('max_abs_diff'), 6)}")
    passed = report.get("passed")
    kind = escape(str(structure.get("kind") or "ONNX"))
    out.print(f"[bold green]VERIFIED: the {kind} model matches its source[/bold green]" if passed
              else "[bold red]VERIFICATION FAILED[/bold red]")
