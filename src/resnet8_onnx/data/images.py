"""Labelled image sets: ``<class>/<file>`` folders and ``path,label`` CSV files.

Classes are the folder names sorted as torchvision's ``ImageFolder`` sorts them, unless the
model names its classes (metadata ``class_names``, or ``--class-names FILE``): labels are then
matched by name, so a folder holding some of the model's classes works, and a class the model
does not know is refused naming it. A folder whose classes are CIFAR-10's keeps CIFAR-10's
label order and meaning: a numeric file stem is then the original test-set index (the folder
is test images, sorted by index), ``train-NNNNN`` stems are training images; anything else is
of unknown split unless the caller names one. Lossless formats are read exactly; JPEG loads
with a warning. An image folder is never the official test set. Decoding is
:mod:`.decode`'s (EXIF orientation, RGB conversion, resize).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.data.dataset import Dataset, DataSource
from resnet8_onnx.data.decode import (
    IMAGE_SUFFIXES,
    LOSSY_FORMATS,
    Tally,
    decode_all,
    scan_headers,
)
from resnet8_onnx.data.format import CLASS_NAMES, TEST_SET_SIZE, TRAIN_STEM, UNKNOWN_SPLIT, count
from resnet8_onnx.data.geometry import Geometry
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, one_line

__all__ = ["IMAGE_SUFFIXES", "FolderRequest", "is_image_folder", "load_image_folder"]

_Entry = tuple[str, str, Path]  # (class name, file stem, path)
_MAX_CSV_BYTES = 64 << 20


@dataclass(frozen=True)
class FolderRequest:
    """What the model asks of a labelled image set: its class names (index order) and where
    they came from, the resize/crop to apply (``None``: images at their own size, which must
    be ``image_size``, the model's H×W when fixed), and whether unreadable files are skipped."""

    class_names: tuple[str, ...] | None = None
    class_source: str | None = None  # "model metadata", "--class-names FILE"
    geometry: Geometry | None = None
    geometry_sources: tuple[tuple[str, str], ...] = ()
    image_size: tuple[int, int] | None = None
    skip_bad: bool = False


def _holds_images(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                   for p in folder.iterdir() if p.is_file())
    except OSError:
        return False


def is_image_folder(path: Path) -> bool:
    """A directory with a CIFAR-10 class subdirectory, or any subdirectory holding images."""
    if not path.is_dir():
        return False
    if any((path / c).is_dir() for c in CLASS_NAMES):
        return True
    try:
        return any(c.is_dir() and not c.name.startswith(".") and _holds_images(c)
                   for c in path.iterdir())
    except OSError:
        return False


def _scan(root: Path) -> tuple[list[_Entry], list[str], list[str]]:
    """The image files of each class subdirectory, the names of non-image files ignored and
    the class folders holding no image."""
    entries: list[_Entry] = []
    ignored: list[str] = []
    empty: list[str] = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            found = 0
            for f in sorted(child.iterdir()):
                if f.name.startswith("."):
                    continue
                if f.is_dir():
                    raise InvalidInputError(f"{f}: nested directories are not supported")
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    entries.append((child.name, f.stem, f))
                    found += 1
                else:
                    ignored.append(f.name)
            if not found:
                empty.append(child.name)
        elif child.suffix.lower() in IMAGE_SUFFIXES:
            raise InvalidInputError(f"{child}: image outside a class subdirectory")
    if not entries:
        raise InvalidInputError(f"{root}: image folder holds no images")
    return entries, ignored, empty


def _read_csv(path: Path) -> tuple[list[_Entry], list[str], list[str]]:
    """``path,label`` rows (a header row naming them is skipped); paths relative to the file."""
    try:
        if path.stat().st_size > _MAX_CSV_BYTES:
            raise InvalidInputError(f"{path}: over {_MAX_CSV_BYTES >> 20} MB, not a label list")
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: cannot read ({one_line(exc, 120)})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    entries: list[_Entry] = []
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise InvalidInputError(f"{path}: row {number} is not path,label: {row!r}")
        file = (path.parent / row[0].strip())
        if not file.is_file():
            raise InputNotFoundError(f"{path}: row {number}: {file} not found")
        entries.append((row[1].strip(), file.stem, file))
    if not entries:
        raise InvalidInputError(f"{path}: no path,label rows")
    return entries, [], []


def _labels(found: Sequence[str], request: FolderRequest, root: Path
            ) -> tuple[tuple[str, ...], str]:
    """The class names, in label order, and where they came from."""
    if request.class_names is not None:
        unknown = sorted(set(found) - set(request.class_names))
        if unknown:
            shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more"
                                              if len(unknown) > 8 else "")
            raise InvalidInputError(
                f"{root}: {count(len(unknown), 'class', 'classes')} the model does not know "
                f"({request.class_source or 'its class names'}): {shown}")
        return tuple(request.class_names), request.class_source or "the model"
    if set(found) <= set(CLASS_NAMES):
        return CLASS_NAMES, "CIFAR-10"
    classes = tuple(sorted(set(found)))
    if len(classes) < 2:
        raise InvalidInputError(f"{root}: only one class ({classes[0]}); a labelled set needs "
                                "at least two")
    return classes, "folder names, sorted"


def _order(entries: list[_Entry], split: str, cifar: bool, names: Sequence[str]
           ) -> tuple[list[_Entry], np.ndarray | None]:
    """Entries sorted by test-set index when the stems are one (CIFAR-10 classes only),
    else by class, then name (and no indices)."""
    numeric = all(stem.isascii() and stem.isdigit() for _, stem, _ in entries)
    if cifar and numeric and split == "test":
        values = np.array([int(stem) for _, stem, _ in entries], dtype=np.int64)
        if len(np.unique(values)) == len(values) and int(values.max()) < TEST_SET_SIZE:
            order = np.argsort(values, kind="stable")
            return [entries[i] for i in order], values[order]
    rank = {name: i for i, name in enumerate(names)}
    return sorted(entries, key=lambda e: (rank[e[0]], e[2].name)), None


def _checks(root: Path, n: int, classes: int, tally: Tally, shape: tuple[int, ...],
            how: tuple[bool, bool, str], request: FolderRequest, class_source: str,
            total: int) -> list[str]:
    indexed, training, split = how
    h, w = shape[:2]
    stored = sorted(tally.sizes)
    example = f"{stored[0][0]}×{stored[0][1]}" if stored else "?"
    sizes = (f"all {w}×{h}" if len(stored) <= 1 and not tally.resized
             else f"stored at {example}, now {w}×{h}" if len(stored) == 1
             else f"stored at {len(stored):,} sizes (e.g. {example}), now {w}×{h}")
    checks = [
        f"{root.name}: {n:,} images in {classes} class folder{'s' if classes != 1 else ''}, "
        f"{sizes}, " + ", ".join(f"{k} ×{v:,}" for k, v in sorted(tally.formats.items()))
    ]
    if class_source not in ("CIFAR-10",):
        checks.append(f"{root.name}: classes from {class_source}: {classes} of the {total} "
                      "labels have images")
    if request.geometry is not None:
        sources = "; ".join(f"{k}: {v}" for k, v in request.geometry_sources)
        checks.append(f"{root.name}: {request.geometry.describe()}, "
                      f"{count(tally.resized, 'image')} changed size ({sources})")
    if indexed:
        checks.append(f"{root.name}: file names are test-set indices, images sorted by index")
    elif training:
        checks.append(f"{root.name}: file names are training-set indices (train-NNNNN): "
                      "training images, sorted by class, then name")
    else:
        checks.append(
            f"{root.name}: file names are not test-set indices; sorted by class, then name"
            + ("" if split != UNKNOWN_SPLIT else "; split unknown")
        )
    return checks


def _warnings(root: Path, tally: Tally, ignored: list[str], empty: list[str]) -> list[str]:
    warnings: list[str] = []
    lossy = sum(v for k, v in tally.formats.items() if k in LOSSY_FORMATS)
    if lossy:
        warnings.append(
            f"{root.name}: {count(lossy, 'image is', 'images are')} JPEG (lossy); accuracy "
            "will not match the official test set"
        )
    if tally.transparent:
        warnings.append(f"{root.name}: {count(tally.transparent, 'image')} had transparency, "
                        "which was dropped")
    if tally.alpha:
        warnings.append(f"{root.name}: {count(tally.alpha, 'image has', 'images have')} an "
                        "alpha channel, which was dropped")
    if tally.grayscale:
        warnings.append(
            f"{root.name}: {count(tally.grayscale, 'image is', 'images are')} grayscale, "
            "converted to RGB with R = G = B; the model was trained on colour images"
        )
    other = {m: k for m, k in tally.modes.items() if m not in ("L", "1", "LA", "RGBA")}
    if other:
        warnings.append(f"{root.name}: converted to RGB as PIL does: "
                        + ", ".join(f"{m} ×{k:,}" for m, k in sorted(other.items())))
    if tally.rotated:
        warnings.append(f"{root.name}: {count(tally.rotated, 'image')} turned upright by "
                        "its EXIF orientation")
    if tally.skipped:
        warnings.append(f"{root.name}: skipped {count(len(tally.skipped), 'unreadable image')}"
                        f" (--skip-bad-images), e.g. {tally.skipped[0]}")
    if empty:
        warnings.append(f"{root.name}: {count(len(empty), 'class folder')} without images: "
                        + ", ".join(empty[:8]))
    if ignored:
        warnings.append(
            f"{root.name}: ignored {count(len(ignored), 'non-image file')} (e.g. {ignored[0]})"
        )
    return warnings


def _first_size(path: Path) -> tuple[int, int] | None:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused later
            with Image.open(path) as im:
                w, h = im.size
                turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:
        return None
    return (w, h) if turned else (h, w)


def _read(root: Path, paths: list[Path], request: FolderRequest
          ) -> tuple[Any, np.ndarray, Tally]:
    """Decoded at once, or streamed when the decoded set would pass ``STREAM_BYTES``."""
    from resnet8_onnx.data import stream

    size_why = "the model's input" if request.image_size else ""
    size = request.geometry.size if request.geometry is not None else request.image_size
    size = size or _first_size(paths[0])
    kwargs: dict[str, Any] = {
        "geometry": request.geometry, "size": request.image_size, "size_why": size_why,
        "skip_bad": request.skip_bad, "description": f"Reading {root.name}"}
    if size is None or len(paths) * size[0] * size[1] * 3 <= stream.STREAM_BYTES:
        return decode_all(paths, **kwargs)
    kwargs["description"] = f"Checking {root.name}"
    shape, kept, tally = scan_headers(paths, **kwargs)
    kept_paths = [p for p, k in zip(paths, kept, strict=True) if k]
    return stream.StreamedImages(kept_paths, shape, request.geometry), kept, tally


def load_image_folder(root: Path, split: str, request: FolderRequest | None = None,
                      *, kind: str = "image-folder", split_named: bool = False) -> Dataset:
    """A labelled image set at ``root`` (a class folder, or a ``.csv`` of ``path,label``)."""
    request = request or FolderRequest()
    if kind == "image-csv":
        entries, ignored, empty = _read_csv(root)
    else:
        entries, ignored, empty = _scan(root)
    names, class_source = _labels([e[0] for e in entries], request, root)
    cifar = names == CLASS_NAMES
    training = cifar and all(TRAIN_STEM.fullmatch(stem) for _, stem, _ in entries)
    entries, indices = _order(entries, split, cifar, names)
    # What the folder is, from its file names: test-set indices make test images,
    # "train-NNNNN" training images; anything else is of unknown split unless the caller
    # names one (--split train, a split directory). Never "test" just because of a default.
    folder_split = ("test" if indices is not None else "train" if training or split == "train"
                    else split if split_named else UNKNOWN_SPLIT)

    rank = {name: i for i, name in enumerate(names)}
    images, kept, tally = _read(root, [p for _, _, p in entries], request)
    labels = np.array([rank[c] for c, _, _ in entries], dtype=np.int64)[kept]
    if indices is not None:
        indices = indices[kept]
    images.setflags(write=False)
    labels.setflags(write=False)
    present = len(set(labels.tolist()))
    checks = _checks(root, len(labels), present, tally, images.shape[1:],
                     (indices is not None, training, folder_split), request, class_source,
                     len(names))
    if not isinstance(images, np.ndarray):
        checks.append(f"{root.name}: streamed, decoded batch by batch while the model runs "
                      f"({images.nbytes / 2**20:,.0f} MiB if held at once); files checked "
                      "first by header, a file that fails to decode later is an error")
    source = DataSource(
        kind=kind,
        path=str(root),
        checks=tuple(checks),
        official=False,
        warnings=tuple(_warnings(root, tally, ignored, empty)),
    )
    return Dataset(images, labels, names, source, split=folder_split, indices=indices,
                   name="CIFAR-10" if cifar else "labelled images",
                   skipped=len(tally.skipped), class_source=class_source)
