"""Calibration images: where they come from, which positions calibrate and which are held out.

Images have three roles, and the record says which images played which: *calibration* sets
the int8 scales, *held-out* images of the same source (disjoint positions) score and time the
candidates, and the optional *evaluation* set (the test set) gives final figures only.
Calibration reads training images unless the caller asks for test images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnet8_onnx.data import (
    BINARY_DIR,
    BINARY_TAR,
    CLASS_NAMES,
    PYTHON_DIR,
    PYTHON_TAR,
    Dataset,
    DataSource,
    load_dataset,
    load_indices,
)
from resnet8_onnx.data.images import FolderRequest
from resnet8_onnx.data.locations import data_dirs, walk
from resnet8_onnx.records import ImageRole
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError, remedied

if TYPE_CHECKING:
    from resnet8_onnx.data import Dataset

DEFAULT_CALIBRATION_COUNT = 1000
DEFAULT_HOLDOUT_COUNT = 1000
MIN_HOLDOUT = 100  # fewer held-out images cannot tell recipes 1 % apart


def split_positions(
    available: int, calibration_count: int, holdout_count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint positions into a source of ``available`` images: calibration, then held-out.

    Calibration takes ``calibration_count`` positions spread evenly over the whole source
    (``floor(k * available / count)``), held-out takes up to ``holdout_count`` of the rest,
    spread the same way. Spreading matters for image folders, which are sorted by class: the
    first 1,000 images would be five classes only. For the 2,000-image ``train-2000-png``
    folder and the default 1,000 this is exactly the even positions for calibration and the
    odd positions held out, 100 images of each class in each part.
    """
    if calibration_count < 1:
        raise UsageError(f"calibration count must be at least 1, got {calibration_count}")
    if calibration_count > available:
        raise InvalidInputError(f"calibration source holds {available:,} images, fewer than "
                                f"the {calibration_count:,} asked for (--calibration-count)")
    calibration = (np.arange(calibration_count) * available) // calibration_count
    rest = np.setdiff1d(np.arange(available), calibration)
    take = min(holdout_count, len(rest))
    holdout = rest[(np.arange(take) * len(rest)) // take] if take else rest[:0]
    return calibration.astype(np.int64), holdout.astype(np.int64)


def images_sha256(images: np.ndarray) -> str:
    """sha256 of the exact uint8 pixels (N, H, W, C, C order): identifies a calibration set."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _named_like_test_indices(folder: Path) -> bool:
    """Whether every file of an image folder is named by number, as test-set indices are
    (perf-png): a guess from names, used only when the test set is not at hand to compare."""
    stems = [f.stem for d in folder.iterdir() if d.is_dir() for f in d.iterdir()
             if not f.name.startswith(".")]
    return bool(stems) and all(s.isascii() and s.isdigit() for s in stems)


NO_TRAINING_IMAGES = "calibration-no-training-images"
TEST_IMAGES = "calibration-test-images"
HOLDOUT_TOO_SMALL = "calibration-holdout-too-small"
GATE_HOLDOUT_TOO_SMALL = "calibration-gate-holdout-too-small"


def load_calibration_data(
    source: str | os.PathLike[str] | None, *, indices_file: str | os.PathLike[str] | None = None,
    download: bool | None = None, allow_test: bool = False, request: FolderRequest | None = None,
) -> Dataset:
    """The calibration images: the *training* split of ``source`` unless told otherwise.

    ``request`` fits a labelled image set to the model (class names, input size, resize).

    ``source`` is searched by the one rule ``quantize`` and ``run --int8`` share
    (:func:`calibration_source`): a directory that holds training images further down (e.g.
    ``../shared`` → ``cifar-10/train-2000-png``) means those. ``indices_file`` (test-set
    indices, e.g. MLCommons' ``calibration_samples_idxs.npy``) selects those images of the
    *test* split — an explicit request. Any other test images — an image folder found at any
    level whose images are test-set images (:func:`test_image_evidence`), or an official
    layout holding only the test batch — are refused unless ``allow_test``; the data set is
    then marked ``split="test"`` and every report says so.
    """
    if indices_file is not None:
        path = Path(indices_file).expanduser()
        if not path.is_file():
            raise InputNotFoundError(f"{indices_file}: calibration indices file not found")
        indices = load_indices(path)
        dataset = load_dataset(source, split="test", download=download, request=request)
        return dataset.select(indices, f"calibration indices {path.name}")
    source = calibration_source(source)
    try:
        dataset = load_dataset(source, split="train", download=download, request=request)
    except InputNotFoundError as exc:
        if not allow_test:
            raise remedied(InputNotFoundError(f"{exc}; calibration reads training images"),
                           NO_TRAINING_IMAGES) from None
        dataset = _test_split(source, download, exc, request)
    if len(dataset) == 0:
        raise InvalidInputError(f"{dataset.source.path}: calibration source holds no images")
    if dataset.source.kind != "image-folder" or dataset.split == "test" or \
            dataset.name != "CIFAR-10":  # test-image evidence is CIFAR-10's test set
        return dataset
    evidence, test_indices = test_image_evidence(dataset)
    if evidence is None:
        return dataset
    if not allow_test:
        raise remedied(InvalidInputError(
            f"{dataset.source.path}: {evidence}; calibrating on test images biases every "
            "test figure: give training images (e.g. train-2000-png)"), TEST_IMAGES)
    return dataclasses.replace(dataset, split="test", indices=test_indices)


def _test_split(source: Path | None, download: bool | None, missing: Exception,
                request: FolderRequest | None = None) -> Dataset:
    """The test split of an official layout, asked for (``allow_test``) where no training
    images are: the same refusal as before when there is no test split either."""
    try:
        return load_dataset(source, split="test", download=download, request=request)
    except InputNotFoundError:
        raise remedied(InputNotFoundError(f"{missing}; calibration reads training images"),
                       NO_TRAINING_IMAGES) from None


def test_image_evidence(dataset: Dataset) -> tuple[str | None, np.ndarray | None]:
    """Why an image folder's images are test images (``None``: they are not), and their
    test-set indices when every one of them is one.

    By content where the official test set is found near the folder or in the data
    directories (never downloaded): an image pixel-identical to a test record is a test image,
    whatever its file is called. Without the test set, by name only, and said to be a guess.
    """
    found = _official_test_set(Path(dataset.source.path))
    if found is None:
        if not _named_like_test_indices(Path(dataset.source.path)):
            return None, None
        return ("its files are named like test-set indices, so they are taken as TEST images "
                "(the official test set was not found to compare them with)"), None
    test, where = found
    keys = _fingerprints(test.images)
    lookup = dict(zip(keys.tolist(), range(len(keys)), strict=True))
    hits = [lookup.get(k) for k in _fingerprints(dataset.images).tolist()]
    matched = sum(h is not None for h in hits)
    if not matched:
        return None, None
    indices = (np.array(hits, dtype=np.int64) if matched == len(hits) else None)
    return (f"{matched:,} of its {len(hits):,} images are CIFAR-10 TEST images (pixel-identical "
            f"to records of the official test set at {where})"), indices


def _fingerprints(images: np.ndarray) -> np.ndarray:
    """One 64-bit blake2b digest per image: equal pixels, equal key."""
    flat = np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1)
    return np.array([int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(),
                                    "little") for row in flat], dtype=np.uint64)


def _official_test_set(folder: Path) -> tuple[Dataset, Path] | None:
    """The official test set near ``folder`` (its parent and grandparent, and those of what a
    link points to, searched two levels down) or in the data directories; only an official
    layout whose checksums match."""
    from resnet8_onnx.data.discover import found_at, search
    from resnet8_onnx.data.sources import load_file_batches

    real = folder.resolve()  # a link to perf-png: the test set is beside what it points to
    roots = [folder.parent, folder.parent.parent, real.parent, real.parent.parent,
             *data_dirs(None)]
    for root in dict.fromkeys(r.resolve() for r in roots
                               if r.is_dir() and r != Path(r.anchor)):
        layout = found_at(root) or search(root, "test")[0]
        if layout is None or layout.kind == "image-folder" or not layout.has_split("test"):
            continue
        try:
            test = load_file_batches(layout, "test")
        except (InputNotFoundError, InvalidInputError):
            continue
        if test.source.official:
            return test, layout.path
    return None


def calibration_source(source: str | os.PathLike[str] | None) -> Path | None:
    """Where calibration images are read from: ``source`` itself when it is an image folder,
    an archive or an official layout with training batches; else the training images found
    under it (:func:`find_calibration_source`); else ``source`` as given (its loader then
    says what is missing). ``None`` searches the data directories."""
    if source is None:
        return find_calibration_source(None)
    path = Path(source).expanduser()
    if not path.is_dir() or _is_image_folder(path) or _holds_training_batches(path):
        return path
    return find_calibration_source(path) or path


def _holds_training_batches(folder: Path) -> bool:
    return (folder / "data_batch_1.bin").is_file() or (folder / "data_batch_1").is_file()


def _is_image_folder(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in CLASS_NAMES)


def find_calibration_source(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """Training images near ``data_dir``: an official layout holding the training batches,
    else an image folder whose name starts with ``train`` (e.g. ``train-2000-png``).

    Searched like the test set (the data directories, two levels down); ``None`` when there
    is none, and the caller may then download the official archive.
    """
    folders: list[Path] = []
    for root in data_dirs(data_dir):
        for path in [root, *walk(root)]:
            name = path.name
            if name in (BINARY_TAR, PYTHON_TAR) and path.is_file():
                return path
            if name in (BINARY_DIR, PYTHON_DIR) and _holds_training_batches(path):
                return path
            if name.lower().startswith("train") and path.is_dir() and _is_image_folder(path):
                folders.append(path)
    return folders[0] if folders else None



def calibration_account(dataset: Dataset, positions: np.ndarray, images: np.ndarray,
                         indices_note: str | None) -> ImageRole:
    """The calibration images' role in the record: which, how chosen, whether test images."""
    test_images = dataset.split == "test"
    return ImageRole(
        source=dataset.info().source, split=dataset.split, subset=dataset.subset,
        count=len(images), source_count=len(dataset), sha256=images_sha256(images),
        test_images=test_images, selection=_selection(dataset, len(images), indices_note),
        test_indices=None if dataset.indices is None or not test_images
        else [int(i) for i in np.asarray(dataset.indices)[positions][:20]])


def _selection(dataset: Dataset, count: int, indices_note: str | None) -> str:
    """Which images calibrated, exactly: with an indices file, how many of its test images
    (not all of them: the others are kept for holding out, unlike MLCommons' own recipe)."""
    spread = f"at evenly spread positions floor(k × {len(dataset):,} / {count:,})"
    if indices_note is None:
        return f"{count:,} of {len(dataset):,} images {spread}"
    listed = dataset.subset.removeprefix("calibration indices ")
    rest = ("every one of them" if count == len(dataset) else
            f"the other {len(dataset) - count:,} are not calibrated on (the held-out images "
            "are taken from them)")
    return (f"{count:,} of the {len(dataset):,} test images listed in {listed}, {spread} of "
            f"the list; {rest}")


def as_dataset(calibration: Dataset | np.ndarray) -> Dataset:
    if not isinstance(calibration, np.ndarray):
        return calibration
    images = np.asarray(calibration)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise InvalidInputError(f"calibration images must be uint8 NHWC, got {images.dtype} "
                                f"{images.shape}")
    source = DataSource(kind="array", path="<array>",
                        checks=(f"{len(images):,} images given as an array",), official=False,
                        warnings=("calibration images given as an array: their origin (training "
                                  "or test set) is not known",))
    return Dataset(images=images, labels=np.zeros(len(images), dtype=np.int64),
                   class_names=CLASS_NAMES, source=source, split="unknown")

