"""``tune``'s record on the terminal: every configuration as measured, the one written, and
what proves it. Reads only the record, so a saved tuning JSON renders without any runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

from resnet8_onnx.records.tuning import TuneCandidate, TuningRecord
from resnet8_onnx.report.text import DASH

if TYPE_CHECKING:
    from rich.console import Console

LEGEND = ("agreement: held-out images whose top-1 equals ONNX Runtime fp32's; × fp32: "
          "images/s over ONNX Runtime fp32, interleaved passes in this run; "
          "✓ within the tolerance, ● chosen")


def candidate_row(c: TuneCandidate) -> list[str]:
    """One table row: name, agreement, max |Δ|, images/s, × fp32, mark (or the error)."""
    if c.error is not None:
        return [c.name, DASH, DASH, DASH, DASH, f"not measured: {c.error}"]
    fraction = c.agreement_fraction
    mark = "●" if c.chosen else "✓" if c.eligible else ""
    return [c.name + (f" ({c.recipe})" if c.recipe and c.runtime == "onnxruntime" else ""),
            DASH if fraction is None else f"{fraction:.2%}",
            DASH if c.holdout_max_abs_diff is None else f"{c.holdout_max_abs_diff:.2g}",
            DASH if c.images_per_second is None else f"{c.images_per_second:,.0f}",
            DASH if c.speedup is None else f"{c.speedup:.2f}×", mark]


def render_tuning_terminal(record: TuningRecord, console: Console | None = None) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = console or Console(highlight=False)
    chosen = record.chosen
    out.print(f"[bold green]tuned:[/bold green] {escape(chosen.name)} written to "
              f"{escape(', '.join(chosen.files))}")
    cpu = record.cpu or {}
    flags = ", ".join(cpu.get("flags") or []) or "unknown"
    out.print(f"CPU: {escape(str(cpu.get('model_name') or 'unknown'))} ({cpu.get('cores')} "
              f"cores; flags: {escape(flags)})")
    table = Table(title=f"Configurations on {record.holdout.count:,} held-out images, tolerance "
                        f"{(record.tolerance or 0):.2%}", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for k, h in enumerate(("configuration", "agreement", "max |Δ|", "images/s", "× fp32", "")):
        table.add_column(h, justify="left" if k in (0, 5) else "right")
    for c in record.candidates:
        table.add_row(*(escape(cell) for cell in candidate_row(c)))
    out.print(table)
    out.print(f"[dim]{escape(LEGEND)}[/dim]")
    out.print(f"chosen: {escape(chosen.reason)}")
    if chosen.test_agreement is not None:
        out.print(f"test set: {chosen.test_agreement:.2%} of {chosen.test_images:,} predictions "
                  "equal ONNX Runtime fp32's")
    rep = chosen.reproduced
    if rep.get("passed"):
        out.print(f"reproduced from the written file: {rep['same_top1']:,}/"
                  f"{rep['holdout_images']:,} held-out predictions, max |Δ| "
                  f"{rep['max_abs_diff_vs_measured']:.2g}")
    out.print(f"run it: {escape(chosen.command)}")
