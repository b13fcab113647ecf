"""The argument parser: every command, its options, its help and examples.

Each command's options are added by its own function (registered with :func:`_command`), so
``main`` can build just the command being run (``build_parser(lazy=True)``): the others are
listed by name and help line, which is all the top-level ``--help`` shows, and their options
(and the modules their defaults come from) are added only if argparse dispatches to them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, cast

from resnet8_onnx import __version__
from resnet8_onnx.backends import LOADERS
from resnet8_onnx.backends.onnxrt.runner import OPTIMIZATION_LEVELS
from resnet8_onnx.cli.commands import (
    cmd_annotate,
    cmd_benchmark,
    cmd_compare,
    cmd_convert,
    cmd_data,
    cmd_evaluate,
    cmd_quantize,
    cmd_run,
    cmd_tune,
    cmd_verify,
)
from resnet8_onnx.cli.options import (
    EPILOG,
    add_data_options,
    add_device_option,
    add_runtime_options,
    add_spec_options,
    command_epilog,
    int_list,
    parse_accuracy,
    parse_classes,
    parse_levels,
    parse_seconds,
    parse_shape,
    positive_int,
)
from resnet8_onnx.data.format import IMAGE_SHAPE, NUM_CLASSES
from resnet8_onnx.support import errors

# --------------------------------------------------------------------------- parser
QUIET_HELP = "no progress bars or notes: only errors and warnings are printed"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) with the prefix of every
    other error, naming the help to read; and no abbreviated options (``--out`` must not
    quietly mean ``--output``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    # override: both widen argparse's signatures (error takes the subcommand's prog;
    # parse_args stands for typeshed's overloads), which the type checker calls a change.
    def error(self, message: str, prog: str | None = None) -> None:  # type: ignore[override]
        self.exit(errors.USAGE, f"resnet8-onnx: error: {message} "
                                f"(see {prog or self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse, but options a subcommand did not know send the user to its help."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            self.error(f"unrecognized arguments: {' '.join(extras)}",
                       prog=f"{self.prog} {command}" if command else None)
        return parsed


class _LazySubParsers(argparse._SubParsersAction):
    """Subcommands whose options are added only when argparse dispatches to them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        add = self.pending.pop(values[0], None)
        if add is not None:
            add(self._name_parser_map[values[0]])
        super().__call__(parser, namespace, values, option_string)


# name -> (help line, description, the function adding its options), in listing order
COMMAND_TABLE: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {}


def _command(name: str, help_: str, description: str) -> Callable[
        [Callable[[argparse.ArgumentParser], None]], Callable[[argparse.ArgumentParser], None]]:
    """Register the decorated function as what adds command ``name``'s options."""
    def register(add: Callable[[argparse.ArgumentParser], None]
                 ) -> Callable[[argparse.ArgumentParser], None]:
        COMMAND_TABLE[name] = (help_, description, add)
        return add
    return register


def build_parser(*, lazy: bool = False) -> argparse.ArgumentParser:
    """The ``resnet8-onnx`` parser. ``lazy``: a command's options are added only when it is
    the one parsed (what ``main`` wants: one command per process); the help texts and the
    parsing are the same either way."""
    parser = _Parser(
        prog="resnet8-onnx",
        description="Convert a Keras CIFAR-10 classifier to ONNX and prove the conversion lost "
                    "nothing: convert, verify, evaluate, report.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser, action=_LazySubParsers)
    # -q and --debug are accepted after the command name too. SUPPRESS as the default keeps
    # a value given before the command: the subcommand only sets what it was given.
    common = _Parser(add_help=False)  # allow_abbrev=False, as every parser here
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help=QUIET_HELP)
    for name, (help_, description, add) in COMMAND_TABLE.items():
        p = sub.add_parser(name, help=help_, description=description,
                           epilog=command_epilog(name), parents=[common],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if lazy:
            cast(_LazySubParsers, sub).pending[name] = add
        else:
            add(p)
    return parser


def _suffixes() -> str:
    """Every model suffix a runtime loads, for the help of commands taking any model."""
    return ", ".join(s for loader in LOADERS.values() for s in loader.suffixes)


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", default=None,
                   help="write the machine-readable result to FILE ('-' for stdout)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _run_options(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE

    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   metavar="N",
                   help=f"images per inference call (default: {DEFAULT_BATCH_SIZE})")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="intra-op threads (default: the runtime's choice, all cores)")


def _tolerance_options(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.verify import DEFAULT_ATOL, DEFAULT_RTOL

    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"absolute tolerance (default: {DEFAULT_ATOL:g})")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"relative tolerance (default: {DEFAULT_RTOL:g}); an element fails "
                        "only if it exceeds both")


@_command("data", "show where CIFAR-10 is found, what was verified, per-class counts",
          "Locate, verify and describe the CIFAR-10 data a command would use.")
def _data(p: argparse.ArgumentParser) -> None:
    add_data_options(p)
    _output_options(p)
    p.set_defaults(func=cmd_data)


@_command("convert", "convert a Keras .h5/.keras model to ONNX (or to/from PyTorch)",
          "Convert a Keras image classifier to ONNX (tf2onnx), after a safe pre-scan of "
          "its config that refuses Lambda and custom layers. The result passes the ONNX "
          "checker and carries self-describing metadata. The output suffix picks the "
          "target: .pt2 writes a PyTorch torch.export program (from .h5/.keras/.onnx), "
          ".safetensors the native ResNet8's state dict, and a .pt2 converts back to "
          ".onnx with torch.onnx (these need the 'torch' extra).")
def _convert(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.convert.keras_to_onnx import DEFAULT_OPSET

    p.add_argument("model", help="model file (.h5 or .keras; .onnx, .pt2, .safetensors or .pt "
                                 "for PyTorch targets)")
    p.add_argument("-o", "--output", default=None,
                   help="file to write: .onnx, .pt2 or .safetensors (default: MODEL's name with "
                        "the .onnx suffix, in the current directory, not beside MODEL)")
    p.add_argument("--opset", type=int, default=None,
                   help=f"ONNX opset (default: {DEFAULT_OPSET} from Keras, 14–18 tested; 18 from "
                        "PyTorch, the oldest torch.onnx emits)")
    p.add_argument("--torch-builder", choices=("auto", "native", "onnx2torch"), default="auto",
                   help="how a .pt2 is built: native = readable ResNet8 module with the .h5 "
                        "weights ported; onnx2torch = any supported ONNX model; auto = native "
                        "when the .h5 is recognised as the MLCommons ResNet8 (default: auto)")
    p.add_argument("--input-shape", type=parse_shape, default=IMAGE_SHAPE, metavar="H,W,C",
                   help="required input shape, or 'any' to accept the model's (default: 32,32,3)")
    p.add_argument("--num-classes", type=parse_classes, default=NUM_CLASSES, metavar="N",
                   help="required number of classes, or 'any' (default: 10)")
    add_spec_options(p, provider=False)  # an ONNX (or .pt2) source, as evaluate takes it
    _output_options(p)
    p.set_defaults(func=cmd_convert)


@_command("verify", "prove an ONNX model equals its Keras source on real images",
          "Structure report, dynamic-batch check and numerical parity of ONNX against its "
          "source on real CIFAR-10 images; localises the first diverging layer on failure.")
def _verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("reference", help="the source model (.h5/.keras; any backend's file works)")
    p.add_argument("onnx", help="the model to verify: .onnx, or a PyTorch .pt2/.safetensors")
    p.add_argument("--reference-backend", default=None, help=argparse.SUPPRESS)
    add_data_options(p)
    _tolerance_options(p)
    p.add_argument("--layerwise", action="store_true",
                   help="always compare layer by layer (done anyway when parity fails)")
    _run_options(p)
    add_spec_options(p)  # for the ONNX model; the reference takes raw pixels
    add_runtime_options(p, candidate=True)
    add_device_option(p)
    _output_options(p)
    p.set_defaults(func=cmd_verify)


@_command("evaluate", "accuracy, per-class metrics and confusion matrix of a model",
          "Evaluate a model on CIFAR-10 (ONNX Runtime for .onnx; Keras and LiteRT for "
          ".h5/.keras/.tflite; PyTorch for .pt2/.safetensors/.pt/.pth). Never imports "
          "TensorFlow or PyTorch for an ONNX model.")
def _evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=f"model file ({_suffixes()})")
    p.add_argument("--backend", choices=tuple(LOADERS),
                   default=None, help="runtime (default: chosen by file suffix)")
    add_runtime_options(p)
    add_device_option(p)
    add_data_options(p)
    _run_options(p)
    p.add_argument("--min-accuracy", type=parse_accuracy, default=None, metavar="X",
                   help="exit 7 unless top-1 accuracy is at least X: a fraction from 0 to 1 "
                        "(0.85) or a percentage (85%%)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write report.json, report.md, per_class.csv and "
                        "confusion_<backend>.png")
    add_spec_options(p)
    p.add_argument("--save-test-data", metavar="DIR", default=None,
                   help="ONNX: also write inputs (as fed to the model) and outputs of the first "
                        "--count images as DIR/test_data_set_N/{input_0,output_0}.pb, the ONNX "
                        "Model Zoo layout")
    p.add_argument("--count", type=positive_int, default=3, metavar="N",
                   help="images for --save-test-data (default: 3)")
    _output_options(p)
    p.set_defaults(func=cmd_evaluate)


@_command("run", "the whole job: convert → verify → evaluate Keras and ONNX → report",
          "Convert the Keras model, verify the ONNX file, evaluate both on CIFAR-10 and "
          "write one report directory. Exit 0 only if ONNX matches Keras and accuracy is "
          "at least the threshold.")
def _run(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.convert.keras_to_onnx import DEFAULT_OPSET
    from resnet8_onnx.quantize import DEFAULT_MIN_AGREEMENT

    p.add_argument("--model", default=None,
                   help="Keras model (default: MLCommons pretrainedResnet.h5, found under "
                        "--data-dir or downloaded with its sha256 checked)")
    add_data_options(p, images=False)  # run: the CIFAR-10 pipeline
    p.add_argument("--out", metavar="DIR", default="resnet8-report",
                   help="report directory (default: ./resnet8-report)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                   help=f"ONNX opset (default: {DEFAULT_OPSET})")
    p.add_argument("--min-accuracy", type=parse_accuracy, default=0.85, metavar="X",
                   help="accuracy the ONNX model must reach (≥): a fraction from 0 to 1 or a "
                        "percentage like 85%% (default: 85%%)")
    _tolerance_options(p)
    _run_options(p)
    p.add_argument("--int8", action="store_true",
                   help="also quantise the ONNX model to int8 (quantize --auto) and add it to "
                        "the tables and the verdict")
    p.add_argument("--calibration-data", metavar="DIR", default=None,
                   help="training images for --int8 (default: found under --data-dir, e.g. "
                        "train-2000-png, or the official training set)")
    p.add_argument("--min-agreement", type=parse_accuracy, default=None, metavar="X",
                   help=f"--int8's quality gate, as quantize's: no int8 model whose top-1 "
                        f"agreement with fp32 on held-out images is below X, a fraction or a "
                        f"percentage (default: {DEFAULT_MIN_AGREEMENT:g}; exit 6 below it; "
                        f"0: off)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write run's record (the same as report.json) to FILE ('-' for "
                        "stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.set_defaults(func=cmd_run)


@_command("compare", "several models on the same images, side by side",
          "Evaluate several models (any mix of Keras, ONNX, LiteRT and PyTorch files) on the same "
          "CIFAR-10 images and show one table: accuracy, per-class accuracy, agreement "
          "of predictions and max |Δ| of outputs against the first model, images/s.")
def _compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help=f"two or more model files ({_suffixes()}); the first is the reference")
    add_data_options(p)
    _run_options(p)
    add_device_option(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write compare.json, compare.md, compare.csv and "
                        "compare_per_class.csv")
    add_spec_options(p, per_model=True)
    add_runtime_options(p, per_model=True, settings_per_model=True)
    _output_options(p)
    p.set_defaults(func=cmd_compare)


@_command("benchmark", "throughput and latency over batch sizes, threads, ORT levels",
          "Measure throughput and per-call latency (p50/p90/p99) of one or more models "
          "over batch sizes, thread counts and ONNX Runtime graph optimisation levels, "
          "after a warm-up; report GFLOP/s from the model's MACs and its ratio to ONNX "
          "Runtime's own 1024×1024 float32 MatMul measured in the same run at the same "
          "thread count (a ratio: convolutions can beat it). Random pixels by default (no data "
          "needed); --data-dir uses real CIFAR-10 test images.")
def _benchmark(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.bench import DEFAULT_BATCH_SIZES, DEFAULT_MIN_ITERATIONS, DEFAULT_MIN_SECONDS

    p.add_argument("models", nargs="+", metavar="MODEL",
                   help=f"model files ({_suffixes()})")
    p.add_argument("--batch-sizes", type=int_list, metavar="LIST",
                   default=list(DEFAULT_BATCH_SIZES),
                   help="comma-separated batch sizes (default: "
                        f"{','.join(map(str, DEFAULT_BATCH_SIZES))})")
    p.add_argument("--threads", type=int_list, metavar="LIST", default=None,
                   help="comma-separated thread counts, 'all' = every core (default: 1,all)")
    p.add_argument("--optimization", type=parse_levels, metavar="LEVELS",
                   default=list(OPTIMIZATION_LEVELS),
                   help="ONNX Runtime graph optimisation levels to compare (default: "
                        f"{','.join(OPTIMIZATION_LEVELS)})")
    p.add_argument("--full-grid", action="store_true",
                   help="every level at every thread count (default: every level at the most "
                        "threads, plus the other thread counts at the highest level)")
    p.add_argument("--min-seconds", type=parse_seconds, default=None, metavar="S",
                   help=f"time each configuration for at least S seconds (default: "
                        f"{DEFAULT_MIN_SECONDS:g}; --quick: 0.1)")
    p.add_argument("--min-iterations", type=positive_int, default=None, metavar="N",
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
    add_spec_options(p)
    add_runtime_options(p, per_model=True)
    add_device_option(p)
    _output_options(p)
    p.set_defaults(func=cmd_benchmark)


@_command("annotate", "record an ONNX model's preprocessing and class names, or embed it",
          "Write MODEL.onnx's preprocessing spec (and class names) into its metadata_props "
          "without touching the graph, so later commands need no --layout/--scale/... "
          "flags. --embed instead prepends the preprocessing as plain ONNX ops (Cast, "
          "Mul, Sub, Div, Transpose) so the new model takes raw uint8 NHWC RGB pixels; it "
          "is proven equal to the original + spec on real images (--data-dir) before "
          "anything is written (exit 6 otherwise).")
def _annotate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the ONNX model")
    p.add_argument("-o", "--output-file", metavar="OUT.onnx", required=True,
                   help="the annotated model to write")
    p.add_argument("--class-names", metavar="FILE", default=None,
                   help="class names, one per line (or a JSON list), in output order")
    p.add_argument("--embed", action="store_true",
                   help="embed the preprocessing in the graph (input: uint8 [N,H,W,3] RGB)")
    add_spec_options(p, provider=False)  # annotate runs nothing on a provider to choose
    add_data_options(p)
    _tolerance_options(p)
    _output_options(p)
    p.set_defaults(func=cmd_annotate)


@_command("quantize", "int8 model with ONNX Runtime, recipe chosen by measurement",
          "Static int8 post-training quantisation with ONNX Runtime (after its "
          "pre-processing: shape inference, Conv+BatchNorm fusion). By default (--auto) "
          "a grid of recipes (format × activation type × calibration method) is "
          "quantised, scored on held-out calibration-source images for agreement with "
          "the float model and timed against it on this machine; the fastest recipe "
          "within --tolerance of the best agreement is written. Calibration never uses "
          "test images unless --calibration-indices asks for them. The int8 model keeps "
          "the float input and the source's metadata.")
def _quantize(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.quantize import (
        ACTIVATION_TYPES,
        DEFAULT_CALIBRATION_COUNT,
        DEFAULT_MIN_AGREEMENT,
        DEFAULT_TOLERANCE,
        FORMATS,
        METHODS,
        WEIGHT_TYPES,
    )

    p.add_argument("model", help="the float ONNX model (e.g. from convert)")
    p.add_argument("-o", "--output", default=None,
                   help="int8 ONNX file to write (default: MODEL's name + _int8.onnx, in the "
                        "current directory, not beside MODEL)")
    g = p.add_argument_group("calibration")
    g.add_argument("--calibration-data", metavar="DIR", required=True,
                   help="calibration images: an image folder (e.g. ../shared/cifar-10/"
                        "train-2000-png), a CIFAR-10 distribution whose TRAINING split is "
                        "used, or a directory holding either further down (as run --int8 "
                        "searches --data-dir)")
    g.add_argument("--calibration-indices", metavar="FILE", default=None,
                   help="calibrate on these TEST-set indices instead (MLCommons' recipe: "
                        "calibration_samples_idxs.npy); every report then says so")
    g.add_argument("--allow-test-calibration", action="store_true",
                   help="accept TEST images as calibration data (e.g. perf-png, refused "
                        "otherwise: exit 4); every report then says so")
    g.add_argument("--calibration-count", type=positive_int, default=None, metavar="N",
                   help=f"calibration images, evenly spread over the source (default: "
                        f"{DEFAULT_CALIBRATION_COUNT:,}, at most half the source: the others "
                        "are held out to score candidates and for the quality gate)")
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
    g.add_argument("--tolerance", type=parse_accuracy, default=DEFAULT_TOLERANCE, metavar="X",
                   help=f"--auto keeps candidates whose held-out agreement is at most X below "
                        f"the best (default: {DEFAULT_TOLERANCE:g}, i.e. "
                        f"{DEFAULT_TOLERANCE * 100:g} points)")
    g.add_argument("--standard-ops", action="store_true",
                   help="only recipes whose file uses standard ONNX ops (QDQ), none of ONNX "
                        "Runtime's com.microsoft ops (QOperator)")
    g.add_argument("--min-agreement", type=parse_accuracy, default=DEFAULT_MIN_AGREEMENT,
                   metavar="X",
                   help=f"quality gate: write no int8 model whose top-1 agreement with fp32 "
                        f"on the held-out images is below X, a fraction or a percentage "
                        f"(default: {DEFAULT_MIN_AGREEMENT:g}; exit 6 below it; 0: off)")
    g.add_argument("--layer-errors", action="store_true",
                   help="always measure per-layer quantisation error (default: only when "
                        "agreement is below 98%%)")
    add_spec_options(p)  # after -o/--output (the file); --output-name is the tensor
    add_data_options(p)
    _run_options(p)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="also write quantize.json and quantize.md")
    _output_options(p)
    p.set_defaults(func=cmd_quantize)




def _points(text: str) -> float:
    """'0.5' or '0.5%': percentage points of agreement → the fraction 0.005."""
    raw = text.strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of percentage points "
                                         "(e.g. 0.5)") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0 and below 100 points")
    return value / 100


@_command("tune", "the fastest runtime × precision × int8 recipe that keeps the predictions",
          "Measure ONNX Runtime fp32 (the reference) and int8 (quantize's choice), OpenVINO "
          "f32/bf16/f16 (the precisions this CPU has) and OpenVINO int8 (NNCF), each scored "
          "on held-out calibration-source images for top-1 agreement with ONNX Runtime fp32 "
          "and timed against it in this process; write the fastest within --tolerance (speeds "
          "within the timing noise count as equal; ties go to fidelity), with its runtime "
          "settings in its metadata, once the written file reloaded reproduces the held-out "
          "figures (exit 6 otherwise, nothing written).")
def _tune(p: argparse.ArgumentParser) -> None:
    from resnet8_onnx.quantize.trials import TRIALS
    from resnet8_onnx.quantize.tune import DEFAULT_TOLERANCE

    p.add_argument("model", help="the float ONNX model (e.g. from convert)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx",
                   help="the tuned model to write; an OpenVINO int8 choice is written as "
                        "OpenVINO IR beside it instead (OUT.xml + OUT.bin)")
    g = p.add_argument_group("calibration")
    g.add_argument("--calibration-data", metavar="DIR", required=True,
                   help="training images, as quantize takes them: calibrate the int8 "
                        "configurations on half, score and time every configuration on the "
                        "other half (at least 100 held out, exit 4 otherwise)")
    g.add_argument("--calibration-count", type=positive_int, default=None, metavar="N",
                   help="calibration images (default: 1,000, at most half the source)")
    g.add_argument("--allow-test-calibration", action="store_true",
                   help="accept TEST images as calibration data (every figure then says so)")
    g = p.add_argument_group("choice")
    g.add_argument("--tolerance", type=_points, default=DEFAULT_TOLERANCE, metavar="POINTS",
                   help=f"percentage points of held-out top-1 agreement with ONNX Runtime "
                        f"fp32 a configuration may lose (default: {DEFAULT_TOLERANCE * 100:g})")
    g.add_argument("--configurations", metavar="LIST", default=",".join(TRIALS[1:]),
                   help=f"comma-separated configurations to measure besides the reference "
                        f"(default: {','.join(TRIALS[1:])})")
    add_spec_options(p)
    add_data_options(p)
    _run_options(p)
    _output_options(p)
    p.set_defaults(func=cmd_tune)
