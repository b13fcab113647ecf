"""data.sources: every official layout located, verified and read alike; the search's notes;
the `data` command. (What a path is and the search order: test_data_discover.py.)
"""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from cifar_factory import (
    KINDS,
    data_cli,
    data_json,
    layout_files,
    make_images,
    py2_pickle,
    write_layout,
    write_png_folder,
    write_tar,
)
from conftest import shared_path
from resnet8_onnx.data import CLASS_NAMES, load_dataset
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError


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
    """No --data-dir and nothing in the cache (a named directory is never downloaded into:
    test_cli_io.py)."""
    with pytest.raises(InputNotFoundError) as info:
        load_dataset()
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


def test_cli_official_layout_beats_image_folders_and_says_so(tmp_path, capsys) -> None:
    images, labels = make_images(30)
    write_layout(tmp_path / "root" / "cifar-10", "binary-dir",
                 layout_files("binary", (images, labels)))
    write_png_folder(tmp_path / "root" / "a-pngs", images[:10], labels[:10],
                     [f"{i:05d}" for i in range(10)])
    code, record, err = data_json(capsys, tmp_path / "root")
    assert code == 0, err
    assert record["source"]["kind"] == "binary-dir"
    (note,) = record["source"]["notes"]
    assert "using cifar-10/cifar-10-batches-bin (official layouts come first)" in note
    assert "not a-pngs" in note
    assert err.strip() == ""  # -q: notes are not warnings
    from resnet8_onnx.cli import main

    assert main(["data", "--data-dir", str(tmp_path / "root"), "--offline", "--json", "-"]) == 0
    assert capsys.readouterr().err.strip() == f"resnet8-onnx: note: {note}"


def test_cli_several_image_folders_first_by_name_and_says_so(tmp_path, capsys) -> None:
    images, labels = make_images(20)
    for name, n in (("b", 20), ("a", 10)):
        write_png_folder(tmp_path / "root" / name, images[:n], labels[:n],
                         [f"{i:05d}" for i in range(n)])
    code, record, _ = data_json(capsys, tmp_path / "root")
    assert code == 0
    assert record["source"]["path"] == str(tmp_path / "root" / "a")
    assert record["count"] == 10
    assert "using a (the first image folder by name), not b" in record["source"]["notes"][0]


@pytest.mark.shared
def test_real_official_test_batch() -> None:
    directory = shared_path("cifar-10", "cifar-10-batches-bin")
    data = load_dataset(directory)  # its speed is bench_evaluate's to measure, not a test's
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


# ------------------------------------------------------------------------------ the `data` command


@pytest.mark.parametrize("kind", ["binary-dir", "binary-tar"])
def test_data_command_never_lists_a_checksum_mismatch_as_verified(tmp_path, kind,
                                                                  capsys) -> None:
    write_layout(tmp_path / "data", kind, layout_files("binary", make_images(30)))
    lines = data_cli(capsys, tmp_path / "data")
    verified = [line for line in lines if line.strip().startswith("verified:")]
    warned = " ".join(line.strip() for line in lines if not line.strip().startswith("verified:"))
    assert verified
    assert not any("official is" in line or "differs" in line for line in verified), verified
    assert "test_batch.bin: not the official file (md5 differs)" in warned
    if kind == "binary-tar":
        assert "differs from the official archive's" in warned
