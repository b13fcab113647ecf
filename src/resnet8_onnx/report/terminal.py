"""Terminal writer: every record printed with rich (imported inside the functions).

Verdicts and warnings come first and in colour; figures are the ones the other writers show.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet8_onnx.machine import BUSY_WARNING, busy_warning
from resnet8_onnx.records import (
    BenchmarkRecord,
    ComparisonRecord,
    Conversion,
    DataInfo,
    EvaluationRecord,
    LayerMatch,
    Metrics,
    QuantizationRecord,
    Record,
    VerificationRecord,
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
    format_g,
    int8_verdict_line,
    layer_match_text,
    layer_rows,
    parameters_text,
    parity_lines,
    provenance_line,
    quantization_header_lines,
    speed_busy_warning,
    speed_line,
    structure_kind,
    threads_text,
    verdict_lines,
)
from resnet8_onnx.report.text import (
    DASH,
    confused_lines,
    data_warnings,
    describe_data,
    format_fixed,
    format_int,
    format_pct,
    is_number,
    macro_note,
    model_line,
    model_name,
    model_notes,
    output_note,
    preprocessing_line,
    shown_class_rows,
    shown_path,
    speed_warning,
    throughput_text,
    top_k_text,
    unique_labels,
)
from resnet8_onnx.support.progress import console as make_console

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def _console_or_default(console: Console | None) -> Console:
    if console is not None:
        return console

    return make_console()


def _metrics_table(record: EvaluationRecord) -> Table:
    from rich import box
    from rich.table import Table

    metrics = record.metrics
    # Fits an 80-column terminal: no outer edge, light rules, no index column.
    table = Table(title=f"Per-class metrics {DASH} {model_name(record)}", title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  caption="all: overall accuracy; macro means of precision, recall, F1, AUC",
                  caption_justify="left")
    table.add_column("class", no_wrap=True)
    for header in ("support", "correct", "accuracy", "precision", "recall", "F1", "AUC"):
        table.add_column(header, justify="right", no_wrap=True)
    per_class, left_out = shown_class_rows(metrics)
    if left_out:
        table.caption = f"{table.caption}; {left_out}"
    for i, c in enumerate(per_class):
        table.add_row(c.name, format_int(c.support), format_int(c.correct),
                      format_pct(c.accuracy), format_fixed(c.precision), format_fixed(c.recall),
                      format_fixed(c.f1), format_fixed(c.auc), end_section=i == len(per_class) - 1)
    table.add_row("[bold]all[/bold]", format_int(metrics.total), format_int(metrics.correct),
                  f"[bold]{format_pct(metrics.accuracy)}[/bold]",
                  format_fixed(metrics.macro_precision), format_fixed(metrics.macro_recall),
                  format_fixed(metrics.macro_f1), format_fixed(metrics.macro_auc))
    return table


def _headline(metrics: Metrics) -> str:
    parts = [f"top-1 [bold]{format_pct(metrics.accuracy)}[/bold] "
             f"({format_int(metrics.correct)}/{format_int(metrics.total)})"]
    if top_k_text(metrics):
        parts.append(top_k_text(metrics))
    if is_number(metrics.top5_accuracy):
        parts.append(f"top-5 {format_pct(metrics.top5_accuracy)}")
    if is_number(metrics.macro_auc):
        parts.append(f"macro AUC {format_fixed(metrics.macro_auc)}")
    if is_number(metrics.macro_f1):
        parts.append(f"macro F1 {format_fixed(metrics.macro_f1)}")
    return " · ".join(parts)


def _first_diverging(first: LayerMatch) -> str:
    from rich.markup import escape

    return f"[red]first diverging layer:[/red] {escape(layer_match_text(first))}"


def render_terminal(record: EvaluationRecord, console: Console | None = None) -> None:
    """Print the evaluation of one model: which images, per-class table, headline figures."""
    from rich.markup import escape

    out = _console_or_default(console)
    metrics, data = record.metrics, record.data
    out.print(f"[bold]Evaluated[/bold] {escape(model_line(record))}")
    out.print(f"[bold]Images:[/bold] {escape(describe_data(data))}")
    if preprocessing_line(record):
        out.print(f"[bold]Preprocessing:[/bold] {escape(preprocessing_line(record) or '')}")
    for warning in data_warnings(data):
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    out.print()
    out.print(_metrics_table(record))
    out.print()
    out.print(_headline(metrics))
    if (metrics.num_classes or 0) > 10 and confused_lines(metrics):
        out.print("[bold]Most confused:[/bold] " + escape("; ".join(confused_lines(metrics))))
    notes = [n for n in (output_note(metrics), macro_note(metrics), throughput_text(record)) if n]
    notes += model_notes(record)
    if metrics.argmax_ties:
        notes.append(f"{metrics.argmax_ties:,} images had tied top scores "
                     "(counted as the lowest class index)")
    for note in notes:
        out.print(f"[dim]{escape(note)}[/dim]")
    if busy := speed_warning([record]):
        out.print(f"[yellow]warning:[/yellow] {escape(busy)}")


def render_comparison_terminal(comparison: ComparisonRecord,
                               console: Console | None = None) -> None:
    """Keras-vs-ONNX side by side, with the verdict first and impossible to miss."""
    from rich import box
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    out = _console_or_default(console)
    models = comparison.models
    labels = unique_labels(models)
    verdict = comparison.verdict
    passed = verdict is not None and verdict.passed
    colour = "green" if passed else "red"
    title = "PASS" if passed else "FAIL"
    body = "\n".join(escape(line) for line in verdict_lines(verdict)) if verdict else ""
    out.print(Panel(body or "(no verdict)",
                    title=f"[bold {colour}]VERDICT: {title}[/bold {colour}]",
                    border_style=colour, expand=False))
    data = comparison_data(comparison)
    out.print(f"[bold]Images:[/bold] {escape(describe_data(data))}")
    for warning in data_warnings(data):
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    for label, record in zip(labels, models, strict=True):
        out.print(f"[bold]{escape(label)}:[/bold] {escape(model_line(record))}")
    out.print()

    table = Table(title="Per-class accuracy, side by side", title_justify="left",
                  header_style="bold", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("class", no_wrap=True)
    table.add_column("support", justify="right", no_wrap=True)
    for label in labels:
        table.add_column(f"{label} correct", justify="right")
        table.add_column(f"{label} acc.", justify="right", no_wrap=True)
    pair = len(models) == 2
    if pair:
        table.add_column("Δ correct", justify="right")
    rows = comparison_rows(models)
    for k, row in enumerate(rows):
        cells = [str(row["name"]), format_int(row["support"])]
        for c in row["models"]:
            cells += [format_int(c and c.correct), format_pct(c and c.accuracy)]
        if pair:
            a, b = row["models"]
            cells.append(delta_text(a and a.correct, b and b.correct))
        table.add_row(*cells, end_section=k == len(rows) - 1)
    totals = ["[bold]all[/bold]", format_int(models[0].metrics.total) if models else ""]
    for record in models:
        totals += [format_int(record.metrics.correct),
                   f"[bold]{format_pct(record.metrics.accuracy)}[/bold]"]
    if pair:
        totals.append(delta_text(models[0].metrics.correct, models[1].metrics.correct))
    table.add_row(*totals)
    out.print(table)
    out.print()
    for label, record in zip(labels, models, strict=True):
        m = record.metrics
        parts = [f"top-1 [bold]{format_pct(m.accuracy)}[/bold]"]
        if is_number(m.top5_accuracy):
            parts.append(f"top-5 {format_pct(m.top5_accuracy)}")
        if is_number(m.macro_auc):
            parts.append(f"macro AUC {format_fixed(m.macro_auc)}")
        if is_number(record.timings.images_per_second):
            parts.append(f"{record.timings.images_per_second:,.0f} images/s")
        out.print(f"[bold]{escape(label)}[/bold]: " + " · ".join(parts))
    if busy := speed_warning(models, labels):
        out.print(f"[yellow]warning:[/yellow] {escape(busy)}")
    parity = comparison.parity
    if parity is not None:
        state = "[green]passed[/green]" if parity.passed else "[red]FAILED[/red]"
        out.print(f"[bold]Parity[/bold] {state}:")
        for line in parity_lines(parity):
            out.print(f"  {escape(line)}")
    if comparison.layerwise is not None and comparison.layerwise.first_diverging_layer:
        out.print(_first_diverging(comparison.layerwise.first_diverging_layer))


def render_verification_terminal(report: VerificationRecord,
                                 console: Console | None = None) -> None:
    """The ``verify`` result: structure, interface, dynamic batch, parity, then PASS/FAIL."""
    from rich.markup import escape

    out = _console_or_default(console)
    structure, reference = report.structure, report.reference
    out.print(f"[bold]Verified[/bold] {escape(shown_path(structure.path) or 'ONNX model')} "
              f"against {escape(shown_path(reference.model_path) or 'the reference')} "
              f"({escape(reference.name)})")
    line = provenance_line(report.provenance, structure.path, reference.model_path)
    if line and report.provenance.converted_from_reference is False:
        out.print(f"[bold red]warning:[/bold red] {escape(line)}")
    elif line:
        out.print(f"[dim]provenance: {escape(line)}[/dim]")
    if report.data is not None:
        out.print(f"[bold]Images:[/bold] {escape(describe_data(report.data))}")
    if structure.path:
        out.print("[bold]Structure:[/bold] " + escape("; ".join(_structure_facts(report))))
    parity = report.full_parity()
    parity.passed = report.parity.passed  # the outputs' parity; the verdict comes last
    state = "[green]passed[/green]" if parity.passed else "[red]FAILED[/red]"
    out.print(f"[bold]Parity[/bold] {state}:")
    for line in parity_lines(parity):
        out.print(f"  {escape(line)}")
    layerwise = report.layerwise
    if layerwise is not None and layerwise.skipped:
        out.print(f"[dim]layer-by-layer comparison skipped: {escape(layerwise.skipped)}[/dim]")
    elif layerwise is not None and layerwise.layers is not None:
        first = layerwise.first_diverging_layer
        matched = sum(1 for entry in layerwise.layers if entry.matched)
        tol = layerwise.tolerance
        within = (f" within atol {tol.atol:g} or rtol {tol.rtol:g} × the layer's largest "
                  "|activation|" if tol is not None and is_number(tol.atol)
                  and is_number(tol.rtol) else "")
        fused = sum(1 for entry in layerwise.layers if "fused_into" in entry.extra)
        out.print(f"Layer by layer: {matched}/{len(layerwise.layers)} Keras layers matched "
                  f"an ONNX tensor{within}"
                  + (f"; {fused} computed inside a later layer's tensor (fused)" if fused
                     else ""))
        if not first and not parity.passed and matched == len(layerwise.layers):
            out.print("[dim]every layer is within tolerance at its own scale; the outputs "
                      "differ element by element beyond atol/rtol[/dim]")
        if first:
            out.print(_first_diverging(first))
    kind = escape(structure_kind(structure))
    out.print(f"[bold green]VERIFIED: the {kind} model matches its source[/bold green]"
              if report.passed else "[bold red]VERIFICATION FAILED[/bold red]")


def _structure_facts(report: VerificationRecord) -> list[str]:
    structure = report.structure
    facts = [f"checker {structure.checker or '?'}",
             f"shape inference {structure.shape_inference or '?'}"]
    opsets = ", ".join(f"{k} {v}" for k, v in (structure.opsets or {}).items())
    if opsets:
        facts.append(f"opset {opsets}")
    if structure.nodes is not None:
        facts.append(f"{structure.nodes:,} nodes")
    parameters = parameters_text(structure, report.reference_parameters,
                                 report.reference_batch_normalization_layers)
    if parameters:
        facts.append(parameters)
    if structure.macs_per_image is not None:
        facts.append(f"{structure.macs_per_image:,} MACs/image")
    if structure.quantization:
        facts.append(f"{structure.quantization.get('type', 'int8')} "
                     f"{structure.quantization.get('format', '')} graph".replace("  ", " "))
    return facts


def render_compare_terminal(record: ComparisonRecord, console: Console | None = None) -> None:
    """One table: a column per model, a row per figure (fits 80 columns for four models)."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    out = _console_or_default(console)
    out.print(f"[bold]Compared[/bold] {len(record.models)} models; the first is "
              "the reference")
    out.print(f"[bold]Images:[/bold] {escape(describe_data(record.data))}")
    for line in compare_model_lines(record):
        out.print(f"  {escape(line)}")
    out.print()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("", no_wrap=True)
    for m in record.models:
        table.add_column(escape(str(m.label)), justify="right")
    for label, cells, section in compare_rows(record):
        if section and table.row_count:
            table.rows[-1].end_section = True
        table.add_row(escape(label), *cells)
    out.print(table)
    for note in compare_notes(record):
        out.print(f"[dim]{escape(note)}[/dim]")
    warning = speed_warning(record.models, [str(m.label) for m in record.models])
    if warning:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def render_benchmark_terminal(record: BenchmarkRecord, console: Console | None = None) -> None:
    """Inputs, machine and models first, then one row per configuration and the best ones."""
    from rich.markup import escape

    out = _console_or_default(console)
    _print_benchmark_setup(record, out)
    out.print()
    out.print(_benchmark_table(record))
    for b in record.best:
        setting = ", ".join(x for x in (
            f"opt {b.optimization}" if b.optimization else "",
            f"{b.threads} thread{'s' if b.threads != 1 else ''}" if b.threads
            else "default threads", f"batch {b.batch_size:,}") if x)
        out.print(f"[bold]best {escape(b.label)}:[/bold] "
                  f"{b.images_per_second:,.0f} images/s ({setting})"
                  + (f", {format_g(b.gflops)} GFLOP/s = {b.ratio_to_matmul:.2f}× the MatMul "
                     "reference" if b.ratio_to_matmul is not None else ""))
    opt = record.optimized_model
    if opt is not None:
        out.print(f"optimised model (level {opt.level}) written to {escape(shown_path(opt.path))}")
        if opt.note:
            out.print(f"[dim]{escape(opt.note)}[/dim]")


def _print_benchmark_setup(record: BenchmarkRecord, out: Console) -> None:
    """What was measured, on what, and how: the context a reader needs before the figures
    (and a warning when the machine was busy, since the figures are then noisy)."""
    from rich.markup import escape


    inputs = record.inputs
    fed = [m.input_description for m in record.models]
    common = fed[0] if fed and fed[0] and len(set(fed)) == 1 else None
    if inputs.kind == "data":
        what = (f"real images, the first {inputs.images or 0:,}"
                + (" (repeated to fill the largest batch)" if inputs.repeated else "")
                + f" of: {describe_data(inputs.data or DataInfo())}")
    else:
        what = (f"random uint8 pixels (seed {inputs.seed})" if inputs.seed is not None
                else inputs.description or "synthetic")
    out.print(f"[bold]Inputs:[/bold] {escape(what)}"
              + (f"; fed: {escape(common)}" if common else
                 "; prepared for each model by its own spec" if any(fed) else ""))
    machine = record.machine
    reference = machine.matmul_reference
    size = reference.size
    ref = ", ".join(f"{format_g(v)} GFLOP/s on {t} thread{'s' if t != '1' else ''}"
                    for t, v in reference.gflops.items())
    cpu = f" ({machine.cpu})" if machine.cpu else ""
    out.print(f"[bold]Machine:[/bold] {machine.cores or '?'} cores{escape(cpu)}; "
              f"reference: ONNX Runtime MatMul {size}×{size} float32 at "
              f"{escape(ref or 'not measured')}")
    busy = machine.cpu_busy_before
    during = machine.cpu_busy_during
    if is_number(busy) and busy > BUSY_WARNING:
        out.print(f"[yellow]warning:[/yellow] the machine was busy just before the benchmark "
                  f"(other work used {busy:.0%} of the {machine.cores} cores): figures "
                  "are noisy")
    elif is_number(during) and during > BUSY_WARNING:
        line = busy_warning(during, machine.cores, "during the benchmark", "figures")
        out.print(f"[yellow]warning:[/yellow] {escape(line or '')}")
    for m in record.models:
        macs_text = f"{m.macs_per_image:,} MACs/image ({m.macs_source})" if m.macs_per_image \
            else f"MACs {m.macs_source or 'n/a'}"
        out.print(f"[bold]{escape(m.label)}[/bold]: "
                  f"{escape(Path(m.path).name)} ({escape(m.backend)} "
                  f"{escape(m.runtime_version)}); {escape(macs_text)}")
        if m.input_description and common is None:
            out.print(f"  fed: {escape(m.input_description)}")
        for note in m.notes:
            out.print(f"  [dim]{escape(note)}[/dim]")
    settings = record.settings
    out.print(f"[dim]each configuration: warm-up ≥ {settings.warmup_seconds} s, then ≥ "
              f"{settings.min_iterations} calls and ≥ {settings.min_seconds} s; "
              "latency is per call (one batch)[/dim]")


def _benchmark_table(record: BenchmarkRecord) -> Table:
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
    for r in record.results:
        group = (r.model, r.threads, r.optimization)
        config = ""
        if group != previous:
            if previous is not None:
                table.rows[-1].end_section = True
            number = r.label.split(" ", 1)[0]
            config = " ".join(x for x in (number, r.optimization, threads_text(r.threads))
                              if x)
        previous = group
        lat = r.latency_ms or {}
        table.add_row(escape(config), f"{r.batch_size:,}", f"{r.images_per_second:,.0f}",
                      format_g(lat.get("p50")), format_g(lat.get("p90")), format_g(lat.get("p99")),
                      format_g(r.gflops),
                      f"{r.ratio_to_matmul:.2f}" if r.ratio_to_matmul is not None else DASH)
    return table


def render_quantization_terminal(record: QuantizationRecord,
                                 console: Console | None = None) -> None:
    """The record on the terminal: what was written, the candidates, test figures, speed."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = console or Console(highlight=False)
    title, *rest = quantization_header_lines(record, shown_path)
    out.print(f"[bold green]int8 model written:[/bold green] {escape(title)}")
    for line in rest:
        out.print(escape(line))
    rows = candidate_rows(record)
    if len(rows) > 1:  # one fixed recipe: its figures are in the speed and test lines
        table = Table(title="Candidates, measured against fp32 in the same run",
                      title_justify="left",
                      box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        header = candidate_header(record)
        for k, h in enumerate(header):
            table.add_column(h, justify="left" if k in (0, len(header) - 1) else "right",
                             no_wrap=k < len(header) - 1)
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        out.print(table)
        out.print(f"[dim]{escape(CANDIDATE_LEGEND)}[/dim]")
    ev = record.evaluation
    if ev is not None:
        out.print(f"[bold]Test images:[/bold] {escape(describe_data(ev.data))}")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for h in ("", "fp32", "int8"):
            table.add_column(h, justify="left" if not h else "right")
        for row in evaluation_rows(record):
            table.add_row(*(escape(c) for c in row))
        out.print(table)
        out.print(f"[bold]{escape(int8_verdict_line(record))}[/bold]")
    out.print(f"[bold]Speed:[/bold] {escape(speed_line(record))}")
    busy = speed_busy_warning(record)
    if busy:
        out.print(f"[yellow]warning:[/yellow] {escape(busy)}")
    out.print(f"[bold]{escape(record.speed_verdict)}[/bold]")
    out.print(f"[dim]CPU: {escape(cpu_line(record))}[/dim]")
    layers = layer_rows(record)
    if layers:
        out.print("[yellow]Largest quantisation error[/yellow] "
                  f"({escape(record.layer_errors_note or '')}):")
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for k, h in enumerate(LAYER_HEADER):
            table.add_column(h, justify="left" if k < 2 else "right")
        for row in layers:
            table.add_row(*(escape(c) for c in row))
        out.print(table)
    elif record.layer_errors_note:
        out.print(f"[dim]{escape(record.layer_errors_note)}[/dim]")
    for note in record.notes:
        out.print(f"[yellow]note:[/yellow] {escape(str(note))}")


def render_data_terminal(data: DataInfo, console: Console | None = None) -> None:
    """The ``data`` command: which images, where from, what was verified, counts per class."""
    out = _console_or_default(console)
    out.print(f"[bold]{describe_data(data)}[/bold]")
    out.print(f"source: {data.source.kind} at {shown_path(data.source.path)}")
    for line in data.source.checks:
        out.print(f"  verified: {line}")
    for line in data_warnings(data):
        out.print(f"  [yellow]warning:[/yellow] {line}")
    counts = ", ".join(f"{name} {n:,}" for name, n in data.per_class.items())
    out.print(f"per class: {counts}")


def render(record: Record | DataInfo | Conversion, console: Console | None = None) -> None:
    """Print ``record`` on the terminal, the view chosen by its type (and a comparison's
    ``kind``: ``run``'s Keras-vs-ONNX verdict or ``compare``'s model table), so a record read
    back with :func:`~resnet8_onnx.records.load_record` prints as the command printed it."""
    from resnet8_onnx.records import TuningRecord
    from resnet8_onnx.report.conversion import render_conversion_terminal
    from resnet8_onnx.report.tuning import render_tuning_terminal

    views: dict[type, Callable[[Any, Console | None], None]] = {
        ComparisonRecord: render_comparison_terminal, EvaluationRecord: render_terminal,
        VerificationRecord: render_verification_terminal,
        BenchmarkRecord: render_benchmark_terminal,
        QuantizationRecord: render_quantization_terminal, TuningRecord: render_tuning_terminal,
        DataInfo: render_data_terminal, Conversion: render_conversion_terminal}
    if isinstance(record, ComparisonRecord) and record.kind == "compare":
        render_compare_terminal(record, console)
        return
    for kind, view in views.items():
        if isinstance(record, kind):
            view(record, console)
            return
    raise TypeError(f"no terminal view for a {type(record).__name__}")
