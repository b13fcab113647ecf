"""data.download: fetch (local first, verified) and downloads against a real local HTTP server."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import shared_path
from resnet8_onnx.data import download as fetch_module
from resnet8_onnx.data.download import download, fetch
from resnet8_onnx.data.known_files import KNOWN_FILES, KnownFile
from resnet8_onnx.data.locations import cache_dir
from resnet8_onnx.support import progress
from resnet8_onnx.support.errors import (
    DownloadError,
    InputNotFoundError,
    InvalidInputError,
    OutputError,
)

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes: several read chunks


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, bytes] = {}  # noqa: RUF012 - set per server below
    requests: list[str] = []  # noqa: RUF012

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path == "/cut":
            # Promise more than we send, then drop the connection.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            time.sleep(1.5)
            return
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@dataclass
class LocalServer:
    url: str
    routes: dict[str, bytes]  # path → body; tests may add routes


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A real HTTP server on 127.0.0.1 (port chosen by the OS), for the duration of a test."""
    routes = {"/file.bin": PAYLOAD}
    handler = type("Handler", (_Handler,), {"routes": routes, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{httpd.server_address[1]}", routes)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _register(monkeypatch, name: str, url: str, data: bytes | None = PAYLOAD) -> KnownFile:
    known = KnownFile(name=name, url=url, sha256=sha256(data) if data is not None else None,
                      md5=None, description="test file")
    monkeypatch.setitem(KNOWN_FILES, name, known)
    return known


# ------------------------------------------------------------------------------ fetch
def test_fetch_verifies_a_local_known_file(monkeypatch, tmp_path) -> None:
    _register(monkeypatch, "model.h5", "https://example.invalid/model.h5")
    (tmp_path / "models").mkdir()
    good = tmp_path / "models" / "model.h5"
    good.write_bytes(PAYLOAD)
    assert fetch("model.h5", tmp_path) == good
    good.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(InvalidInputError, match=r"sha256 .* does not match the official model\.h5"):
        fetch("model.h5", tmp_path)


def test_fetch_returns_unknown_local_files_unverified(tmp_path) -> None:
    (tmp_path / "mine.npy").write_bytes(b"anything")
    assert fetch("mine.npy", tmp_path) == tmp_path / "mine.npy"
    with pytest.raises(InputNotFoundError, match=r"other\.npy: not found under"):
        fetch("other.npy", tmp_path)


def test_fetch_offline_is_one_line_with_a_hint(tmp_path) -> None:
    with pytest.raises(InputNotFoundError) as info:
        fetch("perf_samples_idxs.npy", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "perf_samples_idxs.npy not found" in message
    assert "RESNET8_ONNX_OFFLINE is set" in message
    assert "--data-dir DIR" in message
    assert "RESNET8_ONNX_DATA_DIR" in message


def test_fetch_download_false_without_offline_env(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("RESNET8_ONNX_OFFLINE")
    with pytest.raises(InputNotFoundError, match="downloads are disabled"):
        fetch("perf_samples_idxs.npy", tmp_path, download=False)


def test_fetch_never_downloads_an_archive_member_alone(monkeypatch, tmp_path) -> None:
    """A member of an archive has no URL of its own: "not found", naming the archive (it
    used to be handed to the downloader as the URL None)."""
    monkeypatch.setitem(KNOWN_FILES, "inner.bin", KnownFile(
        name="inner.bin", url=None, sha256=None, md5=sha256(PAYLOAD)[:32], description="x",
        kind="member", archive="outer.tar.gz"))
    with pytest.raises(InputNotFoundError, match=r"inner\.bin not found .* part of outer\.tar\.gz"):
        fetch("inner.bin", tmp_path, download=True)


def test_fetch_unreachable_server_is_a_failed_download(monkeypatch, tmp_path) -> None:
    _register(monkeypatch, "w.bin", f"http://127.0.0.1:{_closed_port()}/w.bin")
    with pytest.raises(DownloadError) as info:
        fetch("w.bin", tmp_path, download=True)
    message = str(info.value)
    assert "\n" not in message
    assert "the download failed" in message
    assert "--data-dir DIR" in message
    assert not (cache_dir() / "w.bin").exists()


def test_fetch_downloads_into_the_cache_then_reuses_it(monkeypatch, tmp_path, server) -> None:
    monkeypatch.delenv("RESNET8_ONNX_OFFLINE")
    _register(monkeypatch, "file.bin", f"{server.url}/file.bin")
    path = fetch("file.bin", tmp_path)
    assert path == cache_dir() / "file.bin"
    assert path.read_bytes() == PAYLOAD
    monkeypatch.setenv("RESNET8_ONNX_OFFLINE", "1")
    assert fetch("file.bin", tmp_path) == path  # found locally, no network needed


def test_fetch_replaces_a_corrupt_cached_copy(monkeypatch, tmp_path, server) -> None:
    _register(monkeypatch, "file.bin", f"{server.url}/file.bin")
    cache_dir().mkdir(parents=True, exist_ok=True)
    (cache_dir() / "file.bin").write_bytes(b"half a file")
    with pytest.raises(InvalidInputError):  # offline: report it, do not silently fix
        fetch("file.bin", tmp_path)
    assert fetch("file.bin", tmp_path, download=True).read_bytes() == PAYLOAD


# ------------------------------------------------------------------------------ download
def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_download_good_file(tmp_path, server, monkeypatch) -> None:
    monkeypatch.setattr(progress, "_enabled", True)  # exercise the real progress bar
    dest = tmp_path / "file.bin"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert download(f"{server.url}/file.bin", dest, sha256=sha256(PAYLOAD), md5=md5) == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["file.bin"]


def test_download_wrong_checksum_leaves_nothing(tmp_path, server) -> None:
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="does not match the expected") as info:
        download(f"{server.url}/file.bin", dest, sha256="0" * 64)
    assert "\n" not in str(info.value)
    assert _leftovers(tmp_path) == []


def test_download_wrong_md5_leaves_nothing(tmp_path, server) -> None:
    with pytest.raises(DownloadError, match="md5"):
        download(f"{server.url}/file.bin", tmp_path / "f", md5="0" * 32)
    assert _leftovers(tmp_path) == []


def test_download_cut_connection_leaves_nothing(tmp_path, server) -> None:
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="interrupted"):
        download(f"{server.url}/cut", dest, sha256=sha256(PAYLOAD))
    assert _leftovers(tmp_path) == []


def test_download_stalled_transfer_times_out(tmp_path, server) -> None:
    with pytest.raises(DownloadError, match="interrupted"):
        download(f"{server.url}/stall", tmp_path / "f", timeout=0.3)
    assert _leftovers(tmp_path) == []


def test_download_http_error(tmp_path, server) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(f"{server.url}/missing", tmp_path / "f")
    assert _leftovers(tmp_path) == []


def test_download_refuses_to_clobber_unless_forced(tmp_path, server) -> None:
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        download(f"{server.url}/file.bin", dest)
    assert dest.read_bytes() == b"old"
    fetch_module.download_file(f"{server.url}/file.bin", dest, force=True)
    assert dest.read_bytes() == PAYLOAD


def test_download_rejects_non_http_urls(tmp_path) -> None:
    with pytest.raises(DownloadError, match="only http"):
        download(f"file://{tmp_path}/x", tmp_path / "x")


# ------------------------------------------------------------------------------ data + fetch
def test_missing_cifar_is_downloaded_verified_and_read_in_place(monkeypatch, tmp_path,
                                                                server) -> None:
    from cifar_factory import layout_files, make_images, write_tar
    from resnet8_onnx.data import load_dataset

    images, labels = make_images(20)
    archive = write_tar(tmp_path / "served.tar.gz", "binary",
                        layout_files("binary", (images, labels))).read_bytes()
    server.routes["/cifar-10-binary.tar.gz"] = archive
    name = "cifar-10-binary.tar.gz"
    monkeypatch.setitem(KNOWN_FILES, name, KnownFile(
        name=name, url=f"{server.url}/{name}", sha256=None,
        md5=hashlib.md5(archive).hexdigest(), description="test archive"))
    with pytest.raises(InputNotFoundError, match="CIFAR-10 test set"):
        load_dataset()  # offline by default in tests
    data = load_dataset(download=True)  # no --data-dir: a named one is never downloaded into
    assert data.source.kind == "binary-tar"
    assert Path(data.source.path) == cache_dir() / name
    assert any(c.startswith(f"{name}: md5 ") and "(official)" in c for c in data.source.checks)
    assert data.source.official is False  # the member is not the real test batch
    assert (data.labels == labels).all()
    assert sorted(p.name for p in cache_dir().iterdir()) == [name]  # nothing extracted


# ------------------------------------------------------------------------------ the CLI
def _cifar_at(monkeypatch, url: str) -> None:
    name = "cifar-10-binary.tar.gz"
    monkeypatch.setitem(KNOWN_FILES, name, KnownFile(
        name=name, url=url, sha256=None, md5="0" * 32, description="test archive"))


@pytest.mark.parametrize("where", ["closed-port", "http-404", "wrong-checksum"])
def test_cli_failed_download_exits_9(monkeypatch, tmp_path, capsys, server, where) -> None:
    """The README's exit 9, whether the server is unreachable, answers 404 or sends wrong bytes
    (loopback only: a closed local port, or the test server)."""
    from resnet8_onnx.cli import main
    from resnet8_onnx.support import errors

    monkeypatch.delenv("RESNET8_ONNX_OFFLINE")
    url = {"closed-port": f"http://127.0.0.1:{_closed_port()}/cifar-10-binary.tar.gz",
           "http-404": f"{server.url}/missing.tar.gz",
           "wrong-checksum": f"{server.url}/file.bin"}[where]
    _cifar_at(monkeypatch, url)
    code = main(["-q", "data"])  # no --data-dir: a named one is never downloaded into
    err = capsys.readouterr().err.strip().splitlines()
    assert code == errors.DOWNLOAD_FAILED, err
    assert len(err) == 1, err
    assert err[0].startswith("resnet8-onnx: error: ")
    assert not (cache_dir() / "cifar-10-binary.tar.gz").exists()


# ------------------------------------------------------------------------------ real data
@pytest.mark.shared
def test_real_model_and_indices_are_found_and_verified() -> None:
    root = shared_path()
    model = fetch("pretrainedResnet.h5", root)
    assert model == root / "models" / "pretrainedResnet.h5"
    assert fetch("perf_samples_idxs.npy", root) == root / "mlperf-tiny" / "perf_samples_idxs.npy"


def test_disk_full_during_a_download_is_an_output_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server) -> None:
    """A cache on a full disk: exit 8 naming the file, not an internal error; nothing kept."""
    real = fetch_module.atomic_write

    class FullDisk:
        def __init__(self, f) -> None:
            self._f = f

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    @contextlib.contextmanager
    def full_disk(path, **kwargs):
        with real(path, **kwargs) as f:
            yield FullDisk(f)

    monkeypatch.setattr(fetch_module, "atomic_write", full_disk)
    dest = tmp_path / "file.bin"
    with pytest.raises(OutputError, match=r"file\.bin: cannot write \(No space left"):
        download(f"{server.url}/file.bin", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert list(tmp_path.iterdir()) == []
