"""Report sets: which files each command's ``--out`` directory holds, checked then written.

Text renderers return strings and these writers put them on disk atomically, so a failed or
interrupted run never leaves half a report.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from resnet8_onnx.records import ComparisonRecord, EvaluationRecord, QuantizationRecord, Record
from resnet8_onnx.report.csv_ import (
    compare_csv,
    compare_per_class_csv,
    comparison_per_class_csv,
    per_class_csv,
)
from resnet8_onnx.report.jsonio import to_json
from resnet8_onnx.report.markdown import (
    compare_markdown,
    comparison_markdown,
    markdown_summary,
    quantization_markdown,
)
from resnet8_onnx.report.png import confusion_matrix_png
from resnet8_onnx.report.text import confusion_names
from resnet8_onnx.support.fsutil import (
    check_output_dir,
    check_writable,
    prepare_output_dir,
    write_bytes_atomic,
    write_text_atomic,
)

Renderer = Callable[[], str | bytes]
#: A report set's files: key → file name, known before anything runs.
FileNames = dict[str, str]


# --------------------------------------------------------------------------- the plans
def evaluation_files(runtime: str, *, stem: str = "report") -> FileNames:
    """The files ``evaluate --out`` writes for a model run by ``runtime``."""
    plain = stem == "report"
    return {"json": f"{stem}.json", "markdown": f"{stem}.md",
            "csv": "per_class.csv" if plain else f"{stem}_per_class.csv",
            "png": f"confusion_{runtime}.png" if plain else f"{stem}_confusion.png"}


def comparison_files(models: Sequence[tuple[str, str | None]]) -> FileNames:
    """The files of a ``run`` report directory; ``models`` are (runtime, quantization) pairs
    in report order."""
    names: FileNames = {"json": "report.json", "markdown": "report.md", "csv": "per_class.csv"}
    for png in confusion_names(models):
        names[f"png_{png.removeprefix('confusion_').removesuffix('.png')}"] = png
    return names


def compare_files() -> FileNames:
    """The files ``compare --out`` writes."""
    return {"json": "compare.json", "markdown": "compare.md", "csv": "compare.csv",
            "per_class_csv": "compare_per_class.csv"}


def quantization_files() -> FileNames:
    """The files ``quantize --out`` writes."""
    return {"json": "quantize.json", "markdown": "quantize.md"}


def files_for(record: Record, *, stem: str = "report") -> FileNames:
    """The report set's file names of ``record``, by its type (what :func:`write` writes)."""
    if isinstance(record, EvaluationRecord):
        return evaluation_files(record.model.backend, stem=stem)
    if isinstance(record, QuantizationRecord):
        return quantization_files()
    if isinstance(record, ComparisonRecord):
        if record.kind == "compare":
            return compare_files()
        return comparison_files([(m.model.backend, m.model.quantization)
                                 for m in record.models])
    raise TypeError(f"no report set for a {type(record).__name__}")


def check_planned(out_dir: str | os.PathLike[str], names: Mapping[str, str], *,
                  force: bool) -> dict[str, Path]:
    """Refuse, creating nothing, a report set that could not be written into ``out_dir``
    (a file there without ``force``, a directory that cannot be made): checked before a
    command's expensive work, so a refusal costs nothing. Returns key → path."""
    directory = check_output_dir(out_dir)
    targets = {key: directory / name for key, name in names.items()}
    if directory.is_dir():
        for path in targets.values():
            check_writable(path, force=force)
    return targets


def write_all(out_dir: str | os.PathLike[str], contents: Mapping[str, tuple[str, Renderer]],
              *, force: bool) -> dict[str, Path]:
    """Check every target, then render and write each file atomically.

    Checking all targets before rendering or writing anything means a refused overwrite
    fails fast and leaves the directory exactly as it was, not with half a new report.
    """
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


def write_reports(record: EvaluationRecord, out_dir: str | os.PathLike[str], *,
                  force: bool = False, stem: str = "report") -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class.csv``, ``confusion_<backend>.png``.

    The same names as the ``run`` report directory (:func:`write_comparison_reports`), so a
    script reads either. Another ``stem`` writes ``{stem}.json``, ``{stem}.md``,
    ``{stem}_per_class.csv`` and ``{stem}_confusion.png``. ``out_dir`` is created if missing
    (its parent must exist). Existing files are refused unless ``force``. Returns
    ``{"json", "markdown", "csv", "png"}`` → path.
    """
    names = evaluation_files(record.model.backend, stem=stem)
    return write_all(out_dir, {
        "json": (names["json"], lambda: to_json(record)),
        "markdown": (names["markdown"], lambda: markdown_summary(record, image=names["png"])),
        "csv": (names["csv"], lambda: per_class_csv(record)),
        "png": (names["png"], lambda: confusion_matrix_png(record)),
    }, force=force)


def write_comparison_reports(comparison: ComparisonRecord, out_dir: str | os.PathLike[str],
                             *, force: bool = False) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class.csv`` and ``confusion_<backend>.png``.

    Returns ``{"json", "markdown", "csv", "png_<backend>"...}`` → path.
    """
    models = comparison.models
    names = comparison_files([(m.model.backend, m.model.quantization) for m in models])
    contents: dict[str, tuple[str, Renderer]] = {
        "json": (names.pop("json"), lambda: to_json(comparison)),
        "markdown": (names.pop("markdown"), lambda: comparison_markdown(comparison)),
        "csv": (names.pop("csv"), lambda: comparison_per_class_csv(comparison)),
    }
    for (key, png), record in zip(names.items(), models, strict=True):
        contents[key] = (png, functools.partial(confusion_matrix_png, record))
    return write_all(out_dir, contents, force=force)


def write_compare_reports(record: ComparisonRecord, out_dir: str | os.PathLike[str], *,
                          force: bool = False) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.md``, ``compare.csv``, ``compare_per_class.csv``
    (every target checked before anything is written)."""
    names = compare_files()
    return write_all(out_dir, {
        "json": (names["json"], lambda: to_json(record)),
        "markdown": (names["markdown"], lambda: compare_markdown(record)),
        "csv": (names["csv"], lambda: compare_csv(record)),
        "per_class_csv": (names["per_class_csv"], lambda: compare_per_class_csv(record)),
    }, force=force)


def write_quantization_reports(record: QuantizationRecord, out_dir: str | os.PathLike[str], *,
                               force: bool = False) -> dict[str, Path]:
    """Write ``quantize.json`` and ``quantize.md`` (all targets checked before writing)."""
    names = quantization_files()
    return write_all(out_dir, {
        "json": (names["json"], lambda: to_json(record)),
        "markdown": (names["markdown"], lambda: quantization_markdown(record)),
    }, force=force)


def write(record: Record, out_dir: str | os.PathLike[str], *, force: bool = False,
          stem: str = "report") -> dict[str, Path]:
    """Write ``record``'s report set into ``out_dir``, the writer chosen by its type."""
    if isinstance(record, EvaluationRecord):
        return write_reports(record, out_dir, force=force, stem=stem)
    if isinstance(record, QuantizationRecord):
        return write_quantization_reports(record, out_dir, force=force)
    if isinstance(record, ComparisonRecord):
        if record.kind == "compare":
            return write_compare_reports(record, out_dir, force=force)
        return write_comparison_reports(record, out_dir, force=force)
    raise TypeError(f"no report set for a {type(record).__name__}")
