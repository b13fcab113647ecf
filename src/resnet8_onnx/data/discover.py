"""Locate a CIFAR-10 source: what a path is, and the best one under the search roots.

Official layouts — the binary and Python directories, then their archives — come before image
folders, so a directory holding the test set beside a few image folders means the test set.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from resnet8_onnx.data.download import fetch
from resnet8_onnx.data.format import (
    BINARY_DIR,
    BINARY_TAR,
    CLASS_NAMES,
    PYTHON_DIR,
    PYTHON_TAR,
    file_batch_names,
)
from resnet8_onnx.data.images import IMAGE_SUFFIXES, is_image_folder
from resnet8_onnx.data.locations import ENV_DATA_DIR, data_dirs, named_data_dir, walk
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, one_line


@dataclass(frozen=True)
class Found:
    """An official distribution (or image folder) at ``path``: what to read, not yet read."""

    kind: str  # DataSource.kind
    path: Path

    @property
    def fmt(self) -> str:
        """The record format: "binary" or "python"."""
        return "binary" if self.kind.startswith("binary") else "python"

    def has_split(self, split: str) -> bool:
        """Whether every file batch of ``split`` is there (archives: assumed until read)."""
        if self.kind.endswith("-dir"):
            return all((self.path / n).is_file() for n in file_batch_names(self.fmt, split))
        return True



def tar_kind(path: Path) -> str:
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
            f"{path}: not a readable tar archive ({one_line(exc, 120)})"
        ) from None
    raise InvalidInputError(f"{path}: archive holds neither {BINARY_DIR}/ nor {PYTHON_DIR}/")


SPLIT_NAMES = ("val", "validation", "valid", "test", "train")  # the default: the first found


def split_dirs(path: Path) -> dict[str, Path]:
    """``root/<split>/<class>/…``: the split directories that are image folders, by name."""
    try:
        children = sorted(c for c in path.iterdir() if c.is_dir() and not c.name.startswith("."))
    except OSError:
        return {}
    splits = {c.name: c for c in children if is_image_folder(c)}
    conventional = any(name in SPLIT_NAMES for name in splits)
    return splits if conventional and all(c.name in splits for c in children) else {}


def found_at(path: Path) -> Found | None:
    """The layout ``path`` itself is, if any (a user pointing straight at the data)."""
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz", ".tar")):
            return Found(tar_kind(path), path)
        if path.suffix.lower() == ".csv":
            return Found("image-csv", path)
        raise InvalidInputError(
            f"{path}: not a CIFAR-10 source; expected a directory, a .tar.gz archive or a "
            ".csv of path,label"
        )
    if not path.is_dir():
        return None
    if any((path / n).is_file() for n in ("test_batch.bin", "data_batch_1.bin")):
        return Found("binary-dir", path)
    if any((path / n).is_file() for n in ("test_batch", "data_batch_1")):
        return Found("python-dir", path)
    if is_image_folder(path):
        return Found("image-folder", path)
    if split_dirs(path):
        return Found("split-folder", path)
    return None


_PREFERENCE = {
    BINARY_DIR: "binary-dir",
    PYTHON_DIR: "python-dir",
    BINARY_TAR: "binary-tar",
    PYTHON_TAR: "python-tar",
}
_KIND_RANK = {kind: rank for rank, kind in enumerate(_PREFERENCE.values())}


def search(root: Path, split: str) -> tuple[Found | None, str | None]:
    """Best layout under ``root`` (two levels down) and, when there were several, a note
    saying which was chosen.

    Official layouts come first (the binary directory, then the python one, then the
    tarballs), preferring one that has ``split``; image folders (a directory with class-name
    subdirectories) only when there is no official layout, so a folder holding the test set
    and a few image folders (perf-png, a calibration set) still means the official test set.
    """
    official: list[Found] = []
    folders: list[Found] = []
    for path in walk(root):
        kind = _PREFERENCE.get(path.name)
        if kind is not None:
            if kind.endswith("-dir") == path.is_dir():
                official.append(Found(kind, path))
        elif is_image_folder(path) and not any(
                path.is_relative_to(f.path) for f in folders):
            folders.append(Found("image-folder", path))
    official.sort(key=lambda lay: _KIND_RANK[lay.kind])  # stable: walk order within a kind
    complete = [lay for lay in official if lay.has_split(split)]
    candidates = complete + [lay for lay in official if lay not in complete] + folders
    if not candidates:
        return None, None
    chosen = candidates[0]
    note = None
    if len(candidates) > 1:
        def name(lay: Found) -> str:
            return str(lay.path.relative_to(root))

        others = ", ".join(name(lay) for lay in candidates[1:])
        why = ("official layouts come first" if chosen.kind != "image-folder"
               else "the first image folder by name")
        note = (f"{len(candidates)} CIFAR-10 sources under {root}: using {name(chosen)} "
                f"({why}), not {others}; point --data-dir at one to choose it")
    return chosen, note


def locate(
    data_dir: str | os.PathLike[str] | None, split: str, download: bool | None
) -> tuple[Found, str | None]:
    """The layout to read and, when a search had several to choose from, a note saying so.

    The named data directory may be a layout itself; otherwise every search root is searched
    (:func:`search`); with nothing found the official binary archive is fetched.
    """
    named = named_data_dir(data_dir)
    if named is not None:
        direct = found_at(named)
        if direct is not None:
            return direct, None
        # A directory the user named is searched, never downloaded into, and nothing else
        # (the cache) stands in for it: what it holds is the answer.
        found, note = search(named, split)
        if found is not None:
            return found, note
        label = str(data_dir) if data_dir is not None else f"{ENV_DATA_DIR}={named}"
        raise InputNotFoundError(f"no CIFAR-10 data under {label}: {describe_contents(named)}")
    for root in data_dirs(data_dir):
        found, note = search(root, split)
        if found is not None:
            return found, note
    path = fetch(BINARY_TAR, data_dir, download=download, what=f"CIFAR-10 {split} set")
    return Found("binary-tar", path), None


def describe_contents(root: Path) -> str:
    """What a directory without CIFAR-10 holds, in a few words (for the refusal's line).

    An image folder whose class names are not CIFAR-10's is the likely mistake, so it is
    named with its classes; otherwise what the layouts would have been.
    """
    entries = list(walk(root))
    if not entries:
        return "it is empty"
    for folder in [root, *(p for p in entries if p.is_dir())]:
        classes = sorted(c.name for c in _subdirs(folder) if _holds_images(c))
        if classes:
            return (f"found an image folder whose classes {', '.join(classes[:10])} are not "
                    f"CIFAR-10's ({', '.join(CLASS_NAMES)})")
    images = sum(1 for p in entries if p.suffix.lower() in IMAGE_SUFFIXES)
    if images:
        return (f"found {images:,} image file{'s' if images != 1 else ''} but no class "
                f"folders (an image folder holds one subdirectory per class: "
                f"{', '.join(CLASS_NAMES)})")
    return (f"found no {BINARY_DIR}/, {PYTHON_DIR}/, {BINARY_TAR}, {PYTHON_TAR} or image "
            "folder of CIFAR-10 classes (searched two levels down)")


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []


def _holds_images(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())
    except OSError:
        return False
