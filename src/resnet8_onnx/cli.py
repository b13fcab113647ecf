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
from .backends.onnxrt import OPTIMIZATION_LEVELS
from .convert import DEFAULT_OPSET
from .data.format import IMAGE_SHAPE, NUM_CLASSES

EXIT_CODES = """exit codes: 0 ok, 2 usage, 3 input not found, 4 invalid or corrupt input,
5 unsafe input refused, 6 verification failed, 7 accuracy below threshold,
8 output cannot be written, 9 download failed, 70 internal error, 130 interrupted."""

DATA_HELP = """data: --data-dir DIR (or $RESNET8_ONNX_DATA_DIR) may point at a CIFAR-10 layout
or a folder holding one (searched two levels deep); otherwise the official files are
downloaded into $RESNET8_ONNX_CACHE_DIR (default ~/.cache/resnet8-onnx).
RESNET8_ONNX_OFFLINE=1 forbids downloads."""

EPILOG = f"{EXIT_CODES}\n\n{DATA_HELP}"

# One or two typical invocations per command, printed last in its --help.
EXAMPLES = {
    "data": ["resnet8-onnx data --data-dir ../shared",
             "resnet8-onnx data --data-dir ../shared --subset perf --json -"],
    "convert": ["resnet8-onnx convert pretrainedResnet.h5 -o resnet8.onnx",
                "resnet8-onnx convert my_model.keras --input-shape any --num-classes any"],
    "verify": ["resnet8-onnx verify pretrainedResnet.h5 resnet8.onnx --data-dir ../shared",
               "resnet8-onnx verify pretrainedResnet.h5 resnet8.onnx --data-dir ../shared "
               "--limit 500 --layerwise --json verify.json"],
    "evaluate": ["resnet8-onnx evaluate resnet8.onnx --data-dir ../shared --out report",
                 "resnet8-onnx evaluate resnet8.onnx --data-dir ../shared --subset perf "
                 "--min-accuracy 85% -q"],
    "run": ["resnet8-onnx run --data-dir ../shared --out resnet8-report",
            "resnet8-onnx run --model my_model.h5 --data-dir ../shared --min-accuracy 0.9"],
    "compare": ["resnet8-onnx compare pretrainedResnet.h5 resnet8.onnx "
                "pretrainedResnet_quant.tflite --data-dir ../shared --subset perf"],
    "benchmark": ["resnet8-onnx benchmark resnet8.onnx --quick",
                  "resnet8-onnx benchmark resnet8.onnx pretrainedResnet.tflite "
                  "--data-dir ../shared --plot throughput.png"],
}

# Commands whose inputs do not include CIFAR-10 data leave the data paragraph out of --help.
NO_DATA_COMMANDS = ("convert",)


def command_epilog(name: str) -> str:
    """Exit codes, where data comes from (when the command reads data), then examples."""
    parts = [EXIT_CODES]
    if name not in NO_DATA_COMMANDS:
        parts.append(DATA_HELP)
    examples = EXAMPLES.get(name)
    if examples:
        parts.append("examples:\n" + "\n".join(f"  {line}" for line in examples))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- helpers
def _console(stderr: bool = False):
    from .progress import console

    return console(stderr=stderr)


def _accuracy(text: str) -> float:
    """'0.875' (a fraction, 0–1) or '87.5%' (a percentage) → 0.875.

    A bare number above 1 is refused rather than guessed: '1' is 100 %, so reading '85' as
    85 % would make '1.01' mean 1.01 %. Parsed as a decimal, so '87.19%' is exactly 0.8719.
    """
    from decimal import Decimal, InvalidOperation

    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = Decimal(raw[:-1].strip() if percent else raw)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an accuracy: give a fraction from 0 to 1 (0.875) or a "
            "percentage (87.5%)")
    if percent:
        value /= 100
    elif value > 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is ambiguous: write {raw}% for a percentage, or a fraction from 0 to 1")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an accuracy between 0 and 100%")
    return float(value)


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


def _warn_oversubscribed(args: argparse.Namespace) -> None:
    """One line on stderr when --threads asks for more threads than this process has cores:
    oversubscribed runtimes do not fail, they run many times slower."""
    threads = getattr(args, "threads", None)
    most = max(threads) if isinstance(threads, list) else threads
    if not most:
        return
    from .evaluate import available_cores

    cores = available_cores()
    if most > cores:
        print(f"resnet8-onnx: warning: --threads {most} is more than the {cores} "
              f"core{'s' if cores != 1 else ''} available; oversubscribed threads run much "
              f"slower (try --threads {cores}, or leave it out)", file=sys.stderr)


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


def _check_outputs(args: argparse.Namespace, *, files: Sequence[str | None] = (),
                   reports: Any = None, inputs: Sequence[str | None] = ()) -> Path | None:
    """Refuse every output before any work: one that would overwrite an input (``--force`` or
    not), exists without ``--force``, or cannot be written. ``reports`` is the writer of the
    ``--out`` report set, asked which files it would write; returns the ``--out`` directory.
    The outputs are remembered so :func:`_load_data` can check them against the data files
    it finds."""
    from .fsutil import check_writable, refuse_overwriting_inputs

    out_dir = getattr(args, "out", None)
    targets: list[Path] = []
    if reports is not None and out_dir is not None:
        targets = list(reports({}, out_dir, force=args.force, check_only=True).values())
    planned = [*(Path(f) for f in files if f not in (None, "-")), *targets]
    refuse_overwriting_inputs(planned, inputs)
    for f in files:
        if f not in (None, "-"):
            check_writable(f, force=args.force)
    args.planned_outputs = planned
    return None if out_dir is None else Path(out_dir)


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
                       help="test-set indices (.npy) for --subset perf (default: "
                            "perf_samples_idxs.npy found under --data-dir, or downloaded); "
                            "only the official file (by sha256) is called the perf subset")
        g.add_argument("--limit", type=_positive_int, metavar="N", default=None,
                       help="only N images, class-balanced: round-robin over the classes, "
                            "each in source order (--limit 500 of the test set = the first 50 "
                            "of each class); a quick check, reports say so")
    g.add_argument("--offline", action="store_true",
                   help="never download; fail with a hint instead")


def _load_data(args: argparse.Namespace):
    from .data import load_dataset

    dataset = load_dataset(args.data_dir, split=getattr(args, "split", "test"),
                           subset=getattr(args, "subset", "full"),
                           indices_file=getattr(args, "indices", None),
                           download=False if args.offline else None)
    from .fsutil import refuse_overwriting_inputs

    refuse_overwriting_inputs(getattr(args, "planned_outputs", ()), dataset.input_paths)
    for note in dataset.source.notes:  # which source a search chose among several
        print(f"resnet8-onnx: note: {note}", file=sys.stderr)
    if getattr(args, "limit", None):
        dataset = dataset.with_limit(args.limit)
    from .evaluate import DEFAULT_BATCH_SIZE

    batch_size = getattr(args, "batch_size", None)  # said only of a size the user chose
    if batch_size not in (None, DEFAULT_BATCH_SIZE) and batch_size > len(dataset):
        print(f"resnet8-onnx: note: --batch-size {batch_size:,} is more than the "
              f"{len(dataset):,} images; running batches of {len(dataset):,}", file=sys.stderr)
    return dataset


# --------------------------------------------------------------------------- preprocessing options
_SPEC_HELP = """How an ONNX model wants its pixels (default: the model's metadata, then its input
shape, then raw 0-255 NHWC RGB). Order of operations: scale, subtract mean, divide by std
(mean/std in R,G,B order), reorder channels, transpose."""


def _spec_type(parse: Any, metavar: str) -> Any:
    """An argparse type from a ``preprocess`` parser: its UsageError becomes exit 2; ``-``
    stands for "not given" (a placeholder in per-model lists)."""

    def convert(text: str) -> Any:
        if text.strip() == "-":
            return None
        try:
            return parse(text)
        except errors.UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = metavar  # argparse names the type in its messages
    return convert


def _add_spec_options(p: argparse.ArgumentParser, *, per_model: bool = False,
                      output: bool = True) -> None:
    """--layout/--channels/--scale/--mean/--std (+ --output, --provider) for ONNX models.

    ``per_model``: each may be repeated, once per model in model order (``-`` for none); one
    value applies to every ONNX model.
    """
    from .preprocess import CHANNEL_ORDERS, LAYOUTS, parse_scale, parse_triple

    def choice(options: tuple[str, ...], what: str) -> Any:
        def parse(text: str) -> str:
            if text.strip().lower() not in options:
                raise errors.UsageError(f"{what} {text!r} is not one of {', '.join(options)}")
            return text.strip().lower()
        return parse

    repeat = " Repeat once per model, in model order ('-' for none); given once, it applies to "\
             "every ONNX model." if per_model else ""
    kw: dict[str, Any] = {"action": "append"} if per_model else {}
    g = p.add_argument_group("preprocessing (ONNX models)", _SPEC_HELP + repeat)
    g.add_argument("--layout", type=_spec_type(choice(LAYOUTS, "layout"), "layout"),
                   metavar="{nhwc,nchw}", default=None, help="tensor layout the model takes",
                   **kw)
    g.add_argument("--channels", type=_spec_type(choice(CHANNEL_ORDERS, "channels"), "channels"),
                   metavar="{rgb,bgr}", default=None, help="channel order the model takes", **kw)
    g.add_argument("--scale", type=_spec_type(parse_scale, "scale"), metavar="S", default=None,
                   help="multiply pixels (0-255) by S, a number or a fraction like 1/255", **kw)
    g.add_argument("--mean", type=_spec_type(lambda t: parse_triple(t, "mean"), "mean"),
                   metavar="R,G,B", default=None,
                   help="subtract per channel, after scaling (e.g. 0.4914,0.4822,0.4465)", **kw)
    g.add_argument("--std", type=_spec_type(lambda t: parse_triple(t, "std", positive=True),
                                            "std"),
                   metavar="R,G,B", default=None,
                   help="divide per channel, after subtracting the mean", **kw)
    if output:
        g.add_argument("--output", metavar="NAME", default=None,
                       help="the output to use when the model has several", **kw)
    g.add_argument("--provider", metavar="NAME", default=None,
                   help="ONNX Runtime execution provider, e.g. cpu, cuda (default: "
                        "CPUExecutionProvider); a bad name lists the available ones")


_SPEC_OPTIONS = ("layout", "channels", "scale", "mean", "std")


def _spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in _SPEC_OPTIONS
            if getattr(args, name, None) is not None}


# --------------------------------------------------------------------------- commands
def cmd_data(args: argparse.Namespace) -> int:
    _check_outputs(args, files=[args.json], inputs=[args.indices])
    dataset = _load_data(args)
    description = dataset.describe()
    if args.json == "-":
        _emit_json(description, "-", force=True)
        return errors.OK
    from .report import render_data_terminal

    render_data_terminal(description, _console())
    _emit_json(description, args.json, force=args.force)
    return errors.OK


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert
    from .torch_convert import is_torch_conversion

    output = args.output or str(Path(args.model).with_suffix(".onnx"))
    _check_outputs(args, files=[output, args.json], inputs=[args.model])
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
    from .backends import applicable_options, backend_for, load_backend
    from .verify import check_onnx_file, verify

    _check_outputs(args, files=[args.json], inputs=[args.reference, args.onnx, args.indices])
    dataset = _load_data(args)
    reference = load_backend(args.reference, args.reference_backend, threads=args.threads)
    name = backend_for(args.onnx)
    if name == "onnxruntime":
        check_onnx_file(args.onnx)  # a broken file is named as such, before ONNX Runtime
    candidate = load_backend(args.onnx, name, threads=args.threads, **applicable_options(
        name, {"preprocessing": _spec_overrides(args), "output": args.output,
               "provider": args.provider, "device": args.device}))
    report = verify(reference, candidate, dataset.images, indices=dataset.indices,
                    atol=args.atol, rtol=args.rtol, layerwise=args.layerwise,
                    batch_size=args.batch_size)
    report["data"] = dataset.describe()
    from .report import render_verification_terminal

    render_verification_terminal(report, _console(stderr=args.json == "-"))
    _emit_json(report, args.json, force=args.force)
    return errors.OK if report["passed"] else errors.VERIFICATION_FAILED


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .backends import load_backend
    from .backends.base import SESSION
    from .evaluate import evaluate
    from .metrics import meets_accuracy
    from .report import write_reports

    out_dir = _check_outputs(args, files=[args.json], reports=write_reports,
                             inputs=[args.model, args.indices])
    if args.save_test_data is not None:
        from .testdata import check_destination

        check_destination(args.save_test_data, force=args.force)
    backend = load_backend(args.model, args.backend, threads=args.threads,
                           preprocessing=_spec_overrides(args), output=args.output,
                           provider=args.provider, device=args.device)
    if args.save_test_data is not None and SESSION not in backend.abilities:
        raise errors.UsageError("--save-test-data needs an ONNX model")
    dataset = _load_data(args)
    result = evaluate(backend, dataset, batch_size=args.batch_size)
    record = result.to_record()
    from .report import render_terminal

    render_terminal(record, _console(stderr=args.json == "-"))
    if args.save_test_data is not None:
        from .testdata import save_test_data

        saved = save_test_data(backend, dataset.images, args.save_test_data,
                               count=args.count, force=args.force)
        record["test_data"] = saved
        _console(stderr=True).print(f"test data: {len(saved['sets'])} sets in "
                                    f"{saved['directory']}")
    _emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, write_reports, record, force=args.force)
    metrics = record["metrics"]
    if args.min_accuracy is not None and not meets_accuracy(
            metrics["correct"], metrics["total"], args.min_accuracy):
        from .report import format_threshold

        raise errors.AccuracyBelowThresholdError(
            f"{args.model}: accuracy {metrics['accuracy']:.2%} ({metrics['correct']:,}/"
            f"{metrics['total']:,}) is below --min-accuracy {format_threshold(args.min_accuracy)}")
    return errors.OK


def cmd_annotate(args: argparse.Namespace) -> int:
    from .annotate import annotate, read_class_names
    _check_outputs(args, files=[args.json, args.output_file],
                   inputs=[args.model, args.class_names])  # before loading any data
    names = read_class_names(args.class_names) if args.class_names else None
    images = _load_data(args).images if args.embed else None
    account = annotate(args.model, args.output_file, preprocessing=_spec_overrides(args),
                       class_names=names, output=args.output, embed_preprocessing=args.embed,
                       images=images, atol=args.atol, rtol=args.rtol, force=args.force)
    out = _console(stderr=args.json == "-")
    spec = account["preprocessing"]
    what = "embedded" if args.embed else "recorded"
    out.print(f"[green]annotated[/green] {args.model} → {account['output']}: preprocessing "
              f"{what} ({spec['description']})")
    if args.embed:
        parity = account["parity"]
        inp = account["input"]
        out.print(f"  input {inp['name']!r} {inp['shape']} uint8 NHWC RGB; parity on "
                  f"{parity['samples']:,} images: {parity['argmax_agreement']:,} predictions "
                  f"agree, max |Δ| {parity['max_abs_diff']:.2e}")
    _emit_json(account, args.json, force=args.force)
    return errors.OK


def _write_reports_locked(
    out_dir: Path | None, write: Any, record: dict[str, Any], *, force: bool
) -> None:
    """Create ``out_dir``, hold its lock while ``write`` writes the report set, list the files;
    a failed write leaves neither files nor a directory this invocation created."""
    if out_dir is None:
        return
    from .fsutil import report_directory

    targets = write(record, out_dir, force=force, check_only=True).values()
    with report_directory(out_dir, targets):
        written = write(record, out_dir, force=force)
    _list_written(written.values())


def _list_written(paths: Any) -> None:
    """Every command lists the files it wrote the same way: one line on stderr."""
    _console(stderr=True).print("reports: " + ", ".join(str(p) for p in paths), markup=False,
                                soft_wrap=True)


def cmd_run(args: argparse.Namespace) -> int:
    from .fsutil import report_directory
    from .pipeline import check_outputs, run_pipeline

    targets = check_outputs(args.out, force=args.force, int8=args.int8)  # before anything
    # A failed or interrupted run takes back what it wrote, so the same command can be rerun.
    with report_directory(args.out, targets) as out_dir:
        comparison = run_pipeline(
            model=args.model, data_dir=args.data_dir, out_dir=out_dir, split=args.split,
            subset=args.subset,
            indices_file=args.indices, limit=args.limit, opset=args.opset,
            min_accuracy=args.min_accuracy, atol=args.atol, rtol=args.rtol,
            batch_size=args.batch_size, threads=args.threads, force=args.force,
            download=False if args.offline else None,
            int8=args.int8, calibration_data=args.calibration_data,
        )
    from .report import render_comparison_terminal

    render_comparison_terminal(comparison, _console())
    _list_written((comparison.get("files") or {}).values())
    verdict = comparison["verdict"]
    if not comparison["parity"]["passed"]:
        return errors.VERIFICATION_FAILED
    if not verdict["meets_threshold"]:
        return errors.ACCURACY_BELOW_THRESHOLD
    return errors.OK


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_models
    from .report import render_compare_terminal, write_compare_reports

    if len(args.models) < 2:
        raise errors.UsageError("compare needs at least two models (the first is the reference)")
    out_dir = _check_outputs(args, files=[args.json], reports=write_compare_reports,
                             inputs=[*args.models, args.indices])
    from .compare import per_model_options

    options = per_model_options(args.models, {name: getattr(args, name)
                                              for name in (*_SPEC_OPTIONS, "output")})
    dataset = _load_data(args)
    record = compare_models(args.models, dataset, batch_size=args.batch_size,
                            threads=args.threads, options=options, provider=args.provider,
                            device=args.device)
    render_compare_terminal(record, _console(stderr=args.json == "-"))
    _emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, write_compare_reports, record, force=args.force)
    return errors.OK


def cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize import (
        Recipe,
        auto_grid,
        inspect_float_model,
        load_calibration_data,
        quantize,
    )
    from .report import render_quantization_terminal, write_quantization_reports

    model = Path(args.model)
    output = args.output or str(model.with_name(f"{model.stem}_int8.onnx"))
    # Before any work, nothing written on refusal; never onto the model or calibration images.
    out_dir = _check_outputs(args, files=[args.json, output],
                             reports=write_quantization_reports,
                             inputs=[args.model, args.calibration_data,
                                     args.calibration_indices, args.indices])
    inspect_float_model(model)  # a missing, non-ONNX or quantised model fails before the data
    if args.auto:
        recipe: Any = auto_grid(
            formats=[args.format] if args.format else None,
            activations=[args.activations] if args.activations else None,
            methods=[args.method] if args.method else None, weights=args.weights,
            per_channel=args.per_channel, exclude=args.exclude or (),
            float_pooling=None if args.float_pooling is None else [args.float_pooling])
    else:
        recipe = Recipe(format=args.format or "qdq", activations=args.activations or "uint8",
                        weights=args.weights, per_channel=args.per_channel,
                        method=args.method or "minmax", exclude=tuple(args.exclude or ()),
                        float_pooling=True if args.float_pooling is None else args.float_pooling)
    calibration = load_calibration_data(args.calibration_data,
                                        indices_file=args.calibration_indices, download=False)
    test_data = _load_data(args) if args.data_dir is not None else None
    record = quantize(model, output, calibration, recipe,
                      calibration_count=args.calibration_count, tolerance=args.tolerance,
                      test_data=test_data, batch_size=args.batch_size, threads=args.threads,
                      diagnose=True if args.layer_errors else None, force=args.force).to_dict()
    render_quantization_terminal(record, _console(stderr=args.json == "-"))
    _emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, write_quantization_reports, record, force=args.force)
    return errors.OK


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench import (
        DEFAULT_MIN_ITERATIONS,
        DEFAULT_MIN_SECONDS,
        DEFAULT_WARMUP_SECONDS,
        QUICK_MIN_SECONDS,
        QUICK_WARMUP_SECONDS,
        benchmark,
    )
    from .report import render_benchmark_terminal, throughput_png

    _check_outputs(args, files=[args.json, args.plot, args.save_optimized], inputs=args.models)
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
        onnx_options={"preprocessing": _spec_overrides(args), "output": args.output,
                      "provider": args.provider},
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
    # -q and --debug are accepted after the command name too. SUPPRESS as the default keeps
    # a value given before the command: the subcommand only sets what it was given.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress bars or status lines")

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=description,
                              epilog=command_epilog(name), parents=[common],
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
                   help=f"ONNX opset (default: {DEFAULT_OPSET} from Keras, 14–18 tested; 18 from "
                        "PyTorch, the oldest torch.onnx emits)")
    p.add_argument("--torch-builder", choices=("auto", "native", "onnx2torch"), default="auto",
                   help="how a .pt2 is built: native = readable ResNet8 module with the .h5 "
                        "weights ported; onnx2torch = any supported ONNX model; auto = native "
                        "when the .h5 is recognised as the MLCommons ResNet8 (default: auto)")
    p.add_argument("--input-shape", type=_shape, default=IMAGE_SHAPE, metavar="H,W,C",
                   help="required input shape, or 'any' to accept the model's (default: 32,32,3)")
    p.add_argument("--num-classes", type=_classes, default=NUM_CLASSES, metavar="N",
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
    _add_spec_options(p)  # for the ONNX model; the reference takes raw pixels
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
    p.add_argument("--min-accuracy", type=_accuracy, default=None, metavar="X",
                   help="exit 7 unless top-1 accuracy is at least X: a fraction from 0 to 1 "
                        "(0.85) or a percentage (85%%)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write report.json, report.md, per_class.csv and "
                        "confusion_<backend>.png")
    _add_spec_options(p)
    p.add_argument("--save-test-data", metavar="DIR", default=None,
                   help="ONNX: also write inputs (as fed to the model) and outputs of the first "
                        "--count images as DIR/test_data_set_N/{input_0,output_0}.pb, the ONNX "
                        "Model Zoo layout")
    p.add_argument("--count", type=_positive_int, default=3, metavar="N",
                   help="images for --save-test-data (default: 3)")
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
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument("--min-accuracy", type=_accuracy, default=0.85, metavar="X",
                   help="accuracy the ONNX model must reach (≥): a fraction from 0 to 1 or a "
                        "percentage like 85%% (default: 85%%)")
    tolerance_options(p)
    run_options(p)
    p.add_argument("--int8", action="store_true",
                   help="also quantise the ONNX model to int8 (quantize --auto) and add it to "
                        "the tables and the verdict")
    p.add_argument("--calibration-data", metavar="DIR", default=None,
                   help="training images for --int8 (default: found under --data-dir, e.g. "
                        "train-2000-png, or the official training set)")
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
    _add_spec_options(p, per_model=True)
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
                   default=list(OPTIMIZATION_LEVELS),
                   help="ONNX Runtime graph optimisation levels to compare (default: "
                        f"{','.join(OPTIMIZATION_LEVELS)})")
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
    _add_spec_options(p)
    _add_device_option(p)
    output_options(p)
    p.set_defaults(func=cmd_benchmark)

    p = command("annotate", "record an ONNX model's preprocessing and class names, or embed it",
                "Write MODEL.onnx's preprocessing spec (and class names) into its metadata_props "
                "without touching the graph, so later commands need no --layout/--scale/... "
                "flags. --embed instead prepends the preprocessing as plain ONNX ops (Cast, "
                "Mul, Sub, Div, Transpose) so the new model takes raw uint8 NHWC RGB pixels; it "
                "is proven equal to the original + spec on real images (--data-dir) before "
                "anything is written (exit 6 otherwise).")
    p.add_argument("model", help="the ONNX model")
    p.add_argument("-o", "--output-file", metavar="OUT.onnx", required=True,
                   help="the annotated model to write")
    p.add_argument("--class-names", metavar="FILE", default=None,
                   help="class names, one per line (or a JSON list), in output order")
    p.add_argument("--embed", action="store_true",
                   help="embed the preprocessing in the graph (input: uint8 [N,H,W,3] RGB)")
    _add_spec_options(p)
    _add_data_options(p)
    tolerance_options(p)
    output_options(p)
    p.set_defaults(func=cmd_annotate)

    from .quantize import (
        ACTIVATION_TYPES,
        DEFAULT_CALIBRATION_COUNT,
        DEFAULT_TOLERANCE,
        FORMATS,
        METHODS,
        WEIGHT_TYPES,
    )

    p = command("quantize", "int8 model with ONNX Runtime, recipe chosen by measurement",
                "Static int8 post-training quantisation with ONNX Runtime (after its "
                "pre-processing: shape inference, Conv+BatchNorm fusion). By default (--auto) "
                "a grid of recipes (format × activation type × calibration method) is "
                "quantised, scored on held-out calibration-source images for agreement with "
                "the float model and timed against it on this machine; the fastest recipe "
                "within --tolerance of the best agreement is written. Calibration never uses "
                "test images unless --calibration-indices asks for them. The int8 model keeps "
                "the float input and the source's metadata.")
    p.add_argument("model", help="the float ONNX model (e.g. from convert)")
    p.add_argument("-o", "--output", default=None,
                   help="int8 ONNX file to write (default: MODEL_int8.onnx beside MODEL)")
    g = p.add_argument_group("calibration")
    g.add_argument("--calibration-data", metavar="DIR", required=True,
                   help="calibration images: an image folder (e.g. ../shared/cifar-10/"
                        "train-2000-png) or a CIFAR-10 distribution, whose TRAINING split is "
                        "used")
    g.add_argument("--calibration-indices", metavar="FILE", default=None,
                   help="calibrate on these TEST-set indices instead (MLCommons' recipe: "
                        "calibration_samples_idxs.npy); every report then says so")
    g.add_argument("--calibration-count", type=_positive_int, default=None, metavar="N",
                   help=f"calibration images, evenly spread over the source (default: "
                        f"{DEFAULT_CALIBRATION_COUNT:,}, at most half the source with --auto, "
                        "which scores candidates on the other images)")
    g = p.add_argument_group("recipe")
    g.add_argument("--auto", action=argparse.BooleanOptionalAction, default=True,
                   help="measure a grid of recipes and keep the fastest within --tolerance; "
                        "--format/--activations/--method narrow the grid (default: --auto)")
    g.add_argument("--format", choices=FORMATS, default=None,
                   help="qdq: QuantizeLinear/DequantizeLinear pairs; qoperator: QLinear* ops "
                        "(--no-auto default: qdq)")
    g.add_argument("--activations", choices=ACTIVATION_TYPES, default=None,
                   help="activation type (--no-auto default: uint8)")
    g.add_argument("--weights", choices=WEIGHT_TYPES, default="int8",
                   help="weight type (default: int8)")
    g.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="per-channel weight scales; --no-per-channel is per-tensor "
                        "(default: per-channel)")
    g.add_argument("--per-tensor", dest="per_channel", action="store_false",
                   help="per-tensor weight scales (same as --no-per-channel)")
    g.add_argument("--method", choices=METHODS, default=None,
                   help="calibration method (--no-auto default: minmax)")
    g.add_argument("--float-pooling", action=argparse.BooleanOptionalAction, default=None,
                   help="keep average pooling in float (--auto tries QDQ both ways; "
                        "--no-auto default: on)")
    g.add_argument("--exclude", nargs="+", metavar="NODE", default=None,
                   help="node names to keep in float (the record lists the worst layers)")
    g.add_argument("--tolerance", type=_accuracy, default=DEFAULT_TOLERANCE, metavar="X",
                   help=f"--auto keeps candidates whose held-out agreement is at most X below "
                        f"the best (default: {DEFAULT_TOLERANCE:g}, i.e. "
                        f"{DEFAULT_TOLERANCE * 100:g} points)")
    g.add_argument("--layer-errors", action="store_true",
                   help="always measure per-layer quantisation error (default: only when "
                        "agreement is below 98%%)")
    _add_data_options(p)
    run_options(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write quantize.json and quantize.md")
    output_options(p)
    p.set_defaults(func=cmd_quantize)
    return parser


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
            from . import progress, quiet

            quiet.set_passthrough(debug)

            if args.quiet:
                progress.set_enabled(False)
            _warn_oversubscribed(args)
            code = int(args.func(args))
            errors.raise_if_interrupted()  # a signal a finaliser swallowed still counts
            return code
        except errors.ToolError as exc:
            if debug:
                traceback.print_exc()
            else:
                message = errors.one_line(exc, limit=None)
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
                print(f"resnet8-onnx: internal error: {type(exc).__name__}: "
                      f"{errors.one_line(exc, limit=None) if str(exc).strip() else ''} "
                      "(run with --debug for the traceback; please report it)", file=sys.stderr)
            return errors.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
