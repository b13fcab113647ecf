"""Remembered md5s of data files: used only for a file in exactly the state it was hashed in."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from cifar_factory import layout_files, make_images, write_layout
from resnet8_onnx.cli import main
from resnet8_onnx.data import digests
from resnet8_onnx.data.locations import cache_dir


def _reported(capsys, data_dir: Path) -> str:
    """What ``data`` says of the source (checks and warnings), as one text."""
    assert main(["-q", "data", "--data-dir", str(data_dir), "--json", "-"]) == 0
    source = json.loads(capsys.readouterr().out)["source"]
    return " ".join([*source["checks"], *source["warnings"]])


@pytest.fixture
def binary_dir(tmp_path: Path) -> Path:
    images, labels = make_images(30)
    return write_layout(tmp_path / "data", "binary-dir", layout_files("binary", (images, labels)))


def _entries() -> dict:
    return json.loads((cache_dir() / digests.CACHE_NAME).read_text())["files"]


def test_a_changed_file_is_hashed_again(binary_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)  # remember even a file written just now
    batch = binary_dir / "test_batch.bin"
    first = hashlib.md5(batch.read_bytes()).hexdigest()
    assert f"md5 {first}" in _reported(capsys, binary_dir)
    (entry,) = _entries().values()
    assert entry["md5"] == first
    assert not [p for p in binary_dir.iterdir() if p.name.endswith(".json")]  # not beside data

    # An unchanged file is not hashed again: a remembered md5 is what gets reported.
    fake = "0" * 32
    cache = cache_dir() / digests.CACHE_NAME
    assert cache.stat().st_mode & 0o777 == 0o600
    cache.write_text(cache.read_text().replace(first, fake))
    reported = _reported(capsys, binary_dir)
    assert f"md5 {fake}" in reported
    assert "remembered from hashing this unchanged file before" in reported  # said so

    # Same size, same inode, mtime set back: the new bytes are hashed all the same.
    before = batch.stat()
    data = bytearray(batch.read_bytes())
    data[1:3073] = bytes(255 - b for b in data[1:3073])  # the first image, inverted
    batch.write_bytes(bytes(data))
    os.utime(batch, ns=(before.st_atime_ns, before.st_mtime_ns))
    while batch.stat().st_ctime_ns == before.st_ctime_ns:  # the same clock tick: wait one
        time.sleep(0.001)
        os.utime(batch, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = batch.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    second = hashlib.md5(bytes(data)).hexdigest()
    reported = _reported(capsys, binary_dir)
    assert f"md5 {second}" in reported
    assert fake not in reported
    assert [e["md5"] for e in _entries().values()] == [second]


def test_a_file_written_just_now_is_not_remembered(binary_dir: Path, capsys,
                                                   monkeypatch) -> None:
    monkeypatch.setattr(digests, "RACY_SECONDS", 3600.0)  # "just now" on any loaded machine
    batch = binary_dir / "test_batch.bin"
    assert f"md5 {hashlib.md5(batch.read_bytes()).hexdigest()}" in _reported(capsys, binary_dir)
    # Its ctime is within RACY_SECONDS of the hashing: a write in the same tick could follow.
    assert not (cache_dir() / digests.CACHE_NAME).exists()


def test_an_unreadable_cache_is_ignored(binary_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / digests.CACHE_NAME).write_text("{not json")
    batch = binary_dir / "test_batch.bin"
    assert f"md5 {hashlib.md5(batch.read_bytes()).hexdigest()}" in _reported(capsys, binary_dir)
    assert list(_entries()) == [str(batch.resolve())]  # rewritten whole


def test_the_cache_lives_in_the_cache_directory(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RESNET8_ONNX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert digests._cache_file() == str(tmp_path / "xdg" / "resnet8-onnx" / "digests.json")


def _remember_a_fake_md5(capsys, binary_dir: Path) -> str:
    """Fill the cache for the file batch, then make it vouch for a wrong md5."""
    first = hashlib.md5((binary_dir / "test_batch.bin").read_bytes()).hexdigest()
    _reported(capsys, binary_dir)
    cache = cache_dir() / digests.CACHE_NAME
    cache.write_text(cache.read_text().replace(first, "0" * 32))
    cache.chmod(0o600)
    assert "md5 " + "0" * 32 in _reported(capsys, binary_dir)  # trusted as it is
    return first


def test_a_file_written_while_being_read_is_hashed_again(binary_dir: Path, capsys,
                                                         monkeypatch) -> None:
    """The remembered md5 vouches for the bytes only if nothing wrote the file meanwhile."""
    from resnet8_onnx.data import sources

    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    _remember_a_fake_md5(capsys, binary_dir)
    batch = binary_dir / "test_batch.bin"
    parse = sources.parse_binary_stream
    writes = []

    def parse_while_another_process_writes(stream, size, **kwargs):
        if not writes:
            with open(batch, "r+b") as f:  # same size, one byte of the first image
                f.seek(1)
                writes.append(f.write(bytes([255 - f.read(1)[0]])))
        return parse(stream, size, **kwargs)

    monkeypatch.setattr(sources, "parse_binary_stream", parse_while_another_process_writes)
    reported = _reported(capsys, binary_dir)
    assert writes == [1]
    assert f"md5 {hashlib.md5(batch.read_bytes()).hexdigest()}" in reported
    assert "0" * 32 not in reported


def test_a_cache_others_may_write_is_not_trusted(binary_dir: Path, capsys,
                                                 monkeypatch) -> None:
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    real = _remember_a_fake_md5(capsys, binary_dir)
    (cache_dir() / digests.CACHE_NAME).chmod(0o666)  # anyone could have written it
    reported = _reported(capsys, binary_dir)
    assert f"md5 {real}" in reported
    assert "0" * 32 not in reported


def test_the_cache_can_be_turned_off(binary_dir: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(digests, "RACY_SECONDS", 0.0)
    real = _remember_a_fake_md5(capsys, binary_dir)
    monkeypatch.setenv(digests.ENV_DISABLE, "1")
    assert f"md5 {real}" in _reported(capsys, binary_dir)
