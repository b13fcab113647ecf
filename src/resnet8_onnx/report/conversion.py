"""``convert``'s and ``annotate``'s results on the terminal: what was written from what, and
what proves it. Read from the result alone (paths shown as :func:`~.text.shown_path` shows
every recorded path), so the CLI prints nothing of its own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resnet8_onnx.records import Conversion
from resnet8_onnx.report.text import shown_path
from resnet8_onnx.support.progress import console as make_console

if TYPE_CHECKING:
    from rich.console import Console


def render_conversion_terminal(result: Conversion, console: Console | None = None) -> None:
    """One line: source → output, with the opset and tensor names (Keras → ONNX) or the
    target and builder (the PyTorch directions), then the numerical checks made."""
    out = console or make_console()
    seconds = result.seconds or 0.0
    files = f"{shown_path(result.source_path)} → {shown_path(result.output_path)}"
    if result.target is None:
        out.print(f"[green]converted[/green] {files} (opset {result.opset}, input "
                  f"{result.input_name!r}, output {result.output_name!r}: "
                  f"{result.output_kind}, {seconds:.1f} s)")
        return
    out.print(f"[green]converted[/green] {files} ({result.target}, builder {result.builder}, "
              f"output {result.output_kind}, {seconds:.1f} s)")
    checked = "; ".join(f"matches {c['against']} (max |Δ| {c['max_abs_diff']:.2g})"
                        for c in result.checks or ())
    if checked:
        out.print(f"checked: {checked}")


def render_annotation_terminal(account: Mapping[str, Any], console: Console | None = None,
                               ) -> None:
    """What ``annotate`` wrote: the spec recorded (or embedded, with its parity check)."""
    out = console or make_console()
    spec = account["preprocessing"]
    what = "embedded" if account["embedded"] else "recorded"
    out.print(f"[green]annotated[/green] {shown_path(account['source'])} → "
              f"{shown_path(account['output'])}: preprocessing {what} ({spec['description']})")
    if account["embedded"]:
        parity, inp = account["parity"], account["input"]
        out.print(f"  input {inp['name']!r} {inp['shape']} uint8 NHWC RGB; parity on "
                  f"{parity['samples']:,} images: {parity['argmax_agreement']:,} predictions "
                  f"agree, max |Δ| {parity['max_abs_diff']:.2e}")
