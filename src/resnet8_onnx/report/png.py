"""PNG writer: the confusion matrix of an evaluation, throughput against batch size of a
benchmark. matplotlib is imported inside the functions; identical records give identical
bytes (no date or software metadata)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnet8_onnx.records import (
    BenchmarkRecord,
    BenchModel,
    BenchResult,
    EvaluationRecord,
    Machine,
)
from resnet8_onnx.report.text import describe_data, format_int, format_pct, model_name


def confusion_matrix_png(record: EvaluationRecord, *, dpi: int = 110) -> bytes:
    """The confusion matrix as a PNG: counts in cells, colour = share of the true class.

    Row-normalised colour makes classes comparable even when their support differs (a perf
    subset has 20 images per class, a custom set may be unbalanced); the counts stay exact.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    metrics = record.metrics
    matrix = np.asarray(metrics.confusion_matrix, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.size == 0:
        raise ValueError("the record holds no square confusion matrix")
    n = matrix.shape[0]
    names = metrics.names
    row_sums = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, dtype=float),
                      where=row_sums > 0)

    # Above 30 classes counts in cells are unreadable: colour only, at a bounded size (the
    # reports list the most-confused pairs in words).
    big = n > 30
    side = min(14.0, max(6.0, 0.72 * n + 2.6)) if big else max(6.0, 0.72 * n + 2.6)
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
    for i in range(0 if big else n):
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

    ticks = {"fontsize": max(3.0, 8.0 - n / 25)} if big else {}
    ax.set_xticks(range(n), labels=names, rotation=40 if not big else 90, ha="right",
                  rotation_mode="anchor", **ticks)
    ax.set_yticks(range(n), labels=names, **ticks)
    ax.set_xlabel("predicted class", fontsize=10, labelpad=6)
    ax.set_ylabel("true class", fontsize=10, labelpad=6)
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(-0.5, n, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0 if big else 1.2)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)

    headline = f"{model_name(record)} ({record.model.backend})"
    figures = f"top-1 accuracy {format_pct(metrics.accuracy)} ({format_int(metrics.correct)} / " \
              f"{format_int(metrics.total)})"
    fig.suptitle(f"{headline}\n{figures}", fontsize=12, fontweight="bold")
    official = record.data.full_official_test_set
    ax.set_title(describe_data(record.data), fontsize=9.5, pad=8,
                 color="#444444" if official else "#b22222",
                 fontweight="normal" if official else "bold")

    buffer = io.BytesIO()
    # No "Software"/date metadata: identical records give byte-identical PNGs.
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def throughput_png(record: BenchmarkRecord, *, dpi: int = 110) -> bytes:
    """Throughput vs batch size, one line per model / threads / optimisation level.

    Colour tells optimisation levels (and models) apart, dashes mark fewer threads; when all
    models share one MAC count a right-hand GFLOP/s axis and the MatMul references are drawn.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter


    results, models, machine = record.results, record.models, record.machine
    if not results:
        raise ValueError("the benchmark record holds no results")
    # The cores the record was measured on, never this machine's: a saved record is drawn
    # from what it says (an old one without them says so).
    cores = machine.cores
    groups: dict[tuple[int, str | None, int | None], list[BenchResult]] = {}
    for r in results:
        groups.setdefault((r.model, r.optimization, r.threads), []).append(r)
    most = max((r.threads or cores or 0) for r in results)

    fig = Figure(figsize=(10.5, 6.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _plot_throughput_lines(ax, groups, models, cores=cores, most=most)
    sizes = sorted({r.batch_size for r in results})
    ax.set_xscale("log")
    ax.set_xticks(sizes, labels=[f"{s:,}" for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size (images per call)", fontsize=11)
    ax.set_ylabel("throughput (images/s)", fontsize=11)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    ax.set_ylim(bottom=0)

    gflops_axis = _draw_matmul_references(ax, models, results, machine, most=most)
    ax.legend(loc="upper left", bbox_to_anchor=(1.12 if gflops_axis else 1.01, 1.0),
              fontsize=9, frameon=False, title="model · optimisation · threads",
              title_fontsize=9)
    what = "real images" if record.inputs.kind == "data" else "synthetic images"
    names = ", ".join(Path(e.path).name for e in models[:3])
    names += f" and {len(models) - 3} more" if len(models) > 3 else ""
    fig.suptitle(f"Throughput vs batch size — {names}", fontsize=13, fontweight="bold")
    cpu = f" ({machine.cpu})" if machine.cpu else ""
    solid = f"{most} thread{'s' if most != 1 else ''}" if most else "the runtime's default"
    ax.set_title(f"{what}; {f'{cores} cores' if cores else 'cores not recorded'}{cpu}; "
                 f"solid lines: {solid}, dashed: fewer", fontsize=9.5,
                 color="#444444")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _plot_throughput_lines(ax: Any, groups: Mapping[tuple[int, str | None, int | None],
                                                    list[BenchResult]],
                           models: Sequence[BenchModel], *, cores: int | None,
                           most: int) -> None:
    """One line per (model, level, threads): a colour per (model, level), a marker per model,
    dashes for fewer threads than the most measured."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    colour_keys: list[tuple[Any, Any]] = []
    markers = "osD^vP*X"
    for (m, opt, thr), points in groups.items():
        if (m, opt) not in colour_keys:
            colour_keys.append((m, opt))
        colour = palette[colour_keys.index((m, opt)) % len(palette)]
        points = sorted(points, key=lambda r: r.batch_size)
        t = thr or cores or 0  # 0: the runtime's default on cores the record does not name
        label = models[m].label if m < len(models) else f"#{m + 1}"
        label += f" · opt {opt}" if opt else ""
        label += (f" · {t} thread{'s' if t != 1 else ''}" if t else " · all cores") + (
            " (default)" if thr is None else "")
        ax.plot([r.batch_size for r in points], [r.images_per_second for r in points],
                color=colour, linestyle="-" if t == most else "--",
                marker=markers[m % len(markers)], markersize=6, linewidth=2, label=label)


def _draw_matmul_references(ax: Any, models: Sequence[BenchModel],
                            results: Sequence[BenchResult], machine: Machine,
                            *, most: int) -> bool:
    """When every model has the same MAC count, images/s maps to GFLOP/s: draw that as a
    right-hand axis with the MatMul references as horizontal lines. Returns whether drawn
    (with mixed or unknown MAC counts no single GFLOP/s scale exists)."""
    macs = {e.macs_per_image for e in models if e.macs_per_image is not None}
    if len(macs) == 1:
        per_image = 2 * next(iter(macs)) / 1e9  # GFLOP per image
        top = max(r.images_per_second for r in results)
        reference = machine.matmul_reference.gflops
        for t, gflops in sorted(reference.items(),
                                key=lambda kv: int(kv[0])):
            if gflops:
                ips = gflops / per_image
                # In the legend rather than annotated: a label on the plot hides data points.
                ax.axhline(ips, color="#555555", linestyle=":", linewidth=1.4,
                           dashes=(1, 2 + 2 * int(t == str(most))),
                           label=f"ONNX Runtime MatMul reference · {t} "
                                 f"thread{'s' if t != '1' else ''} "
                                 f"({gflops:,.0f} GFLOP/s)")
                top = max(top, ips)
        ax.set_ylim(0, top * 1.12)
        second = ax.secondary_yaxis("right", functions=(lambda v: v * per_image,
                                                        lambda g: g / per_image))
        second.set_ylabel(f"GFLOP/s (2 × {next(iter(macs)):,} MACs per image)", fontsize=10)
    return len(macs) == 1
