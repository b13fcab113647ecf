"""CIFAR-10 for evaluation: locate a distribution, verify it, parse it, select a subset.

Every official distribution is read in place: the binary and pickle directories, their two
tarballs (one member streamed into memory, nothing extracted), and an image folder of
lossless files. Files are checked against their official checksums; a file with an official
name but different bytes is still loaded when its structure is sound, but the data set is then
marked unofficial and says why, so a figure measured on it is never passed off as the official
test-set figure. Pickled batches go through an allow-list unpickler: a batch can describe a
numpy array and nothing else, so a tampered file cannot run code.

Images stay uint8 (N, 32, 32, 3) RGB in memory; conversion to float32 happens one batch at a
time in :meth:`Dataset.batches`. The model's preprocessing is exactly that conversion: raw
0-255 values, no normalisation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import InputNotFoundError, InvalidInputError, UnsafeInputError, UsageError
from .fetch import KNOWN_FILES, data_dirs, fetch, find_file, walk
from .fsutil import file_digest
from .progress import track

CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
SUBSETS = ("full", "perf")
# The subset name of images selected by an indices file other than the official perf one.
INDICES_SUBSET = "indices"
# Subset names of a --limit: "balanced-500 of full" (see Dataset.limit).
LIMIT_PREFIX = "balanced-"
SPLITS = ("test", "train")
UNKNOWN_SPLIT = "unknown"  # an image folder whose file names do not say which split it is
_TRAIN_STEM = re.compile(r"train-\d+")

NUM_CLASSES = len(CLASS_NAMES)
TEST_SET_SIZE = 10_000
BATCH_SIZE = 10_000  # images per official batch file
IMAGE_SHAPE = (32, 32, 3)
IMAGE_BYTES = 32 * 32 * 3
RECORD_BYTES = 1 + IMAGE_BYTES
_MAX_FILE_BYTES = 256 << 20  # an official batch is 30.7 MB; refuse to read absurd sizes
_CHUNK_RECORDS = 1024  # records parsed per read: a 3 MB buffer, however large the file

BINARY_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
BINARY_TAR = "cifar-10-binary.tar.gz"
PYTHON_TAR = "cifar-10-python.tar.gz"
PERF_INDICES = "perf_samples_idxs.npy"

# md5 of every file inside the official archives (the archives themselves: fetch.KNOWN_FILES).
# Python names: torchvision's cifar.py; binary names: the same values appear in several
# independent public checksum lists.
OFFICIAL_MD5: dict[str, dict[str, str]] = {
    "binary": {
        "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
        "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
        "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
        "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
        "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
        "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
    },
    "python": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
    },
}
_FORMAT_DIR = {"binary": BINARY_DIR, "python": PYTHON_DIR}
_META = {"binary": "batches.meta.txt", "python": "batches.meta"}

_LOSSLESS_FORMATS = {"PNG", "BMP", "PPM", "TIFF"}
_LOSSY_FORMATS = {"JPEG"}
_IMAGE_SUFFIXES = {".png", ".bmp", ".ppm", ".tif", ".tiff", ".jpg", ".jpeg"}


def _batch_names(fmt: str, split: str) -> list[str]:
    suffix = ".bin" if fmt == "binary" else ""
    if split == "test":
        return [f"test_batch{suffix}"]
    return [f"data_batch_{i}{suffix}" for i in range(1, 6)]


def _count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 image', '2 images', '1,000 images'."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def _oneline(text: object, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def balanced_first(labels: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    """Positions of ``n`` images taken round-robin over classes, each class in source order.

    Round ``r`` takes the ``r``-th image of every class that has one, lowest class index
    first; positions come back sorted (source order). Classes with fewer images simply drop
    out of later rounds.
    """
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")  # grouped by class, source order within
    grouped = labels[order]
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels)) - np.searchsorted(grouped, grouped, side="left")
    turn = rank * num_classes + labels  # round first, then class
    return np.sort(np.argsort(turn, kind="stable")[:n])


@dataclass(frozen=True)
class DataSource:
    """Where a data set came from and what was verified about it."""

    kind: str  # "binary-dir" | "python-dir" | "binary-tar" | "python-tar" | "image-folder"
    path: str
    checks: tuple[str, ...]
    official: bool
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # how it was chosen, when a search found several

    def to_dict(self) -> dict:
        """JSON-ready form for reports."""
        return {
            "kind": self.kind,
            "path": self.path,
            "official": self.official,
            "checks": list(self.checks),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels in memory plus an exact account of which images they are."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: DataSource
    split: str = "test"
    subset: str = "full"
    indices: np.ndarray | None = None
    source_count: int | None = None  # images the source held before subsetting (None: len)
    indices_file: str | None = None  # the .npy file the subset was selected by, if any
    indices_sha256: str | None = None  # that file's sha256 (identifies the selection)
    _per_class: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 NHWC, got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.shape != (len(self.images),):
            raise ValueError("labels must be 1-D with one label per image")
        if self.indices is not None and self.indices.shape != self.labels.shape:
            raise ValueError("indices must be 1-D with one index per image")
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        object.__setattr__(self, "_per_class", counts)

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(float32 NHWC batch, int64 labels)`` in order; float32 one batch at a time, because
        the whole test set as float32 is 123 MB that nothing needs at once."""
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.images[start:stop].astype(np.float32), self.labels[start:stop]

    def limit(self, n: int) -> Dataset:
        """``n`` images, class-balanced, renamed so they are never mistaken for the whole set.

        Taken round-robin over the classes, each class in source order: the first image of
        every class, then the second of every class, and so on (a round that cannot be
        completed goes to the lower class indices); the result keeps source order. So
        ``limit(500)`` of the test set is the first 50 images of each class, and a folder
        sorted by class does not yield ten airplanes for ``limit(10)``.
        """
        if n < 1:
            raise UsageError(f"limit must be at least 1, got {n}")
        if n >= len(self):
            return self
        take = balanced_first(self.labels, n, len(self.class_names))
        return dataclasses.replace(
            self,
            images=self.images[take],
            labels=self.labels[take],
            indices=None if self.indices is None else self.indices[take],
            subset=f"{LIMIT_PREFIX}{n} of {self.subset}",
            source_count=self.available,
        )

    def select(self, indices: np.ndarray, subset: str) -> Dataset:
        """Images by original test-set index, in the order given (e.g. the MLPerf perf order)."""
        wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices is None:
            raise InvalidInputError(
                f"{self.source.path}: images carry no test-set index, so the {subset} subset "
                "cannot be selected (name image files by their test-set index, e.g. 00447.png)"
            )
        order = np.argsort(self.indices, kind="stable")
        ordered = self.indices[order]
        pos = np.clip(np.searchsorted(ordered, wanted), 0, max(len(ordered) - 1, 0))
        present = (ordered[pos] == wanted) if len(ordered) else np.zeros(len(wanted), bool)
        if not present.all():
            missing = wanted[~present]
            raise InvalidInputError(
                f"{self.source.path}: {len(missing):,} of {len(wanted):,} {subset} indices are not "
                f"in this data set of {len(self):,} images (first missing: {int(missing[0])})"
            )
        take = order[pos]
        return dataclasses.replace(
            self,
            images=self.images[take],
            labels=self.labels[take],
            indices=wanted.copy(),
            subset=subset,
            source_count=self.available,
        )

    @property
    def available(self) -> int:
        """How many images the source held before any subset or limit."""
        return len(self) if self.source_count is None else self.source_count

    @property
    def input_paths(self) -> tuple[str, ...]:
        """The files and directories read to build this data set (no output may go there)."""
        return (self.source.path,) + ((self.indices_file,) if self.indices_file else ())

    @property
    def per_class(self) -> dict[str, int]:
        """Image count per class name."""
        return {name: int(c) for name, c in zip(self.class_names, self._per_class, strict=False)}

    @property
    def is_full_official_test_set(self) -> bool:
        """True only for all 10,000 official test images, verified, with no subset applied."""
        return (
            self.split == "test"
            and self.subset == "full"
            and self.source.official
            and len(self) == TEST_SET_SIZE
            and bool(np.all(self._per_class == TEST_SET_SIZE // NUM_CLASSES))
        )

    def describe(self) -> dict:
        """JSON-ready account of exactly which images this is (for every report)."""
        limit = None
        if self.subset.startswith(LIMIT_PREFIX):
            limit = int(self.subset.split(" ", 1)[0].removeprefix(LIMIT_PREFIX))
        empty = [name for name, n in self.per_class.items() if n == 0]
        warnings = [f"no images of class {', '.join(empty)}: "
                    f"{'its' if len(empty) == 1 else 'their'} accuracy and recall are undefined"
                    ] if empty else []
        return {
            "dataset": "CIFAR-10",
            "source": self.source.to_dict(),
            "warnings": warnings,
            "split": self.split,
            "subset": self.subset,
            "count": len(self),
            "source_count": self.available,
            "limit": limit,
            "per_class": self.per_class,
            "full_official_test_set": self.is_full_official_test_set,
            "indices_file": self.indices_file,
            "indices_sha256": self.indices_sha256,
        }


# --------------------------------------------------------------------------------------------
# Parsers (shared by directories and tarball members)
# --------------------------------------------------------------------------------------------


def _check_labels(labels: np.ndarray, name: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if len(bad):
        raise InvalidInputError(
            f"{name}: label {int(labels[bad[0]])} out of range 0–9 at record {int(bad[0])}"
        )


def _check_record_size(size: int, name: str) -> int:
    """Records in a file of ``size`` bytes; refuses sizes no CIFAR-10 binary batch can have."""
    if size == 0:
        raise InvalidInputError(f"{name}: empty file, expected 3,073-byte records")
    if size % RECORD_BYTES:
        raise InvalidInputError(
            f"{name}: truncated: {size:,} bytes is not a multiple of 3,073-byte records"
        )
    return size // RECORD_BYTES


def _read_into(stream: IO[bytes], view: memoryview) -> int:
    """Fill ``view`` from ``stream``; fewer bytes than asked only at the end of the stream."""
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def parse_binary_stream(
    stream: IO[bytes], size: int, *, name: str, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Parse ``size`` bytes of 3,073-byte records from ``stream`` into NHWC uint8 + int64 labels.

    Read a few megabytes at a time straight into ``out`` (or a new array): reading a whole
    batch and then transposing it would hold every file twice, and a five-file train split
    three times. The md5 is taken over exactly the bytes parsed, so the data that was
    verified is the data that is evaluated. Returns ``(images, labels, md5 hex digest)``.
    """
    n = _check_record_size(size, name)
    if out is None:
        out = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    elif out.shape != (n, *IMAGE_SHAPE) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {(n, *IMAGE_SHAPE)}, got {out.dtype} {out.shape}")
    labels = np.empty(n, dtype=np.int64)
    md5 = hashlib.md5()
    chunk = bytearray(min(n, _CHUNK_RECORDS) * RECORD_BYTES)
    view = memoryview(chunk)
    done = 0
    while done < n:
        k = min(_CHUNK_RECORDS, n - done)
        part = view[: k * RECORD_BYTES]
        got = _read_into(stream, part)
        if got < len(part):
            raise InvalidInputError(
                f"{name}: truncated: ended after {done * RECORD_BYTES + got:,} of {size:,} "
                "bytes (changed while being read?)"
            )
        md5.update(part)
        records = np.frombuffer(chunk, dtype=np.uint8, count=k * RECORD_BYTES)
        records = records.reshape(k, RECORD_BYTES)
        labels[done : done + k] = records[:, 0]
        out[done : done + k] = records[:, 1:].reshape(k, 3, 32, 32).transpose(0, 2, 3, 1)
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
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, and nothing else.

    Containers, numbers and strings are opcodes; the only globals the official batches name are
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
                f"{self._name}: refused pickled global {_oneline(module, 80)}.{_oneline(name, 80)} "
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
            f"{name}: not a valid pickle ({type(exc).__name__}: {_oneline(exc, 120)})"
        ) from None


def _as_text_key(key: Any) -> Any:
    return key.decode("latin-1") if isinstance(key, bytes) else key


def _parse_python_batch(buf: bytes, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A pickled batch dict (b"data" uint8 (N, 3072), b"labels" list) → NHWC uint8 + int64."""
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


def _parse_meta(fmt: str, buf: bytes, *, name: str) -> list[str]:
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


# --------------------------------------------------------------------------------------------
# Indices (the MLPerf Tiny perf subset)
# --------------------------------------------------------------------------------------------


def _read_indices(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, list[str], list[str], str]:
    """Indices, checks, warnings and the file's sha256."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: indices file not found")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise InvalidInputError(f"{p}: not a plain .npy array ({_oneline(exc, 120)})") from None
    except (OSError, EOFError) as exc:
        raise InvalidInputError(f"{p}: cannot read .npy file ({_oneline(exc, 120)})") from None
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise InvalidInputError(f"{p}: expected a .npy array, got a .npz archive")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"{p}: expected a 1-D integer array, got {arr.dtype} {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{p}: holds no indices")
    idx = arr.astype(np.int64)
    if int(idx.min()) < 0 or int(idx.max()) >= TEST_SET_SIZE:
        bad = idx[(idx < 0) | (idx >= TEST_SET_SIZE)][0]
        raise InvalidInputError(f"{p}: index {int(bad)} out of range 0–9999")
    uniq, counts = np.unique(idx, return_counts=True)
    if len(uniq) != len(idx):
        raise InvalidInputError(f"{p}: index {int(uniq[counts > 1][0])} appears more than once")
    checks = [f"{p.name}: {len(idx):,} unique indices in 0–9999"]
    warnings: list[str] = []
    digest = file_digest(p, "sha256")
    official = KNOWN_FILES[PERF_INDICES].sha256
    if digest == official:
        checks.append(f"{p.name}: sha256 {digest} (the official MLPerf Tiny perf indices)")
    elif p.name != PERF_INDICES:
        checks.append(f"{p.name}: sha256 {digest} (a selection of its own, not the MLPerf "
                      "Tiny perf indices)")
    else:
        warnings.append(
            f"{p.name}: differs from the official MLPerf Tiny file (sha256 {digest}, "
            f"official {official}); the subset is not the official perf subset"
        )
    return idx, checks, warnings, digest


def is_official_perf_indices(sha256: str | None) -> bool:
    """Whether a file with this sha256 is MLPerf Tiny's ``perf_samples_idxs.npy``: only that
    file's selection may be called the perf subset, whatever another file is named."""
    return sha256 is not None and sha256 == KNOWN_FILES[PERF_INDICES].sha256


def load_indices(path: str | os.PathLike[str]) -> np.ndarray:
    """Test-set indices from a .npy file (no pickles): 1-D, integer, unique, in 0–9999."""
    return _read_indices(path)[0]


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    kind: str  # DataSource.kind
    path: Path

    @property
    def fmt(self) -> str:
        return "binary" if self.kind.startswith("binary") else "python"

    def has_split(self, split: str) -> bool:
        if self.kind.endswith("-dir"):
            return all((self.path / n).is_file() for n in _batch_names(self.fmt, split))
        return True


def _dir_members(layout: _Layout, names: list[str], optional: str) -> list[tuple[str, Path, int]]:
    """``(name, path, size)`` of each wanted file of a directory layout, checked before reading.

    A missing batch is an error; a missing meta file is not (class names are then assumed).
    """
    found: list[tuple[str, Path, int]] = []
    for name in [*names, optional]:
        path = layout.path / name
        if not path.is_file():
            if name == optional:
                continue
            raise InputNotFoundError(f"{path}: missing from the {layout.kind} layout")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read ({exc.strerror})") from None
        if size > _MAX_FILE_BYTES:
            raise InvalidInputError(f"{path}: {size:,} bytes is far larger than a CIFAR-10 batch")
        found.append((name, path, size))
    return found


Consumer = Callable[[str, str, int, IO[bytes]], Any]


def _read_dir(
    layout: _Layout, names: list[str], optional: str, consume: Consumer
) -> dict[str, Any]:
    """``{name: consume(name, path, size, stream)}`` for each wanted file of a directory layout."""
    out: dict[str, Any] = {}
    for name, path, size in _dir_members(layout, names, optional):
        try:
            with open(path, "rb") as stream:
                out[name] = consume(name, str(path), size, stream)
        except OSError as exc:
            raise InvalidInputError(f"{path}: cannot read ({exc.strerror})") from None
    return out


def _read_tar(
    layout: _Layout, names: list[str], optional: str, consume: Consumer
) -> dict[str, Any]:
    """Stream the wanted members out of a tarball through ``consume``; nothing touches the disk."""
    top = _FORMAT_DIR[layout.fmt]
    wanted = {f"{top}/{n}": n for n in [*names, optional]}
    out: dict[str, Any] = {}
    try:
        with tarfile.open(layout.path, "r:*") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or name in out:
                    continue
                label = f"{layout.path}:{member.name}"
                if not member.isfile():
                    raise InvalidInputError(f"{label}: not a regular file")
                if member.size > _MAX_FILE_BYTES:
                    raise InvalidInputError(
                        f"{label}: {member.size:,} bytes is far larger than a CIFAR-10 batch"
                    )
                handle = tar.extractfile(member)
                if handle is None:
                    raise InvalidInputError(f"{label}: cannot read member")
                out[name] = consume(name, label, member.size, handle)
                if len(out) == len(wanted):
                    break
    except InvalidInputError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidInputError(
            f"{layout.path}: not a readable tar archive ({_oneline(exc, 120)})"
        ) from None
    for name in names:
        if name not in out:
            raise InvalidInputError(f"{layout.path}: archive has no member {top}/{name}")
    return out


@dataclass(frozen=True)
class _Batch:
    label: str  # path, or archive:member, for messages
    images: np.ndarray
    labels: np.ndarray
    md5: str


def _read_batches(
    layout: _Layout, names: list[str], meta_name: str
) -> tuple[dict[str, _Batch], np.ndarray | None, tuple[str, bytes] | None]:
    """Parse every wanted batch of ``layout``; returns the batches, and for a binary directory
    the one array all of them were parsed into, and the meta file ``(label, bytes)`` if any.

    A binary directory's sizes are known before reading, so its batches are parsed straight
    into one preallocated array: memory is the uint8 images plus a 3 MB buffer, with no copy
    to concatenate them. Tarball members and pickles are parsed one at a time.
    """
    fmt = layout.fmt
    combined: np.ndarray | None = None
    spans: dict[str, tuple[int, int]] = {}  # name -> (first record, size in bytes)
    if fmt == "binary" and layout.kind.endswith("-dir"):
        total = 0
        for name, path, size in _dir_members(layout, names, meta_name):
            if name != meta_name:
                spans[name] = (total, size)
                total += _check_record_size(size, str(path))
        combined = np.empty((total, *IMAGE_SHAPE), dtype=np.uint8)

    def consume(name: str, label: str, size: int, stream: IO[bytes]) -> Any:
        if name == meta_name:
            return label, stream.read(size)  # size was checked against _MAX_FILE_BYTES
        if fmt == "binary":
            out = None
            if combined is not None:  # sizes as first seen: a file changed since is an error
                start, size = spans[name]
                out = combined[start : start + size // RECORD_BYTES]
            images, labels, md5 = parse_binary_stream(stream, size, name=label, out=out)
            return _Batch(label, images, labels, md5)
        buf = stream.read(size)
        images, labels = _parse_python_batch(buf, name=label)
        return _Batch(label, images, labels, hashlib.md5(buf).hexdigest())

    if layout.kind.endswith("-tar"):
        with track(f"Reading {layout.path.name}", None):
            found = _read_tar(layout, names, meta_name, consume)
    else:
        found = _read_dir(layout, names, meta_name, consume)
    meta = found.pop(meta_name, None)
    return found, combined, meta


def _load_batches(layout: _Layout, split: str) -> Dataset:
    fmt = layout.fmt
    names = _batch_names(fmt, split)
    meta_name = _META[fmt]
    checks: list[str] = []
    warnings: list[str] = []
    official = True
    if layout.kind.endswith("-tar"):
        known = KNOWN_FILES.get(layout.path.name)
        expected = known.md5 if known is not None else None
        with track(f"Verifying {layout.path.name}", None):
            digest = file_digest(layout.path, "md5")
        if expected is None:
            checks.append(f"{layout.path.name}: md5 {digest} (not an official archive name)")
        elif digest == expected:
            checks.append(f"{layout.path.name}: md5 {digest} (official)")
        else:
            warnings.append(
                f"{layout.path.name}: md5 {digest} differs from the official archive's "
                f"{expected}; its members are checked one by one"
            )
    batches, combined, meta = _read_batches(layout, names, meta_name)

    images_parts: list[np.ndarray] = []
    labels_parts: list[np.ndarray] = []
    for name in names:
        batch = batches[name]
        label, images, labels = batch.label, batch.images, batch.labels
        counts = np.bincount(labels, minlength=NUM_CLASSES)
        n = len(labels)
        per_class = TEST_SET_SIZE // NUM_CLASSES
        if split == "test" and n == TEST_SET_SIZE and not np.all(counts == per_class):
            got = ", ".join(
                f"{c} {int(k):,}"
                for c, k in zip(CLASS_NAMES, counts, strict=True)
                if k != per_class
            )
            raise InvalidInputError(
                f"{label}: expected 1,000 images per class in the test set, got {got}"
            )
        digest = batch.md5
        want = OFFICIAL_MD5[fmt][name]
        if digest == want:
            checks.append(f"{name}: md5 {digest} (official)")
        else:
            official = False
            warnings.append(
                f"{name}: not the official file (md5 differs): md5 {digest}, official {want}; "
                "loaded because its structure is valid, but figures from it are not "
                f"comparable to the official {split} set"
            )
        balance = ", 1,000 per class" if split == "test" and n == TEST_SET_SIZE else ""
        checks.append(f"{name}: {n:,} records, labels in 0–9{balance}")
        if n != BATCH_SIZE:
            warnings.append(f"{name}: holds {n:,} images, not the 10,000 of an official batch")
        images_parts.append(images)
        labels_parts.append(labels)

    if meta is not None:
        label, buf = meta
        class_names = _parse_meta(fmt, buf, name=label)
        if tuple(class_names) != CLASS_NAMES:
            raise InvalidInputError(
                f"{label}: class names {_oneline(class_names, 120)} are not the CIFAR-10 classes"
            )
        want_meta = OFFICIAL_MD5[fmt].get(meta_name)
        digest = hashlib.md5(buf).hexdigest()
        if want_meta is None:
            checks.append(f"{meta_name}: the 10 CIFAR-10 class names (no official checksum known)")
        elif digest == want_meta:
            checks.append(f"{meta_name}: md5 {digest} (official), the 10 CIFAR-10 class names")
        else:
            official = False
            checks.append(f"{meta_name}: the 10 CIFAR-10 class names")
            warnings.append(f"{meta_name}: not the official file (md5 differs): md5 {digest}, "
                            f"official {want_meta}")
    else:
        checks.append(f"{meta_name}: absent, CIFAR-10 class names assumed")

    if combined is not None:  # the batches are views of one array already
        images = combined
    else:
        images = images_parts[0] if len(images_parts) == 1 else np.concatenate(images_parts)
    del images_parts, batches
    labels = labels_parts[0] if len(labels_parts) == 1 else np.concatenate(labels_parts)
    images.setflags(write=False)
    labels.setflags(write=False)
    source = DataSource(
        kind=layout.kind,
        path=str(layout.path),
        checks=tuple(checks),
        official=official,
        warnings=tuple(warnings),
    )
    indices = np.arange(len(labels), dtype=np.int64) if split == "test" else None
    return Dataset(images, labels, CLASS_NAMES, source, split=split, indices=indices)


def _load_image_folder(root: Path, split: str) -> Dataset:
    """Class-name subdirectories of 32×32 lossless images; numeric stems are test-set indices."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a declared dependency
        raise InvalidInputError(
            f"{root}: reading an image folder needs Pillow (pip install pillow)"
        ) from None

    entries: list[tuple[int, str, Path]] = []
    ignored: list[str] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            if child.name not in CLASS_NAMES:
                raise InvalidInputError(
                    f"{child}: not a CIFAR-10 class name; an image folder holds one subdirectory "
                    f"per class ({', '.join(CLASS_NAMES)})"
                )
            label = CLASS_NAMES.index(child.name)
            for f in sorted(child.iterdir()):
                if f.name.startswith("."):
                    continue
                if f.is_dir():
                    raise InvalidInputError(f"{f}: nested directories are not supported")
                if f.suffix.lower() in _IMAGE_SUFFIXES:
                    entries.append((label, f.stem, f))
                else:
                    ignored.append(f.name)
        elif child.suffix.lower() in _IMAGE_SUFFIXES:
            raise InvalidInputError(f"{child}: image outside a class subdirectory")
    if not entries:
        raise InvalidInputError(f"{root}: image folder holds no images")

    numeric = all(stem.isascii() and stem.isdigit() for _, stem, _ in entries)
    training = all(_TRAIN_STEM.fullmatch(stem) for _, stem, _ in entries)
    indices: np.ndarray | None = None
    if numeric and split == "test":
        values = np.array([int(stem) for _, stem, _ in entries], dtype=np.int64)
        if len(np.unique(values)) == len(values) and int(values.max()) < TEST_SET_SIZE:
            order = np.argsort(values, kind="stable")
            entries = [entries[i] for i in order]
            indices = values[order]
    if indices is None:
        entries.sort(key=lambda e: (e[0], e[2].name))
    # What the folder is, from its file names: test-set indices make test images,
    # "train-NNNNN" training images; anything else is of unknown split unless --split train
    # says so. Never "test" just because that is the default.
    folder_split = ("test" if indices is not None else "train" if training or split == "train"
                    else UNKNOWN_SPLIT)

    n = len(entries)
    images = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.array([label for label, _, _ in entries], dtype=np.int64)
    formats: dict[str, int] = {}
    transparent = grayscale = 0
    with track(f"Reading {root.name}", n) as advance:
        for i, (_, _, path) in enumerate(entries):
            try:
                with Image.open(path) as im:
                    if im.size != (32, 32):
                        raise InvalidInputError(
                            f"{path}: image is {im.size[0]}×{im.size[1]}, expected 32×32"
                        )
                    fmt = im.format or "unknown"
                    if fmt not in _LOSSLESS_FORMATS | _LOSSY_FORMATS:
                        raise InvalidInputError(f"{path}: {fmt} images are not supported, use PNG")
                    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                        raise InvalidInputError(
                            f"{path}: {im.mode} (16-bit/float) images are not supported, "
                            "use 8-bit RGB"
                        )
                    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                        alpha = np.asarray(im.convert("RGBA"))[..., 3]
                        transparent += int(np.any(alpha != 255))
                    grayscale += im.mode in ("1", "L", "LA")
                    images[i] = np.asarray(im.convert("RGB"))
            except InvalidInputError:
                raise
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise InvalidInputError(
                    f"{path}: cannot read image ({_oneline(exc, 120)})"
                ) from None
            formats[fmt] = formats.get(fmt, 0) + 1
            advance(1)

    checks = [
        f"{root.name}: {n:,} images in {len(set(labels.tolist()))} class folders, all 32×32, "
        + ", ".join(f"{k} ×{v:,}" for k, v in sorted(formats.items()))
    ]
    if indices is not None:
        checks.append(f"{root.name}: file names are test-set indices, images sorted by index")
    elif training:
        checks.append(f"{root.name}: file names are training-set indices (train-NNNNN): "
                      "training images, sorted by class, then name")
    else:
        checks.append(
            f"{root.name}: file names are not test-set indices; sorted by class, then name"
            + ("" if split == "train" else "; split unknown")
        )
    warnings: list[str] = []
    lossy = sum(v for k, v in formats.items() if k in _LOSSY_FORMATS)
    if lossy:
        warnings.append(
            f"{root.name}: {_count(lossy, 'image is', 'images are')} JPEG (lossy); accuracy "
            "will not match the official test set"
        )
    if transparent:
        warnings.append(f"{root.name}: {_count(transparent, 'image')} had transparency, which "
                        "was dropped")
    if grayscale:
        warnings.append(
            f"{root.name}: {_count(grayscale, 'image is', 'images are')} grayscale, converted "
            "to RGB with R = G = B; the model was trained on colour images"
        )
    if ignored:
        warnings.append(
            f"{root.name}: ignored {_count(len(ignored), 'non-image file')} (e.g. {ignored[0]})"
        )
    images.setflags(write=False)
    labels.setflags(write=False)
    source = DataSource(
        kind="image-folder",
        path=str(root),
        checks=tuple(checks),
        official=False,
        warnings=tuple(warnings),
    )
    return Dataset(images, labels, CLASS_NAMES, source, split=folder_split, indices=indices)


def _tar_kind(path: Path) -> str:
    """binary-tar or python-tar, from the official name or else the first member's directory."""
    if path.name == BINARY_TAR:
        return "binary-tar"
    if path.name == PYTHON_TAR:
        return "python-tar"
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                top = member.name.removeprefix("./").split("/", 1)[0]
                if top == BINARY_DIR:
                    return "binary-tar"
                if top == PYTHON_DIR:
                    return "python-tar"
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise InvalidInputError(
            f"{path}: not a readable tar archive ({_oneline(exc, 120)})"
        ) from None
    raise InvalidInputError(f"{path}: archive holds neither {BINARY_DIR}/ nor {PYTHON_DIR}/")


def _layout_at(path: Path) -> _Layout | None:
    """The layout ``path`` itself is, if any (a user pointing straight at the data)."""
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz", ".tar")):
            return _Layout(_tar_kind(path), path)
        raise InvalidInputError(
            f"{path}: not a CIFAR-10 source; expected a directory or a .tar.gz archive"
        )
    if not path.is_dir():
        return None
    if any((path / n).is_file() for n in ("test_batch.bin", "data_batch_1.bin")):
        return _Layout("binary-dir", path)
    if any((path / n).is_file() for n in ("test_batch", "data_batch_1")):
        return _Layout("python-dir", path)
    if any((path / c).is_dir() for c in CLASS_NAMES):
        return _Layout("image-folder", path)
    return None


_PREFERENCE = {
    BINARY_DIR: "binary-dir",
    PYTHON_DIR: "python-dir",
    BINARY_TAR: "binary-tar",
    PYTHON_TAR: "python-tar",
}
_KIND_RANK = {kind: rank for rank, kind in enumerate(_PREFERENCE.values())}


def _is_image_folder(path: Path) -> bool:
    return path.is_dir() and any((path / c).is_dir() for c in CLASS_NAMES)


def _search(root: Path, split: str) -> tuple[_Layout | None, str | None]:
    """Best layout under ``root`` (two levels down) and, when there were several, a note
    saying which was chosen.

    Official layouts come first (the binary directory, then the python one, then the
    tarballs), preferring one that has ``split``; image folders (a directory with class-name
    subdirectories) only when there is no official layout, so a folder holding the test set
    and a few image folders (perf-png, a calibration set) still means the official test set.
    """
    official: list[_Layout] = []
    folders: list[_Layout] = []
    for path in walk(root):
        kind = _PREFERENCE.get(path.name)
        if kind is not None:
            if kind.endswith("-dir") == path.is_dir():
                official.append(_Layout(kind, path))
        elif _is_image_folder(path) and not any(
                path.is_relative_to(f.path) for f in folders):
            folders.append(_Layout("image-folder", path))
    official.sort(key=lambda lay: _KIND_RANK[lay.kind])  # stable: walk order within a kind
    complete = [lay for lay in official if lay.has_split(split)]
    candidates = complete + [lay for lay in official if lay not in complete] + folders
    if not candidates:
        return None, None
    chosen = candidates[0]
    note = None
    if len(candidates) > 1:
        def name(lay: _Layout) -> str:
            return str(lay.path.relative_to(root))

        others = ", ".join(name(lay) for lay in candidates[1:])
        why = ("official layouts come first" if chosen.kind != "image-folder"
               else "the first image folder by name")
        note = (f"{len(candidates)} CIFAR-10 sources under {root}: using {name(chosen)} "
                f"({why}), not {others}; point --data-dir at one to choose it")
    return chosen, note


def _locate(
    data_dir: str | os.PathLike[str] | None, split: str, download: bool | None
) -> tuple[_Layout, str | None]:
    """The layout to read and, when a search had several to choose from, a note saying so."""
    named = None
    if data_dir is not None:
        named = Path(data_dir).expanduser()
        if not named.exists():
            raise InputNotFoundError(f"{data_dir}: data directory does not exist")
    elif os.environ.get("RESNET8_ONNX_DATA_DIR"):
        named = Path(os.environ["RESNET8_ONNX_DATA_DIR"]).expanduser()
    if named is not None and named.exists():
        direct = _layout_at(named)
        if direct is not None:
            return direct, None
    for root in data_dirs(data_dir):
        found, note = _search(root, split)
        if found is not None:
            return found, note
    path = fetch(BINARY_TAR, data_dir, download=download, what=f"CIFAR-10 {split} set")
    return _Layout("binary-tar", path), None


def load_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split: str = "test",
    subset: str = "full",
    indices_file: str | os.PathLike[str] | None = None,
    download: bool | None = None,
) -> Dataset:
    """Find, verify and load CIFAR-10 from ``data_dir`` (or the usual places), then subset it.

    ``data_dir`` may be a layout itself (a batches directory, a tarball, an image folder) or a
    directory holding one up to two levels down. With nothing found the official binary
    tarball is downloaded into the cache when allowed. ``subset="perf"`` selects the MLPerf
    Tiny 200 images by the indices in ``indices_file`` or a ``perf_samples_idxs.npy`` found
    (or downloaded) the same way.
    """
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if subset not in SUBSETS:
        raise UsageError(f"unknown subset {subset!r}; choose from {', '.join(SUBSETS)}")
    if subset == "perf" and split != "test":
        raise UsageError("the perf subset is part of the test split")
    if indices_file is not None and subset != "perf":
        raise UsageError("an indices file only applies to the perf subset")

    layout, note = _locate(data_dir, split, download)
    if layout.kind == "image-folder":
        dataset = _load_image_folder(layout.path, split)
    else:
        dataset = _load_batches(layout, split)
    if note is not None:
        dataset = dataclasses.replace(
            dataset, source=dataclasses.replace(dataset.source, notes=(note,)))
    if subset == "full":
        return dataset

    if indices_file is not None:
        path = Path(indices_file).expanduser()
        if not path.is_file():
            raise InputNotFoundError(f"{indices_file}: indices file not found")
    else:
        try:
            path = find_file(PERF_INDICES, data_dir) or fetch(
                PERF_INDICES, data_dir, download=download, what="MLPerf Tiny perf subset indices"
            )
        except InputNotFoundError as exc:
            raise InputNotFoundError(f"{exc}, or pass the file with --indices FILE") from None
    indices, checks, warnings, digest = _read_indices(path)
    # Only the official file's selection is "the perf subset"; any other is named by its file.
    name = subset if is_official_perf_indices(digest) else INDICES_SUBSET
    selected = dataset.select(indices, name)
    source = dataclasses.replace(
        selected.source,
        checks=(*selected.source.checks, *checks),
        warnings=(*selected.source.warnings, *warnings),
        official=selected.source.official and not warnings,
    )
    return dataclasses.replace(selected, source=source, indices_file=str(path),
                               indices_sha256=digest)
