"""``convert(source, output, **options)``: one entry point, dispatching on the suffix pair.

Each direction is one module (keras_to_onnx, to_torch) and one row of :data:`DIRECTIONS`,
which declares the options it takes, so a library user never picks the converter and the CLI
only maps its flags. An option a direction does not take is refused, never dropped (a spec
option silently ignored would describe a file that does not behave so). A new direction is a
module and a row here. Nothing heavy is imported until a direction runs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet8_onnx.backends.pytorch.safe_io import (
    PT2_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    TORCH_SUFFIXES,
)
from resnet8_onnx.support.errors import UsageError
from resnet8_onnx.support.facade import callable_module

if TYPE_CHECKING:
    from resnet8_onnx.records import Conversion

__all__ = ["DIRECTIONS", "TARGETS", "Direction", "applicable", "convert", "direction_for"]

@dataclass(frozen=True)
class Direction:
    """One conversion direction: which suffix pairs it takes, its function, its options."""

    label: str
    sources: tuple[str, ...] | None  # None: any source the earlier rows did not take
    targets: tuple[str, ...]
    function: str  # "module:function", imported when the direction runs
    options: frozenset[str]

    def takes(self, source: str | os.PathLike[str], output: str | os.PathLike[str]) -> bool:
        return (Path(output).suffix.lower() in self.targets
                and (self.sources is None or Path(source).suffix.lower() in self.sources))


#: First match wins: a PyTorch source to ONNX, anything to PyTorch, then Keras to ONNX (a
#: Keras file is recognised by its content, whatever its suffix).
DIRECTIONS: tuple[Direction, ...] = (
    Direction("PyTorch → ONNX", TORCH_SUFFIXES, (".onnx",),
              "resnet8_onnx.convert.to_torch:convert_torch_to_onnx",
              frozenset({"opset", "preprocessing"})),
    Direction("→ PyTorch", None, (*PT2_SUFFIXES, *SAFETENSORS_SUFFIXES),
              "resnet8_onnx.convert.to_torch:convert_to_torch",
              frozenset({"builder", "opset", "preprocessing", "output_name"})),
    Direction("Keras → ONNX", None, (".onnx",),
              "resnet8_onnx.convert.keras_to_onnx:convert",
              frozenset({"opset", "input_shape", "num_classes", "class_names", "model"})),
)

#: Every suffix ``convert`` writes, from the table; the output's suffix says which.
TARGETS: tuple[str, ...] = tuple(dict.fromkeys(t for d in DIRECTIONS for t in d.targets))

#: Why an option is refused, where a general sentence would not say enough.
_REFUSALS = {
    ("Keras → ONNX", "preprocessing"): "--layout/--channels/--scale/--mean/--std and "
    "--output-name describe an ONNX or PyTorch source; a Keras model takes raw 0-255 NHWC "
    "RGB pixels (its layers scale)",
    ("PyTorch → ONNX", "output_name"): "--output-name chooses among an ONNX model's outputs; "
    "a PyTorch model has one",
}
_REFUSALS["Keras → ONNX", "output_name"] = _REFUSALS["Keras → ONNX", "preprocessing"]


def direction_for(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> Direction:
    """The direction converting ``source`` to ``output``; a UsageError for an unknown target."""
    for direction in DIRECTIONS:
        if direction.takes(source, output):
            return direction
    raise UsageError(f"{output}: convert writes {', '.join(TARGETS)} files; the output's "
                     "suffix says which")


def applicable(source: str | os.PathLike[str], output: str | os.PathLike[str],
               options: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` the direction for this pair takes (for callers, like the CLI,
    whose defaults mean "whatever the direction does")."""
    taken = direction_for(source, output).options
    return {name: value for name, value in options.items() if name in taken}


def convert(source: str | os.PathLike[str], output: str | os.PathLike[str], *,
            force: bool = False, **options: Any) -> Conversion:
    """Convert ``source`` to ``output`` (``.onnx``, ``.pt2`` or ``.safetensors``), checked.

    ``options`` are the direction's (see :data:`DIRECTIONS`); one set to anything but None
    that the direction does not take is a UsageError, before any work. ``opset=None`` is
    each direction's default. Every direction returns the same record, :class:`Conversion`.
    """
    direction = direction_for(source, output)
    for name, value in options.items():
        if value is not None and name not in direction.options:
            why = _REFUSALS.get((direction.label, name),
                                f"{name} does not apply to a {direction.label} conversion")
            raise UsageError(f"{source}: {why}")
    module, function = direction.function.split(":")
    chosen = {k: v for k, v in options.items()
              if k in direction.options and not (k == "opset" and v is None)}
    run = getattr(importlib.import_module(module), function)
    result: Conversion = run(source, output, force=force, **chosen)
    return result


# The facade's resnet8_onnx.convert(...) is this module called (see support.facade).
callable_module(__name__, "convert")
