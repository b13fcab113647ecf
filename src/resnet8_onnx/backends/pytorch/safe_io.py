"""Reading and writing PyTorch files without ever running code from them.

PyTorch's file formats are pickles at heart. ``torch.load(weights_only=False)`` runs whatever
a pickle names, and ``torch.export.load`` (torch 2.14) is no safer on a hostile file: it
unpickles weights marked ``use_pickle`` with ``weights_only=False``, retries sample inputs
with ``weights_only=False`` when the safe load fails, resolves node targets by ``getattr`` from
the ``torch`` module, hands symbolic-shape strings to ``sympy.sympify`` (which ``eval``\\ s),
``exec``\\ s the program's ``guards_code`` and dlopens AOTInductor libraries. So, as with
Keras files, every PyTorch file is **pre-scanned before torch sees it**:

* ``.pt2`` (``torch.export`` ExportedProgram): only the archive members ``torch.export.save``
  writes for one model; no pickled weights or constants, no custom or opaque objects, no
  compiled code; graph nodes call ``torch.ops.aten.*`` operators (or ``operator.getitem``)
  only; every symbolic expression parses to arithmetic on symbols and numbers; no guard
  code; the sample inputs pass the pickle allow-list below and ``weights_only=True``.
* ``.pt``/``.pth``: the pickle is first run *dry* through an allow-list unpickler whose every
  global is a harmless stub (so it names the first unsafe global and nothing from the file
  runs), then loaded with ``torch.load(weights_only=True)``, and must be a plain mapping of
  names to tensors.
* ``.safetensors``: a JSON header and raw tensor bytes, no code by design.

Checks that refuse a file for safety raise :class:`UnsafeInputError` (exit 5); a file that is
merely broken raises :class:`InvalidInputError` (exit 4). The scans import nothing heavy;
torch is imported only to load a file that passed.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import pickle
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    MissingExtraError,
    UnsafeInputError,
    interrupts_deferred,
)
from resnet8_onnx.support.fsutil import write_bytes_atomic

EXTRA_HINT = "pip install 'resnet8-onnx[torch]' (from a checkout: pip install -e \".[torch]\")"

PT2_SUFFIXES = (".pt2",)
PICKLE_SUFFIXES = (".pt", ".pth")
SAFETENSORS_SUFFIXES = (".safetensors",)
STATE_DICT_SUFFIXES = PICKLE_SUFFIXES + SAFETENSORS_SUFFIXES
TORCH_SUFFIXES = PT2_SUFFIXES + STATE_DICT_SUFFIXES

METADATA_FILE = "resnet8_onnx.json"  # our self-description inside a .pt2 (extra/) archive
_MAX_JSON_BYTES = 256 << 20

# --------------------------------------------------------------------------- pickles
# Globals a tensor or state-dict pickle legitimately names (torch.save of tensors and dicts).
_PICKLE_GLOBALS = frozenset({
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "device"),
    ("torch", "Size"),
})
_TORCH_DTYPES = frozenset({
    "float16", "bfloat16", "float32", "float64", "half", "float", "double",
    "uint8", "int8", "int16", "int32", "int64", "bool", "complex64", "complex128",
})


def _allowed_global(module: str, name: str) -> bool:
    if (module, name) in _PICKLE_GLOBALS:
        return True
    return module in ("torch", "torch.storage") and (
        (name.endswith("Storage") and name.isidentifier()) or name in _TORCH_DTYPES)


def _short(text: object, limit: int = 80) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


class _Stub:
    """Stands in for every allowed global during a dry run: accepts anything, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _DryRunUnpickler(pickle.Unpickler):
    """Walks a pickle to the end; every global resolves to :class:`_Stub` or is refused."""

    def __init__(self, stream: io.BytesIO, name: str) -> None:
        super().__init__(stream)
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        if not _allowed_global(module, name):
            raise UnsafeInputError(
                f"{self._name}: refuses pickled global {_short(module)}.{_short(name)}: "
                "loading it could run code (only tensors and plain containers are accepted)")
        return _Stub

    def persistent_load(self, pid: Any) -> Any:
        return None  # a storage reference in torch's zip format: nothing to run


def scan_pickle(data: bytes, name: str) -> None:
    """Dry-run every pickle in ``data`` (torch's legacy format concatenates several).

    Raises UnsafeInputError naming the first global outside the allow-list; nothing named in
    the file is ever called. A malformed pickle is an InvalidInputError.
    """
    stream = io.BytesIO(data)
    count = 0
    while stream.tell() < len(data):
        try:
            _DryRunUnpickler(stream, name).load()
        except UnsafeInputError:
            raise
        except RecursionError:
            raise InvalidInputError(f"{name}: pickle is nested implausibly deep") from None
        except Exception as exc:  # EOFError, UnpicklingError, ValueError, struct errors...
            if count:  # trailing bytes after valid pickles (legacy storage data): done
                return
            raise InvalidInputError(
                f"{name}: not a valid pickle ({type(exc).__name__}: {_short(exc)})") from None
        count += 1


def _torch_zip_pickle(archive: zipfile.ZipFile, name: str) -> bytes:
    """The ``data.pkl`` of a torch.save zip archive (exactly one)."""
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise InvalidInputError(f"{name}: not a torch.save archive (expected one data.pkl, "
                                f"found {len(pickles)})")
    return archive.read(pickles[0])


def scan_torch_save(data: bytes, name: str) -> None:
    """Pre-scan the bytes of a ``torch.save`` file (zip or legacy) without running anything."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                payload = _torch_zip_pickle(archive, name)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidInputError(f"{name}: corrupt zip archive ({_short(exc)})") from None
    else:
        payload = data
    scan_pickle(payload, name)


# --------------------------------------------------------------------------- .pt2 archives
_PT2_MEMBER = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/model\.pt|extra/[A-Za-z0-9_.\-]+)")
_ATEN_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+")
_OTHER_TARGETS = frozenset({"_operator.getitem"})
# aten operators that touch the file system: allowed syntax, refused all the same.
_ATEN_REFUSED = ("file",)
# Names a symbolic-shape expression may call (sympy constructors, torch's sympy functions).
_SYMPY_CALLS = frozenset({
    "Symbol", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "floor", "ceiling", "Abs",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
    "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
    "IsNonOverlappingAndDenseIndicator", "OpaqueUnaryFn_sqrt",
})
_SYMBOL_NAME = re.compile(r"[a-z]+\d+")
_SYMPY_KEYWORDS = frozenset({"positive", "integer", "nonnegative", "real", "finite",
                             "negative", "nonpositive", "zero", "evaluate"})
_AST_ALLOWED = (ast.Expression, ast.Call, ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp,
                ast.keyword, ast.Load, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv,
                ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Compare, ast.Eq, ast.NotEq, ast.Lt,
                ast.LtE, ast.Gt, ast.GtE, ast.BoolOp, ast.And, ast.Or)


def _check_expression(expr: Any, name: str) -> None:
    """A symbolic-shape string must be arithmetic on symbols and numbers (sympify evals it)."""
    refusal = UnsafeInputError(
        f"{name}: refuses symbolic expression {_short(expr)!r}: sympy would evaluate it as "
        "Python code")
    if not isinstance(expr, str) or len(expr) > 10_000:
        raise refusal
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        raise refusal from None
    for node in ast.walk(tree):
        if not isinstance(node, _AST_ALLOWED):
            raise refusal
        if isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS):
            raise refusal
        if isinstance(node, ast.Name) and not (
                node.id in _SYMPY_CALLS or node.id in ("True", "False", "oo")
                or _SYMBOL_NAME.fullmatch(node.id)):
            raise refusal
        if isinstance(node, ast.keyword) and node.arg not in _SYMPY_KEYWORDS:
            raise refusal
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | bool) \
                and not (isinstance(node.value, str) and _SYMBOL_NAME.fullmatch(node.value)):
            raise refusal


def _walk_json(node: Any) -> Iterator[tuple[str | None, Any, Any]]:
    """(key, value, parent) for every dict entry and list item of a JSON document."""
    stack: list[tuple[str | None, Any, Any]] = [(None, node, None)]
    while stack:
        key, value, parent = stack.pop()
        yield key, value, parent
        if isinstance(value, dict):
            stack.extend((str(k), v, value) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((key, v, value) for v in value)


def _check_program_json(program: Any, name: str) -> dict[str, Any]:
    """Refuse anything in the serialised program that would run code; returns a summary."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise InvalidInputError(f"{name}: models/model.json is not a serialised ExportedProgram")
    if program.get("guards_code"):
        raise UnsafeInputError(f"{name}: refuses a program with guard code: torch would exec it")
    for expr in (program.get("range_constraints") or {}):
        _check_expression(expr, name)
    targets: dict[str, int] = {}
    for key, value, _ in _walk_json(program):
        if key in ("as_graph", "as_custom_obj", "as_custom_objs", "custom_obj_values") and value:
            raise UnsafeInputError(
                f"{name}: refuses a program with {key.removeprefix('as_')} arguments "
                "(subgraphs and custom objects are not plain tensor programs)")
        if key == "expr_str":
            _check_expression(value, name)
        if key == "target" and isinstance(value, str) and value:
            aten = _ATEN_TARGET.fullmatch(value)
            if not (aten or value in _OTHER_TARGETS) or (
                    aten and any(word in value.lower() for word in _ATEN_REFUSED)):
                raise UnsafeInputError(
                    f"{name}: refuses graph node calling {_short(value)!r}: only torch.ops.aten "
                    "operators are accepted")
            targets[value] = targets.get(value, 0) + 1
    if not targets:
        raise InvalidInputError(f"{name}: the exported program has no operators")
    return {"targets": targets}


def _check_payload_config(config: Any, name: str, what: str) -> None:
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise InvalidInputError(f"{name}: {what} is not a payload config")
    for fqn, meta in config["config"].items():
        if not isinstance(meta, dict):
            raise InvalidInputError(f"{name}: {what} entry {_short(fqn)!r} is malformed")
        path = str(meta.get("path_name", ""))
        if meta.get("use_pickle") or not re.fullmatch(r"(weight|tensor)_\d+", path):
            raise UnsafeInputError(
                f"{name}: refuses {_short(fqn)!r} stored as a pickle or object "
                f"({_short(path)!r}): torch.export.load would unpickle it with "
                "weights_only=False")


def _read_json_member(archive: zipfile.ZipFile, member: str, name: str) -> Any:
    info = archive.getinfo(member)
    if info.file_size > _MAX_JSON_BYTES:
        raise InvalidInputError(f"{name}: {member} is implausibly large")
    try:
        return json.loads(archive.read(info))
    except (ValueError, RecursionError):
        raise InvalidInputError(f"{name}: {member} is not valid JSON") from None


def inspect_pt2_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Pre-scan a ``.pt2`` archive (module docstring); nothing is unpickled or imported.

    Returns ``{"metadata": {...}, "targets": {op: count}, "sample_inputs": bytes}``; the
    metadata is this project's self-description when the converter wrote one, else ``{}``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: model file not found")
    name = str(p)
    try:
        archive = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(f"{name}: not a torch.export archive (not a zip file: "
                                f"{_short(exc)})") from None
    with archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        roots = {m.split("/", 1)[0] for m in members}
        if len(roots) != 1 or any("/" not in m for m in members):
            raise InvalidInputError(f"{name}: not a torch.export archive (expected one root "
                                    "folder)")
        root = roots.pop() + "/"
        relative = [m[len(root):] for m in members]
        for member in relative:
            if member.startswith("data/aotinductor/"):
                raise UnsafeInputError(f"{name}: refuses AOTInductor compiled code in the "
                                       "archive: loading it would run a native library")
            if not _PT2_MEMBER.fullmatch(member):
                raise UnsafeInputError(f"{name}: refuses unexpected archive member "
                                       f"{_short(member)!r} (only torch.export.save's files "
                                       "for one model are accepted)")
        for required in ("archive_format", "models/model.json",
                         "data/weights/model_weights_config.json",
                         "data/constants/model_constants_config.json",
                         "data/sample_inputs/model.pt"):
            if required not in relative:
                raise InvalidInputError(f"{name}: not a torch.export archive ({required} "
                                        "missing)")
        if archive.read(root + "archive_format").strip() != b"pt2":
            raise InvalidInputError(f"{name}: not a torch.export .pt2 archive")
        _check_payload_config(_read_json_member(
            archive, root + "data/weights/model_weights_config.json", name), name, "weights")
        _check_payload_config(_read_json_member(
            archive, root + "data/constants/model_constants_config.json", name), name,
            "constants")
        summary = _check_program_json(_read_json_member(archive, root + "models/model.json",
                                                        name), name)
        sample_inputs = archive.read(root + "data/sample_inputs/model.pt")
        scan_torch_save(sample_inputs, f"{name} (sample inputs)")
        metadata: dict[str, Any] = {}
        if "extra/" + METADATA_FILE in relative:
            loaded = _read_json_member(archive, root + "extra/" + METADATA_FILE, name)
            if not isinstance(loaded, dict):
                raise InvalidInputError(f"{name}: {METADATA_FILE} is not a JSON object")
            metadata = loaded
    return {"metadata": metadata, "targets": summary["targets"],
            "sample_inputs": sample_inputs}


# --------------------------------------------------------------------------- torch itself
def import_torch() -> ModuleType:
    """Import torch, or fail with one line naming the extra that provides it.

    Triton is kept out of the process: torch imports it lazily (``torch.export`` pulls in
    ``torch._dynamo``), and its bundled LLVM crashes the process when TensorFlow's is already
    loaded (``verify model.h5 model.pt2``). Nothing here compiles kernels (no
    ``torch.compile``), so Triton is never needed.
    """
    if "triton" not in sys.modules:
        # None in sys.modules makes ``import triton`` fail (the documented way to block an
        # import); typeshed types the values as modules only.
        sys.modules["triton"] = None  # type: ignore[assignment]
    try:
        with interrupts_deferred():  # Ctrl-C inside its C++ init becomes an ImportError
            import torch
    except ImportError as exc:
        raise MissingExtraError(
            f"PyTorch is not installed; this needs the 'torch' extra: {EXTRA_HINT}") from exc
    # Its import-time warning that Triton kernels cannot be FLOP-counted: we run none.
    logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
    return torch


def require_module(module: str) -> ModuleType:
    import importlib

    import_torch()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module} is not installed; this needs the 'torch' extra: {EXTRA_HINT}") from exc


# --------------------------------------------------------------------------- loading
def load_exported_program(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Pre-scan, then ``torch.export.load``: (ExportedProgram, our metadata or ``{}``)."""
    scan = inspect_pt2_file(path)
    torch = import_torch()
    try:
        # torch retries a failed safe load of the sample inputs with weights_only=False:
        # make sure the safe load succeeds, so that retry never happens.
        torch.load(io.BytesIO(scan["sample_inputs"]), weights_only=True)
    except Exception as exc:
        raise UnsafeInputError(f"{path}: refuses sample inputs that torch cannot load with "
                               f"weights_only=True ({_short(exc)})") from None
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InvalidInputError(f"{path}: torch.export.load failed: {_short(exc, 200)}") from exc
    return program, scan["metadata"]


def _tensor_mapping(obj: Any, name: str) -> dict[str, Any]:
    """A plain ``{name: tensor}`` mapping out of a loaded state dict or checkpoint."""
    import torch

    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"],
                                                                      Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise InvalidInputError(f"{name}: expected a state dict (a mapping of names to "
                                f"tensors), found {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str)
                                                  and isinstance(v, torch.Tensor))]
    if bad:
        raise InvalidInputError(f"{name}: state dict entry {_short(bad[0])!r} is not a named "
                                "tensor")
    return {str(k): v for k, v in obj.items()}


def load_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A state dict from ``.safetensors`` or ``.pt``/``.pth`` (never unpickling code).

    Returns (state dict, string metadata; only safetensors files carry any).
    """
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: model file not found")
    suffix = p.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        import_torch()
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                metadata = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise InvalidInputError(f"{p}: not a valid safetensors file ({_short(exc)})") from None
        return _tensor_mapping(tensors, str(p)), metadata
    if suffix not in PICKLE_SUFFIXES:
        raise InvalidInputError(f"{p}: not a PyTorch state dict file (.safetensors, .pt, .pth)")
    data = p.read_bytes()
    scan_torch_save(data, str(p))
    torch = import_torch()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeInputError(f"{p}: refused by torch.load(weights_only=True): "
                               f"{_short(exc, 160)}") from None
    except Exception as exc:
        raise InvalidInputError(f"{p}: torch.load could not read it ({type(exc).__name__}: "
                                f"{_short(exc)})") from None
    return _tensor_mapping(obj, str(p)), {}


# --------------------------------------------------------------------------- saving
def save_exported_program(program: Any, path: str | os.PathLike[str],
                          metadata: Mapping[str, Any], *, force: bool = False) -> bytes:
    """``torch.export.save`` into memory, then an atomic write; returns the bytes written."""
    import warnings

    import torch


    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No complete tensor found in the group": harmless
        torch.export.save(program, buffer,
                          extra_files={METADATA_FILE: json.dumps(dict(metadata), indent=1)})
    data = buffer.getvalue()
    write_bytes_atomic(path, data, force=force)
    return data


def save_state_dict(state_dict: Mapping[str, Any], path: str | os.PathLike[str],
                    metadata: Mapping[str, str], *, force: bool = False) -> bytes:
    """A safetensors file (no pickle), written atomically; returns the bytes written."""
    from safetensors.torch import save


    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    data = save(tensors, metadata=dict(metadata))
    write_bytes_atomic(path, data, force=force)
    return data
