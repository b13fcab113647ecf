"""data.discover: what a path is (a layout, an archive, an image folder, nothing), and the best
source under a search root: official layouts first, complete splits first, two levels down."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from cifar_factory import (
    layout_files,
    make_images,
    write_layout,
    write_png_folder,
    write_tar,
)
from resnet8_onnx.data import load_dataset
from resnet8_onnx.data.discover import Found, found_at, search, tar_kind
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError


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


def test_what_a_path_is(tmp_path: Path) -> None:
    images, labels = make_images(10)
    binary = write_layout(tmp_path / "b", "binary-dir", layout_files("binary", (images, labels)))
    python = write_layout(tmp_path / "p", "python-dir", layout_files("python", (images, labels)))
    folder = write_png_folder(tmp_path / "pngs", images[:2], labels[:2], ["0", "1"])
    (tmp_path / "empty").mkdir()
    assert found_at(binary) == Found("binary-dir", binary)
    assert found_at(python) == Found("python-dir", python)
    assert found_at(folder).kind == "image-folder"
    assert found_at(tmp_path / "empty") is None
    assert found_at(tmp_path / "missing") is None
    (tmp_path / "batch.bin").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not a CIFAR-10 source"):
        found_at(tmp_path / "batch.bin")


def test_an_archive_is_known_by_its_official_name_else_by_its_top_folder(
        tmp_path: Path) -> None:
    files = layout_files("binary", make_images(10))
    renamed = write_tar(tmp_path / "copy.tar.gz", "binary", files)
    assert tar_kind(renamed) == "binary-tar"
    official = tmp_path / "cifar-10-python.tar.gz"
    official.write_bytes(b"never opened: the official name says it")
    assert tar_kind(official) == "python-tar"
    other = tmp_path / "other.tar"
    with tarfile.open(other, "w") as tar:
        info = tarfile.TarInfo("photos/cat.png")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidInputError, match="holds neither cifar-10-batches-bin/"):
        tar_kind(other)
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InvalidInputError, match="not a readable tar archive"):
        tar_kind(garbage)


def test_a_layout_knows_its_format_and_whether_it_holds_a_split(tmp_path: Path) -> None:
    test_only = write_layout(tmp_path, "binary-dir", layout_files("binary", make_images(10)))
    layout = Found("binary-dir", test_only)
    assert layout.fmt == "binary"
    assert layout.has_split("test")
    assert not layout.has_split("train")
    assert Found("python-tar", tmp_path / "x.tar.gz").fmt == "python"
    assert Found("python-tar", tmp_path / "x.tar.gz").has_split("train")  # known once read


def test_a_layout_holding_the_split_asked_for_wins(tmp_path: Path) -> None:
    """For the training split, a python directory with training batches beats a binary
    directory without them, though binary comes first otherwise."""
    test = make_images(10)
    train = [make_images(10, seed=s) for s in range(1, 6)]
    binary = write_layout(tmp_path / "a", "binary-dir", layout_files("binary", test))
    python = write_layout(tmp_path / "b", "python-dir", layout_files("python", test, train))
    chosen, note = search(tmp_path, "test")
    assert chosen.path == binary
    assert "2 CIFAR-10 sources" in note
    chosen, note = search(tmp_path, "train")
    assert chosen.path == python
    assert "official layouts come first" in note
    assert search(tmp_path / "a", "train") == (Found("binary-dir", binary), None)  # the only one
    (tmp_path / "nothing").mkdir()
    assert search(tmp_path / "nothing", "test") == (None, None)
    np.testing.assert_array_equal(load_dataset(tmp_path, split="train").labels[:10],
                                  train[0][1])
