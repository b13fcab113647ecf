"""Verified downloads of the known files, and :func:`fetch`: found locally, else downloaded.

A download happens only when nothing local exists and downloads are allowed, and it is verified
before it becomes visible under its final name, so an interrupted or corrupt transfer leaves
nothing behind that a later run could mistake for the real file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from resnet8_onnx import __version__
from resnet8_onnx.data.known_files import KNOWN_FILES, require_official
from resnet8_onnx.data.locations import (
    ENV_OFFLINE,
    LOCAL_COPY_HINT,
    cache_dir,
    data_dirs,
    find_file,
    in_cache,
    offline,
)
from resnet8_onnx.support.errors import (
    DownloadError,
    InputNotFoundError,
    InvalidInputError,
    OutputError,
    one_line,
)
from resnet8_onnx.support.fsutil import atomic_write
from resnet8_onnx.support.progress import track

_CHUNK = 1 << 16


class UnreachableError(DownloadError):
    """The server could not be reached at all (offline, DNS, refused): nothing was transferred.

    Still a failed download (exit 9, as documented), but distinguished from a failed transfer
    so :func:`fetch` can add where it looked and a hint to use a local copy.
    """


def fetch(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
    what: str | None = None,
) -> Path:
    """Path of input ``name``: found locally and verified, else downloaded into the cache.

    ``download=None`` allows a download unless ``$RESNET8_ONNX_OFFLINE`` is set. ``what`` is
    the human name used in the "not found" message (defaults to the file name). This is the
    tool supplying a file by name, so a local copy that differs from the official file is
    refused (:func:`~.known_files.require_official`), except a corrupt copy in our own cache,
    which is downloaded again when allowed.
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
            require_official(found, known)
            return found
        except InvalidInputError:
            if not (in_cache(found) and allowed):
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
    if known.url is None:  # an archive member: it comes with its archive, never alone
        raise InputNotFoundError(f"{label}: {name} not found under {looked}; it is part of "
                                 f"{known.archive}; {LOCAL_COPY_HINT}")
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
    import http.client  # here, not at the top: finding local data never pays for HTTP/TLS
    import urllib.error
    import urllib.request

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
        raise UnreachableError(f"{url}: cannot connect ({one_line(exc, limit=None)})") from None
    except ValueError as exc:
        raise DownloadError(f"{url}: invalid URL ({one_line(exc, limit=None)})") from None
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
                    reason = one_line(exc, limit=None)
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
