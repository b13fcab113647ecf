"""Throughput and latency of models over batch sizes, thread counts and ONNX Runtime graph
optimisation levels, set against a large ONNX Runtime MatMul measured in the same run.

A figure such as "5,600 images/s" means little on its own; the same figure as "141 GFLOP/s,
0.9× what ONNX Runtime's own float32 MatMul of two 1024×1024 matrices reaches with 2
threads on this CPU" says how close the model runs to the runtime's best dense arithmetic.
So every configuration reports GFLOP/s (2 × MACs × images/s, MACs counted from the model
file itself) and its ratio to that MatMul at the same thread count. It is a ratio, not a
share of a roofline: ONNX Runtime's convolution kernels can beat its square MatMul, so values
above 1 happen. Every record names the CPU it was measured on.

Each configuration is warmed up, then timed call by call until it has both a minimum number
of iterations and a minimum time, so the default benchmark of one model stays well under a
minute while small batches still get hundreds of samples for their latency percentiles.

The default grid is a cross (``full_grid=True`` runs every combination): every level at the
most threads, every thread count at the highest level — what each buys, at half the cost.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx import records
from resnet8_onnx.backends import LOADERS, applicable_options, backend_for, label_of, load_backend
from resnet8_onnx.backends.base import CountsMacs, able
from resnet8_onnx.backends.onnxrt.runner import OPTIMIZATION_LEVELS
from resnet8_onnx.convert.keras_to_onnx import DEFAULT_OPSET
from resnet8_onnx.data.format import IMAGE_SHAPE
from resnet8_onnx.machine import (
    LoadMeter,
    available_cores,
    busy_before,
    check_batch_fits,
    cpu_model,
    environment,
)
from resnet8_onnx.records import BenchmarkRecord, BenchModel, BenchResult, DataInfo, OptimizedModel
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError
from resnet8_onnx.support.fsutil import (
    check_writable,
    file_digest,
    recorded_path,
    write_bytes_atomic,
)
from resnet8_onnx.support.progress import track

if TYPE_CHECKING:
    from resnet8_onnx.backends.base import Runner

DEFAULT_BATCH_SIZES = (1, 8, 64, 256, 1000)
DEFAULT_MIN_SECONDS = 0.5
DEFAULT_MIN_ITERATIONS = 3
DEFAULT_WARMUP_SECONDS = 0.1
QUICK_MIN_SECONDS = 0.1
QUICK_WARMUP_SECONDS = 0.02
SGEMM_SIZE = 1024
MATMUL_SIZE = 1024


def default_threads() -> tuple[int, ...]:
    """One thread and all cores (just one entry on a single-core machine)."""
    return tuple(sorted({1, available_cores()}))


# --------------------------------------------------------------------------- timing
def time_predict(
    predict: Callable[[np.ndarray], Any], batch: np.ndarray, *,
    min_seconds: float = DEFAULT_MIN_SECONDS, min_iterations: int = DEFAULT_MIN_ITERATIONS,
    warmup_seconds: float = DEFAULT_WARMUP_SECONDS,
) -> dict[str, Any]:
    """Warm up, then time ``predict(batch)`` call by call until both minimums are met.

    Returns iterations, total timed seconds, images/s and per-call latency percentiles (ms).
    The warm-up (at least one call) absorbs first-call costs — memory arenas sized for this
    batch, an interpreter's tensor re-allocation, thread pools spinning up.
    """
    if min_iterations < 1:
        raise UsageError(f"min_iterations must be at least 1, got {min_iterations}")
    if min_seconds < 0 or warmup_seconds < 0:
        raise UsageError("time budgets must not be negative")
    clock = time.perf_counter
    start = clock()
    predict(batch)
    while clock() - start < warmup_seconds:
        predict(batch)
    latencies: list[float] = []
    begin = clock()
    while len(latencies) < min_iterations or clock() - begin < min_seconds:
        t0 = clock()
        predict(batch)
        latencies.append(clock() - t0)
    lat = np.asarray(latencies) * 1e3
    seconds = float(lat.sum() / 1e3)
    n = len(batch)
    p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
    return {
        "iterations": len(latencies),
        "images": n * len(latencies),
        "seconds": seconds,
        "images_per_second": n * len(latencies) / seconds if seconds > 0 else math.inf,
        "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "mean": float(lat.mean()),
                       "min": float(lat.min()), "max": float(lat.max())},
    }


_SGEMM_CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    n, repeat = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    print(2 * n ** 3 / best / 1e9)
""")

_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                          "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def ort_matmul_gflops(threads: int, *, n: int = MATMUL_SIZE, repeat: int = 5) -> float | None:
    """Best-of-``repeat`` GFLOP/s of ONNX Runtime's float32 MatMul of two ``n``×``n`` matrices.

    The reference for the models' GFLOP/s: the same runtime, thread pool and CPU kernels as
    the models, built with ``onnx.helper`` so nothing but the product is timed. ``None`` if
    ONNX Runtime cannot run it (the benchmark still reports its own figures).
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", DEFAULT_OPSET)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {name: rng.random((n, n), dtype=np.float32) for name in "ab"}
        session.run(None, feeds)
        best = math.inf
        for _ in range(repeat):
            start = time.perf_counter()
            session.run(None, feeds)
            best = min(best, time.perf_counter() - start)
    except Exception:  # a reference is a courtesy: never fail a benchmark over it
        return None
    return 2 * n**3 / best / 1e9 if best > 0 else None


def cpu_busy_fraction(seconds: float = 0.5) -> float | None:
    """Share of this process's cores busy over ``seconds``, sampled while it sleeps.

    Taken just before measuring, so it sees other work only (see :mod:`.machine`).
    """
    return busy_before(seconds)


def sgemm_gflops(threads: int, *, n: int = SGEMM_SIZE, repeat: int = 5) -> float | None:
    """Best-of-``repeat`` GFLOP/s of an ``n``×``n`` float32 numpy matmul on ``threads`` threads.

    Runs in a child process with every common BLAS thread variable set, because a BLAS fixes
    its pool size when loaded. ``None`` if the child fails (the benchmark still reports its
    own figures, just without this one).
    """
    env = {**os.environ, **{var: str(threads) for var in _BLAS_THREAD_VARIABLES}}
    try:
        out = subprocess.run([sys.executable, "-c", _SGEMM_CHILD, str(n), str(repeat)],
                             capture_output=True, text=True, env=env, timeout=120, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- MACs
def macs_of(backend: Runner) -> tuple[int | None, str]:
    """(MACs per image, how they were counted) for any backend; ``None`` when unknown. Both
    come from the runner: the ``macs`` ability promises ``macs()`` and ``macs_source``."""
    counter = able(backend, CountsMacs)
    if counter is None:
        return None, "n/a (no MAC counter for this backend)"
    try:
        macs = counter.macs()
    except Exception as exc:  # counting is a courtesy: never fail a benchmark over it
        return None, f"not counted ({type(exc).__name__})"
    return macs, counter.macs_source


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Config:
    """One measured point: which model, how it is run, at which batch size."""

    model: int  # index into the benchmark's model list
    threads: int | None  # None: the runtime's own default
    optimization: str | None  # ONNX Runtime graph level; None for other backends
    batch_size: int


def plan_configs(
    backend_names: Sequence[str], *, batch_sizes: Sequence[int], threads: Sequence[int],
    optimization_levels: Sequence[str], full_grid: bool = False,
) -> list[Config]:
    """The configurations to measure, grouped so each runtime session is created once.

    ONNX Runtime (the loader taking ``optimization``): the cross described in the module
    docstring (or the full product). A runtime whose threads are fixed once per process
    (Keras: TensorFlow sizes its thread pools when it starts): one run with its default
    threads. The others (LiteRT, PyTorch): every thread count.
    """
    configs: list[Config] = []
    most = max(threads)
    best = optimization_levels[-1] if optimization_levels else "all"
    for m, name in enumerate(backend_names):
        loader = LOADERS[name]
        pairs: list[tuple[int | None, str | None]]
        if "optimization" in loader.options:
            pairs = [(t, lvl) for t in threads for lvl in optimization_levels] if full_grid else [
                (most, lvl) for lvl in optimization_levels]
            if not full_grid:
                pairs += [(t, best) for t in threads if t != most]
        elif loader.threads_per_process:
            pairs = [(None, None)]
        else:
            pairs = [(t, None) for t in threads]
        for t, lvl in pairs:
            configs += [Config(m, t, lvl, b) for b in batch_sizes]
    return configs


def _load(path: str, name: str, threads: int | None, optimization: str | None,
          optimized_model_path: str | None = None, *,
          onnx_options: Mapping[str, Any] | None = None, device: str | None = None) -> Runner:
    """``onnx_options``: ``preprocessing``, ``output``, ``provider`` for ONNX models only;
    ``device`` for PyTorch models."""
    options = {**(onnx_options or {}), "device": device, "optimization": optimization,
               "optimized_model_path": optimized_model_path}
    return load_backend(path, name, threads=threads, **applicable_options(name, options))


def probe_models(models: Sequence[str | os.PathLike[str]], *,
                 onnx_options: Mapping[str, Any] | None = None, device: str | None = None,
                 backends: Sequence[str] | None = None) -> None:
    """Load each model once and let it go, so a corrupt file or a bad spec is refused before
    any data is searched (as evaluate and compare load first). Keras is left to its safe
    pre-scan: TensorFlow's thread pools are set once, by the measurement itself."""
    for name, path in zip(backends or [backend_for(p) for p in models], map(str, models),
                          strict=True):
        if not LOADERS[name].threads_per_process:
            _load(path, name, 1, OPTIMIZATION_LEVELS[0], onnx_options=onnx_options, device=device)


def _inputs(backend: Runner, images: np.ndarray | None, count: int,
            seed: int) -> np.ndarray:
    """``count`` images as the model takes them (dtype, and an ONNX model's preprocessing done
    once here, so timings are the runtime's alone): real ones (tiled) or random pixels."""
    shape = backend.input_spec.pixel_shape
    if images is not None:
        got = tuple(images.shape[1:])
        if len(shape) != 3 or any(d is not None and d != g for d, g in zip(shape, got,
                                                                           strict=True)):
            raise InvalidInputError(
                f"{backend.info.model_path}: model input is "
                f"{'×'.join('?' if d is None else str(d) for d in shape)}, the data is "
                f"{'×'.join(map(str, got))} images")
        reps = -(-count // len(images))
        pixels = np.concatenate([images] * reps)[:count] if reps > 1 else images[:count]
    else:
        if len(shape) != 3:
            raise InvalidInputError(f"{backend.info.model_path}: input has rank "
                                    f"{len(shape) + 1}, expected an NHWC image batch")
        dims = tuple(d if d is not None else IMAGE_SHAPE[i] for i, d in enumerate(shape))
        pixels = np.random.default_rng(seed).integers(0, 256, (count, *dims), dtype=np.uint8)
    return backend.prepare(pixels)


def fed_description(backend: Runner, x: np.ndarray) -> str:
    """What the timed calls were handed: the prepared tensor's dtype, layout and shape, and
    the spec that made it from 0-255 NHWC RGB pixels (e.g. ``float32 NCHW [N,3,32,32]: NCHW
    RGB float32, ×1/255, mean …``)."""
    spec = backend.input_spec.preprocessing
    layout = (spec.layout if spec is not None else backend.input_spec.layout or "nhwc").upper()
    text = f"{x.dtype} {layout} [N,{','.join(map(str, x.shape[1:]))}]: " + (
        spec.describe() if spec is not None else "raw 0-255 pixels, no preprocessing")
    inside = backend.info.input_dtype
    if inside and inside != str(x.dtype):
        text += f"; the model's {inside} input is made inside each timed call"
    return text


def _inputs_description(kind: str, seed: int, fed: Sequence[str]) -> str:
    """The inputs' source, then what every model was fed (once if alike, else per model)."""
    source = f"random uint8 pixels (seed {seed})" if kind == "synthetic" else "real images"
    return f"{source}, fed as {fed[0]}" if len(set(fed)) == 1 else (
        f"{source}, prepared for each model by its own spec (each model's input says how)")


def _arithmetic(info: Any) -> str | None:
    """'int8' for a quantised model (the runner says so: its graph, or LiteRT's quantised
    input), None for float arithmetic — also behind a uint8 input that only carries
    embedded preprocessing (``annotate --embed``), which casts to float first."""
    precision = info.extra.get("inference_precision", "f32")  # OpenVINO's, in effect
    return str(info.extra.get("quantization") or (precision if precision != "f32" else "")) or None


def _label(index: int, backend: Runner) -> str:
    """'#1 ONNX', '#2 ONNX int8' (a quantised model), '#3 LiteRT int8' (an int8 input)."""
    kind = _arithmetic(backend.info)
    return f"#{index + 1} {label_of(backend.info.name)}" + (f" {kind}" if kind else "")


# --------------------------------------------------------------------------- the benchmark
def benchmark(
    models: Sequence[str | os.PathLike[str]], *,
    backends: Sequence[str | None] | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    threads: Sequence[int] | None = None,
    optimization_levels: Sequence[str] = OPTIMIZATION_LEVELS,
    full_grid: bool = False,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    min_iterations: int = DEFAULT_MIN_ITERATIONS,
    warmup_seconds: float = DEFAULT_WARMUP_SECONDS,
    images: np.ndarray | None = None,
    data: DataInfo | None = None,
    save_optimized: str | os.PathLike[str] | None = None,
    force: bool = False,
    onnx_options: Mapping[str, Any] | None = None,
    reference: bool = True,
    seed: int = 0,
    device: str | None = None,
) -> BenchmarkRecord:
    """Measure every planned configuration of every model; returns the typed record.

    ``images`` (uint8 NHWC, e.g. real CIFAR-10 test images, with ``data`` describing them)
    replaces the default random pixels. ``save_optimized`` writes the ONNX model as ONNX
    Runtime optimises it at the highest requested level (exactly one ONNX model needed).
    ``reference=False`` skips the MatMul reference (and its ratios).
    ``onnx_options`` (``preprocessing``, ``output``, ``provider``) apply to every ONNX model;
    an ONNX model's preprocessing is done once before timing, so figures are the runtime's.
    """
    plan = check_benchmark_request(
        models, backends=backends, batch_sizes=batch_sizes, threads=threads,
        optimization_levels=optimization_levels, images=images,
        save_optimized=save_optimized, force=force)
    paths, names = plan.paths, plan.names
    batch_sizes, threads, levels = plan.batch_sizes, plan.threads, plan.levels

    wall = time.perf_counter()
    busy_before = cpu_busy_fraction()
    configs = plan_configs(names, batch_sizes=batch_sizes, threads=threads,
                           optimization_levels=levels, full_grid=full_grid)
    with LoadMeter() as load:
        models_measured, results, versions = _measure_configs(
            configs, paths, names, images=images, batch=max(batch_sizes), seed=seed,
            min_seconds=min_seconds, min_iterations=min_iterations,
            warmup_seconds=warmup_seconds, onnx_options=onnx_options, device=device)
    matmul = _add_matmul_ratios(results, models_measured, reference=reference)

    kind = "data" if images is not None else "synthetic"
    fed = [m.input_description or "" for m in models_measured]
    inputs = records.BenchInputs(kind=kind, description=_inputs_description(kind, seed, fed))
    if images is None:
        inputs.seed = seed
    else:  # how many real images fill the largest batch; a default account if none given
        inputs.images, inputs.repeated = min(len(images), n := batch_sizes[-1]), len(images) < n
        inputs.data = data if data is not None else DataInfo()
    record = BenchmarkRecord(
        inputs=inputs,
        settings=records.BenchSettings(
            batch_sizes=batch_sizes, threads=threads, optimization_levels=levels,
            grid="full" if full_grid else "cross", min_seconds=min_seconds,
            min_iterations=min_iterations, warmup_seconds=warmup_seconds),
        machine=records.Machine(
            cores=available_cores(), cpu=cpu_model(), cpu_busy_before=busy_before,
            cpu_busy_during=load.busy, matmul_reference=records.MatmulReference(
                what=f"ONNX Runtime MatMul of two {MATMUL_SIZE}×{MATMUL_SIZE} float32 "
                     "matrices, best of 5, measured in this run",
                size=MATMUL_SIZE, gflops=matmul)),
        environment=environment(versions),
        models=models_measured,
        results=results,
        best=_best(models_measured, results),
    )
    if save_optimized is not None:
        record.optimized_model = _save_optimized(
            paths[plan.onnx_models[0]], save_optimized, levels[-1], force=force,
            write=write_bytes_atomic, digest=file_digest)
    record.seconds = time.perf_counter() - wall
    return record


@dataclass(frozen=True)
class _Request:
    """A benchmark request once checked: what :func:`benchmark` measures."""

    paths: list[str]
    names: list[str]  # backend of each model
    batch_sizes: list[int]  # sorted, distinct
    threads: list[int]  # sorted, distinct
    levels: list[str]  # ONNX Runtime levels, in OPTIMIZATION_LEVELS order
    onnx_models: list[int]  # indices of the ONNX Runtime models


def check_benchmark_request(
    models: Sequence[str | os.PathLike[str]], *, backends: Sequence[str | None] | None,
    batch_sizes: Sequence[int], threads: Sequence[int] | None,
    optimization_levels: Sequence[str], images: np.ndarray | None,
    save_optimized: str | os.PathLike[str] | None, force: bool,
) -> _Request:
    """Every check that can fail on the arguments alone, done before any model is loaded or
    any memory allocated, so bad input fails in a second rather than after minutes of work."""
    if not models:
        raise UsageError("benchmark needs at least one model")
    paths = [str(p) for p in models]
    for p in paths:
        if not Path(p).is_file():
            raise InputNotFoundError(f"{p}: model file not found")
    names = [b or backend_for(p) for b, p in
             zip(backends if backends is not None else [None] * len(paths), paths, strict=True)]
    for name in names:
        if name not in LOADERS:
            raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(LOADERS)}")
    sizes = sorted(set(int(b) for b in batch_sizes))
    if not sizes or sizes[0] < 1:
        raise UsageError("batch sizes must be at least 1")

    check_batch_fits(sizes[-1], option="--batch-sizes")  # before allocating anything
    thread_counts = sorted(set(threads or default_threads()))
    if thread_counts[0] < 1:
        raise UsageError("thread counts must be at least 1")
    levels = [lvl for lvl in OPTIMIZATION_LEVELS if lvl in set(optimization_levels)]
    unknown = set(optimization_levels) - set(OPTIMIZATION_LEVELS)
    if unknown or not levels:
        raise UsageError(f"optimisation levels must be among {', '.join(OPTIMIZATION_LEVELS)}")
    if images is not None and (images.ndim != 4 or len(images) == 0):
        raise UsageError("images must be a non-empty NHWC batch")
    onnx_models = [i for i, n in enumerate(names)
                   if "optimized_model_path" in LOADERS[n].options]
    if save_optimized is not None:
        if len(onnx_models) != 1:
            raise UsageError(f"--save-optimized needs exactly one ONNX model, got "
                             f"{len(onnx_models)}")
        check_writable(save_optimized, force=force)  # before minutes of work, not after
    return _Request(paths, names, sizes, thread_counts, levels, onnx_models)


def _measure_configs(
    configs: Sequence[Config], paths: Sequence[str], names: Sequence[str], *,
    images: np.ndarray | None, batch: int, seed: int, min_seconds: float,
    min_iterations: int, warmup_seconds: float, onnx_options: Mapping[str, Any] | None,
    device: str | None,
) -> tuple[list[BenchModel], list[BenchResult], dict[str, str]]:
    """Time every configuration; returns (the models, result rows, runtime versions).

    Configurations come grouped by (model, threads, level), so each runtime session is
    created once and released before the next one is loaded: two live sessions would compete
    for the same cores and memory.
    """
    models: list[BenchModel] = []
    results: list[BenchResult] = []
    versions: dict[str, str] = {}
    current: tuple[int, int | None, str | None] | None = None
    backend: Runner | None = None
    batch_data: np.ndarray | None = None
    with track(f"benchmark: {len(configs)} configurations", len(configs)) as advance:
        for config in configs:
            key = (config.model, config.threads, config.optimization)
            if key != current:
                backend = None  # release the previous session before creating the next
                backend = _load(paths[config.model], names[config.model], config.threads,
                                config.optimization, onnx_options=onnx_options,
                                device=device)
                current = key
                batch_data = _inputs(backend, images, batch, seed)
                if len(models) == config.model:
                    versions[backend.info.name] = backend.info.runtime_version
                    models.append(_bench_model(config.model, backend, names[config.model],
                                               fed_description(backend, batch_data)))
            assert backend is not None
            assert batch_data is not None
            entry = models[config.model]
            fixed = backend.info.input_shape[0]
            if isinstance(fixed, int) and config.batch_size != fixed:
                note = f"fixed batch dimension {fixed}: other batch sizes skipped"
                if note not in entry.notes:
                    entry.notes.append(note)
                advance(1)
                continue
            # ONNX models: inputs were preprocessed once above, so time the runtime alone.
            timing = time_predict(backend.run, batch_data[:config.batch_size],
                                  min_seconds=min_seconds, min_iterations=min_iterations,
                                  warmup_seconds=warmup_seconds)
            results.append(BenchResult(  # the runtime and the loop's counts have no field
                model=config.model, label=entry.label, optimization=config.optimization,
                threads=config.threads, batch_size=config.batch_size,
                images_per_second=timing["images_per_second"], latency_ms=timing["latency_ms"],
                extra={"backend": names[config.model], "iterations": timing["iterations"],
                       "images": timing["images"], "seconds": timing["seconds"]}))
            advance(1)
    backend = None
    return models, results, versions


def _bench_model(index: int, backend: Runner, loader: str, fed: str) -> BenchModel:
    """One model as the record describes it (``fed``: :func:`fed_description`), with notes on
    figures that need a caveat; its checksum, input and spec facts have no field (``extra``)."""
    macs, how = macs_of(backend)
    info = backend.info
    notes: list[str] = []
    if _arithmetic(info):
        notes.append(f"{_arithmetic(info)} arithmetic: its MACs count like float32 ones, so "
                     "its ratio to the float32 MatMul reference says little")
    if LOADERS[loader].threads_per_process:
        notes.append("TensorFlow fixes its thread pools at start-up: measured once, with its "
                     "default threads (all cores)")
    return BenchModel(
        label=_label(index, backend), path=recorded_path(info.model_path) or "",
        backend=info.name, runtime_version=info.runtime_version, macs_per_image=macs,
        macs_source=how, notes=notes, input_description=fed,
        extra={"sha256": info.model_sha256, "input_shape": list(info.input_shape),
               "input_dtype": info.input_dtype,
               **{k: info.extra[k] for k in ("provider", "preprocessing", "inference_precision",
                                             "device") if k in info.extra}})


def _add_matmul_ratios(results: Sequence[BenchResult], models: Sequence[BenchModel], *,
                       reference: bool) -> dict[str, float | None]:
    """Measure the MatMul reference at each thread count used (after the models, so it does
    not share the CPU with them) and add GFLOP/s and the ratio to it to every result row;
    returns the reference figures by thread count."""
    matmul: dict[str, float | None] = {}
    if reference:
        cores = available_cores()
        for t in sorted({r.threads or cores for r in results}):
            matmul[str(t)] = ort_matmul_gflops(t)
    for r in results:
        macs = models[r.model].macs_per_image
        gflops = 2 * macs * r.images_per_second / 1e9 if macs else None
        ref = matmul.get(str(r.threads or available_cores()))
        r.gflops = gflops
        r.extra["matmul_gflops"] = ref
        r.ratio_to_matmul = gflops / ref if gflops and ref else None
    return matmul


def _best(models: Sequence[BenchModel], results: Sequence[BenchResult]) -> list[BenchResult]:
    """The fastest configuration (images/s) of each model (its latency is the table's)."""
    best = []
    for m, entry in enumerate(models):
        mine = [r for r in results if r.model == m]
        if mine:
            top = max(mine, key=lambda r: r.images_per_second)
            best.append(BenchResult(
                model=m, label=entry.label, optimization=top.optimization, threads=top.threads,
                batch_size=top.batch_size, images_per_second=top.images_per_second,
                gflops=top.gflops, ratio_to_matmul=top.ratio_to_matmul))
    return best


def _save_optimized(source: str, target: str | os.PathLike[str], level: str, *, force: bool,
                    write: Callable[..., Path], digest: Callable[[Path], str]) -> OptimizedModel:
    """Let ONNX Runtime write its optimised graph to a scratch file, then publish it atomically.

    ONNX Runtime writes the file itself while creating the session, so it cannot write into
    our temporary-file-and-rename scheme directly; the scratch file bridges the two.
    """
    with tempfile.TemporaryDirectory(prefix="resnet8-onnx-opt-") as scratch:
        tmp = Path(scratch) / "optimized.onnx"
        _load(source, "onnxruntime", None, level, optimized_model_path=str(tmp))
        if not tmp.is_file():
            raise InvalidInputError(f"{source}: ONNX Runtime wrote no optimised model")
        path = write(target, tmp.read_bytes(), force=force)
    note = ("level 'all' includes layout transformations for this machine's CPU: the file "
            "is meant for ONNX Runtime on the same kind of hardware") if level == "all" else None
    return OptimizedModel(path=recorded_path(path) or "", level=level, sha256=digest(path),
                          bytes=path.stat().st_size, note=note)
