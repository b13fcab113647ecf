"""The two CIFAR-10 record formats, parsed once and shared by every source that carries them.

Binary file batches are 3,073-byte records (label, then the R, G and B planes), read with fixed
offsets straight into the output array. Python file batches are Python 2 era pickles, read
through an allow-list unpickler: a file batch can describe a numpy array and nothing else, so a
tampered file cannot run code. Every malformed input is an :class:`InvalidInputError` (or
:class:`UnsafeInputError` for code in a pickle) naming the file.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import IO, Any

import numpy as np

from resnet8_onnx.data.format import IMAGE_BYTES, IMAGE_SHAPE, NUM_CLASSES, ROW_BYTES
from resnet8_onnx.support.errors import InvalidInputError, UnsafeInputError, one_line

_CHUNK_ROWS = 1024  # records parsed per read: a 3 MB buffer, however large the file


def _check_labels(labels: np.ndarray, name: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(bad):
        raise InvalidInputError(
            f"{name}: label {int(labels[bad[0]])} out of range 0–9 at record {int(bad[0])}"
        )


def check_row_size(size: int, name: str) -> int:
    """Records in a file of ``size`` bytes; refuses sizes no binary file batch can have."""
    if size == 0:
        raise InvalidInputError(f"{name}: empty file, expected 3,073-byte records")
    if size % ROW_BYTES:
        raise InvalidInputError(
            f"{name}: truncated: {size:,} bytes is not a multiple of 3,073-byte records"
        )
    return size // ROW_BYTES


def _read_into(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; fewer bytes than asked only at the end of the stream."""
    got = 0
    while got < len(view):
        # typing's IO[bytes] has no readinto; every binary stream given here (files, tar
        # members, BytesIO) has it.
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def parse_binary_stream(
    stream: IO[bytes], size: int, *, name: str, out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Parse ``size`` bytes of 3,073-byte records from ``stream`` into NHWC uint8 + int64 labels.

    Read a few megabytes at a time straight into ``out`` (or a new array): reading a whole
    file batch and then transposing it would hold every file twice, and a five-file train split
    three times. The md5 is taken over exactly the bytes parsed, so the data that was
    verified is the data that is evaluated. Returns ``(images, labels, md5 hex digest)``.
    """
    n = check_row_size(size, name)
    if out is None:
        out = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    elif (out.shape != (n, *IMAGE_SHAPE) or out.dtype != np.uint8
          or not out.flags.c_contiguous):
        raise ValueError(f"out must be contiguous uint8 {(n, *IMAGE_SHAPE)}, got {out.dtype} "
                         f"{out.shape}")
    pixels_out = out.reshape(n, IMAGE_SHAPE[0] * IMAGE_SHAPE[1], IMAGE_SHAPE[2])  # a view
    labels = np.empty(n, dtype=np.int64)
    md5 = hashlib.md5()
    chunk = bytearray(min(n, _CHUNK_ROWS) * ROW_BYTES)
    view = memoryview(chunk)
    done = 0
    while done < n:
        k = min(_CHUNK_ROWS, n - done)
        part = view[: k * ROW_BYTES]
        got = _read_into(stream, part)
        if got < len(part):
            raise InvalidInputError(
                f"{name}: truncated: ended after {done * ROW_BYTES + got:,} of {size:,} "
                "bytes (changed while being read?)"
            )
        md5.update(part)
        records = np.frombuffer(chunk, dtype=np.uint8, count=k * ROW_BYTES)
        records = records.reshape(k, ROW_BYTES)
        labels[done : done + k] = records[:, 0]
        planes = records[:, 1:].reshape(k, 3, 32 * 32)  # R, G and B planes of each record
        for channel in range(3):  # one plane at a time: 3× faster than a 4-d transpose copy
            pixels_out[done : done + k, :, channel] = planes[:, channel]
        done += k
    if stream.read(1):
        raise InvalidInputError(
            f"{name}: longer than its {size:,} bytes (changed while being read?)"
        )
    _check_labels(labels, name)
    return out, labels, md5.hexdigest()


def parse_binary_records(buf: bytes, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse 3,073-byte records (label, 1,024 R, 1,024 G, 1,024 B) into NHWC uint8 + int64.

    The in-memory form of :func:`parse_binary_stream` (same checks, same messages).
    """
    images, labels, _ = parse_binary_stream(io.BytesIO(buf), len(buf), name=name)
    return images, labels


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import importlib

    try:
        _reconstruct = importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:  # numpy < 2
        _reconstruct = importlib.import_module("numpy.core.multiarray")._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else.

    Containers, numbers and strings are opcodes; the only globals the official file batches name are
    numpy's array reconstruction. Every other global (``os.system``, ``builtins.exec``...) is
    refused before it is imported, so nothing in the file can run.
    """

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self._name = name
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise UnsafeInputError(
                f"{self._name}: refused pickled global {one_line(module, 80)}.{one_line(name, 80)} "
                "(a CIFAR-10 batch only holds numpy arrays); nothing was executed"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise InvalidInputError(f"{self._name}: pickle uses persistent ids, not a CIFAR-10 batch")


def restricted_loads(data: bytes, *, name: str) -> Any:
    """Unpickle a Python 2 era CIFAR-10 file (bytes keys) without ever running code from it."""
    try:
        return _RestrictedUnpickler(data, name).load()
    except (UnsafeInputError, InvalidInputError):
        raise
    except Exception as exc:  # any malformed pickle: EOFError, UnpicklingError, ValueError...
        raise InvalidInputError(
            f"{name}: not a valid pickle ({type(exc).__name__}: {one_line(exc, 120)})"
        ) from None


def _as_text_key(key: Any) -> Any:
    return key.decode("latin-1") if isinstance(key, bytes) else key


def parse_python_file_batch(buf: bytes, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A pickled file batch dict (b"data" uint8 (N, 3072), b"labels" list) → NHWC uint8 + int64."""
    obj = restricted_loads(buf, name=name)
    if not isinstance(obj, dict):
        raise InvalidInputError(
            f"{name}: expected a dict of batch fields, unpickled a {type(obj).__name__}"
        )
    fields = {_as_text_key(k): v for k, v in obj.items()}
    for key in ("data", "labels"):
        if key not in fields:
            raise InvalidInputError(f"{name}: batch has no {key!r} field")
    data = fields["data"]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != IMAGE_BYTES
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InvalidInputError(f"{name}: 'data' must be a uint8 array (N, 3072), got {got}")
    raw_labels = fields["labels"]
    if isinstance(raw_labels, np.ndarray) and raw_labels.ndim != 1:  # 0-d arrays do not iterate
        raise InvalidInputError(f"{name}: 'labels' must be a list of integers")
    if not isinstance(raw_labels, list | np.ndarray) or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in raw_labels
    ):
        raise InvalidInputError(f"{name}: 'labels' must be a list of integers")
    try:
        labels = np.asarray(raw_labels, dtype=np.int64).reshape(-1)
    except (OverflowError, ValueError):
        raise InvalidInputError(f"{name}: 'labels' holds integers out of range 0–9") from None
    if len(labels) != len(data):
        raise InvalidInputError(f"{name}: {len(data):,} images but {len(labels):,} labels")
    if len(labels) == 0:
        raise InvalidInputError(f"{name}: batch holds no images")
    _check_labels(labels, name)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def parse_meta(fmt: str, buf: bytes, *, name: str) -> list[str]:
    """Class names from batches.meta.txt (one per line) or batches.meta (pickled dict)."""
    if fmt == "binary":
        try:
            text = buf.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{name}: not a text file of class names") from None
        return [line.strip() for line in text.splitlines() if line.strip()]
    obj = restricted_loads(buf, name=name)
    names = obj.get(b"label_names", obj.get("label_names")) if isinstance(obj, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise InvalidInputError(f"{name}: no 'label_names' list of class names")
    return [n.decode("latin-1") if isinstance(n, bytes) else n for n in names]


