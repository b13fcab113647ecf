"""Keras/ONNX → PyTorch and back: build a module, export it, save it, check it.

Two builders make the ``nn.Module``:

* **native** — :class:`resnet8_onnx.backends.pytorch.resnet8.ResNet8`, a readable module of the
  MLCommons
  ResNet8, when the Keras file is recognised as that network *by its structure* (the layer
  graph in its config JSON, which the safe pre-scan already reads). The weights are read
  from the ``.h5`` with h5py as plain arrays; Keras is never imported.
* **onnx2torch** — any ONNX model the converter supports (a ``.h5``/``.keras`` source is
  converted to ONNX first), turned into a ``torch.fx`` module by onnx2torch.

Every check feeds the model as ``evaluate`` does (:mod:`resnet8_onnx.convert.checks`: the
source's spec, its batch sizes, verify's tolerance rule). The module is exported with
``torch.export`` (dynamic batch dimension; a source's fixed batch stays fixed unless a
dynamic one is proven) and saved as a
self-contained ``.pt2`` archive: an ExportedProgram with raw tensor payloads and this
project's metadata, loadable by ``torch.export.load`` with no Python class of ours. The
native module's ``state_dict`` can be saved as ``.safetensors`` for fine-tuning. A ``.pt2``
(or state dict) goes back to ONNX through ``torch.onnx.export`` (the dynamo exporter, which
emits opset 18 or newer). Each step checks its output like the Keras → ONNX conversion does.

The builders live in :mod:`resnet8_onnx.convert.native_resnet8` and
:mod:`resnet8_onnx.convert.onnx_to_torch`
(re-exported here). torch, onnx2torch and safetensors are the optional ``torch`` extra,
imported only by these modules and the PyTorch backend, through
:func:`resnet8_onnx.backends.pytorch.safe_io.import_torch`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx import __version__
from resnet8_onnx.backends import check_fixed_preprocessing
from resnet8_onnx.backends.keras.files import read_keras_config
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.backends.pytorch.files import (
    CHECK_BATCH_SIZES,
    ModelInput,
    load_torch_model,
    program_input,
    resolve_torch_input,
)
from resnet8_onnx.backends.pytorch.safe_io import (
    EXTRA_HINT,
    PT2_SUFFIXES,
    SAFETENSORS_SUFFIXES,
    STATE_DICT_SUFFIXES,
    import_torch,
    load_exported_program,
    require_module,
    save_exported_program,
    save_state_dict,
)
from resnet8_onnx.backends.pytorch.state_dict import config_from_state_dict, native_from_state_dict
from resnet8_onnx.convert.checks import (
    CHECK_ATOL,
    check_against,
    dynamic_batch_proven,
    export_program,
    from_onnx_backend,
    module_runner,
    random_pixels,
)
from resnet8_onnx.convert.keras_to_onnx import DEFAULT_OPSET, convert, finish_onnx_model
from resnet8_onnx.convert.native_resnet8 import NativePlan, native_from_keras, recognise_resnet8
from resnet8_onnx.convert.onnx_to_torch import onnx2torch_module, onnx_metadata
from resnet8_onnx.data.format import CLASS_NAMES
from resnet8_onnx.records import Conversion
from resnet8_onnx.support import progress
from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    ToolError,
    UsageError,
    VerificationFailedError,
    one_line,
)
from resnet8_onnx.support.fsutil import (
    check_writable,
    file_digest,
    recorded_path,
    write_bytes_atomic,
)

BUILDERS = ("auto", "native", "onnx2torch")
TORCH_ONNX_OPSET = 18  # the oldest opset torch.onnx's dynamo exporter emits without adapters
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")

__all__ = [
    "BUILDERS", "CHECK_ATOL", "CHECK_BATCH_SIZES", "EXTRA_HINT", "KERAS_SUFFIXES",
    "TORCH_ONNX_OPSET", "NativePlan", "config_from_state_dict",
    "convert_to_torch", "convert_torch_to_onnx", "export_program",
    "import_torch", "load_torch_model", "native_from_keras",
    "native_from_state_dict", "onnx2torch_module", "recognise_resnet8", "require_module",
]




# --------------------------------------------------------------------------- the checks
# (in torch_checks: every check feeds spec-prepared pixels at the batch sizes the model takes)
_PROBABILITY_SUM_ATOL = 1e-4


def _kind_of(metadata: Mapping[str, Any], probe: np.ndarray) -> str:
    """The recorded output kind, else what the outputs look like."""
    return str(metadata.get("output_kind") or (
        "probabilities" if np.allclose(probe.sum(axis=1), 1, atol=_PROBABILITY_SUM_ATOL)
        else "logits"))


def _native_input(image_shape: tuple[int, ...]) -> ModelInput:
    """The native ResNet8 takes raw 0-255 NHWC RGB float32 pixels, as its Keras source."""
    from resnet8_onnx.preprocess import METADATA, SPEC_FIELDS, Preprocessing

    return ModelInput(Preprocessing(), {name: METADATA for name in SPEC_FIELDS},
                      (None, *image_shape), tuple(image_shape))


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
    preprocessing: Mapping[str, Any] | None = None,
    output_name: str | None = None,
) -> Conversion:
    """Build a PyTorch model from a Keras, ONNX or state-dict file and save it.

    ``output_path`` ends in ``.pt2`` (an ExportedProgram) or ``.safetensors`` (the native
    module's state dict, for fine-tuning). An ONNX source is described as ``evaluate``
    describes it (``preprocessing``: spec options; ``output_name``: the output tensor); every
    check feeds random pixels through that spec at the batch sizes the model takes: the
    module against ONNX Runtime on the source, the saved ``.pt2`` (loaded back through the
    safe loader) against the module. A fixed batch stays fixed unless the module is proven to
    give the source's outputs at another batch size; the ``.pt2`` records the spec.
    """
    start = time.perf_counter()
    source = Path(source_path)
    out = check_writable(output_path, force=force)  # before any expensive work
    import_torch()  # before choosing a builder: recognising a Keras ResNet8 builds one
    target, kind = _check_torch_request(source, out, builder)
    if source.suffix.lower() != ".onnx":
        check_fixed_preprocessing(source, "Keras", preprocessing)
    checks: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        built = _build_module(source, kind, opset, stack, preprocessing=preprocessing,
                              output_name=output_name)
        module, model_input, k = built.module, built.model_input, built.num_classes
        batch = model_input.fixed_batch
        if built.reference is not None:
            checks.append(check_against(built.reference,
                                        module_runner(module, model_input, batch=batch),
                                        model_input, "ONNX Runtime on the source ONNX", out))
            if batch is not None and dynamic_batch_proven(module, built.reference,
                                                          model_input):
                batch = None
        metadata = {
            "converter": "resnet8-onnx", "converter_version": __version__,
            "source_file": source.name, "source_sha256": file_digest(source),
            "builder": kind, **model_input.metadata(),
            "output_kind": built.output_kind, "num_classes": k,
            "class_names": _class_names(built.meta, k), **_versions(),
        }
        if kind == "native":
            metadata["resnet8_config"] = module.config.to_dict()
        data = _save_and_check(module, out, target=target, kind=kind, batch=batch,
                               model_input=model_input, metadata=metadata, checks=checks,
                               force=force)
    return Conversion(
        output_path=recorded_path(out), source_path=recorded_path(source),
        source_sha256=metadata["source_sha256"],
        output_sha256=hashlib.sha256(data).hexdigest(), target=target.lstrip("."),
        builder=kind, output_kind=built.output_kind, num_classes=k,
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
    model_input: ModelInput
    num_classes: int
    output_kind: str
    meta: dict[str, Any]  # facts carried over from the source (class names, preprocessing…)
    reference: Any = None  # ONNX Runtime on the source ONNX (pixels in), for onnx2torch


def _build_module(source: Path, kind: str, opset: int | None, stack: contextlib.ExitStack,
                  *, preprocessing: Mapping[str, Any] | None = None,
                  output_name: str | None = None) -> _Built:
    """Build the module with the ``native`` ResNet8 or with onnx2torch (converting a Keras
    source to ONNX first, in a temporary directory that ``stack`` removes). An ONNX source
    is loaded as ``evaluate`` loads it, so its spec, fixed batch and output are the same."""
    if kind == "native":
        if source.suffix.lower() in STATE_DICT_SUFFIXES:
            module, meta = native_from_state_dict(source)
        else:
            module, plan = native_from_keras(source)
            meta = {"keras_layers": plan.layers}
        return _Built(module, _native_input(tuple(module.config.input_shape)),
                      module.config.num_classes,
                      "probabilities" if module.config.softmax else "logits", meta)
    onnx_path = source
    if source.suffix.lower() in KERAS_SUFFIXES:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        onnx_path = tmp / "model.onnx"
        convert(source, onnx_path, input_shape=None, num_classes=None,
                opset=opset or DEFAULT_OPSET)
    backend = onnxrt.load(onnx_path, preprocessing=preprocessing, output=output_name)
    model_input = from_onnx_backend(backend)
    module = _one_output(onnx2torch_module(onnx_path), backend)
    probe = backend.predict(random_pixels(model_input.pixel_shape, model_input.fixed_batch or 1))
    onnx_meta = onnx_metadata(onnx_path)
    meta = {k_: v for k_, v in onnx_meta.items()
            if k_ in ("class_names", "source_file", "source_sha256")}
    return _Built(module, model_input, int(probe.shape[1]), _kind_of(onnx_meta, probe), meta,
                  reference=backend.predict)


def _one_output(module: Any, backend: Any) -> Any:
    """The onnx2torch module returning only the output the ONNX runner uses."""
    names = [o.name for o in backend.session.get_outputs()]
    if len(names) == 1:
        return module
    torch: Any = import_torch()
    index = names.index(backend.output_name)

    class OneOutput(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x)[index]

    return OneOutput(module).eval()


def _save_and_check(module: Any, out: Path, *, target: str, kind: str, batch: int | None,
                    model_input: ModelInput, metadata: dict[str, Any],
                    checks: list[dict[str, Any]], force: bool) -> bytes:
    """Save ``module`` as a state dict or an ExportedProgram (batch dynamic, or ``batch``
    fixed), load it back and check it reproduces ``module`` (appending to ``checks``);
    returns the bytes written. A file that fails the check is removed, never left behind."""
    if target in SAFETENSORS_SUFFIXES:
        data = save_state_dict(module.state_dict(), out, {
            "resnet8_config": json.dumps(module.config.to_dict()),
            "resnet8_onnx": json.dumps(metadata)}, force=force)
        module2, _ = native_from_state_dict(out)
        checks.append(check_against(module_runner(module, model_input, batch=None),
                                    module_runner(module2, model_input, batch=None),
                                    model_input, "the module before saving", out))
        return data
    if kind == "native":  # inference program: BatchNorm folded into the convolutions
        from resnet8_onnx.backends.pytorch.resnet8 import fold_batchnorm

        module = fold_batchnorm(module)
        metadata["batchnorm"] = "folded into the preceding convolutions"
    program, batch = _export(module, model_input, batch)
    shape = (batch, *model_input.model_dims)
    metadata["input_shape"] = [batch or "N", *model_input.model_dims]
    metadata.pop("fixed_batch", None)
    if batch is not None:
        metadata["fixed_batch"] = batch
    saved = replace(model_input, shape=shape)
    data = _save_checked(program, out, metadata, force=force)
    loaded, _ = load_exported_program(out)
    try:
        checks.append(check_against(module_runner(module, saved, batch=batch),
                                    module_runner(loaded.module(), saved, batch=batch),
                                    saved, "the module before export", out))
    except VerificationFailedError:
        out.unlink(missing_ok=True)
        raise
    return data


def _export(module: Any, model_input: ModelInput, batch: int | None) -> tuple[Any, int | None]:
    """(program, its batch): dynamic when asked and torch.export manages it, else fixed at
    the source's own batch."""
    dims, dtype = model_input.model_dims, model_input.spec.dtype
    if batch is None and model_input.fixed_batch is not None:
        try:
            return export_program(module, dims, dtype=dtype), None
        except InvalidInputError:
            batch = model_input.fixed_batch
    return export_program(module, dims, batch=batch, dtype=dtype), batch


def _save_checked(program: Any, out: Path, metadata: Mapping[str, Any], *,
                  force: bool) -> bytes:
    with progress.status(f"Saving {out.name}"):
        return save_exported_program(program, out, metadata, force=force)


# --------------------------------------------------------------------------- back to ONNX
def convert_torch_to_onnx(
    source_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    opset: int | None = None,
    force: bool = False,
    preprocessing: Mapping[str, Any] | None = None,
) -> Conversion:
    """A ``.pt2`` (or native state dict) → ONNX with ``torch.onnx.export`` (dynamo exporter).

    The result gets the same treatment as a Keras conversion: input ``input`` in the
    program's own layout, output named after its kind, batch dimension ``N`` (or the
    program's fixed batch), self-describing metadata carrying the spec the ``.pt2`` states,
    the full ONNX checker and strict shape inference; then ONNX Runtime, reading the spec
    from the new file's metadata as ``evaluate`` will, must reproduce the PyTorch model on
    random pixels fed through that spec.
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
    import_torch()
    require_module("onnxscript")
    module, program, meta = load_torch_model(source)
    if program is None:
        program = export_program(module, tuple(module.config.input_shape))
    shape, dtype = program_input(program)
    model_input = resolve_torch_input(meta, shape, dtype, preprocessing, where=str(source))
    run = module_runner(module, model_input, batch=model_input.fixed_batch)
    probe = run(random_pixels(model_input.pixel_shape, model_input.fixed_batch or 1))
    k = int(probe.shape[1])
    kind = _kind_of(meta, probe)
    proto = _torch_onnx_export(program, source, opset)
    versions = _versions()
    metadata = {
        "source_file": source.name, "source_sha256": file_digest(source),
        "source_format": source.suffix.lower().lstrip("."),
        "converter": "resnet8-onnx", "converter_version": __version__,
        **{k_: v for k_, v in versions.items() if k_ in ("torch_version", "onnxscript_version",
                                                         "onnx_version")},
        "opset": str(opset),
        **{k_: str(v) for k_, v in model_input.metadata().items()},
        "class_names": json.dumps(_class_names(meta, k)),
    }
    proto = finish_onnx_model(proto, out, output_kind=kind, image_shape=model_input.model_dims,
                              num_classes=k, metadata=metadata,
                              description=f"{source.name} exported by torch.onnx "
                                          f"{versions['torch_version']}",
                              fixed_batch=model_input.fixed_batch)
    data = proto.SerializeToString()
    exported = onnxrt.from_bytes(data, f"{out} (exported)")
    checks = [check_against(run, exported.predict, model_input, "the PyTorch model", out)]

    write_bytes_atomic(out, data, force=force)
    return Conversion(
        output_path=recorded_path(out), source_path=recorded_path(source),
        source_sha256=metadata["source_sha256"],
        output_sha256=hashlib.sha256(data).hexdigest(), target="onnx", builder="torch.onnx",
        output_kind=kind, num_classes=k, seconds=round(time.perf_counter() - start, 3),
        checks=checks, metadata={p.key: p.value for p in proto.metadata_props})


def _torch_onnx_export(program: Any, source: Path, opset: int) -> Any:
    """The ModelProto ``torch.onnx.export`` (dynamo) makes of ``program``."""
    torch = import_torch()
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
    return onnx_program.model_proto
