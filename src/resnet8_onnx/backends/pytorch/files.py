"""A PyTorch model as this package reads it: the file (a ``.pt2`` ExportedProgram or a
native ResNet8 state dict) and the description of its input (:class:`ModelInput`: the spec
``evaluate`` resolves, the model's own input shape, a fixed batch).

The PyTorch backend and the converter both need these; they live with the backend so that
it imports nothing of the converter (``torch_convert``) or of its checks (``torch_checks``).
Files are read through :mod:`resnet8_onnx.backends.pytorch.safe_io`, which pre-scans them so
nothing in a
file runs; torch is imported only when a file is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.backends.pytorch.safe_io import PT2_SUFFIXES, load_exported_program
from resnet8_onnx.backends.pytorch.state_dict import native_from_state_dict
from resnet8_onnx.preprocess import (
    METADATA,
    METADATA_SENTENCE,
    METADATA_SPEC,
    OPTION,
    Preprocessing,
    resolve,
)
from resnet8_onnx.support.errors import InvalidInputError

# The batch sizes a model with a dynamic batch is checked at (a fixed batch: that one).
CHECK_BATCH_SIZES = (1, 7)

Run = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelInput:
    """One model's input as every stage feeds it: ``spec`` (and where each field came from),
    the model's own input ``shape`` (batch first; ``None`` dynamic) and the NHWC image shape
    of the pixels the spec takes."""

    spec: Preprocessing
    sources: Mapping[str, str]
    shape: tuple[int | None, ...]
    pixel_shape: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if isinstance(self.shape[0], int) else None

    @property
    def model_dims(self) -> tuple[int, ...]:
        # after the batch every dimension of a model's input is a number (checked on load)
        return tuple(int(d) for d in self.shape[1:])  # type: ignore[arg-type]

    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes the checks run: the fixed one, or 1 and 7."""
        return (self.fixed_batch,) if self.fixed_batch else CHECK_BATCH_SIZES

    def metadata(self) -> dict[str, Any]:
        """What a written model says about its input, so the next stage resolves the same
        spec with honest sources: only fields stated (by option or metadata) go into
        ``preprocessing_spec``; the others resolve again from the same shape and defaults."""
        import json

        stated = {k: v for k, v in self.spec.to_dict().items()
                  if self.sources.get(k) in (OPTION, METADATA)}
        return {METADATA_SENTENCE: self.spec.to_metadata()[METADATA_SENTENCE],
                METADATA_SPEC: json.dumps(stated, sort_keys=True),
                "input_layout": self.spec.layout.upper(), "input_dtype": self.spec.dtype,
                **({"fixed_batch": self.fixed_batch} if self.fixed_batch else {})}


def resolve_torch_input(metadata: Mapping[str, Any], shape: Sequence[int | None], dtype: str,
                        overrides: Mapping[str, Any] | None = None, *,
                        where: str = "model") -> ModelInput:
    """A PyTorch model's description from its file's metadata and its program's input, by
    the same rule as ONNX models (option → metadata → input shape → default)."""
    strings = {k: v for k, v in metadata.items() if isinstance(v, str)}
    if isinstance(overrides, Preprocessing):
        overrides = {k: v for k, v in overrides.to_dict().items() if k != "dtype"}
    spec, sources = resolve(overrides, strings, tuple(shape), dtype, where=where)
    # after the batch a saved program's dimensions are numbers (only the batch is dynamic)
    dims = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
    pixel = (dims[1], dims[2], dims[0]) if spec.layout == "nchw" else dims
    return ModelInput(spec, sources, tuple(shape), pixel)




def program_input(program: Any) -> tuple[tuple[int | None, ...], str]:
    """(shape with ``None`` for a symbolic dimension, numpy dtype name) of an
    ExportedProgram's single user input, from its fake tensor."""
    users = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(users) != 1:
        raise InvalidInputError(f"the program has {len(users)} inputs; expected one image batch")
    name = users[0].arg.name
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    value = node.meta["val"]
    if len(value.shape) != 4:
        raise InvalidInputError(f"the program's input has rank {len(value.shape)}, expected 4")
    # a SymInt (dynamic) converts to its example value with int(): keep only real ints
    shape = [d if isinstance(d, int) else None for d in value.shape]
    if any(d is None for d in shape[1:]):
        raise InvalidInputError("the program's image dimensions are not fixed")
    return tuple(shape), str(value.dtype).removeprefix("torch.")


def load_torch_model(path: str | os.PathLike[str]) -> tuple[Any, Any | None, dict[str, Any]]:
    """(callable module, ExportedProgram or None, metadata) from any PyTorch file we read."""
    suffix = Path(path).suffix.lower()
    if suffix in PT2_SUFFIXES:
        program, metadata = load_exported_program(path)
        return program.module(), program, metadata
    from resnet8_onnx.backends.pytorch.resnet8 import fold_batchnorm

    module, metadata = native_from_state_dict(path)
    return fold_batchnorm(module), None, metadata
