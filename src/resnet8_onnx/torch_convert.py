"""Keras/ONNX → PyTorch and back: build a module, export it, save it, check it.

Two builders make the ``nn.Module``:

* **native** — :class:`resnet8_onnx.torch_models.ResNet8`, a readable module of the MLCommons
  ResNet8, when the Keras file is recognised as that network *by its structure* (the layer
  graph in its config JSON, which the safe pre-scan already reads). The weights are read
  from the ``.h5`` with h5py as plain arrays; Keras is never imported.
* **onnx2torch** — any ONNX model the converter supports (a ``.h5``/``.keras`` source is
  converted to ONNX first), turned into a ``torch.fx`` module by onnx2torch.

The module is exported with ``torch.export`` (dynamic batch dimension) and saved as a
self-contained ``.pt2`` archive: an ExportedProgram with raw tensor payloads and this
project's metadata, loadable by ``torch.export.load`` with no Python class of ours. The
native module's ``state_dict`` can be saved as ``.safetensors`` for fine-tuning. A ``.pt2``
(or state dict) goes back to ONNX through ``torch.onnx.export`` (the dynamo exporter, which
emits opset 18 or newer). Each step checks its output like the Keras → ONNX conversion does.

The builders live in :mod:`resnet8_onnx.torch_native` and :mod:`resnet8_onnx.torch_onnx2torch`
(re-exported here). torch, onnx2torch and safetensors are the optional ``torch`` extra,
imported only by these modules and the PyTorch backend, through
:func:`resnet8_onnx.torch_io.import_torch`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, progress
from .backends import onnxrt
from .convert import DEFAULT_OPSET, PREPROCESSING, convert, finish_onnx_model
from .data.format import CLASS_NAMES
from .errors import (
    InputNotFoundError,
    InvalidInputError,
    ToolError,
    UsageError,
    VerificationFailedError,
    one_line,
)
from .fsutil import check_writable, file_digest, recorded_path, write_bytes_atomic
from .keras_io import read_keras_config
from .torch_io import (
    EXTRA_HINT,
    PT2_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    STATE_DICT_SUFFIXES,
    TORCH_SUFFIXES,
    import_torch,
    load_exported_program,
    require_module,
    save_exported_program,
    save_state_dict,
)
from .torch_native import (
    NativePlan,
    config_from_state_dict,
    native_from_keras,
    native_from_state_dict,
    recognise_resnet8,
)
from .torch_onnx2torch import onnx2torch_module, onnx_metadata

BUILDERS = ("auto", "native", "onnx2torch")
TORCH_ONNX_OPSET = 18  # the oldest opset torch.onnx's dynamo exporter emits without adapters
CHECK_ATOL = 1e-5
CHECK_BATCH_SIZES = (1, 7)
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")

__all__ = [
    "BUILDERS", "CHECK_ATOL", "CHECK_BATCH_SIZES", "EXTRA_HINT", "KERAS_SUFFIXES",
    "TORCH_ONNX_OPSET", "NativePlan", "TorchConversionResult", "config_from_state_dict",
    "convert_to_torch", "convert_torch", "convert_torch_to_onnx", "export_program",
    "import_torch", "is_torch_conversion", "load_torch_model", "native_from_keras",
    "native_from_state_dict", "onnx2torch_module", "recognise_resnet8", "require_module",
]




def is_torch_conversion(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> bool:
    """Does converting ``source`` to ``output`` involve PyTorch (either side)?"""
    return (Path(output).suffix.lower() in TORCH_SUFFIXES
            or Path(source).suffix.lower() in TORCH_SUFFIXES)



# --------------------------------------------------------------------------- export + checks
def _input_shape(module: Any, fallback: tuple[int, ...] | None) -> tuple[int, ...]:
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "input_shape"):
        return tuple(config.input_shape)
    if fallback is None:
        raise InvalidInputError("cannot tell the model's input shape")
    return fallback


def export_program(module: Any, image_shape: tuple[int, ...]) -> Any:
    """``torch.export`` with a dynamic batch dimension (sizes 1, 7, 256 all run)."""
    torch = import_torch()
    example = torch.zeros((2, *image_shape), dtype=torch.float32)
    batch = torch.export.Dim("N", min=1, max=1 << 20)
    with progress.status("Exporting with torch.export"), torch.no_grad():
        try:
            return torch.export.export(module, (example,), dynamic_shapes=({0: batch},),
                                       strict=False)
        except ToolError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"torch.export could not export the module: "
                                    f"{one_line(exc)}") from exc


def _random_batch(image_shape: tuple[int, ...], n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *image_shape)).astype(np.float32)


def _run_torch(fn: Any, batch: np.ndarray) -> np.ndarray:
    torch = import_torch()
    with torch.inference_mode():
        return np.asarray(fn(torch.from_numpy(batch)).float().numpy())


def _check_against(reference: Any, candidate: Any, image_shape: tuple[int, ...], what: str,
                   output: Path) -> dict[str, Any]:
    """Run both on random pixels at each check batch size; raise when they differ."""
    worst = 0.0
    for n in CHECK_BATCH_SIZES:
        x = _random_batch(image_shape, n, seed=n)
        a, b = reference(x), candidate(x)
        if a.shape != b.shape:
            raise VerificationFailedError(f"{output}: output shape {b.shape} differs from "
                                          f"{what}'s {a.shape} at batch {n}")
        worst = max(worst, float(np.abs(a - b).max()))
    if not worst <= CHECK_ATOL:
        raise VerificationFailedError(f"{output}: outputs differ from {what} by {worst:.3g} "
                                      f"(> {CHECK_ATOL:g}) on random pixels")
    return {"against": what, "batch_sizes": list(CHECK_BATCH_SIZES), "max_abs_diff": worst}


def _ort_runner(path_or_bytes: Any) -> Any:
    if isinstance(path_or_bytes, bytes | bytearray):
        import onnxruntime as ort

        session = ort.InferenceSession(bytes(path_or_bytes), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    return onnxrt.load(path_or_bytes).predict


@dataclass(frozen=True)
class TorchConversionResult:
    """One conversion involving PyTorch; ``to_dict`` is JSON-ready."""

    output_path: str
    source_path: str
    source_sha256: str
    output_sha256: str
    target: str  # "pt2", "safetensors" or "onnx"
    builder: str  # "native", "onnx2torch" or "torch.onnx"
    output_kind: str
    num_classes: int
    seconds: float
    checks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Paths resolved, as in every record (the attributes keep them as given)."""
        return {**asdict(self), "output_path": recorded_path(self.output_path),
                "source_path": recorded_path(self.source_path)}


def _versions() -> dict[str, str]:
    torch = import_torch()
    versions = {"torch_version": str(torch.__version__)}
    for name in ("onnx2torch", "onnx", "onnxscript", "safetensors"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[f"{name}_version"] = version(name)
    return versions


def _class_names(metadata: Mapping[str, Any], k: int) -> list[str]:

    names = metadata.get("class_names")
    if isinstance(names, str):
        with contextlib.suppress(ValueError):
            names = json.loads(names)
    if isinstance(names, list) and len(names) == k:
        return [str(n) for n in names]
    return list(CLASS_NAMES) if k == len(CLASS_NAMES) else [str(i) for i in range(k)]


def _choose_builder(source: Path, builder: str) -> str:
    suffix = source.suffix.lower()
    if builder not in BUILDERS:
        raise UsageError(f"unknown --torch-builder {builder!r}; choose one of "
                         f"{', '.join(BUILDERS)}")
    if suffix == ".onnx":
        if builder == "native":
            raise UsageError(f"{source}: the native builder reads a Keras .h5; an ONNX source "
                             "needs --torch-builder onnx2torch (or auto)")
        return "onnx2torch"
    if suffix in STATE_DICT_SUFFIXES:
        if builder == "onnx2torch":
            raise UsageError(f"{source}: a state dict builds the native module; onnx2torch "
                             "needs an ONNX or Keras source")
        return "native"
    if suffix in PT2_SUFFIXES:
        raise UsageError(f"{source}: a .pt2 converts to .onnx; build .pt2 and .safetensors "
                         "files from the Keras or ONNX model")
    if suffix not in KERAS_SUFFIXES:
        raise UsageError(f"{source}: cannot build a PyTorch model from {suffix or 'no suffix'!r}"
                         " (expected .h5, .keras, .onnx, .safetensors or .pt)")
    if builder != "auto":
        return builder
    if suffix == ".keras":
        return "onnx2torch"

    try:
        recognise_resnet8(read_keras_config(source))
    except (ValueError, KeyError, TypeError):
        return "onnx2torch"
    return "native"


def convert_to_torch(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    builder: str = "auto",
    force: bool = False,
    opset: int | None = None,
) -> TorchConversionResult:
    """Build a PyTorch model from a Keras, ONNX or state-dict file and save it.

    ``output_path`` ends in ``.pt2`` (an ExportedProgram) or ``.safetensors`` (the native
    module's state dict, for fine-tuning). The saved ``.pt2`` is loaded back through the safe
    loader and must reproduce the in-memory module (and, for onnx2torch, ONNX Runtime on the
    ONNX it came from) on random pixels at batch sizes 1 and 7.
    """
    start = time.perf_counter()
    source = Path(source_path)
    out = check_writable(output_path, force=force)  # before any expensive work
    import_torch()  # before choosing a builder: recognising a Keras ResNet8 builds one
    target, kind = _check_torch_request(source, out, builder)
    checks: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        built = _build_module(source, kind, opset, stack)
        module, image_shape, k = built.module, built.image_shape, built.num_classes
        output_kind, meta = built.output_kind, built.meta
        module_fn = _module_runner(module)
        if built.reference is not None:
            checks.append(_check_against(built.reference, module_fn, image_shape,
                                         "ONNX Runtime on the source ONNX", out))
        metadata = {
            "converter": "resnet8-onnx", "converter_version": __version__,
            "source_file": source.name, "source_sha256": file_digest(source),
            "builder": kind, "input_shape": ["N", *image_shape],
            # The native module takes NHWC; onnx2torch keeps the ONNX model's own layout.
            "input_layout": "NHWC" if kind == "native" else "as the source ONNX model",
            "preprocessing": meta.get("preprocessing") or _default_preprocessing(),
            "output_kind": output_kind, "num_classes": k,
            "class_names": _class_names(meta, k), **_versions(),
        }
        if kind == "native":
            metadata["resnet8_config"] = module.config.to_dict()
        data = _save_and_check(module, module_fn, out, target=target, kind=kind,
                               image_shape=image_shape, metadata=metadata, checks=checks,
                               force=force)
    return TorchConversionResult(
        output_path=str(out), source_path=str(source), source_sha256=metadata["source_sha256"],
        output_sha256=hashlib.sha256(data).hexdigest(), target=target.lstrip("."),
        builder=kind, output_kind=output_kind, num_classes=k,
        seconds=round(time.perf_counter() - start, 3), checks=checks, metadata=metadata)


def _check_torch_request(source: Path, out: Path, builder: str) -> tuple[str, str]:
    """(target suffix, builder) once the request is known to make sense: the source exists,
    is not the output, and the target format suits the builder. Cheap checks, all of them
    before torch is imported."""
    if not source.is_file():
        raise InputNotFoundError(f"{source}: model file not found")
    if out.resolve() == source.resolve():
        raise UsageError(f"{out}: output would overwrite the source model")
    target = out.suffix.lower()
    if target not in PT2_SUFFIXES + SAFETENSORS_SUFFIXES:
        raise UsageError(f"{out}: a PyTorch target is .pt2 or .safetensors")
    kind = _choose_builder(source, builder)
    if target in SAFETENSORS_SUFFIXES and kind != "native":
        raise UsageError(f"{out}: a .safetensors state dict needs the native ResNet8 module; "
                         f"{source} is converted with onnx2torch")
    return target, kind


@dataclass
class _Built:
    """A PyTorch module built from the source, with what the saved file will say about it."""

    module: Any
    image_shape: tuple[int, ...]
    num_classes: int
    output_kind: str
    meta: dict[str, Any]  # facts carried over from the source (class names, preprocessing…)
    reference: Any = None  # ONNX Runtime on the source ONNX, for onnx2torch modules


def _build_module(source: Path, kind: str, opset: int | None,
                  stack: contextlib.ExitStack) -> _Built:
    """Build the module with the ``native`` ResNet8 or with onnx2torch (converting a Keras
    source to ONNX first, in a temporary directory that ``stack`` removes)."""
    if kind == "native":
        if source.suffix.lower() in STATE_DICT_SUFFIXES:
            module, meta = native_from_state_dict(source)
        else:
            module, plan = native_from_keras(source)
            meta = {"keras_layers": plan.layers}
        return _Built(module, tuple(module.config.input_shape), module.config.num_classes,
                      "probabilities" if module.config.softmax else "logits", meta)
    onnx_path = source
    if source.suffix.lower() in KERAS_SUFFIXES:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        onnx_path = tmp / "model.onnx"
        convert(source, onnx_path, input_shape=None, num_classes=None,
                opset=opset or DEFAULT_OPSET)
    onnx_meta = onnx_metadata(onnx_path)
    module = onnx2torch_module(onnx_path)
    ort = _ort_runner(onnx_path)
    image_shape = tuple(d for d in _ort_input_shape(onnx_path))
    probe = ort(_random_batch(image_shape, 1))
    output_kind = onnx_meta.get("output_kind") or (
        "probabilities" if np.allclose(probe.sum(axis=1), 1, atol=1e-4) else "logits")
    meta = {k_: v for k_, v in onnx_meta.items()
            if k_ in ("class_names", "preprocessing", "source_file", "source_sha256")}
    return _Built(module, image_shape, int(probe.shape[1]), output_kind, meta, reference=ort)


def _save_and_check(module: Any, module_fn: Callable[[np.ndarray], np.ndarray], out: Path, *,
                    target: str, kind: str, image_shape: tuple[int, ...],
                    metadata: dict[str, Any], checks: list[dict[str, Any]],
                    force: bool) -> bytes:
    """Save ``module`` as a state dict or an ExportedProgram, load it back and check it
    reproduces ``module_fn`` (appending to ``checks``); returns the bytes written. A ``.pt2``
    that fails the check is removed, never left behind."""
    if target in SAFETENSORS_SUFFIXES:
        data = save_state_dict(module.state_dict(), out, {
            "resnet8_config": json.dumps(module.config.to_dict()),
            "resnet8_onnx": json.dumps(metadata)}, force=force)
        module2, _ = native_from_state_dict(out)
        checks.append(_check_against(module_fn, _module_runner(module2), image_shape,
                                     "the module before saving", out))
        return data
    if kind == "native":  # inference program: BatchNorm folded into the convolutions
        from .torch_models import fold_batchnorm

        module = fold_batchnorm(module)
        metadata["batchnorm"] = "folded into the preceding convolutions"
    program = export_program(module, image_shape)
    data = _save_checked(program, out, metadata, force=force)
    loaded, _ = load_exported_program(out)
    try:
        checks.append(_check_against(module_fn, _module_runner(loaded.module()),
                                     image_shape, "the module before export", out))
    except VerificationFailedError:
        out.unlink(missing_ok=True)
        raise
    return data


def _save_checked(program: Any, out: Path, metadata: Mapping[str, Any], *,
                  force: bool) -> bytes:
    with progress.status(f"Saving {out.name}"):
        return save_exported_program(program, out, metadata, force=force)


def _default_preprocessing() -> str:
    return PREPROCESSING


def _ort_input_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InvalidInputError(f"{path}: expected one input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    if len(dims) != 4 or any(d <= 0 for d in shape):
        raise InvalidInputError(f"{path}: input must be (batch, H, W, C) with fixed H, W, C")
    return shape


def _module_runner(module: Any) -> Any:
    return lambda x: _run_torch(module, x)


# --------------------------------------------------------------------------- back to ONNX
def load_torch_model(path: str | os.PathLike[str]) -> tuple[Any, Any | None, dict[str, Any]]:
    """(callable module, ExportedProgram or None, metadata) from any PyTorch file we read."""
    suffix = Path(path).suffix.lower()
    if suffix in PT2_SUFFIXES:
        program, metadata = load_exported_program(path)
        return program.module(), program, metadata
    from .torch_models import fold_batchnorm

    module, metadata = native_from_state_dict(path)
    return fold_batchnorm(module), None, metadata


def convert_torch_to_onnx(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    opset: int | None = None,
    force: bool = False,
) -> TorchConversionResult:
    """A ``.pt2`` (or native state dict) → ONNX with ``torch.onnx.export`` (dynamo exporter).

    The result gets the same treatment as a Keras conversion: input ``input`` (N, H, W, C),
    output named after its kind, batch dimension ``N``, self-describing metadata, the full
    ONNX checker and strict shape inference; then ONNX Runtime must reproduce the PyTorch
    model on random pixels at batch sizes 1 and 7.
    """
    start = time.perf_counter()
    source = Path(source_path)
    out = check_writable(output_path, force=force)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"{out}: a PyTorch model converts to .onnx, .pt2 or .safetensors")
    opset = TORCH_ONNX_OPSET if opset is None else opset
    if opset < TORCH_ONNX_OPSET:
        raise UsageError(f"opset {opset}: torch.onnx's exporter emits opset "
                         f"{TORCH_ONNX_OPSET} or newer")
    if not source.is_file():
        raise InputNotFoundError(f"{source}: model file not found")
    torch = import_torch()
    require_module("onnxscript")
    module, program, meta = load_torch_model(source)
    image_shape = tuple(int(d) for d in (meta.get("input_shape") or [])[1:]) or None
    if program is None:
        image_shape = _input_shape(module, image_shape)
        program = export_program(module, image_shape)
    if image_shape is None:
        image_shape = _program_input_shape(program)
    probe = _run_torch(module, _random_batch(image_shape, 1))
    k = int(probe.shape[1])
    kind = meta.get("output_kind") or (
        "probabilities" if np.allclose(probe.sum(axis=1), 1, atol=1e-4) else "logits")
    with progress.status(f"Exporting to ONNX (torch.onnx, opset {opset})"), \
            contextlib.redirect_stdout(sys.stderr):  # the exporter prints; stdout may be JSON
        try:
            onnx_program = torch.onnx.export(program, (), dynamo=True, opset_version=opset,
                                             optimize=True, verbose=False)
        except ToolError:
            raise
        except Exception as exc:
            raise InvalidInputError(f"{source}: torch.onnx.export failed: "
                                    f"{one_line(exc)}") from exc
    proto = onnx_program.model_proto
    versions = _versions()
    metadata = {
        "source_file": source.name, "source_sha256": file_digest(source),
        "source_format": source.suffix.lower().lstrip("."),
        "converter": "resnet8-onnx", "converter_version": __version__,
        **{k_: v for k_, v in versions.items() if k_ in ("torch_version", "onnxscript_version",
                                                         "onnx_version")},
        "opset": str(opset),
        "preprocessing": str(meta.get("preprocessing") or _default_preprocessing()),
        "class_names": json.dumps(_class_names(meta, k)),
    }
    proto = finish_onnx_model(proto, out, output_kind=kind, image_shape=image_shape,
                              num_classes=k, metadata=metadata,
                              description=f"{source.name} exported by torch.onnx "
                                          f"{versions['torch_version']}")
    data = proto.SerializeToString()
    checks = [_check_against(_module_runner(module), _ort_runner(data), image_shape,
                             "the PyTorch model", out)]

    write_bytes_atomic(out, data, force=force)
    return TorchConversionResult(
        output_path=str(out), source_path=str(source), source_sha256=metadata["source_sha256"],
        output_sha256=hashlib.sha256(data).hexdigest(), target="onnx", builder="torch.onnx",
        output_kind=kind, num_classes=k, seconds=round(time.perf_counter() - start, 3),
        checks=checks, metadata={p.key: p.value for p in proto.metadata_props})


def _program_input_shape(program: Any) -> tuple[int, ...]:
    """(H, W, C) of an ExportedProgram's single user input, from its fake tensor."""
    users = [s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    if len(users) != 1:
        raise InvalidInputError(f"the program has {len(users)} inputs; expected one image batch")
    name = users[0].arg.name
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    shape = node.meta["val"].shape
    if len(shape) != 4:
        raise InvalidInputError(f"the program's input has rank {len(shape)}, expected 4")
    try:
        return tuple(int(d) for d in shape[1:])
    except TypeError:
        raise InvalidInputError("the program's image dimensions are not fixed") from None


def convert_torch(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    builder: str = "auto",
    opset: int | None = None,
    force: bool = False,
) -> TorchConversionResult:
    """Dispatch a conversion that involves PyTorch by the two suffixes."""
    suffix = Path(output_path).suffix.lower()
    if Path(source_path).suffix.lower() in TORCH_SUFFIXES and suffix == ".onnx":
        return convert_torch_to_onnx(source_path, output_path, opset=opset, force=force)
    if suffix in PT2_SUFFIXES + SAFETENSORS_SUFFIXES:
        return convert_to_torch(source_path, output_path, builder=builder, force=force,
                                opset=opset)
    raise UsageError(f"{output_path}: a PyTorch model converts to .onnx, .pt2 or .safetensors")

