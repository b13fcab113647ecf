"""data.dataset: the Dataset API: inference batches, class-balanced limits, selection by index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cifar_factory import (
    make_images,
)
from resnet8_onnx.data import CLASS_NAMES, SUBSETS, Dataset, DataSource
from resnet8_onnx.records import DataInfo, SourceInfo
from resnet8_onnx.support.errors import InvalidInputError, UsageError


# ------------------------------------------------------------------------------ Dataset API
def _dataset(n: int = 25) -> Dataset:
    images, labels = make_images(n)
    source = DataSource(kind="binary-dir", path="mem", checks=(), official=False)
    return Dataset(images, labels, CLASS_NAMES, source, indices=np.arange(n, dtype=np.int64))


def test_batches_are_float32_raw_pixels_in_order() -> None:
    data = _dataset(25)
    got = list(data.batches(10))
    assert [len(b) for b, _ in got] == [10, 10, 5]
    assert all(b.dtype == np.float32 and b.shape[1:] == (32, 32, 3) for b, _ in got)
    stacked = np.concatenate([b for b, _ in got])
    np.testing.assert_array_equal(stacked, data.images.astype(np.float32))
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), data.labels)
    assert float(np.concatenate([b for b, _ in got]).max()) > 1.0  # not normalised
    with pytest.raises(UsageError):
        next(data.batches(0))


def _round_robin(labels: list[int], n: int, k: int = 10) -> list[int]:
    """Independent reference: per class in source order, then one per class per round."""
    queues = [[i for i, y in enumerate(labels) if y == c] for c in range(k)]
    taken: list[int] = []
    while len(taken) < n:
        for queue in queues:
            if queue and len(taken) < n:
                taken.append(queue.pop(0))
    return sorted(taken)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=80), st.integers(1, 80))
def test_limit_is_round_robin_over_classes(labels: list[int], n: int) -> None:
    images = np.zeros((len(labels), 32, 32, 3), np.uint8)
    source = DataSource(kind="binary-dir", path="mem", checks=(), official=False)
    data = Dataset(images, np.array(labels, np.int64), CLASS_NAMES, source,
                   indices=np.arange(len(labels), dtype=np.int64))
    limited = data.with_limit(n)
    if n >= len(labels):  # every image, no limit applied; one above the size is recorded
        assert limited.images is data.images
        assert limited.limit is None
        assert limited.requested_limit == (n if n > len(labels) else None)
    else:
        assert limited.indices.tolist() == _round_robin(labels, n)
        assert limited.labels.tolist() == [labels[i] for i in limited.indices]


def test_limit_renames_the_subset() -> None:
    data = _dataset(25)
    first = data.with_limit(7)
    assert len(first) == 7
    assert (first.subset, first.limit) == ("full", 7)  # fields, not words in a name
    assert data.limit is None
    described = first.describe()
    assert described["subset"] == "balanced-7 of full"
    assert described["count"] == 7
    assert described["limit"] == 7
    assert described["source_count"] == 25
    assert described["indices_sha256"] is None  # the sha256 of an indices file; none here
    whole = data.with_limit(100)
    assert whole.images is data.images
    assert (whole.limit, whole.requested_limit) == (None, 100)
    assert whole.describe()["requested_limit"] == 100
    assert whole.notes == ("--limit 100 is more than the 25 images; using all 25",)
    assert "requested_limit" not in described
    with pytest.raises(UsageError):
        data.with_limit(0)


def test_info_is_the_records_data_block_with_extras_only_when_they_say_something() -> None:
    """The data layer builds the records' DataInfo itself; its keys are the reports' own."""
    data = _dataset(25)
    info = data.info()
    assert type(info) is DataInfo
    assert type(info.source) is SourceInfo
    saved = info.to_dict()
    assert list(saved) == ["dataset", "source", "warnings", "split", "subset", "count",
                           "source_count", "limit", "per_class", "full_official_test_set",
                           "indices_file", "indices_sha256"]
    assert list(saved["source"]) == ["kind", "path", "official", "checks", "notes", "warnings"]
    assert json.dumps(DataInfo.from_dict(saved).to_dict()) == json.dumps(saved)
    assert data.describe() == saved
    small = Dataset(np.zeros((4, 16, 16, 3), np.uint8), np.array([0, 1, 2, 2]), CLASS_NAMES,
                    data.source, skipped=3, class_source="folder names", requested_limit=9)
    extra = small.info().extra
    assert extra == {"requested_limit": 9, "image_shape": [16, 16, 3], "skipped_images": 3,
                     "class_source": "folder names"}
    assert list(extra) == ["requested_limit", "image_shape", "skipped_images", "class_source"]
    assert small.info().warnings == ["no images of class cat, deer, dog, frog, horse, ship, "
                                     "truck: their accuracy and recall are undefined"]


def test_select_keeps_the_given_order_and_rejects_missing() -> None:
    data = _dataset(25)
    picked = data.select(np.array([20, 3, 11]), "perf")
    np.testing.assert_array_equal(picked.images, data.images[[20, 3, 11]])
    np.testing.assert_array_equal(picked.indices, [20, 3, 11])
    assert picked.subset == "perf"
    assert sum(picked.describe()["per_class"].values()) == 3
    with pytest.raises(InvalidInputError, match="2 of 3 perf indices are not in this data set"):
        data.select(np.array([1, 30, 40]), "perf")


def test_subset_names_are_stable() -> None:
    assert SUBSETS == ("full", "perf")
