"""Runtimes behind one protocol, chosen by file type or by name.

Each backend module imports its framework lazily, so choosing ONNX Runtime never imports
TensorFlow or PyTorch, and vice versa.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet8_onnx.backends.base import Backend, InputSpec, Runner
from resnet8_onnx.preprocess import Preprocessing
from resnet8_onnx.records import runtime_label
from resnet8_onnx.support.errors import InputNotFoundError, UsageError

__all__ = ["BACKENDS", "LOADERS", "RUNTIMES", "Backend", "InputSpec", "Loader",
           "Runner", "backend_for", "label_of", "load_backend", "refuse_unused_options",
           "runtimes_for"]


@dataclass(frozen=True)
class Loader:
    """How a runtime turns a file into a runner: the suffixes it reads, the module (in this
    package) whose ``load(path, *, threads, **options)`` does it, what reports call it (by
    default the label the records give its name, ``records.RUNTIME_LABELS``), the options it
    takes beyond ``threads``, and whether its thread count is fixed once per process
    (TensorFlow sizes its thread pools when it starts: later runners cannot change them)."""

    suffixes: tuple[str, ...]
    module: str
    label: str | None = None
    options: frozenset[str] = frozenset()
    threads_per_process: bool = False
    # Options it takes only when given for this model alone, never from a value given once
    # for several models (a PyTorch model's file states its own spec).
    own_only: frozenset[str] = frozenset()
    # Suffixes it also reads when chosen by name (``--runtime``): another runtime's files.
    also_reads: tuple[str, ...] = ()

    def reads(self, path: str | os.PathLike[str]) -> bool:
        """Whether this runtime reads ``path``'s kind of file (by default or by name)."""
        return Path(path).suffix.lower() in (*self.suffixes, *self.also_reads)

    def load(self, path: str | os.PathLike[str], **options: Any) -> Runner:
        module = importlib.import_module(f"{__name__}.{self.module}")  # lazy: one framework
        return module.load(path, **options)


# The registry: adding a runtime is one module in this package and one line here.
LOADERS: dict[str, Loader] = {
    "onnxruntime": Loader((".onnx",), "onnxrt.runner", options=frozenset(
        {"preprocessing", "output", "provider", "optimization", "optimized_model_path"})),
    "keras": Loader((".h5", ".keras"), "keras.runner", threads_per_process=True),
    "litert": Loader((".tflite",), "litert.runner"),
    # The optional torch extra: ExportedPrograms and native ResNet8 state dicts.
    "torch": Loader((".pt2", ".safetensors", ".pt", ".pth"), "pytorch.runner",
                    options=frozenset({"device", "preprocessing"}),
                    own_only=frozenset({"preprocessing"})),
    # The optional openvino extra: .onnx files with --runtime openvino, and OpenVINO IR.
    "openvino": Loader((".xml",), "openvino.runner", also_reads=(".onnx",), options=frozenset(
        {"preprocessing", "output", "precision", "performance_hint"})),
}

# name -> file suffixes it reads
BACKENDS: dict[str, tuple[str, ...]] = {name: entry.suffixes for name, entry in LOADERS.items()}
# What ``--runtime`` chooses among: the runtimes that read an ONNX file.
RUNTIMES: tuple[str, ...] = tuple(name for name, entry in LOADERS.items() if entry.reads("x.onnx"))
# The loader options that are not the spec fields (those are the "preprocessing" option).
_FLAGS = {"output": "output-name", "precision": "precision",
          "performance_hint": "performance-hint", "provider": "provider", "device": "device"}


def backend_for(path: str | os.PathLike[str], *, backend_option: bool = False) -> str:
    """The backend name for a model file, from its suffix; ``backend_option``: the command
    has ``--backend``, so the refusal may suggest it (only then)."""
    suffix = Path(path).suffix.lower()
    for name, loader in LOADERS.items():
        if suffix in loader.suffixes:
            return name
    known = ", ".join(s for suffixes in BACKENDS.values() for s in suffixes)
    raise UsageError(f"{path}: unknown model type {suffix or '(no suffix)'!r}; "
                     f"expected one of {known}{' or pass --backend' if backend_option else ''}")


def runtimes_for(paths: Sequence[str | os.PathLike[str]],
                 given: Sequence[str | None] | None) -> list[str]:
    """The runtime of each model when ``--runtime`` is given (none, once, or once per model
    with ``-`` for "by suffix"): given once, it runs every model whose kind of file it reads
    and the others keep theirs; a runtime that reads none of them is exit 2, as is one not
    among :data:`RUNTIMES`."""
    values = [None if v in (None, "-") else v for v in (given or [])]
    for value in values:
        if value is not None and value not in RUNTIMES:
            raise UsageError(f"unknown runtime {value!r}; choose one of {', '.join(RUNTIMES)}")
    by_suffix = [backend_for(p) for p in paths]
    if not values:
        return by_suffix
    if len(values) == 1 and len(paths) != 1:
        chosen = values[0]
        assert chosen is not None
        names = [chosen if LOADERS[chosen].reads(p) else b for p, b in zip(paths, by_suffix,
                                                                            strict=True)]
        if not any(LOADERS[chosen].reads(p) for p in paths):
            raise UsageError(f"--runtime {chosen} reads {_reads(chosen)} files; none of the "
                             "models is one")
        return names
    if len(values) != len(paths):
        raise UsageError(f"--runtime given {len(values)} times for {len(paths)} models: give "
                         "it once (for every model it reads) or once per model in model order "
                         "('-' for the default)")
    names = []
    for path, value, default in zip(paths, values, by_suffix, strict=True):
        if value is not None and not LOADERS[value].reads(path):
            raise UsageError(f"{path}: --runtime {value} reads {_reads(value)} files")
        names.append(value or default)
    return names


def _reads(name: str) -> str:
    loader = LOADERS[name]
    return ", ".join((*loader.suffixes, *loader.also_reads))


def refuse_unused_options(names: Sequence[str], options: Mapping[str, Any]) -> None:
    """Exit 2 for a runtime option (``precision`` …) given for models none of whose runtimes
    takes it: it would be ignored, and the figures would be of something else."""
    for option, value in options.items():
        if value is None or option not in _FLAGS or option in ("provider", "device"):
            continue
        if not any(option in LOADERS[n].options for n in names if n in LOADERS):
            raise UsageError(f"--{_FLAGS[option]} applies to {_takers(option)} models only"
                             + ("; add --runtime openvino" if "openvino" in RUNTIMES
                                and option in LOADERS["openvino"].options else ""))


def check_fixed_preprocessing(path: str | os.PathLike[str], name: str,
                              preprocessing: Mapping[str, Any] | None) -> None:
    """Keras and LiteRT models take raw 0–255 NHWC RGB pixels; refuse options saying otherwise.

    (The model itself does any scaling; there is nothing to configure for these backends.)
    """
    given = {k: v for k, v in (preprocessing or {}).items() if v is not None}
    if not given:
        return
    raw = Preprocessing()
    asked = Preprocessing(**{**raw.to_dict(), **given})
    if not asked.is_raw:
        options = ", ".join(f"--{k}" for k in given)
        raise UsageError(f"{path}: {name} models take raw 0-255 NHWC RGB pixels (their own "
                         f"layers do any scaling); {options} cannot change that")


def applicable_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The ``options`` the ``name`` loader takes: for commands whose options are given once
    for models of several runtimes (the ONNX-only ones simply do not reach the others)."""
    loader = LOADERS.get(name)
    if loader is None:  # load_backend names the unknown runtime
        return dict(options)
    return {k: v for k, v in options.items()
            if k in loader.options and k not in loader.own_only}


def load_backend(
    path: str | os.PathLike[str], backend: str | None = None, *, threads: int | None = None,
    preprocessing: Mapping[str, Any] | None = None, output: str | None = None,
    provider: str | None = None, device: str | None = None, optimization: str | None = None,
    optimized_model_path: str | os.PathLike[str] | None = None,
    precision: str | None = None, performance_hint: str | None = None,
) -> Runner:
    """Load ``path`` with ``backend`` (default: chosen by suffix): a lookup in
    :data:`LOADERS` and one call.

    ``preprocessing`` (spec fields from options, see :mod:`resnet8_onnx.preprocess`),
    ``output``, ``provider``, ``optimization`` (ONNX Runtime's graph level) and
    ``optimized_model_path`` apply to ONNX models; for the others a spec other than raw NHWC
    RGB pixels or any of the others is a usage error. ``precision`` and ``performance_hint``
    apply to OpenVINO (``f32``/``bf16``/``f16``). ``device`` ("cpu", "cuda") applies to
    the PyTorch backend; the other runtimes run on the CPU, so asking them for another device
    is a usage error rather than silently ignored.
    """
    if not Path(path).is_file():
        raise InputNotFoundError(f"{path}: model file not found")
    name = backend or backend_for(path)
    loader = LOADERS.get(name)
    if loader is None:
        raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(LOADERS)}")
    given = {key: value for key, value in (
        ("preprocessing", preprocessing), ("output", output), ("provider", provider),
        ("device", device), ("optimization", optimization),
        ("optimized_model_path", optimized_model_path), ("precision", precision),
        ("performance_hint", performance_hint)) if value is not None}
    if "device" not in loader.options and given.pop("device", "cpu") != "cpu":
        gpu = (f"; for ONNX Runtime on a GPU give --provider {device} (its execution "
               "provider)" if "provider" in loader.options else "")
        raise UsageError(f"{path}: --device {device} applies to {_takers('device')} models "
                         f"only; {name} runs on the CPU{gpu}")
    if "preprocessing" not in loader.options:
        given.pop("preprocessing", None)
        check_fixed_preprocessing(path, name, preprocessing)
    for option in given:
        if option not in loader.options:
            flag = _FLAGS.get(option, option.replace("_", "-"))
            hint = ("; add --runtime openvino" if name == "onnxruntime"
                    and option in LOADERS["openvino"].options else "")
            raise UsageError(f"{path}: --{flag} applies to {_takers(option)} models "
                             f"only{hint}")
    return loader.load(path, threads=threads, **given)


def _takers(option: str) -> str:
    """'ONNX', 'PyTorch': the labels of the runtimes whose loader takes ``option``."""
    return " and ".join(label_of(name) for name, loader in LOADERS.items()
                        if option in loader.options)


def label_of(name: str) -> str:
    """What reports call the runtime ``name``: its loader's own label, else the records'."""
    loader = LOADERS.get(name)
    return loader.label if loader is not None and loader.label else runtime_label(name)
