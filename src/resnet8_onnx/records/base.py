"""What every record and every part of one shares: typed fields, ``to_dict``/``from_dict``.

A *part* is one nested block of a record (the model, the data, the metrics …); a *record* is
a part with a ``schema`` name and version in its JSON. ``from_dict`` is the one place a JSON
mapping is read: known keys become typed fields (nested blocks become their parts), unknown
keys are kept in ``extra`` so a round trip loses nothing, and a missing key takes the field's
default. Renderers therefore read attributes, never guard a dictionary lookup. A field made
with ``metadata=UNSAVED`` (an evaluation's raw outputs) travels with the live record only: it is
not in the JSON, not read back, not shown and not compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from resnet8_onnx import __version__

SCHEMA_PREFIX = "resnet8-onnx/"

P = TypeVar("P", bound="Part")
R = TypeVar("R", bound="Record")


# The metadata of a field the live record carries for the code that made it (raw arrays)
# and its JSON leaves out: ``field(default=None, repr=False, compare=False, metadata=UNSAVED)``,
# so it is ``None`` in a record read back and no part of equality or ``repr``.
UNSAVED: Mapping[str, bool] = MappingProxyType({"saved": False})


def saved_fields(kind: Part | type[Part]) -> list[dataclasses.Field[Any]]:
    """The fields of ``kind`` its JSON holds (``extra`` and ``UNSAVED`` ones left out)."""
    return [f for f in dataclasses.fields(kind)
            if f.name != "extra" and f.metadata.get("saved", True)]


def tool() -> dict[str, str]:
    """The ``tool`` entry of every record: which program, which version wrote it."""
    return {"name": "resnet8-onnx", "version": __version__}


def fraction(part: int | None, whole: int | None) -> float | None:
    """``part / whole``, or ``None`` when either is unknown or there was nothing to count:
    a held-out agreement of nothing is no figure, not a perfect one."""
    if part is None or not whole:
        return None
    return part / whole


def plain(value: Any) -> Any:
    """The JSON-ready form: parts (and Recipe, CpuInfo …) by their ``to_dict``."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _python(value: Any) -> Any:
    """Plain Python values: a numpy scalar or 0-d array (``np.int64(3)``, ``np.float32(0.5)``)
    becomes its ``int``/``float``, inside lists, tuples and mappings too, so a figure is never
    mistaken for text. A container is rebuilt only when it held one (otherwise the caller's
    object is kept as it is)."""
    if value is None or isinstance(value, str | bytes | int | float):
        return value
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    if isinstance(value, dict):
        items = {k: _python(v) for k, v in value.items()}
        return items if any(items[k] is not value[k] for k in value) else value
    if isinstance(value, list) or (isinstance(value, tuple) and not hasattr(value, "_fields")):
        elements = [_python(v) for v in value]
        if all(a is b for a, b in zip(elements, value, strict=True)):
            return value
        return elements if isinstance(value, list) else tuple(elements)
    return value


def _read(kind: type[Part], value: Any) -> Any:
    """``value`` as ``kind``: a mapping becomes one part, a list of mappings a list of parts."""
    if isinstance(value, Mapping):
        return kind.from_dict(value)
    if isinstance(value, list):
        return [kind.from_dict(v) if isinstance(v, Mapping) else v for v in value]
    return value


@dataclass(kw_only=True)
class Part:
    """A typed block of a record; keys it does not know travel in ``extra``."""

    # Keys written only when set (the producers leave them out otherwise).
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    # Fields holding a nested part (or a list of them), and its type.
    NESTED: ClassVar[Mapping[str, type[Part]]] = {}

    extra: dict[str, Any] = field(default_factory=dict)

    def __setattr__(self, name: str, value: Any) -> None:
        # A producer may hand a nested block over as the mapping it computed, or a figure as
        # a numpy scalar, at construction or later: typed here, so a record is typed all the
        # way down however it was built.
        kind = self.NESTED.get(name)
        if kind is not None and (isinstance(value, Mapping) or (
                isinstance(value, list) and any(isinstance(v, Mapping) for v in value))):
            value = _read(kind, value)
        elif kind is None and name != "extra":
            value = _python(value)
        super().__setattr__(name, value)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping: the keys the reports have always had."""
        out: dict[str, Any] = {}
        for f in saved_fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = plain(value)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls: type[P], data: Mapping[str, Any]) -> P:
        """The part ``data`` describes (as ``to_dict`` or an older version wrote it)."""
        data = dict(data)
        names = {f.name for f in saved_fields(cls)}
        kwargs: dict[str, Any] = {key: data.pop(key) for key in list(data) if key in names}
        for key, kind in cls.NESTED.items():
            if key in kwargs:
                kwargs[key] = _read(kind, kwargs[key])
        return cls(**kwargs, extra=data)


@dataclass(kw_only=True)
class Record(Part):
    """A part that is a whole result: ``schema`` and ``schema_version`` lead its JSON."""

    SCHEMA: ClassVar[str] = SCHEMA_PREFIX + "record"
    SCHEMA_VERSION: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.SCHEMA, "schema_version": self.SCHEMA_VERSION,
                **super().to_dict()}

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record of ``data``; a ``schema`` naming another kind is a ``ValueError``.

        A record written before schemas existed has none and is read as this kind.
        """
        data = dict(data)
        schema = data.pop("schema", None)
        data.pop("schema_version", None)
        if schema is not None and schema != cls.SCHEMA:
            raise ValueError(f"a {schema} record is not a {cls.SCHEMA} record")
        return super().from_dict(data)
