"""Command line: parse options, call the library, map errors to exit codes. Nothing else.

Every command writes human-readable output to stdout (or stderr when stdout carries JSON),
progress to stderr, and a ``ToolError`` becomes one line on stderr and its documented exit
code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, errors

EPILOG = """exit codes: 0 ok, 2 usage, 3 input not found, 4 invalid or corrupt input,
5 unsafe input refused, 6 verification failed, 7 accuracy below threshold,
8 output cannot be written, 9 download failed, 70 internal error, 130 interrupted.

data: --data-dir DIR (or $RESNET8_ONNX_DATA_DIR) may point at a CIFAR-10 layout or a folder
holding one (searched two levels deep); otherwise the official files are downloaded into
$RESNET8_ONNX_CACHE_DIR (default ~/.cache/resnet8-onnx). RESNET8_ONNX_OFFLINE=1 forbids
downloads."""


# --------------------------------------------------------------------------- helpers
def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fraction(text: str) -> float:
    value = float(text)
    if value > 1.0 and value <= 100.0:
        value /= 100.0  # accept "85" as 85 %
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy in 0–1 (or 0–100 %)")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _shape(text: str) -> tuple[int, int, int] | None:
    if text.lower() in ("any", "model"):
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 32,32,3) or 'any'") from None
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 32,32,3) or 'any'")
    return dims  # type: ignore[return-value]


def _classes(text: str) -> int | None:
    if text.lower() in ("any", "model"):
        return None
    return _positive_int(text)


def _int_list(text: str) -> list[int]:
    """'1,8,64' → [1, 8, 64]; 'all' stands for every available core (thread lists)."""
    from .bench import available_cores

    values = []
    for part in text.split(","):
        part = part.strip().lower()
        values.append(available_cores() if part in ("all", "max") else _positive_int(part))
    return values


def _levels(text: str) -> list[str]:
    from .bench import OPTIMIZATION_LEVELS

    levels = [p.strip().lower() for p in text.split(",") if p.strip()]
    unknown = [lvl for lvl in levels if lvl not in OPTIMIZATION_LEVELS]
    if unknown or not levels:
        raise argparse.ArgumentTypeError(
            f"{text!r}: levels are a comma-separated subset of {','.join(OPTIMIZATION_LEVELS)}")
    return levels


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _emit_json(payload: dict[str, Any], destination: str | None, *, force: bool) -> None:
    """``--json -`` prints to stdout; a path is written atomically."""
    from .report import to_json

    if destination is None:
        return
    text = to_json(payload)
    if destination == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        from .fsutil import write_text_atomic

        write_text_atomic(destination, text if text.endswith("\n") else text + "\n", force=force)


def _check_json_destination(destination: str | None, force: bool) -> None:
    if destination not in (None, "-"):
        from .fsutil import check_writable

        check_writable(destination, force=force)


def _add_data_options(p: argparse.ArgumentParser, *, subsets: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="CIFAR-10 location: a batches-bin/-py dir, an official tarball, an image "
                        "folder, or a folder holding one (default: $RESNET8_ONNX_DATA_DIR, "
                        "then the cache, then download)")
    if subsets:
        g.add_argument("--split", choices=("test", "train"), default="test",
                       help="test: the 10,000 test images; train: the 50,000 training images "
                            "(data_batch_1-5 of a batches dir or tarball) (default: test)")
        g.add_argument("--subset", choices=("full", "perf"), default="full",
                       help="full: every image the source holds; perf: the MLPerf Tiny "
                            "200-image subset (default: full)")
        g.add_argument("--indices", metavar="FILE", default=None,
                       help="perf_samples_idxs.npy for --subset perf (default: found under "
                            "--data-dir, or downloaded)")
        g.add_argument("--limit", type=_positive_int, metavar="N", default=None,
                       help="only the first N images (a quick check; reports say so)")
    g.add_argument("--offline", action="store_true",
                   help="never download; fail with a hint instead")


def _load_data(args: argparse.Namespace):
    from .data import load_dataset

    dataset = load_dataset(args.data_dir, split=getattr(args, "split", "test"),
                           subset=getattr(args, "subset", "full"),
                           indices_file=getattr(args, "indices", None),
                           download=False if args.offline else None)
    if getattr(args, "limit", None):
        dataset = dataset.limit(args.limit)
    return dataset


# --------------------------------------------------------------------------- commands
def cmd_data(args: argparse.Namespace) -> int:
    dataset = _load_data(args)
    description = dataset.describe()
    if args.json == "-":
        _emit_json(description, "-", force=True)
        return errors.OK
    from .report import describe_data

    console = _console()
    console.print(f"[bold]{describe_data(description)}[/bold]")
    source = description["source"]
    console.print(f"source: {source['kind']} at {source['path']}")
    for line in source.get("checks", []):
        console.print(f"  verified: {line}")
    for line in source.get("warnings", []):
        console.print(f"  [yellow]warning:[/yellow] {line}")
    counts = ", ".join(f"{name} {n:,}" for name, n in description["per_class"].items())
    console.print(f"per class: {counts}")
    _emit_json(description, args.json, force=args.force)
    return errors.OK


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import DEFAULT_OPSET, convert
    from .torch_convert import is_torch_conversion

    output = args.output or str(Path(args.model).with_suffix(".onnx"))
    _check_json_destination(args.json, args.force)
    if is_torch_conversion(args.model, output):
        return _convert_torch(args, output)
    result = convert(args.model, output,
                     opset=DEFAULT_OPSET if args.opset is None else args.opset,
                     input_shape=args.input_shape, num_classes=args.num_classes,
                     force=args.force)
    out = _console(stderr=args.json == "-")
    out.print(f"[green]converted[/green] {args.model} → {result.output_path} "
              f"(opset {result.opset}, input {result.input_name!r}, output "
              f"{result.output_name!r}: {result.output_kind}, {result.seconds:.1f} s)")
    _emit_json(result.to_dict(), args.json, force=args.force)
    return errors.OK


def _convert_torch(args: argparse.Namespace, output: str) -> int:
    """convert to or from PyTorch (.pt2, .safetensors): the target is chosen by suffix."""
    from .torch_convert import convert_torch

    result = convert_torch(args.model, output, builder=args.torch_builder, opset=args.opset,
                           force=args.force)
    out = _console(stderr=args.json == "-")
    checked = "; ".join(f"matches {c['against']} (max |Δ| {c['max_abs_diff']:.2g})"
                        for c in result.checks)
    out.print(f"[green]converted[/green] {args.model} → {result.output_path} ({result.target}, "
              f"builder {result.builder}, output {result.output_kind}, {result.seconds:.1f} s)")
    if checked:
        out.print(f"checked: {checked}")
    _emit_json(result.to_dict(), args.json, force=args.force)
    return errors.OK


def _add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where PyTorch models run (default: cpu; cuda needs a GPU, exit 2 "
                        "otherwise); TF32 stays off so results match the CPU")


def cmd_verify(args: argparse.Namespace) -> int:
    from .backends import load_backend
    from .verify import verify

    _check_json_destination(args.json, args.force)
    dataset = _load_data(args)
    reference = load_backend(args.reference, args.reference_backend, threads=args.threads)
    candidate = None
    if not args.onnx.lower().endswith(".onnx"):  # a PyTorch model: threads and device apply
        candidate = load_backend(args.onnx, threads=args.threads, device=args.device)
    report = verify(reference, args.onnx, dataset.images, indices=dataset.indices,
                    atol=args.atol, rtol=args.rtol, layerwise=args.layerwise,
                    batch_size=args.batch_size, candidate=candidate)
    report["data"] = dataset.describe()
    from .report import render_verification_terminal

    render_verification_terminal(report, _console(stderr=args.json == "-"))
    _emit_json(report, args.json, force=args.force)
    return errors.OK if report["passed"] else errors.VERIFICATION_FAILED


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .backends import load_backend
    from .evaluate import evaluate

    _check_json_destination(args.json, args.force)
    out_dir = _check_out(args)
    backend = load_backend(args.model, args.backend, threads=args.threads, device=args.device)
    dataset = _load_data(args)
    result = evaluate(backend, dataset, batch_size=args.batch_size)
    record = result.to_record()
    from .report import render_terminal, write_reports

    render_terminal(record, _console(stderr=args.json == "-"))
    _emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, write_reports, record, force=args.force)
    accuracy = record["metrics"]["accuracy"]
    if args.min_accuracy is not None and accuracy < args.min_accuracy:
        raise errors.AccuracyBelowThresholdError(
            f"{args.model}: accuracy {accuracy:.2%} is below --min-accuracy "
            f"{args.min_accuracy:.2%}")
    return errors.OK


def _check_out(args: argparse.Namespace) -> Path | None:
    """Validate ``--out`` before any work; the directory is created only when written to."""
    if getattr(args, "out", None) is None:
        return None
    from .fsutil import check_output_dir

    return check_output_dir(args.out)


def _write_reports_locked(
    out_dir: Path | None, write: Any, record: dict[str, Any], *, force: bool
) -> None:
    """Create ``out_dir``, hold its lock while ``write`` writes the report set, list the files."""
    if out_dir is None:
        return
    from .fsutil import exclusive_directory, prepare_output_dir

    with exclusive_directory(prepare_output_dir(out_dir)):
        written = write(record, out_dir, force=force)
    _console(stderr=True).print("reports: " + ", ".join(str(p) for p in written.values()))


def _prepare_out(args: argparse.Namespace) -> Path | None:
    if getattr(args, "out", None) is None:
        return None
    from .fsutil import prepare_output_dir

    return prepare_output_dir(args.out)


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline

    out_dir = _prepare_out(args)
    assert out_dir is not None
    from .fsutil import exclusive_directory

    with exclusive_directory(out_dir):
        comparison = run_pipeline(
            model=args.model, data_dir=args.data_dir, out_dir=out_dir, split=args.split,
            subset=args.subset,
            indices_file=args.indices, limit=args.limit, opset=args.opset,
            min_accuracy=args.min_accuracy, atol=args.atol, rtol=args.rtol,
            batch_size=args.batch_size, threads=args.threads, force=args.force,
            download=False if args.offline else None,
        )
    from .report import render_comparison_terminal

    render_comparison_terminal(comparison, _console())
    verdict = comparison["verdict"]
    if not comparison["parity"]["passed"]:
        return errors.VERIFICATION_FAILED
    if not verdict["above_threshold"]:
        return errors.ACCURACY_BELOW_THRESHOLD
    return errors.OK


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_models, render_compare_terminal, write_compare_reports

    if len(args.models) < 2:
        raise errors.UsageError("compare needs at least two models (the first is the reference)")
    _check_json_destination(args.json, args.force)
    out_dir = _check_out(args)
    dataset = _load_data(args)
    record = compare_models(args.models, dataset, batch_size=args.batch_size,
                            threads=args.threads, device=args.device)
    render_compare_terminal(record, _console(stderr=args.json == "-"))
    _emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, write_compare_reports, record, force=args.force)
    return errors.OK


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench import (
        DEFAULT_MIN_ITERATIONS,
        DEFAULT_MIN_SECONDS,
        DEFAULT_WARMUP_SECONDS,
        QUICK_MIN_SECONDS,
        QUICK_WARMUP_SECONDS,
        benchmark,
        render_benchmark_terminal,
        throughput_png,
    )

    _check_json_destination(args.json, args.force)
    if args.plot is not None:
        from .fsutil import check_writable

        check_writable(args.plot, force=args.force)
    images = data = None
    if args.data_dir is not None:
        dataset = _load_data(args)
        images, data = dataset.images, dataset.describe()
    record = benchmark(
        args.models, batch_sizes=args.batch_sizes, threads=args.threads,
        optimization_levels=args.optimization, full_grid=args.full_grid,
        min_seconds=args.min_seconds if args.min_seconds is not None else (
            QUICK_MIN_SECONDS if args.quick else DEFAULT_MIN_SECONDS),
        min_iterations=args.min_iterations or DEFAULT_MIN_ITERATIONS,
        warmup_seconds=QUICK_WARMUP_SECONDS if args.quick else DEFAULT_WARMUP_SECONDS,
        images=images, data=data, save_optimized=args.save_optimized, force=args.force,
        device=args.device)
    render_benchmark_terminal(record, _console(stderr=args.json == "-"))
    _emit_json(record, args.json, force=args.force)
    if args.plot is not None:
        from .fsutil import write_bytes_atomic

        write_bytes_atomic(args.plot, throughput_png(record), force=args.force)
        _console(stderr=True).print(f"plot: {args.plot}")
    return errors.OK


# --------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(errors.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .evaluate import DEFAULT_BATCH_SIZE
    from .verify import DEFAULT_ATOL, DEFAULT_RTOL

    parser = _Parser(
        prog="resnet8-onnx",
        description="Convert a Keras CIFAR-10 classifier to ONNX and prove the conversion lost "
                    "nothing: convert, verify, evaluate, report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=description, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def output_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", metavar="FILE", default=None,
                       help="write the machine-readable result to FILE ('-' for stdout)")
        p.add_argument("--force", action="store_true", help="overwrite existing output files")

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--batch-size", type=_positive_int, default=DEFAULT_BATCH_SIZE,
                       metavar="N",
                       help=f"images per inference call (default: {DEFAULT_BATCH_SIZE})")
        p.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="intra-op threads (default: the runtime's choice, all cores)")

    def tolerance_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                       help=f"absolute tolerance (default: {DEFAULT_ATOL:g})")
        p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                       help=f"relative tolerance (default: {DEFAULT_RTOL:g}); an element fails "
                            "only if it exceeds both")

    p = command("data", "show where CIFAR-10 is found, what was verified, per-class counts",
                "Locate, verify and describe the CIFAR-10 data a command would use.")
    _add_data_options(p)
    output_options(p)
    p.set_defaults(func=cmd_data)

    p = command("convert", "convert a Keras .h5/.keras model to ONNX (or to/from PyTorch)",
                "Convert a Keras image classifier to ONNX (tf2onnx), after a safe pre-scan of "
                "its config that refuses Lambda and custom layers. The result passes the ONNX "
                "checker and carries self-describing metadata. The output suffix picks the "
                "target: .pt2 writes a PyTorch torch.export program (from .h5/.keras/.onnx), "
                ".safetensors the native ResNet8's state dict, and a .pt2 converts back to "
                ".onnx with torch.onnx (these need the 'torch' extra).")
    p.add_argument("model", help="model file (.h5 or .keras; .onnx, .pt2, .safetensors or .pt "
                                 "for PyTorch targets)")
    p.add_argument("-o", "--output", default=None,
                   help="file to write: .onnx, .pt2 or .safetensors (default: MODEL with .onnx "
                        "suffix)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: 17 from Keras, 14–18 tested; 18 from PyTorch, "
                        "the oldest torch.onnx emits)")
    p.add_argument("--torch-builder", choices=("auto", "native", "onnx2torch"), default="auto",
                   help="how a .pt2 is built: native = readable ResNet8 module with the .h5 "
                        "weights ported; onnx2torch = any supported ONNX model; auto = native "
                        "when the .h5 is recognised as the MLCommons ResNet8 (default: auto)")
    p.add_argument("--input-shape", type=_shape, default=(32, 32, 3), metavar="H,W,C",
                   help="required input shape, or 'any' to accept the model's (default: 32,32,3)")
    p.add_argument("--num-classes", type=_classes, default=10, metavar="N",
                   help="required number of classes, or 'any' (default: 10)")
    output_options(p)
    p.set_defaults(func=cmd_convert)

    p = command("verify", "prove an ONNX model equals its Keras source on real images",
                "Structure report, dynamic-batch check and numerical parity of ONNX against its "
                "source on real CIFAR-10 images; localises the first diverging layer on failure.")
    p.add_argument("reference", help="the source model (.h5/.keras; any backend's file works)")
    p.add_argument("onnx", help="the model to verify: .onnx, or a PyTorch .pt2/.safetensors")
    p.add_argument("--reference-backend", default=None, help=argparse.SUPPRESS)
    _add_data_options(p)
    tolerance_options(p)
    p.add_argument("--layerwise", action="store_true",
                   help="always compare layer by layer (done anyway when parity fails)")
    run_options(p)
    _add_device_option(p)
    output_options(p)
    p.set_defaults(func=cmd_verify)

    p = command("evaluate", "accuracy, per-class metrics and confusion matrix of a model",
                "Evaluate a model on CIFAR-10 (ONNX Runtime for .onnx; Keras and LiteRT for "
                ".h5/.keras/.tflite; PyTorch for .pt2/.safetensors/.pt). Never imports "
                "TensorFlow or PyTorch for an ONNX model.")
    p.add_argument("model", help="model file (.onnx, .h5, .keras, .tflite, .pt2, .safetensors)")
    p.add_argument("--backend", choices=("onnxruntime", "keras", "litert", "torch"),
                   default=None, help="runtime (default: chosen by file suffix)")
    _add_device_option(p)
    _add_data_options(p)
    run_options(p)
    p.add_argument("--min-accuracy", type=_fraction, default=None, metavar="X",
                   help="exit 7 when top-1 accuracy is below X (0–1, or a percentage)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write report.json, report.md, per-class CSV and confusion PNG")
    output_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("run", "the whole job: convert → verify → evaluate Keras and ONNX → report",
                "Convert the Keras model, verify the ONNX file, evaluate both on CIFAR-10 and "
                "write one report directory. Exit 0 only if ONNX matches Keras and accuracy is "
                "above the threshold.")
    p.add_argument("--model", default=None,
                   help="Keras model (default: MLCommons pretrainedResnet.h5, found under "
                        "--data-dir or downloaded with its sha256 checked)")
    _add_data_options(p)
    p.add_argument("--out", metavar="DIR", default="resnet8-report",
                   help="report directory (default: ./resnet8-report)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--min-accuracy", type=_fraction, default=0.85, metavar="X",
                   help="accuracy the ONNX model must exceed (default: 0.85)")
    tolerance_options(p)
    run_options(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.set_defaults(func=cmd_run)

    p = command("compare", "several models on the same images, side by side",
                "Evaluate several models (any mix of .h5/.keras, .onnx, .tflite, .pt2) on the same "
                "CIFAR-10 images and show one table: accuracy, per-class accuracy, agreement "
                "of predictions and max |Δ| of outputs against the first model, images/s.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="two or more model files; the first is the reference")
    _add_data_options(p)
    run_options(p)
    _add_device_option(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write compare.json, compare.md, compare.csv and "
                        "compare_per_class.csv")
    output_options(p)
    p.set_defaults(func=cmd_compare)

    from .bench import DEFAULT_BATCH_SIZES, DEFAULT_MIN_ITERATIONS, DEFAULT_MIN_SECONDS

    p = command("benchmark", "throughput and latency over batch sizes, threads, ORT levels",
                "Measure throughput and per-call latency (p50/p90/p99) of one or more models "
                "over batch sizes, thread counts and ONNX Runtime graph optimisation levels, "
                "after a warm-up; report GFLOP/s from the model's MACs and the share of a numpy "
                "sgemm roofline measured in the same run. Random pixels by default (no data "
                "needed); --data-dir uses real CIFAR-10 test images.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model files (.onnx, .h5, .keras, .tflite, .pt2)")
    p.add_argument("--batch-sizes", type=_int_list, metavar="LIST",
                   default=list(DEFAULT_BATCH_SIZES),
                   help="comma-separated batch sizes (default: "
                        f"{','.join(map(str, DEFAULT_BATCH_SIZES))})")
    p.add_argument("--threads", type=_int_list, metavar="LIST", default=None,
                   help="comma-separated thread counts, 'all' = every core (default: 1,all)")
    p.add_argument("--optimization", type=_levels, metavar="LEVELS",
                   default=["disable", "basic", "extended", "all"],
                   help="ONNX Runtime graph optimisation levels to compare (default: "
                        "disable,basic,extended,all)")
    p.add_argument("--full-grid", action="store_true",
                   help="every level at every thread count (default: every level at the most "
                        "threads, plus the other thread counts at the highest level)")
    p.add_argument("--min-seconds", type=_seconds, default=None, metavar="S",
                   help=f"time each configuration for at least S seconds (default: "
                        f"{DEFAULT_MIN_SECONDS:g}; --quick: 0.1)")
    p.add_argument("--min-iterations", type=_positive_int, default=None, metavar="N",
                   help=f"and at least N calls (default: {DEFAULT_MIN_ITERATIONS})")
    p.add_argument("--quick", action="store_true",
                   help="shorter warm-up and time budget: a rough figure in a few seconds")
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="use real CIFAR-10 test images from DIR instead of random pixels")
    g.add_argument("--offline", action="store_true", help="never download")
    p.add_argument("--save-optimized", metavar="FILE", default=None,
                   help="write the ONNX model as ONNX Runtime optimises it (at the highest "
                        "level measured); needs exactly one .onnx model")
    p.add_argument("--plot", metavar="FILE", default=None,
                   help="write a PNG of throughput vs batch size")
    _add_device_option(p)
    output_options(p)
    p.set_defaults(func=cmd_benchmark)
    return parser


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``resnet8-onnx`` console script; returns the exit code.

    Everything, option parsing (which imports the library) included, runs inside
    ``errors.handle_interrupts()``: SIGTERM unwinds like Ctrl-C, and an interrupt that a
    library turned into another exception (a C extension interrupted mid-import raises
    ImportError) is still reported as an interrupt.
    """
    with errors.handle_interrupts() as interrupts:
        debug = False
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            debug = args.debug
            from . import progress

            if args.quiet:
                progress.set_enabled(False)
            return int(args.func(args))
        except errors.ToolError as exc:
            if debug:
                traceback.print_exc()
            else:
                message = _first_line(exc) or type(exc).__name__
                print(f"resnet8-onnx: error: {message}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            print("resnet8-onnx: interrupted", file=sys.stderr)
            return errors.INTERRUPTED
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return errors.OK
        except Exception as exc:
            if interrupts.interrupted:
                print("resnet8-onnx: interrupted", file=sys.stderr)
                return errors.INTERRUPTED
            if debug:
                traceback.print_exc()
            else:
                print(f"resnet8-onnx: internal error: {type(exc).__name__}: {_first_line(exc)} "
                      "(run with --debug for the traceback; please report it)", file=sys.stderr)
            return errors.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
