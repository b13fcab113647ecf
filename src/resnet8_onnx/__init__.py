"""resnet8-onnx: convert a Keras image classifier to ONNX and prove the conversion lost nothing.

The package is a library first; ``resnet8_onnx.cli`` is a thin layer over it. The facade —
:func:`load_runner`, :func:`load_dataset`, :func:`evaluate`, :func:`verify`, :func:`compare`,
:func:`benchmark`, :func:`quantize`, :func:`convert`, :func:`load_record` — is resolved on
first use (module ``__getattr__``), so ``import resnet8_onnx`` stays cheap and heavy frameworks
(TensorFlow, tf2onnx, torch) are imported only by the stages that need them: evaluating an
ONNX model never pays for TensorFlow. ``evaluate``, ``verify``, ``compare``, ``convert`` and
``quantize`` are also modules; calling one calls its function (see ``support.facade``).
The module map and the import layers are written once, in docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: facade name → "module:attribute" (an attribute of "" is the module itself, called).
_FACADE: dict[str, str] = {
    "load_runner": "resnet8_onnx.backends:load_backend",
    "load_dataset": "resnet8_onnx.data:load_dataset",
    "evaluate": "resnet8_onnx.evaluate:",
    "verify": "resnet8_onnx.verify:",
    "compare": "resnet8_onnx.compare:",
    "benchmark": "resnet8_onnx.bench:benchmark",
    "quantize": "resnet8_onnx.quantize:",
    "convert": "resnet8_onnx.convert:",
    "load_record": "resnet8_onnx.records:load_record",
}

__all__ = ["__version__", *_FACADE]


def __getattr__(name: str) -> Any:
    """Import a facade name's module on first use (the module caches it as an attribute)."""
    if name not in _FACADE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _FACADE[name].split(":")
    found = importlib.import_module(module)
    value = getattr(found, attribute) if attribute else found
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_FACADE})
