"""Report sets: which files each command's ``--out`` directory holds, checked then written.

Text renderers return strings and these writers put them on disk atomically, so a failed or
interrupted run never leaves half a report.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from resnet8_onnx.records import ComparisonRecord, EvaluationRecord, QuantizationRecord
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
from resnet8_onnx.report.text import confusion_png_names
from resnet8_onnx.support.fsutil import (
    check_output_dir,
    check_writable,
    prepare_output_dir,
    write_bytes_atomic,
    write_text_atomic,
)

Renderer = Callable[[], str | bytes]


_R = TypeVar("_R")


def _given(record: _R | None) -> _R:
    """The record a writer renders: ``None`` is only for ``check_only`` (nothing rendered)."""
    if record is None:
        raise ValueError("no record to write (None is for check_only)")
    return record


def write_all(out_dir: str | os.PathLike[str], contents: Mapping[str, tuple[str, Renderer]],
               *, force: bool, check_only: bool = False) -> dict[str, Path]:
    """Check every target, then render and write each file atomically.

    Checking all targets before rendering or writing anything means a refused overwrite
    fails fast and leaves the directory exactly as it was, not with half a new report.
    ``check_only`` does just the checks, creating and rendering nothing, and returns the
    paths: commands call it before their expensive work, so a report that would be refused
    is refused before the models run, not after. The writers below take ``None`` for the
    record then: only the file names are needed.
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


def write_reports(record: EvaluationRecord | None, out_dir: str | os.PathLike[str], *,
                  force: bool = False, stem: str = "report",
                  check_only: bool = False) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class.csv``, ``confusion_<backend>.png``.

    The same names as the ``run`` report directory (:func:`write_comparison_reports`), so a
    script reads either. Another ``stem`` writes ``{stem}.json``, ``{stem}.md``,
    ``{stem}_per_class.csv`` and ``{stem}_confusion.png``. ``out_dir`` is created if missing
    (its parent must exist). Existing files are refused unless ``force``. Returns
    ``{"json", "markdown", "csv", "png"}`` → path.
    """
    record = record if record is not None else EvaluationRecord()  # check_only: names only
    plain = stem == "report"
    png = f"confusion_{record.model.backend}.png" if plain else f"{stem}_confusion.png"
    contents: dict[str, tuple[str, Renderer]] = {
        "json": (f"{stem}.json", lambda: to_json(record)),
        "markdown": (f"{stem}.md", lambda: markdown_summary(record, image=png)),
        "csv": ("per_class.csv" if plain else f"{stem}_per_class.csv",
                lambda: per_class_csv(record)),
        "png": (png, lambda: confusion_matrix_png(record)),
    }
    return write_all(out_dir, contents, force=force, check_only=check_only)


def write_comparison_reports(comparison: ComparisonRecord | None,
                             out_dir: str | os.PathLike[str], *, force: bool = False,
                             check_only: bool = False) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``per_class.csv`` and ``confusion_<backend>.png``.

    Returns ``{"json", "markdown", "csv", "png_<backend>"...}`` → path.
    """
    comparison = comparison if comparison is not None else ComparisonRecord()
    contents: dict[str, tuple[str, Renderer]] = {
        "json": ("report.json", lambda: to_json(comparison)),
        "markdown": ("report.md", lambda: comparison_markdown(comparison)),
        "csv": ("per_class.csv", lambda: comparison_per_class_csv(comparison)),
    }
    models = comparison.models
    for png, record in zip(confusion_png_names(models), models, strict=True):
        contents[f"png_{png.removeprefix('confusion_').removesuffix('.png')}"] = (
            png, functools.partial(confusion_matrix_png, record))
    return write_all(out_dir, contents, force=force, check_only=check_only)


def write_compare_reports(record: ComparisonRecord | None, out_dir: str | os.PathLike[str], *,
                          force: bool = False, check_only: bool = False) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.md``, ``compare.csv``, ``compare_per_class.csv``.

    Every target is checked before anything is written (see ``report.write_all``, also for
    ``check_only``).
    """
    return write_all(out_dir, {
        "json": ("compare.json", lambda: to_json(record)),
        "markdown": ("compare.md", lambda: compare_markdown(_given(record))),
        "csv": ("compare.csv", lambda: compare_csv(_given(record))),
        "per_class_csv": ("compare_per_class.csv",
                          lambda: compare_per_class_csv(_given(record))),
    }, force=force, check_only=check_only)


def write_quantization_reports(record: QuantizationRecord | None,
                               out_dir: str | os.PathLike[str], *, force: bool = False,
                             check_only: bool = False) -> dict[str, Path]:
    """Write ``quantize.json`` and ``quantize.md`` (all targets checked before writing)."""
    contents = {"json": ("quantize.json", lambda: to_json(record)),
                "markdown": ("quantize.md", lambda: quantization_markdown(_given(record)))}
    return write_all(out_dir, contents, force=force, check_only=check_only)
