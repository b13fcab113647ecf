"""Terminal writer: every record printed with rich (imported inside the functions).

Verdicts and warnings come first and in colour; figures are the ones the other writers show.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    _g,
    _header_lines,
    _layer_rows,
    _parity_lines,
    _speed_line,
    _threads_text,
    _verdict_lines,
    int8_verdict_line,
    parameters_text,
    provenance_line,
)
from .text import (
    DASH,
    _data_warnings,
    _fixed,
    _get,
    _macro_note,
    _model_line,
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

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

def _console_or_default(console: Console | None) -> Console:
    if console is not None:
        return console
    from ..progress import console as make_console

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


def render_compare_terminal(record: Mapping[str, Any], console: Console | None = None) -> None:
    """One table: a column per model, a row per figure (fits 80 columns for four models)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    record = jsonable(record)
    out = _console_or_default(console)
    out.print(f"[bold]Compared[/bold] {len(record.get('models') or [])} models; the first is "
              "the reference")
    out.print(f"[bold]Images:[/bold] {escape(describe_data(record.get('data') or {}))}")
    for line in _compare_model_lines(record):
        out.print(f"  {escape(line)}")
    out.print()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    for m in record.get("models") or []:
        table.add_column(escape(str(m.get("label"))), justify="right")
    for label, cells, section in _compare_rows(record):
        if section and table.row_count:
            table.rows[-1].end_section = True
        table.add_row(escape(label), *cells)
    out.print(table)
    for note in _compare_notes(record):
        out.print(f"[dim]{escape(note)}[/dim]")


def render_benchmark_terminal(record: Mapping[str, Any], console: Console | None = None) -> None:
    """Inputs, machine and models first, then one row per configuration and the best ones."""
    from rich.markup import escape

    record = jsonable(record)
    out = _console_or_default(console)
    _print_benchmark_setup(record, out)
    out.print()
    out.print(_benchmark_table(record))
    for b in record.get("best") or []:
        ratio = b.get("ratio_to_matmul")
        setting = ", ".join(x for x in (
            f"opt {b['optimization']}" if b.get("optimization") else "",
            f"{b['threads']} thread{'s' if b['threads'] != 1 else ''}" if b.get("threads")
            else "default threads", f"batch {b.get('batch_size'):,}") if x)
        out.print(f"[bold]best {escape(str(b.get('label')))}:[/bold] "
                  f"{b.get('images_per_second', 0):,.0f} images/s ({setting})"
                  + (f", {_g(b.get('gflops'))} GFLOP/s = {ratio:.2f}× the MatMul reference"
                     if ratio is not None else ""))
    opt = record.get("optimized_model")
    if opt:
        out.print(f"optimised model (level {opt.get('level')}) written to "
                  f"{escape(str(opt.get('path')))}")
        if opt.get("note"):
            out.print(f"[dim]{escape(opt['note'])}[/dim]")


def _print_benchmark_setup(record: Mapping[str, Any], out: Console) -> None:
    """What was measured, on what, and how: the context a reader needs before the figures
    (and a warning when the machine was busy, since the figures are then noisy)."""
    from rich.markup import escape

    from ..bench import BUSY_WARNING, MATMUL_SIZE

    inputs = record.get("inputs") or {}
    if inputs.get("kind") == "data":
        what = (f"real images, the first {inputs.get('images', 0):,}"
                + (" (repeated to fill the largest batch)" if inputs.get("repeated") else "")
                + f" of: {describe_data(inputs.get('data') or {})}")
    else:
        what = inputs.get("description", "synthetic")
    out.print(f"[bold]Inputs:[/bold] {escape(what)}")
    machine = record.get("machine") or {}
    reference = machine.get("matmul_reference") or {}
    size = reference.get("size", MATMUL_SIZE)
    ref = ", ".join(f"{_g(v)} GFLOP/s on {t} thread{'s' if t != '1' else ''}"
                    for t, v in (reference.get("gflops") or {}).items())
    cpu = f" ({machine['cpu']})" if machine.get("cpu") else ""
    out.print(f"[bold]Machine:[/bold] {machine.get('cores', '?')} cores{escape(cpu)}; "
              f"reference: ONNX Runtime MatMul {size}×{size} float32 at "
              f"{escape(ref or 'not measured')}")
    busy = machine.get("cpu_busy_before")
    if isinstance(busy, int | float) and busy > BUSY_WARNING:
        out.print(f"[yellow]warning:[/yellow] the machine was busy just before the benchmark "
                  f"(other work used {busy:.0%} of the {machine.get('cores')} cores): figures "
                  "are noisy")
    for m in record.get("models") or []:
        macs = m.get("macs_per_image")
        macs_text = f"{macs:,} MACs/image ({m.get('macs_source')})" if macs else \
            f"MACs {m.get('macs_source', 'n/a')}"
        out.print(f"[bold]{escape(str(m.get('label')))}[/bold]: "
                  f"{escape(Path(str(m.get('path'))).name)} ({escape(str(m.get('backend')))} "
                  f"{escape(str(m.get('runtime_version')))}); {escape(macs_text)}")
        for note in m.get("notes") or []:
            out.print(f"  [dim]{escape(note)}[/dim]")
    settings = record.get("settings") or {}
    out.print(f"[dim]each configuration: warm-up ≥ {settings.get('warmup_seconds')} s, then ≥ "
              f"{settings.get('min_iterations')} calls and ≥ {settings.get('min_seconds')} s; "
              "latency is per call (one batch)[/dim]")


def _benchmark_table(record: Mapping[str, Any]) -> Table:
    """One row per configuration, a section per (model, threads, level) group."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
                  caption="config: model number, ONNX Runtime optimisation level, threads; "
                          "×MatMul: GFLOP/s over the MatMul reference's at the same threads "
                          "(a ratio, not a roofline share: above 1 happens)",
                  caption_justify="left")
    for header in ("config", "batch", "images/s", "p50 ms", "p90 ms", "p99 ms", "GFLOP/s",
                   "×MatMul"):
        table.add_column(header, justify="left" if header == "config" else "right",
                         no_wrap=True)
    previous = None
    for r in record.get("results") or []:
        group = (r.get("model"), r.get("threads"), r.get("optimization"))
        config = ""
        if group != previous:
            if previous is not None:
                table.rows[-1].end_section = True
            number = str(r.get("label", "")).split(" ", 1)[0]
            config = " ".join(x for x in (number, r.get("optimization"),
                                          _threads_text(r.get("threads"))) if x)
        previous = group
        lat = r.get("latency_ms") or {}
        ratio = r.get("ratio_to_matmul")
        table.add_row(escape(config), f"{r.get('batch_size'):,}",
                      f"{r.get('images_per_second', 0):,.0f}", _g(lat.get("p50")),
                      _g(lat.get("p90")), _g(lat.get("p99")), _g(r.get("gflops")),
                      f"{ratio:.2f}" if ratio is not None else "—")
    return table


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


@_plain_input
def render_data_terminal(description: Mapping[str, Any], console: Console | None = None) -> None:
    """The ``data`` command: which images, where from, what was verified, counts per class."""
    out = _console_or_default(console)
    out.print(f"[bold]{describe_data(description)}[/bold]")
    source = description.get("source") or {}
    out.print(f"source: {source.get('kind')} at {source.get('path')}")
    for line in source.get("checks") or []:
        out.print(f"  verified: {line}")
    for line in _data_warnings(description):
        out.print(f"  [yellow]warning:[/yellow] {line}")
    counts = ", ".join(f"{name} {n:,}" for name, n in (description.get("per_class") or {}).items())
    out.print(f"per class: {counts}")
