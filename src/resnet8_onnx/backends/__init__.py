"""Runtimes behind one protocol, chosen by file type or by name.

Each backend module imports its framework lazily, so choosing ONNX Runtime never imports
TensorFlow or PyTorch, and vice versa.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet8_onnx.backends.base import Backend, BackendInfo, InputSpec, Runner
from resnet8_onnx.preprocess import Preprocessing
from resnet8_onnx.records import runtime_label
from resnet8_onnx.support.errors import InputNotFoundError, UsageError

__all__ = ["BACKENDS", "LOADERS", "Backend", "BackendInfo", "InputSpec", "Loader", "Runner",
           "backend_for", "label_of", "load_backend"]


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
}

# name -> file suffixes it reads
BACKENDS: dict[str, tuple[str, ...]] = {name: entry.suffixes for name, entry in LOADERS.items()}


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
) -> Runner:
    """Load ``path`` with ``backend`` (default: chosen by suffix): a lookup in
    :data:`LOADERS` and one call.

    ``preprocessing`` (spec fields from options, see :mod:`resnet8_onnx.preprocess`),
    ``output``, ``provider``, ``optimization`` (ONNX Runtime's graph level) and
    ``optimized_model_path`` apply to ONNX models; for the others a spec other than raw NHWC
    RGB pixels or any of the others is a usage error. ``device`` ("cpu", "cuda") applies to
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
        ("optimized_model_path", optimized_model_path)) if value is not None}
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
            flag = "output-name" if option == "output" else option.replace("_", "-")
            raise UsageError(f"{path}: --{flag} applies to {_takers(option)} models only")
    return loader.load(path, threads=threads, **given)


def _takers(option: str) -> str:
    """'ONNX', 'PyTorch': the labels of the runtimes whose loader takes ``option``."""
    return " and ".join(label_of(name) for name, loader in LOADERS.items()
                        if option in loader.options)


def label_of(name: str) -> str:
    """What reports call the runtime ``name``: its loader's own label, else the records'."""
    loader = LOADERS.get(name)
    return loader.label if loader is not None and loader.label else runtime_label(name)
