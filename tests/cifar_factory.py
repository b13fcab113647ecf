"""CIFAR-10 files in the exact official layouts, written small, for the data tests.

Binary records, Python 2 style pickles and both archives with their official member paths,
plus image folders; and the `data` command run the way the tests read it.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from resnet8_onnx.data import CLASS_NAMES

META_TXT = "".join(f"{name}\n" for name in CLASS_NAMES).encode()


# ------------------------------------------------------------------------------ generators
def make_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    return images, labels


def binary_records(images: np.ndarray, labels: np.ndarray) -> bytes:
    """One record per image: label byte, then the R, G and B planes, each 32×32 row-major."""
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        out.append(int(label))
        for channel in range(3):
            out += image[:, :, channel].tobytes()
    return bytes(out)


class Py2Pickler(pickle._Pickler):
    """Writes protocol-2 pickles the way Python 2's cPickle wrote the official batches.

    Python 2 ``str`` (keys, file names, class names, dtype codes) were byte strings, pickled
    as BINSTRING; numpy arrays reference ``numpy.core.multiarray._reconstruct``.
    """

    dispatch = pickle._Pickler.dispatch.copy()
    NAMES: ClassVar[dict] = {np.ndarray: ("numpy", "ndarray"), np.dtype: ("numpy", "dtype")}

    def save_py2_string(self, obj: bytes | str) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct":
            module, qualname = "numpy.core.multiarray", "_reconstruct"
        elif obj in self.NAMES:
            module, qualname = self.NAMES[obj]
        else:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def python_batch(
    images: np.ndarray, labels: np.ndarray, label: str = "testing batch 1 of 1"
) -> bytes:
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy()
    return py2_pickle(
        {
            b"batch_label": label.encode(),
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(images))],
        }
    )


def python_meta() -> bytes:
    return py2_pickle(
        {
            b"num_cases_per_batch": 10000,
            b"label_names": [n.encode() for n in CLASS_NAMES],
            b"num_vis": 3072,
        }
    )


def layout_files(fmt: str, test: tuple, train: list | None = None) -> dict[str, bytes]:
    """Official file names → bytes for the binary or python layout."""
    files: dict[str, bytes] = {}
    if fmt == "binary":
        files["test_batch.bin"] = binary_records(*test)
        for i, batch in enumerate(train or [], start=1):
            files[f"data_batch_{i}.bin"] = binary_records(*batch)
        files["batches.meta.txt"] = META_TXT
    else:
        files["test_batch"] = python_batch(*test)
        for i, batch in enumerate(train or [], start=1):
            files[f"data_batch_{i}"] = python_batch(*batch, label=f"training batch {i} of 5")
        files["batches.meta"] = python_meta()
    return files


def write_dir(root: Path, fmt: str, files: dict[str, bytes]) -> Path:
    directory = root / ("cifar-10-batches-bin" if fmt == "binary" else "cifar-10-batches-py")
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


def write_tar(path: Path, fmt: str, files: dict[str, bytes]) -> Path:
    top = "cifar-10-batches-bin" if fmt == "binary" else "cifar-10-batches-py"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(top)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for name, data in [*files.items(), ("readme.html", b"<html></html>")]:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_layout(root: Path, kind: str, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    fmt = kind.split("-")[0]
    if kind.endswith("-dir"):
        return write_dir(root, fmt, files)
    name = "cifar-10-binary.tar.gz" if fmt == "binary" else "cifar-10-python.tar.gz"
    return write_tar(root / name, fmt, files)


def write_png_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str],
                     fmt: str = "PNG") -> Path:
    from PIL import Image

    for image, label, name in zip(images, labels, names, strict=True):
        folder = root / CLASS_NAMES[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if fmt == "PNG" else ".jpg"
        Image.fromarray(image).save(folder / f"{name}{suffix}", format=fmt)
    return root


KINDS = ["binary-dir", "python-dir", "binary-tar", "python-tar"]



def data_json(capsys, data_dir: Path) -> tuple[int, dict, str]:
    import json

    from resnet8_onnx.cli import main

    code = main(["-q", "data", "--data-dir", str(data_dir), "--offline", "--json", "-"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else {}, err



def data_cli(capsys, directory: Path) -> list[str]:
    from resnet8_onnx.cli import main

    assert main(["-q", "data", "--data-dir", str(directory)]) == 0
    return capsys.readouterr().out.splitlines()
