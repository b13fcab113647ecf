"""Renderers of the quantisation record: terminal, Markdown, and the one-line verdict.

Kept apart from :mod:`resnet8_onnx.quantize` (which builds the record) so that data and
rendering stay separate; like every renderer they read only the JSON-ready dict
(``QuantizationRecord.to_dict()``), so a saved ``quantize.json`` re-renders without the models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import (
    DASH,
    describe_data,
    format_int,
    format_pct,
    is_number,
    jsonable,
    markdown_table,
    to_json,
    write_all,
)

if TYPE_CHECKING:
    from rich.console import Console


def _get(record: Any, *keys: str) -> Any:
    value = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


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


def render_quantization_terminal(record: Mapping[str, Any],
                                 console: Console | None = None) -> None:
    """The record on the terminal: what was written, the candidates, test figures, speed."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    record = jsonable(record)
    out = console or Console(highlight=False)
    title, *rest = _header_lines(record)
    out.print(f"[bold green]int8 model written:[/bold green] {escape(title)}")
    for line in rest:
        out.print(escape(line))
    rows = _candidate_rows(record)
    if len(rows) > 1:  # one fixed recipe: its figures are in the speed and test lines
        table = Table(title="Candidates, measured against fp32 in the same run",
                      title_justify="left",
                      box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        header = _candidate_header(record)
        for k, h in enumerate(header):
            table.add_column(h, justify="left" if k in (0, len(header) - 1) else "right",
                             no_wrap=k < len(header) - 1)
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        out.print(table)
        out.print(f"[dim]{escape(CANDIDATE_LEGEND)}[/dim]")
    ev = record.get("evaluation")
    if ev:
        out.print(f"[bold]Test images:[/bold] {escape(describe_data(ev.get('data') or {}))}")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for h in ("", "fp32", "int8"):
            table.add_column(h, justify="left" if not h else "right")
        for row in _evaluation_rows(record):
            table.add_row(*(escape(c) for c in row))
        out.print(table)
        out.print(f"[bold]{escape(int8_verdict_line(record))}[/bold]")
    out.print(f"[bold]Speed:[/bold] {escape(_speed_line(record))}")
    out.print(f"[bold]{escape(str(record.get('speed_verdict')))}[/bold]")
    out.print(f"[dim]CPU: {escape(_cpu_line(record))}[/dim]")
    layers = _layer_rows(record)
    if layers:
        out.print("[yellow]Largest quantisation error[/yellow] "
                  f"({escape(str(record.get('layer_errors_note') or ''))}):")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for k, h in enumerate(_LAYER_HEADER):
            table.add_column(h, justify="left" if k < 2 else "right")
        for row in layers:
            table.add_row(*(escape(c) for c in row))
        out.print(table)
    elif record.get("layer_errors_note"):
        out.print(f"[dim]{escape(str(record['layer_errors_note']))}[/dim]")
    for note in record.get("notes") or []:
        out.print(f"[yellow]note:[/yellow] {escape(str(note))}")


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


def write_quantization_reports(record: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                               force: bool = False, check_only: bool = False) -> dict[str, Path]:
    """Write ``quantize.json`` and ``quantize.md`` (all targets checked before writing)."""
    contents = {"json": ("quantize.json", lambda: to_json(record)),
                "markdown": ("quantize.md", lambda: quantization_markdown(record))}
    return write_all(out_dir, contents, force=force, check_only=check_only)

