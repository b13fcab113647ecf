"""Option types, shared option groups, and the checks every command makes before work."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnet8_onnx.backends import RUNTIMES
from resnet8_onnx.backends.onnxrt.runner import OPTIMIZATION_LEVELS
from resnet8_onnx.backends.openvino.runner import (
    PERFORMANCE_HINTS,
    PRECISIONS,
    check_hint,
    check_precision,
)
from resnet8_onnx.support import errors

EXIT_CODES = """exit codes: 0 ok, 2 usage, 3 input not found, 4 invalid or corrupt input,
5 unsafe input refused, 6 verification failed, 7 accuracy below threshold,
8 output cannot be written, 9 download failed, 70 internal error, 130 interrupted."""

DATA_HELP = """data: --data-dir DIR (or $RESNET8_ONNX_DATA_DIR) may point at a CIFAR-10 layout
or a folder holding one (searched two levels deep, never downloaded into); without one, the
official files are downloaded into $RESNET8_ONNX_CACHE_DIR (default ~/.cache/resnet8-onnx).
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
    "annotate": ["resnet8-onnx annotate cifar10_resnet.onnx -o annotated.onnx --scale 1/255 "
                 "--mean 0.4914,0.4822,0.4465 --std 0.2470,0.2435,0.2616",
                 "resnet8-onnx annotate annotated.onnx -o embedded.onnx --embed "
                 "--data-dir ../shared"],
    "tune": ["resnet8-onnx tune resnet8.onnx -o resnet8_tuned.onnx --calibration-data "
             "../shared/cifar-10/train-2000-png --data-dir ../shared/cifar-10/cifar-10-batches-bin",
             "resnet8-onnx tune resnet8.onnx -o fast.onnx --calibration-data "
             "../shared/cifar-10/train-2000-png --tolerance 1 --json tuning.json"],
    "quantize": ["resnet8-onnx quantize resnet8.onnx -o resnet8_int8.onnx "
                 "--calibration-data ../shared/cifar-10/train-2000-png",
                 "resnet8-onnx quantize resnet8.onnx --calibration-data "
                 "../shared/cifar-10/train-2000-png --data-dir ../shared --out int8-report"],
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
def cli_console(stderr: bool = False):
    from resnet8_onnx.support.progress import console

    return console(stderr=stderr)


def parse_accuracy(text: str) -> float:
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def parse_shape(text: str) -> tuple[int, int, int] | None:
    if text.lower() in ("any", "model"):
        return None
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 32,32,3) or 'any'") from None
    if len(dims) != 3 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W,C (e.g. 32,32,3) or 'any'")
    return dims


def parse_classes(text: str) -> int | None:
    if text.lower() in ("any", "model"):
        return None
    return positive_int(text)


def int_list(text: str) -> list[int]:
    """'1,8,64' → [1, 8, 64]; 'all' stands for every available core (thread lists)."""
    from resnet8_onnx.machine import available_cores

    values = []
    for part in text.split(","):
        part = part.strip().lower()
        values.append(available_cores() if part in ("all", "max") else positive_int(part))
    return values


def parse_levels(text: str) -> list[str]:
    levels = [p.strip().lower() for p in text.split(",") if p.strip()]
    unknown = [lvl for lvl in levels if lvl not in OPTIMIZATION_LEVELS]
    if unknown or not levels:
        raise argparse.ArgumentTypeError(
            f"{text!r}: levels are a comma-separated subset of {','.join(OPTIMIZATION_LEVELS)}")
    return levels


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def warn_oversubscribed(args: argparse.Namespace) -> None:
    """One line on stderr when --threads asks for more threads than this process has cores:
    oversubscribed runtimes do not fail, they run many times slower."""
    threads = getattr(args, "threads", None)
    most = max(threads) if isinstance(threads, list) else threads
    if not most:
        return
    from resnet8_onnx.machine import available_cores

    cores = available_cores()
    if most > cores:
        print(f"resnet8-onnx: warning: --threads {most} is more than the {cores} "
              f"core{'s' if cores != 1 else ''} available; oversubscribed threads run much "
              f"slower (try --threads {cores}, or leave it out)", file=sys.stderr)


def emit_json(payload: Any, destination: str | None, *, force: bool) -> None:
    """``--json -`` prints a record (or a plain mapping) to stdout; a path is written
    atomically."""
    from resnet8_onnx.report import to_json

    if destination is None:
        return
    emit_text(to_json(payload), destination, force=force)


def emit_text(text: str, destination: str, *, force: bool) -> None:
    """JSON text to stdout (``-``) or atomically to a file; a closed stdout is no error."""
    text = text if text.endswith("\n") else text + "\n"
    if destination == "-":
        from resnet8_onnx.support.progress import write_stdout

        write_stdout(text)
    else:
        from resnet8_onnx.support.fsutil import write_text_atomic

        write_text_atomic(destination, text, force=force)


def refuse_outputs(args: argparse.Namespace, *, files: Sequence[str | None] = (),
                   reports: Mapping[str, str] | None = None,
                   inputs: Sequence[str | None] = (),
                   directories: Sequence[tuple[str | None, Any]] = (),
                   models: Sequence[str | None] = ()) -> Path | None:
    """Refuse every output before any work: one that would overwrite an input (``--force`` or
    not), exists without ``--force``, or cannot be written. ``reports`` are the file names of the
    ``--out`` report set (``report.evaluation_files`` …); ``directories`` are (directory,
    its check) pairs such as ``--save-test-data``; returns the ``--out`` directory.
    The outputs are remembered so :func:`load_data` can check them against the data files
    it finds; until then nothing is created under ``--data-dir``, not even a probe file.
    ``models`` given as a directory are refused first (exit 4, as :func:`check_models` says),
    so an output that would land inside that directory does not turn it into exit 8."""
    from resnet8_onnx.support.fsutil import (
        check_writable,
        probes_deferred,
        refuse_overwriting_inputs,
    )

    for model in models:
        if model is not None and Path(model).is_dir():
            check_models([model], by_suffix=False)

    out_dir = getattr(args, "out", None)
    with probes_deferred(_named_data_roots(args)) as pending:
        targets: list[Path] = []
        if reports is not None and out_dir is not None:
            from resnet8_onnx.report import check_planned

            targets = list(check_planned(out_dir, reports, force=args.force).values())
        planned = [*(Path(f) for f in files if f not in (None, "-")), *targets,
                   *(Path(d) for d, _ in directories if d is not None)]
        refuse_overwriting_inputs(planned, inputs)
        for f in files:
            if f not in (None, "-"):
                check_writable(f, force=args.force)
        for directory, check in directories:
            if directory is not None:
                check(directory)
    args.planned_outputs = planned
    args.deferred_probes = pending
    return None if out_dir is None else Path(out_dir)


def check_models(paths: Sequence[str | None], *, by_suffix: bool = True,
                  backend_option: bool = False) -> None:
    """Each model exists, is a readable file and (``by_suffix``) of a type some runtime reads:
    checked before any data is searched, with one message per problem for every command."""
    from resnet8_onnx.backends import backend_for
    from resnet8_onnx.support.fsutil import check_input_file

    for path in paths:
        if path is None:
            continue
        check_input_file(path, "model")
        if by_suffix and backend_for(path, backend_option=backend_option) == "keras":
            from resnet8_onnx.backends.keras.files import inspect_keras_file

            inspect_keras_file(path)  # the safe pre-scan (no TensorFlow): corrupt or unsafe


def _named_data_roots(args: argparse.Namespace) -> list[Path]:
    """The data directory the command will search, when named (``--data-dir`` or the
    environment): outputs under it are probed only once the data set there is known."""
    if not hasattr(args, "data_dir"):
        return []
    from resnet8_onnx.data.locations import ENV_DATA_DIR

    named = args.data_dir or os.environ.get(ENV_DATA_DIR)
    if not named:
        return []
    path = Path(named).expanduser()
    return [path if path.is_dir() else path.parent] if path.exists() else []


def add_data_options(p: argparse.ArgumentParser, *, subsets: bool = True,
                      images: bool = True) -> None:
    """``images``: the labelled-image-set options too (split folders, class names, resize)."""
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", metavar="DIR", default=None,
                   help="CIFAR-10 location: a batches-bin/-py dir, an official tarball, an image "
                        "folder, or a folder holding one (default: $RESNET8_ONNX_DATA_DIR, "
                        "then the cache, then download)")
    if subsets:
        g.add_argument("--split", metavar="{test,train,...}" if images else None, default=None,
                       choices=None if images else ("test", "train"),
                       help="test: the 10,000 test images; train: the 50,000 training images "
                            "(data_batch_1-5 of a batches dir or tarball) (default: test); for "
                            "a root/<split>/<class>/ folder, its split directory (default: "
                            "val, validation, valid, test, train: the first there is)")
        g.add_argument("--subset", choices=("full", "perf"), default="full",
                       help="full: every image the source holds; perf: the MLPerf Tiny "
                            "200-image subset (default: full)")
        g.add_argument("--indices", metavar="FILE", default=None,
                       help="test-set indices (.npy) for --subset perf (default: "
                            "perf_samples_idxs.npy found under --data-dir, or downloaded); "
                            "only the official file (by sha256) is called the perf subset")
        g.add_argument("--limit", type=positive_int, metavar="N", default=None,
                       help="only N images, class-balanced: round-robin over the classes, "
                            "each in source order (--limit 500 of the test set = the first 50 "
                            "of each class); a quick check, reports say so")
    g.add_argument("--offline", action="store_true",
                   help="never download; fail with a hint instead")
    if images:
        from resnet8_onnx.cli.dataopts import add_image_options

        add_image_options(p)


def load_data(args: argparse.Namespace, backends: Sequence[Any] = ()):
    """The data set the options name, fitted to the models about to run on it: their
    class names, their input size, the resize/crop stated (see ``cli.dataopts``)."""
    from resnet8_onnx.cli.dataopts import folder_request
    from resnet8_onnx.data import load_dataset

    dataset = load_dataset(args.data_dir, split=getattr(args, "split", None),
                           subset=getattr(args, "subset", "full"),
                           indices_file=getattr(args, "indices", None),
                           download=False if args.offline else None,
                           request=folder_request(args, backends))
    from resnet8_onnx.support.fsutil import refuse_overwriting_inputs, run_probes

    refuse_overwriting_inputs(getattr(args, "planned_outputs", ()), dataset.input_paths)
    run_probes(getattr(args, "deferred_probes", ()))  # outputs under --data-dir, not refused
    if getattr(args, "limit", None):
        dataset = dataset.with_limit(args.limit)
    from resnet8_onnx.support.progress import note

    for line in dataset.notes:  # the source a search chose among several; a --limit too big
        note(line)
    from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE

    batch_size = getattr(args, "batch_size", None)  # said only of a size the user chose
    if batch_size not in (None, DEFAULT_BATCH_SIZE) and batch_size > len(dataset):
        note(f"--batch-size {batch_size:,} is more than the {len(dataset):,} images; running "
             f"batches of {len(dataset):,}")
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


class _Renamed(argparse.Action):
    """The tensor-name option was ``--output NAME``; it is ``--output-name NAME`` now, since
    ``-o/--output`` is a file in convert and quantize. Said plainly rather than abbreviated."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        raise errors.UsageError("--output NAME is now --output-name NAME (the output tensor "
                                "to use); -o/--output names a file only in convert and "
                                "quantize")


def add_spec_options(p: argparse.ArgumentParser, *, per_model: bool = False,
                      output: bool = True, provider: bool = True) -> None:
    """--layout/--channels/--scale/--mean/--std (+ --output-name, --provider) for ONNX models.

    ``per_model``: each may be repeated, once per model in model order (``-`` for none); one
    value applies to every ONNX model.
    """
    from resnet8_onnx.preprocess import CHANNEL_ORDERS, LAYOUTS, parse_scale, parse_triple

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
        g.add_argument("--output-name", metavar="NAME", default=None,
                       help="the output tensor to use when the model has several", **kw)
        if "--output" not in p._option_string_actions:  # -o/--output is a FILE elsewhere
            p.add_argument("--output", action=_Renamed, nargs="?", help=argparse.SUPPRESS)
    if not provider:  # convert: the checks run on the CPU
        return
    g.add_argument("--provider", metavar="NAME", default=None,
                   help="ONNX Runtime execution provider, e.g. cpu, cuda (default: "
                        "CPUExecutionProvider); a bad name lists the available ones")


SPEC_OPTIONS = ("layout", "channels", "scale", "mean", "std")


def spec_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in SPEC_OPTIONS
            if getattr(args, name, None) is not None}


def check_device(args: argparse.Namespace, models: Sequence[str]) -> None:
    """``--device`` places PyTorch models; refuse it, before any work, when none of ``models``
    is one (it would be ignored and everything would run on the CPU)."""
    device = getattr(args, "device", None)
    if device in (None, "cpu"):
        return
    from resnet8_onnx.backends import LOADERS, backend_for

    def takes_device(path: str) -> bool:
        try:
            return "device" in LOADERS[backend_for(path)].options
        except errors.UsageError:  # an unknown suffix is refused later, in its own words
            return True

    if not any(takes_device(m) for m in models):
        raise errors.UsageError(
            f"--device {device} applies to PyTorch models only; for ONNX Runtime on a GPU "
            f"give --provider {device} (its execution provider)")


def add_runtime_options(p: argparse.ArgumentParser, *, per_model: bool = False,
                         settings_per_model: bool = False, candidate: bool = False) -> None:
    """--runtime (which runtime runs .onnx files), --precision and --performance-hint
    (OpenVINO's; the runner module imports OpenVINO itself only when a model is loaded).
    ``per_model``: --runtime may be repeated, once per model; ``settings_per_model``: so may
    the other two."""
    repeat = (" --runtime may be repeated once per model, in model order ('-' for the "
              "default); given once, it runs every model it reads." if per_model else "")
    if settings_per_model:
        repeat += " So may --precision and --performance-hint (given once: every OpenVINO model)."
    which = "the candidate (the model verified)" if candidate else "ONNX models"
    g = p.add_argument_group("runtime", f"Which runtime runs {which}, and how.{repeat}")
    each: dict[str, Any] = {"action": "append"} if per_model else {}
    g.add_argument("--runtime", type=_spec_type(_runtime_name, "runtime"), default=None,
                   metavar="{" + ",".join(RUNTIMES) + "}", **each,
                   help="onnxruntime (default for .onnx) or openvino (default for OpenVINO IR "
                        ".xml; needs the 'openvino' extra)")
    each = {"action": "append"} if settings_per_model else {}
    g.add_argument("--precision", type=_spec_type(_precision, "precision"), default=None,
                   metavar="{" + ",".join(PRECISIONS) + "}", **each,
                   help="OpenVINO's inference precision (default: the file's metadata, else "
                        "f32); one this CPU lacks is refused (exit 2), never a silent fallback")
    g.add_argument("--performance-hint", type=_spec_type(_hint, "hint"), default=None,
                   metavar="{" + ",".join(PERFORMANCE_HINTS) + "}", **each,
                   help="OpenVINO's performance hint (default: latency)")


def _runtime_name(text: str) -> str:
    if text.strip().lower() not in RUNTIMES:
        raise errors.UsageError(f"unknown runtime {text!r}; choose one of {', '.join(RUNTIMES)}")
    return text.strip().lower()


def _precision(text: str) -> str:
    return str(check_precision(text))


def _hint(text: str) -> str:
    return check_hint(text)


def runtime_options(args: argparse.Namespace) -> dict[str, Any]:
    """The OpenVINO options given, as the loaders name them."""
    return {"precision": getattr(args, "precision", None),
            "performance_hint": getattr(args, "performance_hint", None)}


def add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where PyTorch models run (default: cpu; cuda needs a GPU, exit 2 "
                        "otherwise); TF32 stays off so results match the CPU. ONNX models "
                        "run on a GPU with --provider cuda")
