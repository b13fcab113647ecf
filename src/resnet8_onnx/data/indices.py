"""Selections of test-set images by a ``.npy`` file of indices (the MLPerf Tiny perf subset).

Only MLPerf Tiny's own file, recognised by its sha256 whatever it is called, selects "the perf
subset"; any other file's selection is named by that file. A file called
``perf_samples_idxs.npy`` with other bytes is loaded with a warning and marks the data set
unofficial (the policy in :mod:`.known_files`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from resnet8_onnx.data.format import PERF_INDICES, TEST_SET_SIZE
from resnet8_onnx.data.known_files import KNOWN_FILES, is_official_perf_indices
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, one_line
from resnet8_onnx.support.fsutil import file_digest


def _load_array(p: Path) -> np.ndarray:
    """The file's 1-D integer array of unique indices in 0–9999 (no pickles), as int64."""
    if not p.is_file():
        raise InputNotFoundError(f"{p}: indices file not found")
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise InvalidInputError(f"{p}: not a plain .npy array ({one_line(exc, 120)})") from None
    except (OSError, EOFError) as exc:
        raise InvalidInputError(f"{p}: cannot read .npy file ({one_line(exc, 120)})") from None
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise InvalidInputError(f"{p}: expected a .npy array, got a .npz archive")
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"{p}: expected a 1-D integer array, got {arr.dtype} {arr.shape}")
    if arr.size == 0:
        raise InvalidInputError(f"{p}: holds no indices")
    idx = arr.astype(np.int64)
    if int(idx.min()) < 0 or int(idx.max()) >= TEST_SET_SIZE:
        bad = idx[(idx < 0) | (idx >= TEST_SET_SIZE)][0]
        raise InvalidInputError(f"{p}: index {int(bad)} out of range 0–9999")
    uniq, counts = np.unique(idx, return_counts=True)
    if len(uniq) != len(idx):
        raise InvalidInputError(f"{p}: index {int(uniq[counts > 1][0])} appears more than once")
    return idx


def read_indices(
    path: str | os.PathLike[str],
) -> tuple[np.ndarray, list[str], list[str], str]:
    """Indices, checks, warnings and the file's sha256."""
    p = Path(path)
    idx = _load_array(p)
    checks = [f"{p.name}: {len(idx):,} unique indices in 0–9999"]
    warnings: list[str] = []
    digest = file_digest(p, "sha256")
    if is_official_perf_indices(digest):
        checks.append(f"{p.name}: sha256 {digest} (the official MLPerf Tiny perf indices)")
    elif p.name == PERF_INDICES:  # the official name, other bytes: it differs
        official = KNOWN_FILES[PERF_INDICES].sha256
        warnings.append(
            f"{p.name}: differs from the official MLPerf Tiny file (sha256 {digest}, "
            f"official {official}); the subset is not the official perf subset"
        )
    else:
        checks.append(f"{p.name}: sha256 {digest} (a selection of its own, not the MLPerf "
                      "Tiny perf indices)")
    return idx, checks, warnings, digest


def load_indices(path: str | os.PathLike[str]) -> np.ndarray:
    """Test-set indices from a .npy file (no pickles): 1-D, integer, unique, in 0–9999."""
    return read_indices(path)[0]
