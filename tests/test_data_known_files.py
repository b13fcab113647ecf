"""data.known_files: the one table of official files and the one rule for recognising them."""

from __future__ import annotations

import hashlib

import pytest

from cifar_factory import layout_files, make_images, write_tar
from conftest import shared_path
from resnet8_onnx.data import load_dataset
from resnet8_onnx.data.format import FORMAT_DIR, META, file_batch_names
from resnet8_onnx.data.known_files import (
    KNOWN_FILES,
    KnownFile,
    identify,
    identify_file,
    is_official_perf_indices,
    require_official,
)
from resnet8_onnx.support.errors import InvalidInputError


def test_known_files_table() -> None:
    for name in ("pretrainedResnet.h5", "perf_samples_idxs.npy", "cifar-10-binary.tar.gz",
                 "cifar-10-python.tar.gz"):
        known = KNOWN_FILES[name]
        assert known.name == name
        assert known.url.startswith("https://")
        assert known.url.endswith("/" + name)
        assert known.sha256 or known.md5
    assert KNOWN_FILES["cifar-10-binary.tar.gz"].md5 == "c32a1d4ab5d03f1284b67883e8d87530"
    assert "1afd2c9820f795965a6134facd0b4dfae41ef23f" in KNOWN_FILES["pretrainedResnet.h5"].url

def test_every_member_of_both_archives_is_in_the_one_table() -> None:
    archives = {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}
    for fmt, archive in archives.items():
        for split in ("test", "train"):
            for name in file_batch_names(fmt, split):
                entry = KNOWN_FILES[name]
                assert (entry.kind, entry.archive, entry.url) == ("member", archive, None)
                assert len(entry.md5 or "") == 32
                assert FORMAT_DIR[fmt] in entry.description
    assert KNOWN_FILES[META["python"]].md5 == "5ff9c542aee3614f3951f8cda6e48888"
    assert META["binary"] not in KNOWN_FILES  # no published checksum: said so, not invented
    md5s = [e.md5 for e in KNOWN_FILES.values() if e.md5]
    assert len(md5s) == len(set(md5s))  # one entry per file


def test_identify_official_differs_unknown() -> None:
    model = KNOWN_FILES["pretrainedResnet.h5"]
    same = identify("pretrainedResnet.h5", sha256=model.sha256)
    assert same.official
    assert not same.differs
    assert same.match is model
    other = identify("pretrainedResnet.h5", sha256="0" * 64)
    assert not other.official
    assert other.differs
    assert (other.algorithm, other.digest, other.expected) == ("sha256", "0" * 64, model.sha256)
    unknown = identify("mine.h5", sha256="0" * 64)
    assert not unknown.official
    assert not unknown.differs
    assert unknown.known is None


def test_an_official_name_is_only_its_own_file_other_names_are_known_by_content() -> None:
    train_md5 = KNOWN_FILES["data_batch_1.bin"].md5
    swapped = identify("test_batch.bin", md5=train_md5)  # training images as the test batch
    assert swapped.differs
    assert not swapped.official
    perf = KNOWN_FILES["perf_samples_idxs.npy"].sha256
    renamed = identify("my_subset.npy", sha256=perf)
    assert renamed.official
    assert renamed.match.name == "perf_samples_idxs.npy"
    assert is_official_perf_indices(perf)
    assert not is_official_perf_indices("0" * 64)
    assert not is_official_perf_indices(None)


def test_require_official_refuses_a_differing_file(tmp_path, monkeypatch) -> None:
    payload = b"the official bytes"
    monkeypatch.setitem(KNOWN_FILES, "model.h5", KnownFile(
        name="model.h5", url="https://example.invalid/model.h5",
        sha256=hashlib.sha256(payload).hexdigest(), md5=None, description="test model"))
    path = tmp_path / "model.h5"
    path.write_bytes(payload)
    assert require_official(path, KNOWN_FILES["model.h5"]).endswith("(official)")
    assert identify_file(path).official
    path.write_bytes(payload + b"!")
    assert identify_file(path).differs
    with pytest.raises(InvalidInputError, match=r"sha256 .* does not match the official model"):
        require_official(path, KNOWN_FILES["model.h5"])


def test_a_renamed_official_archive_is_recognised_by_content(tmp_path, monkeypatch) -> None:
    """The same rule as the indices: under another name, the content decides."""
    images, labels = make_images(20)
    files = layout_files("binary", (images, labels))
    archive = write_tar(tmp_path / "mine.tar.gz", "binary", files)
    name = "cifar-10-binary.tar.gz"
    monkeypatch.setitem(KNOWN_FILES, name, KnownFile(
        name=name, url="https://example.invalid/" + name, sha256=None,
        md5=hashlib.md5(archive.read_bytes()).hexdigest(), description="test archive",
        kind="archive"))
    data = load_dataset(archive)
    assert f"mine.tar.gz: md5 {KNOWN_FILES[name].md5} (official {name})" in data.source.checks
    assert data.source.official is False  # its members are not the real test batch


@pytest.mark.shared
def test_real_files_are_official_with_the_declared_sizes() -> None:
    for parts in (("models", "pretrainedResnet.h5"), ("mlperf-tiny", "perf_samples_idxs.npy"),
                  ("cifar-10", "cifar-10-batches-bin", "test_batch.bin")):
        path = shared_path(*parts)
        identity = identify_file(path)
        assert identity.official, parts
        assert path.stat().st_size == identity.match.size
