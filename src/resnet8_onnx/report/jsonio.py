"""JSON writer: records to deterministic JSON.

A record (``records``) or any mapping holding numpy scalars, arrays, paths or NaN becomes
plain JSON types: NaN and infinity become ``null``, so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf → None, paths → str."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "to_dict"):
        return jsonable(value.to_dict())
    if hasattr(value, "tolist"):  # numpy arrays and scalars, without importing numpy
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    raise TypeError(f"cannot put {type(value).__name__} into a JSON report")


def to_json(record: Any) -> str:
    """Deterministic JSON: sorted keys, indent 2, NaN as null, trailing newline."""
    return json.dumps(jsonable(record), sort_keys=True, indent=2, allow_nan=False,
                      ensure_ascii=False) + "\n"
