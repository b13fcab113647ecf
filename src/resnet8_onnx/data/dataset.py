"""A data set in memory: images, labels and an exact account of which images they are.

Images stay uint8 (N, H, W, 3) RGB — an array, or a :class:`~.stream.StreamedImages` that
decodes them batch by batch; conversion to float32 happens one inference batch at a time in
:meth:`Dataset.batches`. A subset (``select``) and a ``--limit`` (``with_limit``) are
fields, not words in a name, so every report states them without parsing anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnet8_onnx.data.format import NUM_CLASSES, TEST_SET_SIZE
from resnet8_onnx.records import DataInfo, SourceInfo
from resnet8_onnx.support.errors import InvalidInputError, UsageError
from resnet8_onnx.support.fsutil import recorded_path

SUBSETS = ("full", "perf")
# The subset name of images selected by an indices file other than the official perf one.
INDICES_SUBSET = "indices"
# How a --limit is written in the report's "subset": "balanced-500 of full" (see info()).
LIMIT_PREFIX = "balanced-"


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

    def info(self) -> SourceInfo:
        """The records' account of this source, its path resolved as every record names files."""
        return SourceInfo(kind=self.kind, path=recorded_path(self.path) or "",
                          official=self.official, checks=list(self.checks),
                          notes=list(self.notes), warnings=list(self.warnings))


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels in memory plus an exact account of which images they are.

    ``subset`` says which images of the source were selected and ``limit`` how many of those
    were kept by :meth:`with_limit`; :meth:`info` words the two for reports.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: DataSource
    split: str = "test"
    subset: str = "full"  # "full", "perf", "indices" (or a caller's name): before any limit
    indices: np.ndarray | None = None
    source_count: int | None = None  # images the source held before subsetting (None: len)
    indices_file: str | None = None  # the .npy file the subset was selected by, if any
    indices_sha256: str | None = None  # that file's sha256 (identifies the selection)
    limit: int | None = None  # the --limit applied (class-balanced), None for none
    requested_limit: int | None = None  # a --limit above the size, so not applied (all used)
    name: str = "CIFAR-10"  # "labelled images" for a folder of other classes
    skipped: int = 0  # unreadable images left out (--skip-bad-images)
    class_source: str | None = None  # where the class names came from (image sets)
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
        """``(float32 NHWC batch, int64 labels)`` inference batches in order; float32 one batch
        at a time, because the whole test set as float32 is 123 MB that nothing needs at once."""
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.images[start:stop].astype(np.float32), self.labels[start:stop]

    def with_limit(self, n: int) -> Dataset:
        """``n`` images, class-balanced, marked (``limit``) so they are never taken for the set.

        Taken round-robin over the classes, each class in source order: the first image of
        every class, then the second of every class, and so on (a round that cannot be
        completed goes to the lower class indices); the result keeps source order. So
        ``with_limit(500)`` of the test set is the first 50 images of each class, and a folder
        sorted by class does not yield ten airplanes for ``with_limit(10)``.
        """
        if n < 1:
            raise UsageError(f"limit must be at least 1, got {n}")
        if n >= len(self):  # every image: no limit applied, but one asked above the size
            return self if n == len(self) else dataclasses.replace(self, requested_limit=n)
        take = balanced_first(self.labels, n, len(self.class_names))
        return dataclasses.replace(
            self,
            images=self.images[take],
            labels=self.labels[take],
            indices=None if self.indices is None else self.indices[take],
            limit=n,
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
            limit=None,
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
            and self.limit is None
            and self.source.official
            and len(self) == TEST_SET_SIZE
            and bool(np.all(self._per_class == TEST_SET_SIZE // NUM_CLASSES))
        )

    @property
    def subset_label(self) -> str:
        """The report's ``subset``: the subset, or "balanced-500 of full" under a limit."""
        return self.subset if self.limit is None else f"{LIMIT_PREFIX}{self.limit} of {self.subset}"

    def info(self) -> DataInfo:
        """The records' account of exactly which images this is (the ``data`` of every record).

        What the typed block does not name travels in ``extra``, each only when it says
        something: a ``--limit`` above the size, images not 32×32, images skipped, and where
        the class names came from.
        """
        shape = list(self.images.shape[1:])
        return DataInfo(
            dataset=self.name, source=self.source.info(), warnings=self._class_warnings(),
            split=self.split, subset=self.subset_label, count=len(self),
            source_count=self.available, limit=self.limit, per_class=self.per_class,
            full_official_test_set=self.is_full_official_test_set,
            indices_file=recorded_path(self.indices_file), indices_sha256=self.indices_sha256,
            extra={**({"requested_limit": self.requested_limit} if self.requested_limit else {}),
                   **({"image_shape": shape} if shape != [32, 32, 3] else {}),
                   **({"skipped_images": self.skipped} if self.skipped else {}),
                   **({"class_source": self.class_source} if self.class_source else {})})

    def describe(self) -> dict[str, Any]:
        """:meth:`info` as its JSON mapping, for the run's and quantiser's blocks built from one."""
        return self.info().to_dict()

    def _class_warnings(self) -> list[str]:
        """Classes without a single image: their accuracy and recall cannot be stated."""
        empty = [name for name, n in self.per_class.items() if n == 0]
        if len(empty) > 10:
            return [f"no images of {len(empty):,} of the {len(self.class_names):,} classes "
                    f"(e.g. {', '.join(empty[:3])}): their accuracy and recall are undefined"]
        return [f"no images of class {', '.join(empty)}: "
                f"{'its' if len(empty) == 1 else 'their'} accuracy and recall are "
                "undefined"] if empty else []

    @property
    def notes(self) -> tuple[str, ...]:
        """What the user should hear about how this data was chosen: which source a search
        picked among several, and a ``--limit`` above the size (so every image was used)."""
        notes = self.source.notes
        if self.requested_limit:
            notes += (f"--limit {self.requested_limit:,} is more than the {len(self):,} "
                      f"images; using all {len(self):,}",)
        return notes


