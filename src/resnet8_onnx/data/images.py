"""Image folders: ``<class name>/<file>`` of 32×32 images, read as what they are.

A numeric file stem is the original test-set index (the folder is then test images, sorted by
index); ``train-NNNNN`` stems are training images; anything else is of unknown split unless the
caller says ``train``. Lossless formats are read exactly; JPEG loads with a warning, since its
pixels are not the official ones. An image folder is never the official test set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet8_onnx.data.dataset import Dataset, DataSource
from resnet8_onnx.data.format import (
    CLASS_NAMES,
    IMAGE_SHAPE,
    TEST_SET_SIZE,
    TRAIN_STEM,
    UNKNOWN_SPLIT,
    count,
)
from resnet8_onnx.support.errors import InvalidInputError, one_line
from resnet8_onnx.support.progress import track

_LOSSLESS_FORMATS = {"PNG", "BMP", "PPM", "TIFF"}
_LOSSY_FORMATS = {"JPEG"}
IMAGE_SUFFIXES = {".png", ".bmp", ".ppm", ".tif", ".tiff", ".jpg", ".jpeg"}

_Entry = tuple[int, str, Path]  # (label, file stem, path)


def is_image_folder(path: Path) -> bool:
    """A directory with at least one class-name subdirectory."""
    return path.is_dir() and any((path / c).is_dir() for c in CLASS_NAMES)


def _scan(root: Path) -> tuple[list[_Entry], list[str]]:
    """The image files of each class subdirectory, and the names of non-image files ignored."""
    entries: list[_Entry] = []
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
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    entries.append((label, f.stem, f))
                else:
                    ignored.append(f.name)
        elif child.suffix.lower() in IMAGE_SUFFIXES:
            raise InvalidInputError(f"{child}: image outside a class subdirectory")
    if not entries:
        raise InvalidInputError(f"{root}: image folder holds no images")
    return entries, ignored


def _order(entries: list[_Entry], split: str) -> tuple[list[_Entry], np.ndarray | None]:
    """Entries sorted by test-set index when the stems are one (with those indices), else by
    class, then name (and no indices)."""
    numeric = all(stem.isascii() and stem.isdigit() for _, stem, _ in entries)
    if numeric and split == "test":
        values = np.array([int(stem) for _, stem, _ in entries], dtype=np.int64)
        if len(np.unique(values)) == len(values) and int(values.max()) < TEST_SET_SIZE:
            order = np.argsort(values, kind="stable")
            return [entries[i] for i in order], values[order]
    return sorted(entries, key=lambda e: (e[0], e[2].name)), None


class _Tally:
    """What reading the images found: formats, transparency, grayscale."""

    def __init__(self) -> None:
        self.formats: dict[str, int] = {}
        self.transparent = 0
        self.grayscale = 0


def _read_image(path: Path, tally: _Tally) -> np.ndarray:
    """One 32×32 image as uint8 RGB; anything unreadable or unsupported names the file."""
    from PIL import Image  # Pillow: a declared dependency, needed only for image folders

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
                    f"{path}: {im.mode} (16-bit/float) images are not supported, use 8-bit RGB"
                )
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                alpha = np.asarray(im.convert("RGBA"))[..., 3]
                tally.transparent += int(np.any(alpha != 255))
            tally.grayscale += im.mode in ("1", "L", "LA")
            pixels = np.asarray(im.convert("RGB"))
    except InvalidInputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(f"{path}: cannot read image ({one_line(exc, 120)})") from None
    tally.formats[fmt] = tally.formats.get(fmt, 0) + 1
    return pixels


def _checks(root: Path, n: int, labels: np.ndarray, tally: _Tally, indexed: bool,
            training: bool, split: str) -> list[str]:
    checks = [
        f"{root.name}: {n:,} images in {len(set(labels.tolist()))} class folders, all 32×32, "
        + ", ".join(f"{k} ×{v:,}" for k, v in sorted(tally.formats.items()))
    ]
    if indexed:
        checks.append(f"{root.name}: file names are test-set indices, images sorted by index")
    elif training:
        checks.append(f"{root.name}: file names are training-set indices (train-NNNNN): "
                      "training images, sorted by class, then name")
    else:
        checks.append(
            f"{root.name}: file names are not test-set indices; sorted by class, then name"
            + ("" if split == "train" else "; split unknown")
        )
    return checks


def _warnings(root: Path, tally: _Tally, ignored: list[str]) -> list[str]:
    warnings: list[str] = []
    lossy = sum(v for k, v in tally.formats.items() if k in _LOSSY_FORMATS)
    if lossy:
        warnings.append(
            f"{root.name}: {count(lossy, 'image is', 'images are')} JPEG (lossy); accuracy "
            "will not match the official test set"
        )
    if tally.transparent:
        warnings.append(f"{root.name}: {count(tally.transparent, 'image')} had transparency, "
                        "which was dropped")
    if tally.grayscale:
        warnings.append(
            f"{root.name}: {count(tally.grayscale, 'image is', 'images are')} grayscale, "
            "converted to RGB with R = G = B; the model was trained on colour images"
        )
    if ignored:
        warnings.append(
            f"{root.name}: ignored {count(len(ignored), 'non-image file')} (e.g. {ignored[0]})"
        )
    return warnings


def load_image_folder(root: Path, split: str) -> Dataset:
    """Class-name subdirectories of 32×32 images; numeric stems are test-set indices."""
    entries, ignored = _scan(root)
    training = all(TRAIN_STEM.fullmatch(stem) for _, stem, _ in entries)
    entries, indices = _order(entries, split)
    # What the folder is, from its file names: test-set indices make test images,
    # "train-NNNNN" training images; anything else is of unknown split unless --split train
    # says so. Never "test" just because that is the default.
    folder_split = ("test" if indices is not None else "train" if training or split == "train"
                    else UNKNOWN_SPLIT)

    n = len(entries)
    images = np.empty((n, *IMAGE_SHAPE), dtype=np.uint8)
    labels = np.array([label for label, _, _ in entries], dtype=np.int64)
    tally = _Tally()
    with track(f"Reading {root.name}", n) as advance:
        for i, (_, _, path) in enumerate(entries):
            images[i] = _read_image(path, tally)
            advance(1)

    images.setflags(write=False)
    labels.setflags(write=False)
    source = DataSource(
        kind="image-folder",
        path=str(root),
        checks=tuple(_checks(root, n, labels, tally, indices is not None, training, split)),
        official=False,
        warnings=tuple(_warnings(root, tally, ignored)),
    )
    return Dataset(images, labels, CLASS_NAMES, source, split=folder_split, indices=indices)
