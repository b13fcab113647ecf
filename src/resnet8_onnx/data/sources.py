"""Read a CIFAR-10 source: locate → verify → parse, then select the subset asked for.

Every official distribution is read in place: the binary and pickle directories and their two
archives (one member streamed into memory, nothing extracted); image folders are read by
:mod:`.images`. Every file is checked against the table of known files
(:mod:`.known_files`); a file with an official name but other bytes is still loaded when its
structure is sound, but the data set is then marked unofficial and says why, so a figure
measured on it is never passed off as the official test-set figure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from resnet8_onnx.data.dataset import INDICES_SUBSET, SUBSETS, Dataset, DataSource
from resnet8_onnx.data.decode import resize_array
from resnet8_onnx.data.discover import SPLIT_NAMES, Found, found_at, locate, split_dirs
from resnet8_onnx.data.download import fetch
from resnet8_onnx.data.format import (
    CLASS_NAMES,
    FILE_BATCH_SIZE,
    FORMAT_DIR,
    IMAGE_SHAPE,
    META,
    NUM_CLASSES,
    PERF_INDICES,
    ROW_BYTES,
    SPLITS,
    TEST_SET_SIZE,
    file_batch_names,
)
from resnet8_onnx.data.images import FolderRequest, load_image_folder
from resnet8_onnx.data.indices import read_indices
from resnet8_onnx.data.known_files import identify, is_official_perf_indices
from resnet8_onnx.data.locations import find_file, named_data_dir
from resnet8_onnx.data.parsers import (
    check_row_size,
    parse_binary_stream,
    parse_meta,
    parse_python_file_batch,
)
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError, one_line
from resnet8_onnx.support.fsutil import file_digest
from resnet8_onnx.support.progress import track

_MAX_FILE_BYTES = 256 << 20  # an official file batch is 30.7 MB; refuse to read absurd sizes


def _dir_members(layout: Found, names: list[str], optional: str) -> list[tuple[str, Path, int]]:
    """``(name, path, size)`` of each wanted file of a directory layout, checked before reading.

    A missing file batch is an error; a missing meta file is not (class names are then assumed).
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
    layout: Found, names: list[str], optional: str, consume: Consumer
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
    layout: Found, names: list[str], optional: str, consume: Consumer
) -> dict[str, Any]:
    """Stream the wanted members out of a tarball through ``consume``; nothing touches the disk."""
    top = FORMAT_DIR[layout.fmt]
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
            f"{layout.path}: not a readable tar archive ({one_line(exc, 120)})"
        ) from None
    for name in names:
        if name not in out:
            raise InvalidInputError(f"{layout.path}: archive has no member {top}/{name}")
    return out


@dataclass(frozen=True)
class _FileBatch:
    label: str  # path, or archive:member, for messages
    images: np.ndarray
    labels: np.ndarray
    md5: str


def _read_file_batches(
    layout: Found, names: list[str], meta_name: str
) -> tuple[dict[str, _FileBatch], np.ndarray | None, tuple[str, bytes] | None]:
    """Parse every wanted file batch of ``layout``; returns them, and for a binary directory
    the one array all of them were parsed into, and the meta file ``(label, bytes)`` if any.

    A binary directory's sizes are known before reading, so its file batches are parsed
    straight into one preallocated array: memory is the uint8 images plus a 3 MB buffer, with
    no copy to concatenate them. Archive members and pickles are parsed one at a time.
    """
    fmt = layout.fmt
    combined: np.ndarray | None = None
    spans: dict[str, tuple[int, int]] = {}  # name -> (first record, size in bytes)
    if fmt == "binary" and layout.kind.endswith("-dir"):
        total = 0
        for name, path, size in _dir_members(layout, names, meta_name):
            if name != meta_name:
                spans[name] = (total, size)
                total += check_row_size(size, str(path))
        combined = np.empty((total, *IMAGE_SHAPE), dtype=np.uint8)

    def consume(name: str, label: str, size: int, stream: IO[bytes]) -> Any:
        if name == meta_name:
            return label, stream.read(size)  # size was checked against _MAX_FILE_BYTES
        if fmt == "binary":
            out = None
            if combined is not None:  # sizes as first seen: a file changed since is an error
                start, size = spans[name]
                out = combined[start : start + size // ROW_BYTES]
            images, labels, md5 = parse_binary_stream(stream, size, name=label, out=out)
            return _FileBatch(label, images, labels, md5)
        buf = stream.read(size)
        images, labels = parse_python_file_batch(buf, name=label)
        return _FileBatch(label, images, labels, hashlib.md5(buf).hexdigest())

    if layout.kind.endswith("-tar"):
        with track(f"Reading {layout.path.name}", None):
            found = _read_tar(layout, names, meta_name, consume)
    else:
        found = _read_dir(layout, names, meta_name, consume)
    meta = found.pop(meta_name, None)
    return found, combined, meta


class _Account:
    """The checks passed and warnings raised while verifying one source."""

    def __init__(self) -> None:
        self.checks: list[str] = []
        self.warnings: list[str] = []
        self.official = True


def _verify_archive(path: Path, account: _Account) -> None:
    """The archive's own checksum; its members are verified one by one whatever it says."""
    with track(f"Verifying {path.name}", None):
        identity = identify(path.name, md5=file_digest(path, "md5"))
    digest = identity.digest
    if identity.differs:
        account.warnings.append(
            f"{path.name}: md5 {digest} differs from the official archive's "
            f"{identity.expected}; its members are checked one by one"
        )
    elif identity.official and identity.match is not None:
        renamed = "" if identity.match.name == path.name else f" {identity.match.name}"
        account.checks.append(f"{path.name}: md5 {digest} (official{renamed})")
    else:
        account.checks.append(f"{path.name}: md5 {digest} (not an official archive name)")


def _verify_file_batch(name: str, file_batch: _FileBatch, split: str, account: _Account) -> None:
    """Class balance of a full test file batch, then the member's checksum (a differing file is
    loaded and marks the data set unofficial: the policy in :mod:`.known_files`)."""
    labels = file_batch.labels
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    n = len(labels)
    per_class = TEST_SET_SIZE // NUM_CLASSES
    if split == "test" and n == TEST_SET_SIZE and not np.all(counts == per_class):
        got = ", ".join(
            f"{c} {int(k):,}" for c, k in zip(CLASS_NAMES, counts, strict=True) if k != per_class
        )
        raise InvalidInputError(
            f"{file_batch.label}: expected 1,000 images per class in the test set, got {got}"
        )
    identity = identify(name, md5=file_batch.md5)
    if identity.official:
        account.checks.append(f"{name}: md5 {file_batch.md5} (official)")
    else:
        account.official = False
        account.warnings.append(
            f"{name}: not the official file (md5 differs): md5 {file_batch.md5}, official "
            f"{identity.expected}; loaded because its structure is valid, but figures from it "
            f"are not comparable to the official {split} set"
        )
    balance = ", 1,000 per class" if split == "test" and n == TEST_SET_SIZE else ""
    account.checks.append(f"{name}: {n:,} records, labels in 0–9{balance}")
    if n != FILE_BATCH_SIZE:
        account.warnings.append(
            f"{name}: holds {n:,} images, not the 10,000 of an official batch")


def _verify_meta(fmt: str, meta_name: str, meta: tuple[str, bytes] | None,
                 account: _Account) -> None:
    """The class names must be CIFAR-10's; the file is checked like every member."""
    if meta is None:
        account.checks.append(f"{meta_name}: absent, CIFAR-10 class names assumed")
        return
    label, buf = meta
    class_names = parse_meta(fmt, buf, name=label)
    if tuple(class_names) != CLASS_NAMES:
        raise InvalidInputError(
            f"{label}: class names {one_line(class_names, 120)} are not the CIFAR-10 classes"
        )
    identity = identify(meta_name, md5=hashlib.md5(buf).hexdigest())
    if identity.known is None:
        account.checks.append(
            f"{meta_name}: the 10 CIFAR-10 class names (no official checksum known)")
    elif identity.official:
        account.checks.append(
            f"{meta_name}: md5 {identity.digest} (official), the 10 CIFAR-10 class names")
    else:
        account.official = False
        account.checks.append(f"{meta_name}: the 10 CIFAR-10 class names")
        account.warnings.append(f"{meta_name}: not the official file (md5 differs): md5 "
                                f"{identity.digest}, official {identity.expected}")


def load_file_batches(layout: Found, split: str) -> Dataset:
    """An official layout's file batches of ``split``: verified, parsed, in one array."""
    fmt = layout.fmt
    names = file_batch_names(fmt, split)
    meta_name = META[fmt]
    account = _Account()
    if layout.kind.endswith("-tar"):
        _verify_archive(layout.path, account)
    file_batches, combined, meta = _read_file_batches(layout, names, meta_name)
    for name in names:
        _verify_file_batch(name, file_batches[name], split, account)
    _verify_meta(fmt, meta_name, meta, account)

    if combined is not None:  # the file batches are views of one array already
        images = combined
    elif len(names) == 1:
        images = file_batches[names[0]].images
    else:
        images = np.concatenate([file_batches[n].images for n in names])
    labels_parts = [file_batches[n].labels for n in names]
    del file_batches
    labels = labels_parts[0] if len(labels_parts) == 1 else np.concatenate(labels_parts)
    images.setflags(write=False)
    labels.setflags(write=False)
    source = DataSource(
        kind=layout.kind,
        path=str(layout.path),
        checks=tuple(account.checks),
        official=account.official,
        warnings=tuple(account.warnings),
    )
    indices = np.arange(len(labels), dtype=np.int64) if split == "test" else None
    return Dataset(images, labels, CLASS_NAMES, source, split=split, indices=indices)


def _split_folder(layout: Found, split: str | None, request: FolderRequest | None
                  ) -> Dataset:
    """``root/<split>/<class>/…``: the split asked for, else the first of val, validation,
    valid, test, train there is (said in a note)."""
    splits = split_dirs(layout.path)
    if split is not None:
        if split not in splits:
            raise UsageError(f"{layout.path}: no split {split!r}; it holds "
                             f"{', '.join(sorted(splits))} (choose with --split)")
        chosen, note = split, None
    else:
        chosen = next((s for s in SPLIT_NAMES if s in splits), sorted(splits)[0])
        note = (f"{layout.path} holds splits {', '.join(sorted(splits))}: using {chosen} "
                "(choose with --split)") if len(splits) > 1 else None
    dataset = load_image_folder(splits[chosen], chosen, request, split_named=True)
    if note:
        dataset = dataclasses.replace(
            dataset, source=dataclasses.replace(dataset.source, notes=(note,)))
    return dataset


def _fit_official(dataset: Dataset, request: FolderRequest | None) -> Dataset:
    """The official set for a model of other class names or input size: the names must be
    CIFAR-10's; a stated resize is applied (a size without one is refused by the caller)."""
    if request is None:
        return dataset
    if request.class_names is not None and tuple(request.class_names) != CLASS_NAMES:
        unknown = sorted(set(CLASS_NAMES) - set(request.class_names))
        if unknown:
            raise InvalidInputError(
                f"{dataset.source.path}: CIFAR-10 classes the model does not know "
                f"({request.class_source or 'its class names'}): {', '.join(unknown)}")
        rank = {n: i for i, n in enumerate(request.class_names)}
        labels = np.array([rank[CLASS_NAMES[i]] for i in range(len(CLASS_NAMES))])[
            dataset.labels]
        labels.setflags(write=False)
        dataset = dataclasses.replace(dataset, labels=labels,
                                      class_names=tuple(request.class_names),
                                      class_source=request.class_source)
    if request.geometry is not None and request.geometry.size != dataset.images.shape[1:3]:
        from resnet8_onnx.data import stream

        h, w = request.geometry.size
        if len(dataset) * h * w * 3 > stream.STREAM_BYTES:
            images: Any = stream.StreamedImages.resized(dataset.images, request.geometry)
        else:
            images = resize_array(dataset.images, request.geometry)
            images.setflags(write=False)
        sources = "; ".join(f"{k}: {v}" for k, v in request.geometry_sources)
        check = f"{request.geometry.describe()} ({sources})"
        dataset = dataclasses.replace(dataset, images=images, source=dataclasses.replace(
            dataset.source, checks=(*dataset.source.checks, check)))
    return dataset


def load_dataset(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    split: str | None = "test",
    subset: str = "full",
    indices_file: str | os.PathLike[str] | None = None,
    download: bool | None = None,
    request: FolderRequest | None = None,
) -> Dataset:
    """Find, verify and load CIFAR-10 from ``data_dir`` (or the usual places), then subset it.

    ``data_dir`` may be a layout itself (a file batch directory, a tarball, an image folder) or a
    directory holding one up to two levels down. With nothing found the official binary
    tarball is downloaded into the cache when allowed. ``subset="perf"`` selects the MLPerf
    Tiny 200 images by the indices in ``indices_file`` or a ``perf_samples_idxs.npy`` found
    (or downloaded) the same way.
    """
    if subset not in SUBSETS:
        raise UsageError(f"unknown subset {subset!r}; choose from {', '.join(SUBSETS)}")
    if subset == "perf" and split not in (None, "test"):
        raise UsageError("the perf subset is part of the test split")
    if indices_file is not None and subset != "perf":
        raise UsageError("an indices file only applies to the perf subset")

    if split is not None and split not in SPLITS:
        named = named_data_dir(data_dir)
        direct = found_at(named) if named is not None else None
        if direct is None or direct.kind != "split-folder":
            raise UsageError(f"unknown split {split!r}; choose from {', '.join(SPLITS)} (or "
                             "a split directory of a root/<split>/<class>/ folder)")
    layout, note = locate(data_dir, split if split in SPLITS else "test", download)
    if layout.kind == "split-folder":
        dataset = _split_folder(layout, split, request)
    elif layout.kind in ("image-folder", "image-csv"):
        dataset = load_image_folder(layout.path, split or "test", request, kind=layout.kind)
    else:
        dataset = _fit_official(load_file_batches(layout, split or "test"), request)
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
    indices, checks, warnings, digest = read_indices(path)
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
