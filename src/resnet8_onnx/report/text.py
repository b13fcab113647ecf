"""Formatting and phrases every writer shares: numbers, model names, the data statement.

Everything here reads a plain JSON-ready dict (a record's ``to_dict()``) and computes nothing
beyond formatting; the numbers come from ``metrics.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.format import TEST_SET_SIZE as CIFAR10_TEST_SIZE
from .jsonio import jsonable

DASH = "—"


BACKEND_LABELS = {"keras": "Keras", "onnxruntime": "ONNX", "onnx": "ONNX", "litert": "LiteRT",
                   "tflite": "LiteRT", "torch": "PyTorch"}


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
