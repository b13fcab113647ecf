"""Modules that are also the facade's functions (``resnet8_onnx.evaluate(runner, data)``).

The facade's names ``evaluate``, ``verify``, ``compare``, ``convert`` and ``quantize`` are
also modules of the package; importing a submodule sets the package's attribute to the
module, so a plain function of that name at the root would be replaced by the module the
first time anything imported it. Instead such a module is made callable: calling it calls
its function, and ``resnet8_onnx.evaluate.run_inference`` (or ``from resnet8_onnx import
quantize as q``) still reaches the module, whichever was imported first.
"""

from __future__ import annotations

import sys
import types
from typing import Any, cast


class _CallableModule(types.ModuleType):
    """A module whose call is its ``__facade__`` function."""

    __facade__: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__facade__)(*args, **kwargs)


def callable_module(name: str, function: str) -> None:
    """Make the module ``name`` (``__name__``, at the end of its file) call ``function``."""
    module = sys.modules[name]
    module.__class__ = _CallableModule
    cast(_CallableModule, module).__facade__ = function
