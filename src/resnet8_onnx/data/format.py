"""CIFAR-10's facts, written once: classes, image and record sizes, official names.

A "file batch" is one of the official files of 10,000 images (``data_batch_1``,
``test_batch.bin``…); "batch" alone always means an inference batch.
"""

from __future__ import annotations

import re

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
NUM_CLASSES = len(CLASS_NAMES)
TEST_SET_SIZE = 10_000
FILE_BATCH_SIZE = 10_000  # images per official file batch
IMAGE_SHAPE = (32, 32, 3)
IMAGE_BYTES = 32 * 32 * 3
ROW_BYTES = 1 + IMAGE_BYTES  # label byte, then the R, G and B planes

SPLITS = ("test", "train")
UNKNOWN_SPLIT = "unknown"  # an image folder whose file names do not say which split it is
TRAIN_STEM = re.compile(r"train-\d+")  # an image folder's training-set file names

BINARY_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
BINARY_TAR = "cifar-10-binary.tar.gz"
PYTHON_TAR = "cifar-10-python.tar.gz"
PERF_INDICES = "perf_samples_idxs.npy"
MODEL = "pretrainedResnet.h5"

FORMAT_DIR = {"binary": BINARY_DIR, "python": PYTHON_DIR}  # top directory, in archives too
META = {"binary": "batches.meta.txt", "python": "batches.meta"}


def file_batch_names(fmt: str, split: str) -> list[str]:
    """The official file batches of ``split`` in format ``fmt`` ("binary" or "python")."""
    suffix = ".bin" if fmt == "binary" else ""
    if split == "test":
        return [f"test_batch{suffix}"]
    return [f"data_batch_{i}{suffix}" for i in range(1, 6)]


def count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 image', '2 images', '1,000 images'."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"
