"""Former home of the known-files table, the local search and the downloads.

They now live in :mod:`resnet8_onnx.data` (``known_files``, ``locations``, ``download``); these
names stay importable from here for code written against the old module.
"""

from .data.download import UnreachableError, download, download_file, fetch
from .data.known_files import KNOWN_FILES, KnownFile, require_official
from .data.locations import (
    ENV_CACHE_DIR,
    ENV_DATA_DIR,
    ENV_OFFLINE,
    LOCAL_COPY_HINT,
    cache_dir,
    data_dirs,
    find_file,
    offline,
    walk,
)

verify_known = require_official  # the old name of the same check

__all__ = [
    "ENV_CACHE_DIR", "ENV_DATA_DIR", "ENV_OFFLINE", "KNOWN_FILES", "LOCAL_COPY_HINT", "KnownFile",
    "UnreachableError", "cache_dir", "data_dirs", "download", "download_file", "fetch",
    "find_file", "offline", "require_official", "verify_known", "walk",
]
