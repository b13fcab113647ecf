"""The one interface every runtime implements: a loader (file → runner) and a runner.

A runner turns an NHWC batch of raw 0–255 RGB pixels (uint8, or float32 holding the same
values) into a ``(N, num_classes)`` float32 array; whatever the model itself wants (a cast,
scaling, NCHW, a fixed batch) the runner does per batch. It *declares* what it takes
(:class:`InputSpec`), what it returns (``output_kind``) and which optional abilities it has
(``abilities``; what each promises is a Protocol, and :func:`able` hands a runner back
typed by it), so callers never probe for attributes. Everything else (batching, metrics,
parity) is written once against this protocol, so adding a runtime is adding a module here
and one line in the loader table of :mod:`resnet8_onnx.backends`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, cast, runtime_checkable

import numpy as np

from resnet8_onnx.records.parts import RunnerInfo

if TYPE_CHECKING:
    from resnet8_onnx.preprocess import Preprocessing

OutputKind = Literal["probabilities", "logits"]

# The optional abilities a runner may declare, each with what it promises:
MACS = "macs"  # macs() -> int: multiply-accumulates per image; macs_source: str, how counted
LAYER_OUTPUTS = "layer_outputs"  # layer_outputs(batch), layer_graph(): per-layer activations
# tensor_outputs(batch): every graph tensor, by name; tensor_origins(): which operator made each
TENSOR_OUTPUTS = "tensor_outputs"
STRUCTURE = "structure"  # structure() -> dict: what the file is, for verify
SESSION = "session"  # onnx_session() -> OnnxSession: ONNX Runtime itself (test data, timing)
PARAMETERS = "parameters"  # source_parameters() -> dict: parameter and BN-layer counts
# No method: the runner's files are sources ``convert`` turns into ONNX, so a converted
# model's metadata (``source_sha256``) naming one proves provenance (verify; Keras declares it).
CONVERSION_SOURCE = "conversion_source"
ABILITIES = frozenset({MACS, LAYER_OUTPUTS, TENSOR_OUTPUTS, STRUCTURE, SESSION, PARAMETERS,
                       CONVERSION_SOURCE})


@dataclass(frozen=True)
class InputSpec:
    """What a runner's model takes, and what its ``predict`` takes.

    ``shape`` is the model's own input (``None``: a dynamic dimension), in ``layout``;
    ``pixel_shape`` the NHWC image shape ``predict`` takes; ``preprocessing`` the spec
    :meth:`Runner.prepare` applies (``None``: raw pixels, only cast to ``dtype``).
    """

    shape: tuple[int | None, ...]
    pixel_shape: tuple[int | None, ...]
    dtype: str = "float32"
    layout: str = "nhwc"  # "nhwc" or "nchw" (a Preprocessing's layout, checked there)
    preprocessing: Preprocessing | None = None

    @property
    def fixed_batch(self) -> int | None:
        """The model's batch size when its batch dimension is fixed, else ``None``."""
        return self.shape[0] if self.shape and isinstance(self.shape[0], int) else None

    def model_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The model input dims after the batch for NHWC ``image_shape``."""
        h, w, c = image_shape
        return (c, h, w) if self.layout == "nchw" else (h, w, c)


@dataclass(frozen=True)
class OnnxSession:
    """What the ``session`` ability hands out: the ONNX Runtime session and the names it is
    fed and read by, for callers that drive ONNX Runtime themselves (test data in the Model
    Zoo layout, sessions timed against each other).

    The rest of the input is the runner's :class:`InputSpec` (dtype, fixed batch,
    preprocessing) and :meth:`Runner.prepare` applies it: :meth:`run` takes what ``prepare``
    returns, in batches of the model's own size when it is fixed.
    """

    session: Any  # onnxruntime.InferenceSession
    input_name: str
    output_name: str
    # Where each field of ``InputSpec.preprocessing`` came from: option, metadata, shape, default.
    preprocessing_sources: Mapping[str, str] = field(default_factory=dict)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The chosen output for a prepared batch: one ``InferenceSession.run``."""
        return self.session.run([self.output_name], {self.input_name: x})[0]


@runtime_checkable
class Runner(Protocol):
    """Loaded once, predicts many batches, describes itself and declares its abilities."""

    info: RunnerInfo
    input_spec: InputSpec
    abilities: frozenset[str]

    @property
    def output_kind(self) -> str | None:
        """"probabilities" or "logits" as the file declares it; None: not declared (guessed
        from the outputs). Read-only, so an attribute or a property satisfies it."""
        ...

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs for a uint8/float32 ``(N, H, W, C)`` batch of 0–255 pixels."""
        ...

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels as the model takes them (cast, preprocessing); ``run`` takes the result."""
        ...

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for an already prepared batch: the runtime's time alone."""
        ...


# The name the rest of the package has always used for a runner.
Backend = Runner


# ------------------------------------------------------------------ the abilities, typed
# What each declared ability promises, as a Protocol: ``able(runner, CountsMacs)`` hands the
# runner back typed when it declares the ability, so callers neither probe attributes nor
# silence the type checker.
@runtime_checkable
class CountsMacs(Protocol):
    macs_source: str

    def macs(self) -> int: ...


@runtime_checkable
class HasLayerOutputs(Protocol):
    def layer_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def layer_graph(self) -> tuple[list[tuple[str, str]], dict[str, list[str]]]: ...


@runtime_checkable
class HasTensorOutputs(Protocol):
    def tensor_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def tensor_origins(self) -> dict[str, tuple[str, bool]]: ...


@runtime_checkable
class HasStructure(Protocol):
    def structure(self) -> dict[str, Any]: ...


@runtime_checkable
class HasSession(Protocol):
    def onnx_session(self) -> OnnxSession: ...


@runtime_checkable
class HasParameters(Protocol):
    def source_parameters(self) -> dict[str, int]: ...


_DECLARED_BY: dict[type, str] = {CountsMacs: MACS, HasLayerOutputs: LAYER_OUTPUTS,
                                 HasTensorOutputs: TENSOR_OUTPUTS, HasStructure: STRUCTURE,
                                 HasSession: SESSION, HasParameters: PARAMETERS}
A = TypeVar("A")


def able(runner: Any, ability: Callable[..., A]) -> A | None:
    """``runner`` typed as ``ability`` when it declares that ability, else ``None``.

    The declaration decides (an ONNX runner from bytes has the methods but not the MAC
    count); a runner that declares an ability without its methods is a bug, said loudly.
    ``ability`` is one of the Protocols above; it is typed as a callable returning ``A``
    because a type checker refuses a Protocol class where ``type[A]`` is expected (mypy's
    ``type-abstract``), and that is all it takes for the result to be typed by it.
    """
    protocol = cast(type, ability)
    if _DECLARED_BY[protocol] not in runner.abilities:
        return None
    if not isinstance(runner, protocol):
        raise TypeError(f"{type(runner).__name__} declares {_DECLARED_BY[protocol]!r} "
                        f"but lacks what {protocol.__name__} promises")
    return cast(A, runner)


def cast_pixels(pixels: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """The ``prepare`` of runners whose model takes raw pixels: one contiguous cast."""
    return np.ascontiguousarray(pixels, dtype=dtype)


class RawPixelRunner:
    """``prepare``/``run`` for runners whose model takes raw float32 pixels (Keras,
    LiteRT): preparing is one contiguous cast, running is ``predict``. (PyTorch runners
    apply their file's spec, as ONNX ones do.)"""

    def predict(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        return cast_pixels(pixels)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.predict(x)


class SpecRunner:
    """``output_kind``/``prepare``/``predict`` for runners of an ONNX file that carries its own
    spec and output kind (ONNX Runtime, OpenVINO): preparing applies the resolved spec,
    predicting runs the prepared batch. The subclass sets ``metadata`` and ``preprocessing``
    when it loads the file, and defines ``run``."""

    metadata: dict[str, str]
    preprocessing: Preprocessing

    def run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def output_kind(self) -> str | None:
        """"probabilities" / "logits" when the converter recorded it in the metadata."""
        return self.metadata.get("output_kind")

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """NHWC RGB 0–255 pixels as the model takes them, per its preprocessing spec."""
        return self.preprocessing.apply(pixels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Outputs ``(N, C)`` for an NHWC RGB 0–255 batch (uint8 or float), preprocessed per
        the model's spec."""
        return self.run(self.prepare(batch))


def chunked(run: Callable[[np.ndarray], np.ndarray], size: int | None
            ) -> Callable[[np.ndarray], np.ndarray]:
    """``run`` in batches of ``size`` (a fixed batch), the last padded with copies of its last
    image whose outputs are dropped: how every runner feeds a fixed-batch model."""
    if size is None:
        return run

    def call(x: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, len(x), size):
            part = x[start:start + size]
            n = len(part)
            if n < size:
                part = np.concatenate([part, np.repeat(part[-1:], size - n, axis=0)])
            outs.append(run(part)[:n])
        return np.concatenate(outs)
    return call
