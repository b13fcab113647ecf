"""data.format: CIFAR-10's facts, written once, against the official files themselves."""

from __future__ import annotations

import pytest

from conftest import shared_path
from resnet8_onnx.data import format as fmt


def test_class_names_are_the_official_meta_file_in_order() -> None:
    meta = shared_path("cifar-10", "cifar-10-batches-bin", "batches.meta.txt")
    official = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
    assert list(fmt.CLASS_NAMES) == official
    assert fmt.NUM_CLASSES == 10


def test_the_official_test_batch_is_whole_records_of_the_stated_size() -> None:
    batch = shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    assert fmt.ROW_BYTES == 1 + 32 * 32 * 3 == 1 + fmt.IMAGE_BYTES
    assert fmt.IMAGE_SHAPE[0] * fmt.IMAGE_SHAPE[1] * fmt.IMAGE_SHAPE[2] == fmt.IMAGE_BYTES
    assert batch.stat().st_size == fmt.TEST_SET_SIZE * fmt.ROW_BYTES
    assert fmt.FILE_BATCH_SIZE == fmt.TEST_SET_SIZE


@pytest.mark.parametrize(("layout", "split", "names"), [
    ("binary", "test", ["test_batch.bin"]),
    ("python", "test", ["test_batch"]),
    ("binary", "train", [f"data_batch_{i}.bin" for i in range(1, 6)]),
    ("python", "train", [f"data_batch_{i}" for i in range(1, 6)]),
])
def test_file_batch_names(layout: str, split: str, names: list[str]) -> None:
    assert fmt.file_batch_names(layout, split) == names
    assert set(fmt.FORMAT_DIR) == set(fmt.META) == {"binary", "python"}


def test_training_file_stems_and_counts_in_words() -> None:
    assert fmt.TRAIN_STEM.fullmatch("train-00042")
    assert not fmt.TRAIN_STEM.fullmatch("00042")
    assert not fmt.TRAIN_STEM.fullmatch("train-")
    assert fmt.count(1, "image") == "1 image"
    assert fmt.count(10_000, "image") == "10,000 images"
    assert fmt.count(0, "class", "classes") == "0 classes"
    assert fmt.count(1, "class", "classes") == "1 class"
