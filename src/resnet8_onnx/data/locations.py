"""Where input files are looked for: the named data directory, then the download cache.

Lookup is local first (an explicit ``--data-dir``, else ``$RESNET8_ONNX_DATA_DIR``, then the
cache), up to two levels down, so ``--data-dir ../shared`` finds the test set, the model and
the indices wherever they sit in it. Every search in the tool goes through here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from resnet8_onnx.support.errors import InputNotFoundError

ENV_DATA_DIR = "RESNET8_ONNX_DATA_DIR"
ENV_CACHE_DIR = "RESNET8_ONNX_CACHE_DIR"
ENV_OFFLINE = "RESNET8_ONNX_OFFLINE"
LOCAL_COPY_HINT = f"point the tool at a local copy with --data-dir DIR or {ENV_DATA_DIR}=DIR"
SEARCH_DEPTH = 2


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


def named_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The path the user named: ``data_dir``, else ``$RESNET8_ONNX_DATA_DIR``, else None.

    It must exist: a typo should fail loudly, not fall through to a download.
    """
    if data_dir is not None:
        named, label = Path(data_dir).expanduser(), str(data_dir)
    elif os.environ.get(ENV_DATA_DIR):
        named = Path(os.environ[ENV_DATA_DIR]).expanduser()
        label = f"{ENV_DATA_DIR}={os.environ[ENV_DATA_DIR]}"
    else:
        return None
    if not named.exists():
        raise InputNotFoundError(f"{label}: data directory does not exist")
    return named


def data_dirs(data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Search roots in order: the named data directory (:func:`named_data_dir`), then the cache.

    A file given as ``data_dir`` (a tarball) contributes its directory.
    """
    roots: list[Path] = []
    named = named_data_dir(data_dir)
    if named is not None:
        roots.append(named if named.is_dir() else named.parent)
    cache = cache_dir()
    if all(cache.resolve() != r.resolve() for r in roots):
        roots.append(cache)
    return roots


def walk(root: Path, max_depth: int = SEARCH_DEPTH) -> Iterator[Path]:
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


def in_cache(path: Path) -> bool:
    """Whether ``path`` is the tool's own download cache's copy."""
    return path.resolve().parent == cache_dir().resolve()
