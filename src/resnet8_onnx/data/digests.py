"""Remembered md5s of data files, so a file read on every run is not hashed on every run.

The md5 of the 30 MB test batch is a third of loading it. An entry is the md5 of a file
(by real path) together with the file's device, inode, size, mtime and ctime as they were
when it was hashed; it is used only while all of these are the same. Writing a file changes
its ctime, which nobody can set back (``touch``/``utime`` set mtime, and ctime to *now*),
and an entry is made only for a file whose mtime and ctime are at least
:data:`RACY_SECONDS` older than the start of the hashing, so a write in the same clock tick
as the hashed state (or during the hashing) cannot leave it looking unchanged.

A remembered md5 stands for bytes only if nothing wrote the file while it was read: the
caller compares the state after parsing with the state before (:func:`unchanged`) and hashes
again otherwise. On file systems without a real change time (FAT, exFAT, some network
mounts) a same-size rewrite that restores the mtime could look unchanged; there the cache is
as good as those timestamps, which is why it can be turned off
(``RESNET8_ONNX_NO_DIGEST_CACHE=1``).

The entries live in ``digests.json`` in the cache directory (``$RESNET8_ONNX_CACHE_DIR``,
``$XDG_CACHE_HOME/resnet8-onnx`` or ``~/.cache/resnet8-onnx``), never in the project or the
data directory; deleting the file only costs the hashing again. The file is trusted only if
it belongs to the current user and nobody else may write it (it is written with mode 0600),
so another user of a shared cache directory cannot vouch for a modified data file. A cache
that cannot be read or written, or is not trusted, is ignored: it never fails a command.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from typing import IO, Any

from ..errors import OutputError
from ..fsutil import write_text_atomic
from .locations import cache_dir

CACHE_NAME = "digests.json"
ENV_DISABLE = "RESNET8_ONNX_NO_DIGEST_CACHE"
RACY_SECONDS = 3.0  # coarser than any file system's timestamps (FAT: 2 s)
MAX_ENTRIES = 64
_VERSION = 1


@dataclass(frozen=True)
class FileState:
    """What identifies a file's bytes without reading them."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def state_of(stream: IO[bytes]) -> FileState | None:
    """The state of an open file (``None`` when it has no file descriptor to ask)."""
    try:
        st = os.fstat(stream.fileno())
    except (OSError, AttributeError, ValueError):  # an in-memory or archive member stream
        return None
    return FileState(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _cache_file() -> str:
    return os.fspath(cache_dir() / CACHE_NAME)


def enabled() -> bool:
    return os.environ.get(ENV_DISABLE, "") in ("", "0")


def _trusted(f: IO[str]) -> bool:
    """Ours alone: owned by this user, writable by nobody else (no other user's say-so)."""
    st = os.fstat(f.fileno())
    getuid = getattr(os, "getuid", None)
    return (getuid is None or st.st_uid == getuid()) and not st.st_mode & 0o022


def _entries() -> dict[str, Any]:
    if not enabled():
        return {}
    try:
        with open(_cache_file(), encoding="utf-8") as f:
            if not _trusted(f):
                return {}
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def cached_md5(path: str | os.PathLike[str], state: FileState | None) -> str | None:
    """The remembered md5 of ``path`` if it was hashed in exactly this ``state``."""
    if state is None:
        return None
    entry = _entries().get(os.path.realpath(path))
    if not isinstance(entry, dict) or entry.get("state") != asdict(state):
        return None
    md5 = entry.get("md5")
    return md5 if isinstance(md5, str) and len(md5) == 32 else None


def unchanged(before: FileState | None, stream: IO[bytes]) -> bool:
    """True when the open file is still in state ``before``: nothing wrote it since."""
    return before is not None and state_of(stream) == before


def remember_md5(path: str | os.PathLike[str], before: FileState | None, md5: str,
                 stream: IO[bytes], *, hashing_started: float) -> None:
    """Remember ``md5`` of ``path``, hashed from ``stream`` opened in state ``before`` at
    ``hashing_started`` (``time.time()``): only if the file is still in that state and was
    last written at least :data:`RACY_SECONDS` before the hashing began."""
    if not enabled() or not unchanged(before, stream):
        return
    assert before is not None
    newest = max(before.mtime_ns, before.ctime_ns) / 1e9
    if newest > hashing_started - RACY_SECONDS:
        return
    entries = _entries()
    key = os.path.realpath(path)
    entries.pop(key, None)
    entries[key] = {"state": asdict(before), "md5": md5}
    while len(entries) > MAX_ENTRIES:  # the oldest first: dicts keep insertion order
        entries.pop(next(iter(entries)))

    with contextlib.suppress(OSError, OutputError):
        os.makedirs(cache_dir(), mode=0o700, exist_ok=True)
        write_text_atomic(_cache_file(), json.dumps({"version": _VERSION, "files": entries},
                                                    indent=1) + "\n", force=True)
        os.chmod(_cache_file(), 0o600)
