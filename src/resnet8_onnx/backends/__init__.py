"""Runtimes behind one protocol, chosen by file type or by name.

Each backend module imports its framework lazily, so choosing ONNX Runtime never imports
TensorFlow or PyTorch, and vice versa.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputNotFoundError, UsageError
from .base import Backend, BackendInfo

__all__ = ["BACKENDS", "Backend", "BackendInfo", "backend_for", "load_backend"]

# name -> file suffixes it reads
BACKENDS: dict[str, tuple[str, ...]] = {
    "onnxruntime": (".onnx",),
    "keras": (".h5", ".keras"),
    "litert": (".tflite",),
    # The optional torch extra: ExportedPrograms and native ResNet8 state dicts.
    "torch": (".pt2", ".safetensors", ".pt", ".pth"),
}


def backend_for(path: str | os.PathLike[str]) -> str:
    """The backend name for a model file, from its suffix."""
    suffix = Path(path).suffix.lower()
    for name, suffixes in BACKENDS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for suffixes in BACKENDS.values() for s in suffixes)
    raise UsageError(f"{path}: unknown model type {suffix or '(no suffix)'!r}; "
                     f"expected one of {known} or pass --backend")


def check_fixed_preprocessing(path: str | os.PathLike[str], name: str,
                              preprocessing: Mapping[str, Any] | None) -> None:
    """Keras and LiteRT models take raw 0–255 NHWC RGB pixels; refuse options saying otherwise.

    (The model itself does any scaling; there is nothing to configure for these backends.)
    """
    from ..preprocess import Preprocessing

    given = {k: v for k, v in (preprocessing or {}).items() if v is not None}
    if not given:
        return
    raw = Preprocessing()
    asked = Preprocessing(**{**raw.to_dict(), **given})
    if not asked.is_raw:
        options = ", ".join(f"--{k}" for k in given)
        raise UsageError(f"{path}: {name} models take raw 0-255 NHWC RGB pixels (their own "
                         f"layers do any scaling); {options} cannot change that")


def load_backend(
    path: str | os.PathLike[str], backend: str | None = None, *, threads: int | None = None,
    preprocessing: Mapping[str, Any] | None = None, output: str | None = None,
    provider: str | None = None, device: str | None = None,
) -> Backend:
    """Load ``path`` with ``backend`` (default: chosen by suffix).

    ``preprocessing`` (spec fields from options, see :mod:`resnet8_onnx.preprocess`),
    ``output`` and ``provider`` apply to ONNX models; for the others a spec other than raw
    NHWC RGB pixels, ``output`` or ``provider`` is a usage error. ``device`` ("cpu", "cuda")
    applies to the PyTorch backend; the other runtimes run on the CPU, so asking them for
    another device is a usage error rather than silently ignored.
    """
    if not Path(path).is_file():
        raise InputNotFoundError(f"{path}: model file not found")
    name = backend or backend_for(path)
    if name != "torch" and device not in (None, "cpu"):
        raise UsageError(f"{path}: --device {device} applies to PyTorch models only; "
                         f"{name} runs on the CPU")
    if name == "onnxruntime":
        from .onnxrt import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, threads=threads, preprocessing=preprocessing,
                                  output=output, provider=provider)
    if name in BACKENDS:
        check_fixed_preprocessing(path, name, preprocessing)
        for option, value in (("--output", output), ("--provider", provider)):
            if value is not None:
                raise UsageError(f"{path}: {option} applies to ONNX models only")
    if name == "torch":
        from .pytorch import TorchBackend

        return TorchBackend(path, threads=threads, device=device)
    if name == "keras":
        from .keras import KerasBackend

        return KerasBackend(path, threads=threads)
    if name == "litert":
        from .litert import LiteRTBackend

        return LiteRTBackend(path, threads=threads)
    raise UsageError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
