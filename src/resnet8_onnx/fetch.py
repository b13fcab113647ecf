"""Known input files: where they are found locally, how they are verified, how they are fetched.

The official files and their checksums are declared once, as data, so that a model or data set
is never trusted by its name alone. Lookup is local first (an explicit ``--data-dir``, then
``$RESNET8_ONNX_DATA_DIR``, then the cache); a download happens only when nothing local exists
and downloads are allowed, and it is verified before it becomes visible under its final name,
so an interrupted or corrupt transfer leaves nothing behind that a later run could mistake for
the real file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import DownloadError, InputNotFoundError, InvalidInputError, OutputError
from .fsutil import atomic_write, file_digest
from .progress import track

_MLPERF_TINY = (
    "https://raw.githubusercontent.com/mlcommons/tiny/1afd2c9820f795965a6134facd0b4dfae41ef23f/"
    "benchmark/training/image_classification/"
)
_CHUNK = 1 << 16
_SEARCH_DEPTH = 2

ENV_DATA_DIR = "RESNET8_ONNX_DATA_DIR"
ENV_CACHE_DIR = "RESNET8_ONNX_CACHE_DIR"
ENV_OFFLINE = "RESNET8_ONNX_OFFLINE"
LOCAL_COPY_HINT = f"point the tool at a local copy with --data-dir DIR or {ENV_DATA_DIR}=DIR"


@dataclass(frozen=True)
class KnownFile:
    """An official input file: its name, where it is published and how to recognise it."""

    name: str
    url: str
    sha256: str | None
    md5: str | None
    description: str

    def digest_of(self, path: str | os.PathLike[str]) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` of ``path`` for the strongest checksum we know, or None."""
        if self.sha256:
            return "sha256", file_digest(path, "sha256")
        if self.md5:
            return "md5", file_digest(path, "md5")
        return None

    def expected(self, algorithm: str) -> str | None:
        """The official digest for ``algorithm`` ("sha256" or "md5")."""
        return self.sha256 if algorithm == "sha256" else self.md5


KNOWN_FILES: dict[str, KnownFile] = {
    f.name: f
    for f in (
        KnownFile(
            name="pretrainedResnet.h5",
            url=_MLPERF_TINY + "trained_models/pretrainedResnet.h5",
            sha256="5f938a8eea605438cc7360aa13c987bc6d7bd0c8d931b2917361ae7ae4eeda2f",
            md5=None,
            description="MLPerf Tiny ResNet8 Keras model (CIFAR-10)",
        ),
        KnownFile(
            name="perf_samples_idxs.npy",
            url=_MLPERF_TINY + "perf_samples_idxs.npy",
            sha256="3bd4a88eeb4c50fad652d0f24c8af13bc9219ba2878aea47c6536bfbeb43024d",
            md5=None,
            description="MLPerf Tiny 200-image performance subset (indices into the test set)",
        ),
        KnownFile(
            name="cifar-10-binary.tar.gz",
            url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            sha256=None,
            md5="c32a1d4ab5d03f1284b67883e8d87530",
            description="CIFAR-10, official binary distribution",
        ),
        KnownFile(
            name="cifar-10-python.tar.gz",
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            sha256=None,
            md5="c58f30108f718f92721af3b95e74349a",
            description="CIFAR-10, official Python (pickle) distribution",
        ),
    )
}


class UnreachableError(DownloadError):
    """The server could not be reached at all (offline, DNS, refused): nothing was transferred.

    Still a failed download (exit 9, as documented), but distinguished from a failed transfer
    so :func:`fetch` can add where it looked and a hint to use a local copy.
    """


def _oneline_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """Whether downloads are disabled by ``$RESNET8_ONNX_OFFLINE``."""
    return _truthy(os.environ.get(ENV_OFFLINE))


def cache_dir() -> Path:
    """Where downloads go: ``$RESNET8_ONNX_CACHE_DIR``, ``$XDG_CACHE_HOME/resnet8-onnx`` or
    ``~/.cache/resnet8-onnx``. Not created here; only a download creates it."""
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "resnet8-onnx"


def data_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Search roots in order: ``data_dir`` (or else ``$RESNET8_ONNX_DATA_DIR``), then the cache.

    A root the user named must exist: a typo should fail loudly, not fall through to a
    download. A file given as ``data_dir`` (a tarball) contributes its directory.
    """
    roots: list[Path] = []
    if data_dir is not None:
        named, label = Path(data_dir).expanduser(), str(data_dir)
    elif os.environ.get(ENV_DATA_DIR):
        named, label = (
            Path(os.environ[ENV_DATA_DIR]).expanduser(),
            f"{ENV_DATA_DIR}={os.environ[ENV_DATA_DIR]}",
        )
    else:
        named, label = None, ""
    if named is not None:
        if not named.exists():
            raise InputNotFoundError(f"{label}: data directory does not exist")
        roots.append(named if named.is_dir() else named.parent)
    cache = cache_dir()
    if all(cache.resolve() != r.resolve() for r in roots):
        roots.append(cache)
    return roots


def walk(root: Path, max_depth: int = _SEARCH_DEPTH) -> Iterator[Path]:
    """Entries of ``root`` breadth first up to ``max_depth`` levels down, each level sorted.

    Hidden entries are skipped; unreadable directories are silently passed over, since the
    search is a convenience and an explicit path is always available.
    """
    level = [root]
    for _depth in range(max_depth + 1):
        next_level: list[Path] = []
        for directory in level:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                yield path
                try:
                    if entry.is_dir():
                        next_level.append(path)
                except OSError:
                    continue
        level = next_level


def find_file(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """First file called ``name`` in a search root or up to two levels below it, else None."""
    for root in data_dirs(data_dir):
        candidate = root / name
        if candidate.is_file():
            return candidate
        for path in walk(root):
            if path.name == name and path.is_file():
                return path
    return None


def verify_known(path: Path, known: KnownFile) -> str:
    """Check ``path`` against its official checksum; return a one-line record of the check."""
    result = known.digest_of(path)
    if result is None:
        return f"{path.name}: no official checksum known"
    algorithm, digest = result
    expected = known.expected(algorithm)
    if digest != expected:
        raise InvalidInputError(
            f"{path}: {algorithm} {digest} does not match the official {known.name} ({expected})"
        )
    return f"{path.name}: {algorithm} {digest} (official)"


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
    what: str | None = None,
) -> Path:
    """Path of input ``name``: found locally and verified, else downloaded into the cache.

    ``download=None`` allows a download unless ``$RESNET8_ONNX_OFFLINE`` is set. ``what`` is
    the human name used in the "not found" message (defaults to the file name). A local copy
    of a known file that fails its checksum is an error, except a corrupt copy in our own
    cache, which is downloaded again when allowed.
    """
    known = KNOWN_FILES.get(name)
    roots = data_dirs(data_dir)
    allowed = (not offline()) if download is None else download
    found = find_file(name, data_dir)
    force = False
    if found is not None:
        if known is None:
            return found
        try:
            verify_known(found, known)
            return found
        except InvalidInputError:
            in_cache = found.resolve().parent == cache_dir().resolve()
            if not (in_cache and allowed):
                raise
            force = True
    looked = ", ".join(str(r) for r in roots)
    label = what or name
    if known is None:
        raise InputNotFoundError(f"{label}: not found under {looked}; {LOCAL_COPY_HINT}")
    if not allowed:
        reason = f"{ENV_OFFLINE} is set" if offline() else "downloads are disabled"
        raise InputNotFoundError(
            f"{label}: {name} not found under {looked} and {reason}; {LOCAL_COPY_HINT}"
        )
    dest = cache_dir() / name
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{dest.parent}: cannot create cache directory ({exc.strerror})"
        ) from None
    try:
        return download_file(known.url, dest, sha256=known.sha256, md5=known.md5, force=force)
    except UnreachableError as exc:
        raise DownloadError(
            f"{label}: {name} not found under {looked} and the download failed ({exc}); "
            f"{LOCAL_COPY_HINT}"
        ) from None


def download_file(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 30.0,
    force: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` with a progress bar; verified before it is renamed into place.

    The bytes go to a temporary file beside ``dest``; a short body, a dropped connection, a
    timeout or a checksum mismatch raises :class:`DownloadError` and removes the temporary
    file, so ``dest`` only ever appears complete and verified. ``force`` replaces an existing
    ``dest``.
    """
    dest = Path(dest)
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"{url}: only http(s) downloads are supported")
    request = urllib.request.Request(url, headers={"User-Agent": f"resnet8-onnx/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise UnreachableError(f"{url}: cannot connect ({exc.reason})") from None
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise UnreachableError(f"{url}: cannot connect ({_oneline_reason(exc)})") from None
    except ValueError as exc:
        raise DownloadError(f"{url}: invalid URL ({_oneline_reason(exc)})") from None
    hashes = {alg: hashlib.new(alg) for alg, want in (("sha256", sha256), ("md5", md5)) if want}
    with response:
        length_header = response.headers.get("Content-Length")
        total = int(length_header) if length_header and length_header.isdigit() else None
        received = 0
        with (
            atomic_write(dest, force=force) as out,
            track(f"Downloading {dest.name}", total) as advance,
        ):
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (TimeoutError, OSError, http.client.HTTPException) as exc:
                    reason = _oneline_reason(exc)
                    raise DownloadError(
                        f"{url}: download interrupted after {received:,} bytes ({reason})"
                    ) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:  # disk full, quota: the cache's problem, not a bug
                    raise OutputError(
                        f"{dest}: cannot write ({exc.strerror or type(exc).__name__})"
                    ) from None
                for h in hashes.values():
                    h.update(chunk)
                received += len(chunk)
                advance(len(chunk))
            if total is not None and received != total:
                raise DownloadError(
                    f"{url}: download interrupted: received {received:,} of {total:,} bytes"
                )
            for alg, h in hashes.items():
                want = sha256 if alg == "sha256" else md5
                if h.hexdigest() != want:
                    raise DownloadError(
                        f"{url}: {alg} {h.hexdigest()} does not match the expected {want}; "
                        "nothing was saved"
                    )
    return dest


# The public name in the agreed API; ``download_file`` avoids shadowing by fetch's parameter.
download = download_file
