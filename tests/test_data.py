"""data: every CIFAR-10 layout, byte-exact to the official formats, plus bad and hostile files.

The fixtures write small files in the exact official layouts (binary records, Python 2 style
pickles, both tarballs with their official member paths); the real-data tests read the
official test batch and the MLPerf Tiny files from ../shared.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import struct
import tarfile
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared_path
from resnet8_onnx.data import (
    CLASS_NAMES,
    SUBSETS,
    Dataset,
    DataSource,
    load_dataset,
    load_indices,
    parse_binary_records,
    restricted_loads,
)
from resnet8_onnx.errors import (
    InputNotFoundError,
    InvalidInputError,
    UnsafeInputError,
    UsageError,
)

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


# ------------------------------------------------------------------------------ binary parser
def test_binary_record_layout_is_label_then_rgb_planes() -> None:
    # Distinct bytes everywhere so a wrong plane or row order cannot pass.
    record = bytearray([7])
    record += bytes((ch * 101 + r * 7 + c * 3) % 256 for ch in range(3) for r in range(32)
                    for c in range(32))
    images, labels = parse_binary_records(bytes(record) * 2, name="x.bin")
    assert images.shape == (2, 32, 32, 3)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert labels.tolist() == [7, 7]
    for r, c, ch in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (31, 31, 2), (5, 17, 1), (12, 3, 2)]:
        assert images[1, r, c, ch] == record[1 + ch * 1024 + r * 32 + c]


def test_binary_roundtrip_of_generated_records() -> None:
    images, labels = make_images(23)
    got_images, got_labels = parse_binary_records(binary_records(images, labels), name="t")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize(
    ("size", "fragment"),
    [(0, "empty file"), (3072, "3,072 bytes is not a multiple of 3,073-byte records"),
     (3 * 3073 + 5, "truncated: 9,224 bytes")],
)
def test_binary_wrong_sizes(size: int, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment) as info:
        parse_binary_records(bytes(size), name="test_batch.bin")
    assert str(info.value).startswith("test_batch.bin: ")


def test_binary_label_out_of_range_names_the_record() -> None:
    images, labels = make_images(20)
    labels[17] = 12
    with pytest.raises(InvalidInputError, match=r"label 12 out of range 0–9 at record 17"):
        parse_binary_records(binary_records(images, labels), name="test_batch.bin")


def _outcome(fn, *args, **kwargs) -> tuple[str | None, object]:
    """(error message, None) for a tool error, (None, result) otherwise; anything else raises."""
    try:
        return None, fn(*args, **kwargs)
    except (InvalidInputError, UnsafeInputError) as exc:
        return str(exc), None


_records = st.integers(1, 3).flatmap(lambda k: st.binary(min_size=k * 3073, max_size=k * 3073))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=7000), _records))
def test_binary_parser_only_raises_invalid_input(data: bytes) -> None:
    message, result = _outcome(parse_binary_records, data, name="fuzz.bin")
    if message is not None:
        assert message.startswith("fuzz.bin: ")
        assert "\n" not in message
        return
    images, labels = result
    assert len(data) % 3073 == 0
    assert images.shape == (len(data) // 3073, 32, 32, 3)
    assert labels.min() >= 0
    assert labels.max() <= 9


# ------------------------------------------------------------------------------ safe unpickler
def test_restricted_loads_reads_python2_batches() -> None:
    images, labels = make_images(5)
    raw = python_batch(images, labels)
    assert b"numpy.core.multiarray\n_reconstruct" in raw  # written as Python 2 wrote it
    obj = restricted_loads(raw, name="test_batch")
    assert set(obj) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert obj[b"labels"] == labels.tolist()
    assert obj[b"data"].dtype == np.uint8
    assert obj[b"data"].shape == (5, 3072)


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [_System, _Exec])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, payload, protocol) -> None:
    marker = tmp_path / "marker"
    evil = pickle.dumps({"data": payload(marker), "labels": [0]}, protocol=protocol)
    with pytest.raises(UnsafeInputError) as info:
        restricted_loads(evil, name="test_batch")
    message = str(info.value)
    assert message.startswith("test_batch: refused pickled global ")
    assert ("system" in message) if payload is _System else ("exec" in message)
    assert not marker.exists()


def test_hostile_test_batch_in_a_python_dir_is_refused(tmp_path) -> None:
    marker = tmp_path / "marker"
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    (directory / "test_batch").write_bytes(pickle.dumps(_System(marker), protocol=2))
    with pytest.raises(UnsafeInputError, match="test_batch: refused pickled global"):
        load_dataset(directory)
    assert not marker.exists()


def test_numpy_globals_outside_the_allow_list_are_refused() -> None:
    payload = b"\x80\x02cnumpy\nload\nq\x00."
    with pytest.raises(UnsafeInputError, match=r"numpy\.load"):
        restricted_loads(payload, name="b")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), st.binary(max_size=512).map(lambda b: b"\x80\x02" + b)))
def test_restricted_loads_random_bytes_only_raise_tool_errors(data: bytes) -> None:
    message, _ = _outcome(restricted_loads, data, name="fuzz")
    if message is not None:
        assert message.startswith("fuzz: ")
        assert "\n" not in message


_VALID = python_batch(*make_images(2, seed=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(_VALID)))
def test_restricted_loads_mutated_batches_only_raise_tool_errors(flips, cut) -> None:
    data = bytearray(_VALID)
    for pos, value in flips:
        data[pos] = value
    message, _ = _outcome(restricted_loads, bytes(data[:cut]), name="fuzz")
    assert message is None or message.startswith("fuzz: ")


# ------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("kind", KINDS)
def test_every_layout_loads_the_same_images(tmp_path, kind) -> None:
    images, labels = make_images(30)
    fmt = kind.split("-")[0]
    write_layout(tmp_path / "data", kind, layout_files(fmt, (images, labels)))
    data = load_dataset(tmp_path / "data")
    assert data.source.kind == kind
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert data.class_names == CLASS_NAMES
    np.testing.assert_array_equal(data.indices, np.arange(30))
    # Official names, different bytes: loaded, but never called official.
    assert data.source.official is False
    assert not data.is_full_official_test_set
    batch = "test_batch.bin" if fmt == "binary" else "test_batch"
    assert any(w.startswith(f"{batch}: not the official file") for w in data.source.warnings)
    assert any("holds 30 images" in w for w in data.source.warnings)
    # The mismatch is a warning with both digests, never a "verified" check line.
    assert any(f"{batch}: not the official file (md5 differs): md5 " in w and ", official " in w
               for w in data.source.warnings)
    assert not any(c.startswith(f"{batch}: md5 ") for c in data.source.checks)
    described = data.describe()
    assert described["count"] == 30
    assert described["per_class"] == {n: 3 for n in CLASS_NAMES}
    assert described["full_official_test_set"] is False


@pytest.mark.parametrize("kind", KINDS)
def test_pointing_straight_at_a_layout(tmp_path, kind) -> None:
    images, labels = make_images(10)
    target = write_layout(tmp_path, kind, layout_files(kind.split("-")[0], (images, labels)))
    data = load_dataset(target)
    assert data.source.kind == kind
    assert data.source.path == str(target)
    np.testing.assert_array_equal(data.images, images)


def test_tarball_with_any_name_is_recognised_by_its_members(tmp_path) -> None:
    images, labels = make_images(10)
    path = write_tar(tmp_path / "my-copy.tgz", "python", layout_files("python", (images, labels)))
    data = load_dataset(path)
    assert data.source.kind == "python-tar"
    assert any("not an official archive name" in c for c in data.source.checks)
    np.testing.assert_array_equal(data.labels, labels)


def test_search_finds_layouts_two_levels_down_but_not_three(tmp_path) -> None:
    images, labels = make_images(10)
    write_layout(tmp_path / "a" / "b", "binary-dir", layout_files("binary", (images, labels)))
    assert load_dataset(tmp_path).source.kind == "binary-dir"
    deep = tmp_path / "deep"
    write_layout(deep / "a" / "b" / "c", "binary-dir", layout_files("binary", (images, labels)))
    with pytest.raises(InputNotFoundError):
        load_dataset(deep)


def test_preference_binary_dir_python_dir_binary_tar_python_tar(tmp_path) -> None:
    images, labels = make_images(10)
    order = ["python-tar", "binary-tar", "python-dir", "binary-dir"]
    for i, kind in enumerate(order):
        write_layout(tmp_path / f"s{i}", kind, layout_files(kind.split("-")[0], (images, labels)))
        assert load_dataset(tmp_path).source.kind == kind


def test_data_dir_from_environment(tmp_path, monkeypatch) -> None:
    images, labels = make_images(10)
    target = write_layout(tmp_path, "binary-dir", layout_files("binary", (images, labels)))
    monkeypatch.setenv("RESNET8_ONNX_DATA_DIR", str(target))
    assert load_dataset().source.path == str(target)


def test_train_split_concatenates_five_batches(tmp_path) -> None:
    test = make_images(10)
    train = [make_images(12, seed=s) for s in range(1, 6)]
    for kind in ("binary-dir", "python-tar"):
        fmt = kind.split("-")[0]
        write_layout(tmp_path / kind, kind, layout_files(fmt, test, train))
        data = load_dataset(tmp_path / kind, split="train")
        assert data.split == "train"
        assert len(data) == 60
        assert data.indices is None
        np.testing.assert_array_equal(data.images[12:24], train[1][0])
        np.testing.assert_array_equal(data.labels, np.concatenate([b[1] for b in train]))


def test_missing_train_batches(tmp_path) -> None:
    write_layout(tmp_path, "binary-dir", layout_files("binary", make_images(10)))
    with pytest.raises(InputNotFoundError, match=r"data_batch_1\.bin: missing"):
        load_dataset(tmp_path, split="train")


def test_full_size_unbalanced_test_batch_is_rejected(tmp_path) -> None:
    labels = np.repeat(np.arange(10), 1000)
    labels[:3] = 9  # airplane 997, truck 1,003
    records = np.zeros((10_000, 3073), np.uint8)
    records[:, 0] = labels
    directory = tmp_path / "cifar-10-batches-bin"
    directory.mkdir()
    (directory / "test_batch.bin").write_bytes(records.tobytes())
    with pytest.raises(InvalidInputError,
                       match="expected 1,000 images per class in the test set, got airplane 997, "
                             "truck 1,003"):
        load_dataset(directory)


def test_full_size_balanced_but_modified_test_batch_is_not_official(tmp_path) -> None:
    rng = np.random.default_rng(0)
    records = np.zeros((10_000, 3073), np.uint8)
    records[:, 0] = rng.permutation(np.repeat(np.arange(10), 1000))
    directory = tmp_path / "cifar-10-batches-bin"
    directory.mkdir()
    (directory / "test_batch.bin").write_bytes(records.tobytes())
    data = load_dataset(directory)
    assert len(data) == 10_000
    assert data.source.official is False
    assert data.is_full_official_test_set is False
    assert any("1,000 per class" in c for c in data.source.checks)
    assert data.describe()["full_official_test_set"] is False


@pytest.mark.parametrize("kind", ["binary-dir", "binary-tar"])
def test_truncated_binary_batch(tmp_path, kind) -> None:
    files = layout_files("binary", make_images(10))
    files["test_batch.bin"] = files["test_batch.bin"][:-100]
    target = write_layout(tmp_path, kind, files)
    fragment = r"test_batch\.bin: truncated: 30,630 bytes"
    with pytest.raises(InvalidInputError, match=fragment) as info:
        load_dataset(target)
    assert str(target) in str(info.value)


def test_wrong_class_names_in_meta(tmp_path) -> None:
    files = layout_files("binary", make_images(10))
    files["batches.meta.txt"] = b"apple\nbanana\n"
    with pytest.raises(InvalidInputError, match="are not the CIFAR-10 classes"):
        load_dataset(write_layout(tmp_path, "binary-dir", files))


@pytest.mark.parametrize(
    ("batch", "fragment"),
    [
        ({b"labels": [0]}, "batch has no 'data' field"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "batch has no 'labels' field"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
         r"'data' must be a uint8 array \(N, 3072\), got float32"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"got uint8 \(2, 100\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
         "label 10 out of range 0–9 at record 1"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [b"x"]}, "list of integers"),
        ([1, 2, 3], "expected a dict of batch fields, unpickled a list"),
    ],
)
def test_malformed_python_batches(tmp_path, batch, fragment) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    (directory / "test_batch").write_bytes(py2_pickle(batch))
    with pytest.raises(InvalidInputError, match=fragment):
        load_dataset(directory)


def test_truncated_tarball(tmp_path) -> None:
    path = write_tar(tmp_path / "cifar-10-binary.tar.gz", "binary",
                     layout_files("binary", make_images(300)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InvalidInputError, match="not a readable tar archive"):
        load_dataset(path)


def test_tarball_without_the_member(tmp_path) -> None:
    files = layout_files("python", make_images(5))
    del files["test_batch"]
    path = write_tar(tmp_path / "cifar-10-python.tar.gz", "python", files)
    with pytest.raises(InvalidInputError, match="has no member cifar-10-batches-py/test_batch"):
        load_dataset(path)


def test_tarball_member_that_is_a_link_is_refused(tmp_path) -> None:
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        load_dataset(path)


def test_unrelated_file_or_archive(tmp_path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(InvalidInputError, match="not a CIFAR-10 source"):
        load_dataset(other)
    archive = tmp_path / "other.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("x/y")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidInputError, match="holds neither cifar-10-batches-bin/"):
        load_dataset(archive)


def test_nothing_found_offline_is_one_line_with_a_hint(tmp_path) -> None:
    with pytest.raises(InputNotFoundError) as info:
        load_dataset(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "CIFAR-10 test set" in message
    assert "--data-dir DIR" in message
    assert "RESNET8_ONNX_DATA_DIR" in message


def test_missing_data_dir(tmp_path) -> None:
    with pytest.raises(InputNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nope")


@pytest.mark.parametrize(
    "kwargs",
    [{"split": "valid"}, {"subset": "half"}, {"split": "train", "subset": "perf"},
     {"indices_file": "x.npy"}],
)
def test_usage_errors(tmp_path, kwargs) -> None:
    with pytest.raises(UsageError):
        load_dataset(tmp_path, **kwargs)


# ------------------------------------------------------------------------------ image folder
def test_image_folder_with_index_names(tmp_path) -> None:
    images, labels = make_images(12)
    idx = np.array([9000, 5, 77, 1234, 3, 600, 42, 8, 9999, 100, 2500, 31])
    write_png_folder(tmp_path / "pngs", images, labels, [f"{i:05d}" for i in idx])
    data = load_dataset(tmp_path / "pngs")
    order = np.argsort(idx)
    assert data.source.kind == "image-folder"
    assert data.source.official is False
    np.testing.assert_array_equal(data.indices, idx[order])
    np.testing.assert_array_equal(data.images, images[order])
    np.testing.assert_array_equal(data.labels, labels[order])
    picked = data.select(np.array([77, 9999, 3]), "mine")
    np.testing.assert_array_equal(picked.images, images[[2, 8, 4]])


def test_image_folder_with_other_names_sorts_by_class_then_name(tmp_path) -> None:
    images, labels = make_images(10)
    names = ["zeta", "alpha", "mid", "b2", "b10", "q", "r", "s", "t", "u"]
    write_png_folder(tmp_path, images, labels, names)
    data = load_dataset(tmp_path)
    assert data.indices is None
    expected = sorted(range(10), key=lambda i: (labels[i], f"{names[i]}.png"))
    np.testing.assert_array_equal(data.images, images[expected])
    with pytest.raises(InvalidInputError, match="carry no test-set index"):
        data.select(np.array([1]), "perf")


def test_image_folder_jpeg_warns(tmp_path) -> None:
    images, labels = make_images(3)
    write_png_folder(tmp_path, images, labels, ["1", "2", "3"], fmt="JPEG")
    data = load_dataset(tmp_path)
    assert any("JPEG (lossy)" in w for w in data.source.warnings)


def test_image_folder_wrong_size_names_the_file(tmp_path) -> None:
    from PIL import Image

    (tmp_path / "cat").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "cat" / "1.png")
    Image.new("RGB", (64, 32)).save(tmp_path / "cat" / "2.png")
    with pytest.raises(InvalidInputError, match=r"cat/2\.png: image is 64×32, expected 32×32"):
        load_dataset(tmp_path)


def test_image_folder_unknown_class_directory(tmp_path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "unicorn").mkdir()
    with pytest.raises(InvalidInputError, match="unicorn: not a CIFAR-10 class name"):
        load_dataset(tmp_path)


def test_image_folder_corrupt_png(tmp_path) -> None:
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InvalidInputError, match=r"dog/1\.png: cannot read image"):
        load_dataset(tmp_path)


def _data_json(capsys, data_dir: Path) -> tuple[int, dict, str]:
    import json

    from resnet8_onnx.cli import main

    code = main(["-q", "data", "--data-dir", str(data_dir), "--offline", "--json", "-"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else {}, err


@pytest.mark.parametrize("depth", [1, 2])
def test_cli_finds_an_image_folder_inside_the_data_dir(tmp_path, capsys, depth) -> None:
    """--data-dir NEST where NEST/imgs/<class>/*.png (or one level deeper), as the README's
    "up to two levels deep" promises; no download is tried."""
    images, labels = make_images(20)
    nest = tmp_path / "nest"
    folder = nest / "x" / "imgs" if depth == 2 else nest / "imgs"
    write_png_folder(folder, images, labels, [f"{i:05d}" for i in range(20)])
    code, record, err = _data_json(capsys, nest)
    assert code == 0, err
    assert record["source"]["kind"] == "image-folder"
    assert record["source"]["path"] == str(folder)
    assert record["count"] == 20
    assert record["source"]["notes"] == []  # the only candidate: nothing to explain
    assert err == ""


def test_cli_official_layout_beats_image_folders_and_says_so(tmp_path, capsys) -> None:
    images, labels = make_images(30)
    write_layout(tmp_path / "root" / "cifar-10", "binary-dir",
                 layout_files("binary", (images, labels)))
    write_png_folder(tmp_path / "root" / "a-pngs", images[:10], labels[:10],
                     [f"{i:05d}" for i in range(10)])
    code, record, err = _data_json(capsys, tmp_path / "root")
    assert code == 0, err
    assert record["source"]["kind"] == "binary-dir"
    (note,) = record["source"]["notes"]
    assert "using cifar-10/cifar-10-batches-bin (official layouts come first)" in note
    assert "not a-pngs" in note
    assert err.strip() == f"resnet8-onnx: note: {note}"


def test_cli_several_image_folders_first_by_name_and_says_so(tmp_path, capsys) -> None:
    images, labels = make_images(20)
    for name, n in (("b", 20), ("a", 10)):
        write_png_folder(tmp_path / "root" / name, images[:n], labels[:n],
                         [f"{i:05d}" for i in range(n)])
    code, record, _ = _data_json(capsys, tmp_path / "root")
    assert code == 0
    assert record["source"]["path"] == str(tmp_path / "root" / "a")
    assert record["count"] == 10
    assert "using a (the first image folder by name), not b" in record["source"]["notes"][0]


def _class_sorted_folder(root: Path, stems: list[str]) -> Path:
    """Two images per class, written class by class (as a folder sorted by class lists them)."""
    images, _ = make_images(20)
    labels = np.repeat(np.arange(10), 2)
    return write_png_folder(root, images, labels, stems)


@pytest.mark.parametrize(("stems", "split"), [
    ([f"train-{i:05d}" for i in range(20)], "train"),
    ([f"img{i}" for i in range(20)], "unknown"),
    ([f"{i:05d}" for i in range(20)], "test"),
])
def test_cli_image_folder_is_reported_as_what_it_is(tmp_path, capsys, stems, split) -> None:
    """train-NNNNN files are training images, numeric stems test images, anything else of
    unknown split: never "CIFAR-10 test" just because --split defaults to test."""
    from resnet8_onnx.cli import main

    folder = _class_sorted_folder(tmp_path / "pngs", stems)
    code, record, err = _data_json(capsys, folder)
    assert code == 0, err
    assert record["split"] == split
    assert main(["-q", "data", "--data-dir", str(folder)]) == 0
    headline = " ".join(capsys.readouterr().out.split("source:")[0].split())
    assert "image folder pngs: 20 images" in headline
    words = {"train": "training images", "unknown": "images of unknown split",
             "test": "test images"}
    assert f"CIFAR-10 {words[split]}" in headline
    if split != "test":
        assert "CIFAR-10 test" not in headline
        assert "test set" in headline.split("—")[1]  # "not the (official) test set"


def test_cli_split_train_on_an_image_folder_says_training(tmp_path, capsys) -> None:
    from resnet8_onnx.cli import main

    folder = _class_sorted_folder(tmp_path / "pngs", [f"img{i}" for i in range(20)])
    assert main(["-q", "data", "--data-dir", str(folder), "--split", "train"]) == 0
    headline = " ".join(capsys.readouterr().out.split("source:")[0].split())
    assert headline.startswith("CIFAR-10 training images, image folder pngs")
    assert "official test set" not in headline


def test_cli_limit_is_class_balanced_on_a_class_sorted_folder(tmp_path, capsys) -> None:
    """--limit 10 on a folder listed class by class: one image of each class, not ten
    airplanes; the same rule on an official layout; the default (no --limit) unchanged."""
    import json

    from resnet8_onnx.cli import main

    folder = _class_sorted_folder(tmp_path / "pngs", [f"train-{i:05d}" for i in range(20)])
    images, labels = make_images(40)
    labels = np.array([0] * 20 + list(range(10)) * 2, np.int64)  # the first 20 all airplanes
    layout = write_layout(tmp_path / "bin", "binary-dir",
                          layout_files("binary", (images, labels)))
    # one round over the ten classes, then the eleventh image opens the next round
    expected = {name: 2 if name == "airplane" else 1 for name in CLASS_NAMES}
    for source in (folder, layout):
        assert main(["-q", "data", "--data-dir", str(source), "--limit", "11",
                     "--json", "-"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert record["count"] == 11
        assert record["subset"] == "balanced-11 of full"
        assert record["limit"] == 11
        assert record["per_class"] == expected
    assert main(["-q", "data", "--data-dir", str(layout), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["per_class"]["airplane"] == 22


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
    if n >= len(labels):
        assert limited is data
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
    assert data.with_limit(100) is data
    with pytest.raises(UsageError):
        data.with_limit(0)


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


# ------------------------------------------------------------------------------ indices
def test_load_indices_checks_structure(tmp_path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.array([5, 1, 9999], dtype=np.int32))
    out = load_indices(good)
    assert out.dtype == np.int64
    assert out.tolist() == [5, 1, 9999]
    cases = {
        "2d.npy": (np.zeros((2, 2), np.int64), "expected a 1-D integer array"),
        "float.npy": (np.array([1.0, 2.0]), "expected a 1-D integer array"),
        "dup.npy": (np.array([3, 4, 3]), "index 3 appears more than once"),
        "range.npy": (np.array([1, 10000]), "index 10000 out of range"),
        "neg.npy": (np.array([-1, 2]), "index -1 out of range"),
        "empty.npy": (np.array([], np.int64), "holds no indices"),
        "obj.npy": (np.array([{"a": 1}], dtype=object), "not a plain .npy array"),
    }
    for name, (arr, fragment) in cases.items():
        path = tmp_path / name
        np.save(path, arr, allow_pickle=True)
        with pytest.raises(InvalidInputError, match=fragment):
            load_indices(path)
    with pytest.raises(InputNotFoundError):
        load_indices(tmp_path / "missing.npy")


def test_perf_subset_with_an_unofficial_indices_file_warns(tmp_path) -> None:
    images, labels = make_images(50)
    write_layout(tmp_path, "binary-dir", layout_files("binary", (images, labels)))
    np.save(tmp_path / "perf_samples_idxs.npy", np.array([40, 2, 17], np.int64))
    data = load_dataset(tmp_path, subset="perf")
    np.testing.assert_array_equal(data.labels, labels[[40, 2, 17]])
    assert data.subset == "indices"  # only the official file makes "the perf subset"
    assert any("perf_samples_idxs.npy: differs from the official" in w
               for w in data.source.warnings)
    assert data.describe()["indices_sha256"] == sha256_of(tmp_path / "perf_samples_idxs.npy")


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["my.npy", "perf_samples_idxs.npy"])
def test_cli_custom_indices_are_not_called_the_perf_subset(tmp_path, capsys, name) -> None:
    """--subset perf --indices FILE: a file that is not the official one (whatever its name)
    is reported as the images it selects, named by the file and its sha256, in the headline
    and the JSON; indices_sha256 is the file's sha256, the one the checks print."""
    import json

    from resnet8_onnx.cli import main

    images, labels = make_images(60)
    data = write_layout(tmp_path, "binary-dir", layout_files("binary", (images, labels)))
    indices = tmp_path / "idx" / name
    indices.parent.mkdir()
    np.save(indices, np.array([41, 3, 17, 9], np.int64))
    digest = sha256_of(indices)
    argv = ["-q", "data", "--data-dir", str(data), "--subset", "perf", "--indices", str(indices)]
    assert main([*argv, "--json", "-"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["subset"] == "indices"
    assert record["count"] == 4
    assert record["indices_file"] == str(indices)
    assert record["indices_sha256"] == digest
    # A file under the official name whose checksum differs is a warning, never "verified:";
    # a file of another name is simply a selection of its own, named with its sha256.
    where = "warnings" if name == "perf_samples_idxs.npy" else "checks"
    assert any(digest in c for c in record["source"][where])
    assert main(argv) == 0
    headline = " ".join(capsys.readouterr().out.split("source:")[0].split())  # unwrapped
    assert "MLPerf" not in headline
    assert "perf subset" not in headline
    assert f"selected by {name} (sha256 {digest[:12]}" in headline


def test_perf_subset_without_indices_offline(tmp_path) -> None:
    write_layout(tmp_path, "binary-dir", layout_files("binary", make_images(10)))
    with pytest.raises(InputNotFoundError, match=r"idxs\.npy not found.*--indices FILE"):
        load_dataset(tmp_path, subset="perf")


# ------------------------------------------------------------------------------ real data
@pytest.mark.shared
def test_real_official_test_batch() -> None:
    directory = shared_path("cifar-10", "cifar-10-batches-bin")
    start = time.perf_counter()
    data = load_dataset(directory)
    seconds = time.perf_counter() - start
    assert seconds < 2.0, f"reading the 30 MB test batch took {seconds:.2f} s"
    assert len(data) == 10_000
    assert data.source.official is True
    assert data.source.warnings == ()
    assert "test_batch.bin: md5 803d5f7f4d78ea53de84dbe85f74fb6d (official)" in data.source.checks
    assert data.per_class == {name: 1000 for name in CLASS_NAMES}
    assert data.is_full_official_test_set
    assert data.describe()["full_official_test_set"] is True
    assert not data.with_limit(100).is_full_official_test_set


@pytest.mark.shared
def test_real_shared_root_is_searched() -> None:
    data = load_dataset(shared_path())
    assert data.source.kind == "binary-dir"
    assert data.source.path.endswith("cifar-10-batches-bin")
    # shared also holds two image folders: the official layout wins, and the note says so
    (note,) = data.source.notes
    assert "using cifar-10/cifar-10-batches-bin" in note
    assert "perf-png" in note
    assert "train-2000-png" in note


@pytest.mark.shared
def test_real_perf_subset_matches_mlperf_labels() -> None:
    indices_file = shared_path("mlperf-tiny", "perf_samples_idxs.npy")
    data = load_dataset(shared_path("cifar-10", "cifar-10-batches-bin"), subset="perf",
                        indices_file=indices_file)
    assert len(data) == 200
    assert data.per_class == {name: 20 for name in CLASS_NAMES}
    assert data.source.official is True
    assert not data.is_full_official_test_set
    with open(shared_path("mlperf-tiny", "ic01_y_labels.csv"), newline="") as f:
        expected = [int(row[2]) for row in csv.reader(f)]
    assert data.labels.tolist() == expected
    np.testing.assert_array_equal(data.indices, np.load(indices_file))


@pytest.mark.shared
def test_real_official_indices_under_any_name_are_the_perf_subset(tmp_path, capsys) -> None:
    """The official file is recognised by its checksum, not its name; the calibration indices
    (another MLCommons file, 500 images) are not the perf subset."""
    import json
    import shutil

    from resnet8_onnx.cli import main

    official = shared_path("mlperf-tiny", "perf_samples_idxs.npy")
    renamed = shutil.copyfile(official, tmp_path / "my.npy")
    calibration = shared_path("mlperf-tiny", "calibration_samples_idxs.npy")
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    for indices, subset, count in ((renamed, "perf", 200), (calibration, "indices", 500)):
        assert main(["-q", "data", "--data-dir", str(data), "--subset", "perf", "--indices",
                     str(indices), "--json", "-"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert (record["subset"], record["count"]) == (subset, count)
        assert record["indices_sha256"] == sha256_of(Path(indices))


@pytest.mark.shared
def test_real_training_image_folder_is_reported_as_training_images() -> None:
    from resnet8_onnx.report import describe_data

    data = load_dataset(shared_path("cifar-10", "train-2000-png"))
    assert data.split == "train"
    assert describe_data(data.describe()) == (
        "CIFAR-10 training images, image folder train-2000-png: 2,000 images — not the test set")
    limited = data.with_limit(100)
    assert limited.per_class == {name: 10 for name in CLASS_NAMES}
    assert describe_data(limited.describe()) == (
        "CIFAR-10 training images, image folder train-2000-png, 100 of 2,000 images, the first "
        "10 of each class — NOT the whole folder")


@pytest.mark.shared
def test_real_perf_png_is_pixel_identical_to_the_binary_batch() -> None:
    full = load_dataset(shared_path("cifar-10", "cifar-10-batches-bin"))
    folder = load_dataset(shared_path("cifar-10", "perf-png"))
    assert folder.source.kind == "image-folder"
    assert len(folder) == 200
    assert folder.indices is not None
    np.testing.assert_array_equal(folder.images, full.images[folder.indices])
    np.testing.assert_array_equal(folder.labels, full.labels[folder.indices])
    perf = folder.select(np.load(shared_path("mlperf-tiny", "perf_samples_idxs.npy")), "perf")
    assert perf.per_class == {name: 20 for name in CLASS_NAMES}


# ------------------------------------------------------------------------------ the `data` command
def _data_cli(capsys, directory: Path) -> list[str]:
    from resnet8_onnx.cli import main

    assert main(["-q", "data", "--data-dir", str(directory)]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("kind", ["binary-dir", "binary-tar"])
def test_data_command_never_lists_a_checksum_mismatch_as_verified(tmp_path, kind,
                                                                  capsys) -> None:
    write_layout(tmp_path / "data", kind, layout_files("binary", make_images(30)))
    lines = _data_cli(capsys, tmp_path / "data")
    verified = [line for line in lines if line.strip().startswith("verified:")]
    warned = " ".join(line.strip() for line in lines if not line.strip().startswith("verified:"))
    assert verified
    assert not any("official is" in line or "differs" in line for line in verified), verified
    assert "test_batch.bin: not the official file (md5 differs)" in warned
    if kind == "binary-tar":
        assert "differs from the official archive's" in warned


def test_image_folder_warns_of_grayscale_images_and_counts_in_the_singular(tmp_path,
                                                                           capsys) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "cat/0.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(root / "dog/1.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    text = " ".join(" ".join(_data_cli(capsys, root)).split())
    assert "warning: folder: 1 image is grayscale, converted to RGB" in text
    assert "ignored 1 non-image file (e.g. notes.txt)" in text

    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(root / "cat/2.png")
    (root / "cat" / "more.txt").write_text("not an image either")
    text = " ".join(" ".join(_data_cli(capsys, root)).split())
    assert "2 images are grayscale" in text
    assert "ignored 2 non-image files" in text
    gray = load_dataset(root).images
    assert (gray[..., 0] == gray[..., 1]).all(axis=(1, 2)).sum() == 2  # R = G = B
