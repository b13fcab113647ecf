"""JSON writer: records to deterministic JSON, and the conversion every renderer starts with.

A record (``records.py``) or any mapping holding numpy scalars, arrays, paths or NaN becomes
plain JSON types, so every writer reads the same shape as a saved ``*.json``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar


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


F = TypeVar("F", bound=Callable[..., Any])


def _plain_input(func: F) -> F:
    """Renderers accept records holding numpy scalars or NaN; they see plain JSON values."""

    @functools.wraps(func)
    def wrapper(record: Any, *args: Any, **kwargs: Any) -> Any:
        return func(jsonable(record or {}), *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def to_json(record: Mapping[str, Any]) -> str:
    """Deterministic JSON: sorted keys, indent 2, NaN as null, trailing newline."""
    return json.dumps(jsonable(record), sort_keys=True, indent=2, allow_nan=False,
                      ensure_ascii=False) + "\n"
