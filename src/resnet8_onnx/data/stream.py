"""A labelled set too large to hold decoded: images decoded batch by batch as they are used.

:class:`StreamedImages` stands where a uint8 (N, H, W, 3) array stands in a
:class:`~.dataset.Dataset`. A slice (one inference batch) is decoded by a small thread pool,
and while the caller runs the model on it the next batch of the same length is decoded
ahead, so decoding overlaps inference and at most two batches are held, whatever N is. An
index array (a ``--limit``, a subset) is another stream of those files; ``np.asarray`` decodes
everything (what a consumer that needs every pixel at once, such as calibration, asks for).
Pixels are :func:`.decode.read_one`'s, the same as a set decoded at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.data.decode import read_one
from resnet8_onnx.data.geometry import Geometry
from resnet8_onnx.support.errors import InvalidInputError

# Sets whose decoded pixels would take more than this are streamed (tests lower it).
STREAM_BYTES = 512 << 20
_WORKERS = 4


def _read_file(path: Path, geometry: Geometry | None) -> np.ndarray:
    result = read_one(path, geometry)
    if result.error is not None or result.pixels is None:
        raise InvalidInputError(result.error or f"{path}: cannot read image")
    return result.pixels


def _resize_row(row: np.ndarray, geometry: Geometry | None) -> np.ndarray:
    from PIL import Image

    assert geometry is not None
    return np.asarray(geometry.apply(Image.fromarray(row)))


class StreamedImages:
    """Image files (or the rows of a uint8 array to resize) that behave as a read-only
    uint8 NHWC array at ``size`` (see the module docstring)."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: Sequence[Any] | np.ndarray, size: tuple[int, int],
                 geometry: Geometry | None,
                 reader: Callable[[Any, Geometry | None], np.ndarray] = _read_file) -> None:
        self._paths = paths if isinstance(paths, np.ndarray) else tuple(paths)
        self._geometry = geometry
        self._reader = reader
        self.shape = (len(self._paths), size[0], size[1], 3)
        self._pool: ThreadPoolExecutor | None = None
        self._ahead_pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[tuple[int, int], Future] | None = None

    def __len__(self) -> int:
        return len(self._paths)

    @property
    def nbytes(self) -> int:
        """What the whole set would take decoded (never held at once)."""
        return int(np.prod(self.shape))

    def setflags(self, **_: Any) -> None:
        """Read-only already (an array's ``setflags(write=False)`` is accepted)."""

    def _decode(self, paths: Sequence[Any] | np.ndarray) -> np.ndarray:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max(1, min(_WORKERS, os.cpu_count() or 1)))
        out = np.empty((len(paths), *self.shape[1:]), dtype=np.uint8)
        for i, pixels in enumerate(self._pool.map(lambda p: self._reader(p, self._geometry),
                                                  paths)):
            if pixels.shape != out.shape[1:]:
                raise InvalidInputError(
                    f"{paths[i]}: image changed while being read (now "
                    f"{pixels.shape[1]}×{pixels.shape[0]})")
            out[i] = pixels
        return out

    def _batch(self, start: int, stop: int) -> np.ndarray:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == (start, stop):
            batch = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            batch = self._decode(self._paths[start:stop])
        following = (stop, min(len(self), stop + (stop - start)))
        if stop - start and following[0] < following[1]:
            if self._ahead_pool is None:
                self._ahead_pool = ThreadPoolExecutor(1)
            future = self._ahead_pool.submit(self._decode, self._paths[slice(*following)])
            self._ahead = (following, future)
        return batch

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int | np.integer):
            return self._decode([self._paths[int(key)]])[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._batch(start, max(start, stop))
            return self._decode(self._paths[key])
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.reshape(-1)
        items = (self._paths[index] if isinstance(self._paths, np.ndarray)
                 else [self._paths[int(i)] for i in index])
        return StreamedImages(items, self.shape[1:3], self._geometry, self._reader)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._decode(self._paths)
        return out if dtype is None else out.astype(dtype, copy=False)

    @classmethod
    def resized(cls, images: np.ndarray, geometry: Geometry) -> StreamedImages:
        """The rows of a uint8 NHWC array through ``geometry``, batch by batch."""
        return cls(images, geometry.size, geometry, _resize_row)

    def close(self) -> None:
        """Stop the decoding threads (they also end with the process)."""
        for pool in (self._pool, self._ahead_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._ahead_pool = None
