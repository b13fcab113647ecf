"""Formatting and phrases every writer shares: numbers, model names, the data statement.

Everything here reads typed records (``records``) and computes nothing beyond formatting;
the numbers come from ``metrics.py``. A figure a producer could not compute is ``None`` and
prints as "—".
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeGuard

from resnet8_onnx.data.format import TEST_SET_SIZE as CIFAR10_TEST_SIZE
from resnet8_onnx.machine import BUSY_WARNING, busy_warning
from resnet8_onnx.records import DataInfo, EvaluationRecord, Metrics, runtime_label

DASH = "—"
# The preprocessing spec's fields in the order it applies them (preprocess.Preprocessing).
SPEC_FIELDS = ("layout", "channels", "scale", "mean", "std", "dtype")





def shown_path(path: str | None) -> str:
    """A recorded path (absolute) as the terminal shows it: relative to the working directory
    when it lies in it or beside it (``w/r8.onnx``, ``../shared/…``: what the user typed
    there), otherwise as recorded. Records keep the absolute path."""
    if not path:
        return ""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return relative if Path(path).is_absolute() and relative.count("..") <= 1 else path


def is_number(value: Any) -> TypeGuard[float]:
    """A finite number (not a bool): what a figure must be to be printed, else "—". (A
    TypeGuard: ``is_number(x) and x > 0`` type-checks for an ``x`` that may be None.)"""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def format_pct(value: Any, digits: int = 2) -> str:
    return f"{value * 100:.{digits}f}%" if is_number(value) else DASH


def format_threshold(value: Any) -> str:
    """A threshold exactly as given, as a percentage: 0.8719 → '87.19%', 0.895 → '89.5%'."""
    if not is_number(value):
        return DASH
    text = format((Decimal(repr(float(value))) * 100).normalize(), "f")
    return f"{text}%"


def format_fixed(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if is_number(value) else DASH


def format_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else DASH


def model_name(record: EvaluationRecord) -> str:
    """Short human name of the evaluated model: its file name, or the backend when unknown."""
    return Path(record.model.path).name if record.model.path else record.model.backend


def confusion_png_names(models: Sequence[EvaluationRecord]) -> list[str]:
    """The confusion-matrix PNG of each model in a ``run`` report directory, in model order:
    ``confusion_<backend>[_<quantization>].png``, numbered when two would share a name."""
    return confusion_names([(r.model.backend, r.model.quantization) for r in models])


def confusion_names(models: Sequence[tuple[str, str | None]]) -> list[str]:
    """:func:`confusion_png_names` from (runtime, quantization) pairs: known before a run."""
    names = [runtime + (f"_{q}" if q else "") for runtime, q in models]
    return [f"confusion_{n if names.count(n) == 1 else f'{n}_{i + 1}'}.png"
            for i, n in enumerate(names)]


def backend_label(record: EvaluationRecord) -> str:
    """What a reader calls the runtime of ``record``'s model, for column headers."""
    return runtime_label(record.model.backend)


def model_line(record: EvaluationRecord) -> str:
    """'m.onnx (onnxruntime 1.32.0, CPUExecutionProvider)'; an int8 model says so first."""
    model = record.model
    runtime = f"{model.backend} {model.runtime_version}".strip()
    provider = f", {model.provider}" if model.provider else ""
    if model.inference_precision:  # OpenVINO: the precision in effect, read back
        provider += f", {model.device or 'CPU'}, inference precision {model.inference_precision}"
    kind = f"{backend_label(record)} {model.quantization}, " if model.quantization else ""
    return f"{model_name(record)} ({kind}{runtime}{provider})"


def preprocessing_line(record: EvaluationRecord) -> str | None:
    """'NCHW RGB float32, ×1/255, mean …, std … (layout: input shape; …: option)', or None."""
    spec = record.model.preprocessing
    if spec is None or not spec.description:
        return None
    # In the spec's own field order, not the record's key order (JSON sorts keys), so a
    # re-rendered record says the same line.
    rank = {name: i for i, name in enumerate(SPEC_FIELDS)}
    grouped: dict[str, list[str]] = {}
    for name, source in sorted(spec.sources.items(), key=lambda kv: rank.get(kv[0], len(rank))):
        grouped.setdefault(str(source), []).append(str(name))
    origin = "; ".join(f"{', '.join(names)}: {source}" for source, names in grouped.items())
    return spec.description + (f" ({origin})" if origin else "")


def model_notes(record: EvaluationRecord) -> list[str]:
    return [str(n) for n in record.model.notes or []]


def output_note(metrics: Metrics) -> str | None:
    if metrics.output_kind == "logits" or metrics.softmax_applied_for_auc:
        return "model outputs logits: softmax applied before computing ROC AUC"
    if metrics.output_kind == "probabilities":
        return "model outputs probabilities; ROC AUC computed on them directly"
    return None


def macro_note(metrics: Metrics) -> str | None:
    """How macro averages treat classes without images; said only when there are some."""
    if not metrics.absent_classes:
        return None
    count = metrics.macro_classes
    over = f"the {count} classes" if isinstance(count, int) else "the classes"
    predicted = {c.name: c.predicted for c in metrics.per_class}
    named = [f"{name} (predicted {predicted[name]:,} times, so it counts with recall and F1 0)"
             if (times := predicted.get(name)) is not None and times > 0 else
             f"{name} (never predicted, so left out)"
             for name in map(str, metrics.absent_classes)]
    return (f"no images of {', '.join(named)}: accuracy and recall shown as {DASH}; macro "
            f"precision, recall and F1 average {over} present in the labels or the "
            "predictions (scikit-learn's convention)")


def speed_warning(records: Sequence[EvaluationRecord],
                  labels: Sequence[str] | None = None) -> str | None:
    """One line when other work kept the cores busy while any model's images/s was
    measured (``timings.cpu_busy``, read during its evaluation), naming those models."""
    busy = [(i, r.timings.cpu_busy) for i, r in enumerate(records)
            if is_number(r.timings.cpu_busy) and r.timings.cpu_busy > BUSY_WARNING]
    if not busy:
        return None
    worst = max(b for _, b in busy)
    cores = next((r.settings.available_cores for r in records
                  if r.settings is not None and r.settings.available_cores), None)
    when = "during the measurement" if labels is None or len(records) == 1 else (
        "while measuring " + ", ".join(labels[i] for i, _ in busy))
    return busy_warning(worst, cores, when)


def throughput_text(record: EvaluationRecord) -> str | None:
    timings, settings = record.timings, record.settings
    ips = timings.images_per_second
    if not is_number(ips):
        return None
    seconds = timings.inference_seconds if timings.inference_seconds is not None \
        else timings.seconds
    parts = [f"{ips:,.0f} images/s"]
    if is_number(seconds):
        parts.append(f"{seconds:.2f} s inference")
    if is_number(timings.load_seconds):
        parts.append(f"{timings.load_seconds:.2f} s loading")
    if timings.batch_size:
        parts.append(f"batch {timings.batch_size}")
    threads, cores = settings.threads, settings.available_cores
    if isinstance(threads, int):
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}"
                     + (f" on {cores} cores" if isinstance(cores, int) and threads > cores else ""))
    elif isinstance(cores, int):
        parts.append(f"default threads, {cores} core{'s' if cores != 1 else ''}")
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def unique_labels(records: Sequence[EvaluationRecord]) -> list[str]:
    labels = [backend_label(r) + (f" {q}" if (q := r.model.quantization) else "")
              for r in records]
    return [f"{lab} {i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def _selected_by(data: DataInfo) -> str:
    """'the images selected by my.npy (sha256 c619b84e9ea7…)': a subset chosen by an indices
    file that is not the official perf one is named by that file, never as the perf subset."""
    name = Path(data.indices_file).name if data.indices_file else "an indices file"
    sha = data.indices_sha256
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


def _balanced_phrase(data: DataInfo) -> str:
    """'the first 50 of each class' when a --limit got every class the same count."""
    counts = [v for v in data.per_class.values() if isinstance(v, int)]
    if counts and len(set(counts)) == 1:
        return "the first of each class" if counts[0] == 1 else (
            f"the first {counts[0]:,} of each class")
    return "class-balanced (the first images of each class in turn)"


_SPLIT_IMAGES = {"test": "test images", "train": "training images",
                 "unknown": "images of unknown split"}


def describe_data(data: DataInfo) -> str:
    """The one-line statement of exactly which images were evaluated, used by every renderer.

    A number without this line is ambiguous (full test set? the 200-image perf subset? 500
    of them?), so it is printed above every table and written into every report, e.g.
    "CIFAR-10 test, full official set, 10,000 images", "CIFAR-10 test, MLPerf Tiny perf
    subset: 200 of 10,000 images — NOT the full test set" or "CIFAR-10 training images,
    image folder train-2000-png: 2,000 images — not the test set". An image folder is named
    as one, with the split its file names show ("unknown" when they show none).
    """
    dataset, split = data.dataset, data.split
    path = data.source.path
    folder = data.source.kind in ("image-folder", "image-csv")
    count = data.count
    shown = f"{count:,} images" if isinstance(count, int) else "an unknown number of images"
    if data.full_official_test_set:
        return f"{dataset} {split}, full official set, {shown}"
    if folder:
        name = Path(str(path)).name if path else "?"
        what_file = "image list" if data.source.kind == "image-csv" else "image folder"
        words = _SPLIT_IMAGES.get(split, f"{split} images")
        if dataset == "labelled images":  # not "labelled images images of unknown split"
            words = "labelled " + ("images" if split == "unknown" else words) + (
                ", split unknown" if split == "unknown" else "")
        else:
            words = f"{dataset} {words}"
        base = f"{words}, {what_file} {name}"
        whole = "the whole folder"
    else:
        base = f"{dataset} {split}"
        whole = {"test": "the full test set", "train": "the full training set"}.get(
            split, "a whole CIFAR-10 split")
    what, partial = _subset_phrase(data.subset or "full", data.limit, _selected_by(data),
                                   _balanced_phrase(data))
    if partial:
        total = data.source_count
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


# Above these, tables show only the classes with images or predictions and the Markdown
# report lists the most-confused pairs instead of the full matrix (unreadable at 100+).
FULL_TABLE_CLASSES = 20
FULL_MATRIX_CLASSES = 20


def shown_class_rows(metrics: Metrics) -> tuple[list[Any], str | None]:
    """The per-class rows a table shows and, when some are left out, a sentence saying so."""
    rows = list(metrics.per_class)
    if len(rows) <= FULL_TABLE_CLASSES:
        return rows, None
    kept = [c for c in rows if (c.support or 0) > 0 or (c.predicted or 0) > 0]
    if len(kept) == len(rows):
        return rows, None
    return kept, (f"{len(rows) - len(kept):,} of the {len(rows):,} classes have no images "
                  "and were never predicted; their rows are left out (all rows in the JSON)")


def top_k_text(metrics: Metrics) -> str:
    """'top-3 91.00% · top-5 97.50%' (the top-k the classes allow), or ''."""
    return " · ".join(f"top-{k} {format_pct(v)}" for k, v in (metrics.top_k or {}).items()
                      if k != "5" and is_number(v))


def confused_lines(metrics: Metrics) -> list[str]:
    """'cat → dog: 12 (6.0% of cat)', largest first: the readable part of a big matrix."""
    return [f"{p['true']} → {p['predicted']}: {p['count']:,}"
            + (f" ({p['share']:.1%} of {p['true']})" if is_number(p.get("share")) else "")
            for p in metrics.most_confused or []]


def data_warnings(data: DataInfo) -> list[str]:
    """Warnings about the data (unverified source, unofficial files), from source and top."""
    return [str(w) for w in [*data.source.warnings, *data.warnings]]
