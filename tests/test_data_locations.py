"""data.locations: search roots, their order, the cache, and files found up to two levels down."""

from __future__ import annotations

import pytest

from resnet8_onnx.data.locations import cache_dir, data_dirs, find_file, in_cache, named_data_dir
from resnet8_onnx.support.errors import InputNotFoundError


def test_cache_dir_precedence(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RESNET8_ONNX_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("RESNET8_ONNX_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "resnet8-onnx"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "resnet8-onnx"


def test_data_dirs_order_and_missing_dirs(monkeypatch, tmp_path) -> None:
    explicit = tmp_path / "explicit"
    env = tmp_path / "env"
    explicit.mkdir()
    env.mkdir()
    assert data_dirs(explicit) == [explicit, cache_dir()]
    monkeypatch.setenv("RESNET8_ONNX_DATA_DIR", str(env))
    assert data_dirs(None) == [env, cache_dir()]
    assert data_dirs(explicit) == [explicit, cache_dir()]  # explicit wins over the environment
    tarball = explicit / "x.tar.gz"
    tarball.write_bytes(b"")
    assert data_dirs(tarball) == [explicit, cache_dir()]
    with pytest.raises(InputNotFoundError, match="nope: data directory does not exist"):
        data_dirs(tmp_path / "nope")
    monkeypatch.setenv("RESNET8_ONNX_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(InputNotFoundError, match=r"RESNET8_ONNX_DATA_DIR=.*gone"):
        data_dirs(None)


def test_find_file_searches_two_levels_down(tmp_path) -> None:
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.h5").write_bytes(b"1")
    (tmp_path / "a" / "b" / "c" / "y.h5").write_bytes(b"2")
    (tmp_path / "top.h5").write_bytes(b"3")
    assert find_file("x.h5", tmp_path) == tmp_path / "a" / "b" / "x.h5"
    assert find_file("top.h5", tmp_path) == tmp_path / "top.h5"
    assert find_file("y.h5", tmp_path) is None
    assert find_file("a", tmp_path) is None  # directories are not files


def test_find_file_falls_back_to_the_cache(tmp_path) -> None:
    (cache_dir()).mkdir(parents=True, exist_ok=True)
    (cache_dir() / "cached.bin").write_bytes(b"x")
    (tmp_path / "data").mkdir()
    assert find_file("cached.bin", tmp_path / "data") == cache_dir() / "cached.bin"


def test_named_data_dir_is_the_option_else_the_environment(monkeypatch, tmp_path) -> None:
    assert named_data_dir(None) is None
    monkeypatch.setenv("RESNET8_ONNX_DATA_DIR", str(tmp_path))
    assert named_data_dir(None) == tmp_path
    (tmp_path / "x").mkdir()
    assert named_data_dir(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(InputNotFoundError, match="missing: data directory does not exist"):
        named_data_dir(tmp_path / "missing")


def test_in_cache_means_directly_in_the_download_cache(tmp_path) -> None:
    cache_dir().mkdir(parents=True, exist_ok=True)
    assert in_cache(cache_dir() / "file.bin")
    assert not in_cache(tmp_path / "file.bin")
