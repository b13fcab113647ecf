"""Inputs and outputs of an ONNX model saved for replay, in the ONNX Model Zoo layout.

``DIR/test_data_set_<i>/input_0.pb`` holds one input exactly as fed to the model (after
preprocessing, in the model's dtype and layout) and ``output_0.pb`` the model's output for it,
both serialised ``onnx.TensorProto`` named after the graph's input and output, which is what
``onnx_test_runner``-style tools replay. Each set holds one batch of the model's batch size:
one image for a dynamic batch, ``B`` images for a fixed batch ``B`` (the last set padded by
repeating its last image, as evaluation does).

The directory is written beside its final place and renamed into it, so an interrupted write
leaves no half-filled test data.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resnet8_onnx.backends.base import HasSession, able
from resnet8_onnx.support.errors import (
    OutputError,
    OutputExistsError,
    UsageError,
    interrupts_deferred,
)
from resnet8_onnx.support.fsutil import check_output_dir, note_published

if TYPE_CHECKING:
    from resnet8_onnx.backends.base import Runner


def check_destination(directory: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse an unusable ``--save-test-data`` directory before any work."""
    target = Path(directory)
    if target.exists() and not force:
        raise OutputExistsError(target)
    return check_output_dir(target)


def save_test_data(runner: Runner, images: np.ndarray, directory: str | os.PathLike[str], *,
                   count: int = 3, force: bool = False) -> dict[str, Any]:
    """Write ``count`` images (uint8 NHWC) through ``runner``, which must declare the
    ``session`` ability (an ONNX Runtime runner): its ``prepare`` makes the inputs, its
    session the outputs."""
    from onnx import numpy_helper

    with_session = able(runner, HasSession)
    if with_session is None:
        raise UsageError("--save-test-data needs an ONNX model")
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    target = check_destination(directory, force=force)
    onnx = with_session.onnx_session()
    spec = runner.input_spec
    count = min(count, len(images))
    size = spec.fixed_batch or 1
    x_all = runner.prepare(images[:count])
    sets = []
    with interrupts_deferred():
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part",
                                        dir=target.parent))
    try:
        for i, start in enumerate(range(0, count, size)):
            x = x_all[start:start + size]
            if len(x) < size:
                x = np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
            x = np.ascontiguousarray(x, dtype=spec.dtype)
            y = onnx.run(x)
            folder = staging / f"test_data_set_{i}"
            folder.mkdir()
            (folder / "input_0.pb").write_bytes(
                numpy_helper.from_array(x, onnx.input_name).SerializeToString())
            (folder / "output_0.pb").write_bytes(
                numpy_helper.from_array(y, onnx.output_name).SerializeToString())
            sets.append({"name": folder.name, "images": min(size, count - start),
                         "input_shape": list(x.shape), "output_shape": list(y.shape)})
        with interrupts_deferred():
            if target.exists():  # --force: swap the old directory out, then remove it
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old",
                                            dir=target.parent))
                os.replace(target, old / target.name)
                os.replace(staging, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, target)
            note_published(target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write test data ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return {"directory": str(target), "images": count, "sets": sets,
            "input_name": onnx.input_name, "output_name": onnx.output_name,
            "input_dtype": spec.dtype}
