"""CIFAR-10 for evaluation: known files, where they are, how they are read, which images.

One idea per module, data flowing one way (locate → verify → parse → select):

- ``format``: CIFAR-10's facts (classes, record size, official names).
- ``known_files``: the one table of official files and the one rule for trusting them.
- ``locations``: where files are looked for (data directory, environment, cache).
- ``download``: verified downloads; :func:`fetch` finds a known file or downloads it.
- ``parsers``: binary records and the restricted unpickler, shared by every source.
- ``discover``: what a path is, and the best source under the search roots.
- ``images``: labelled image sets (class folders, ``path,label`` CSV), classes matched by name.
- ``decode``: image files → uint8 RGB (EXIF orientation, PIL's RGB conversion, pixel limit).
- ``geometry``: resize and crop with timm's fields (input size, interpolation, crop_pct, mode).
- ``stream``: a set too large to hold decoded, decoded batch by batch as it is used.
- ``indices``: selections by a ``.npy`` of test-set indices (the MLPerf Tiny perf subset).
- ``dataset``: :class:`Dataset` (images, labels, subset, limit) and :class:`DataSource`.
- ``sources``: :func:`load_dataset`, tying them together.

Images stay uint8 NHWC (resized to the model's input when a resize is stated) until an
inference batch is converted (:meth:`Dataset.batches`, or the model's spec).
"""

from resnet8_onnx.data.dataset import (
    INDICES_SUBSET,
    LIMIT_PREFIX,
    SUBSETS,
    Dataset,
    DataSource,
    balanced_first,
)
from resnet8_onnx.data.format import (
    BINARY_DIR,
    BINARY_TAR,
    CLASS_NAMES,
    FILE_BATCH_SIZE,
    IMAGE_BYTES,
    IMAGE_SHAPE,
    NUM_CLASSES,
    PERF_INDICES,
    PYTHON_DIR,
    PYTHON_TAR,
    ROW_BYTES,
    SPLITS,
    TEST_SET_SIZE,
    UNKNOWN_SPLIT,
)
from resnet8_onnx.data.indices import load_indices
from resnet8_onnx.data.known_files import (
    KNOWN_FILES,
    KnownFile,
    identify,
    is_official_perf_indices,
)
from resnet8_onnx.data.parsers import (
    parse_binary_records,
    parse_binary_stream,
    parse_python_file_batch,
    restricted_loads,
)
from resnet8_onnx.data.sources import load_dataset

__all__ = [
    "BINARY_DIR", "BINARY_TAR", "CLASS_NAMES", "FILE_BATCH_SIZE", "IMAGE_BYTES", "IMAGE_SHAPE",
    "INDICES_SUBSET", "KNOWN_FILES", "LIMIT_PREFIX", "NUM_CLASSES", "PERF_INDICES", "PYTHON_DIR",
    "PYTHON_TAR", "ROW_BYTES", "SPLITS", "SUBSETS", "TEST_SET_SIZE", "UNKNOWN_SPLIT",
    "DataSource", "Dataset", "KnownFile", "balanced_first", "identify", "is_official_perf_indices",
    "load_dataset", "load_indices", "parse_binary_records", "parse_binary_stream",
    "parse_python_file_batch", "restricted_loads",
]
