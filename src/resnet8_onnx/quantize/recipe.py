"""What a quantisation recipe is, the grid of recipes measured by default, and the choice.

A :class:`Recipe` is what ``onnxruntime.quantization.quantize_static`` is asked for;
:func:`select_candidate` keeps the fastest measured recipe whose held-out agreement with the
float model is within a tolerance of the best.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

FORMATS = ("qdq", "qoperator")
ACTIVATION_TYPES = ("uint8", "int8")
WEIGHT_TYPES = ("int8", "uint8")
METHODS = ("minmax", "entropy", "percentile")

# A candidate is eligible when its held-out agreement is at most this far below the best
# candidate's: 0.5 points is about one standard error of agreement on 1,000 images.
DEFAULT_TOLERANCE = 0.005
PRUNE_BELOW = 0.5  # candidates under half the fastest one's speed are not scored
SPEED_NOISE = 0.05  # speeds this close to the fastest count as equal when choosing

_ABBREVIATION = {"uint8": "u8", "int8": "s8"}


@dataclass(frozen=True)
class Recipe:
    """One way to quantise: what ``onnxruntime.quantization.quantize_static`` is asked for."""

    format: str = "qdq"
    activations: str = "uint8"
    weights: str = "int8"
    per_channel: bool = True
    method: str = "minmax"
    exclude: tuple[str, ...] = ()
    # Average pooling computed in float between dequantise and quantise. ONNX Runtime's QDQ
    # quantiser gives an AveragePool output the scale of its input, far too coarse for an
    # 8×8 mean; on ResNet8 that alone costs a point of agreement with fp32 (measured).
    float_pooling: bool = False

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.format, FORMATS, "format"),
                                     (self.activations, ACTIVATION_TYPES, "activation type"),
                                     (self.weights, WEIGHT_TYPES, "weight type"),
                                     (self.method, METHODS, "calibration method")):
            if value not in allowed:
                raise UsageError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        object.__setattr__(self, "exclude", tuple(self.exclude))

    @property
    def label(self) -> str:
        """'QDQ u8/s8 minmax float-pool': short enough for a table row (per-channel implied)."""
        text = (f"{'QDQ' if self.format == 'qdq' else 'QOperator'} "
                f"{_ABBREVIATION[self.activations]}/{_ABBREVIATION[self.weights]} {self.method}")
        if not self.per_channel:
            text += " per-tensor"
        if self.float_pooling:
            text += " float-pool"
        if self.exclude:
            text += f" +{len(self.exclude)} float node{'s' if len(self.exclude) > 1 else ''}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "activations": self.activations, "weights": self.weights,
                "per_channel": self.per_channel, "method": self.method,
                "exclude": list(self.exclude), "float_pooling": self.float_pooling,
                "label": self.label}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """The recipe ``to_dict`` wrote; a missing field takes its default."""
        default = cls()
        return cls(format=data.get("format", default.format),
                   activations=data.get("activations", default.activations),
                   weights=data.get("weights", default.weights),
                   per_channel=bool(data.get("per_channel", default.per_channel)),
                   method=data.get("method", default.method),
                   exclude=tuple(data.get("exclude") or ()),
                   float_pooling=bool(data.get("float_pooling", default.float_pooling)))


def auto_grid(
    formats: Sequence[str] | None = None, activations: Sequence[str] | None = None,
    methods: Sequence[str] | None = None, *, weights: str = "int8", per_channel: bool = True,
    exclude: Sequence[str] = (), float_pooling: Sequence[bool] | None = None,
) -> list[Recipe]:
    """Every combination of the given formats, activation types and methods (default: all),
    QDQ candidates with and without float pooling (QOperator pools with its own scales)."""
    grid = []
    for m in methods or METHODS:
        for f in formats or FORMATS:
            pools = float_pooling if float_pooling is not None else (
                (False, True) if f == "qdq" else (False,))
            for a in activations or ACTIVATION_TYPES:
                grid += [Recipe(format=f, activations=a, weights=weights,
                                per_channel=per_channel, method=m, exclude=tuple(exclude),
                                float_pooling=p) for p in pools]
    return grid



def preference(c: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fixed order among candidates whose speeds are within noise: standard ONNX ops
    (QDQ) first, then agreement, then mean |Δ|, then the grid's order — never the speed."""
    recipe = c.get("recipe")
    return (recipe is not None and recipe.format != "qdq", -c["agreement"],
            c.get("mean_abs_diff", 0.0), c.get("index", 0))


def select_candidate(working: list[dict[str, Any]], mode: str, tolerance: float,
                     holdout: int, *, noise: float = SPEED_NOISE,
                     min_agreement: float = 0.0) -> tuple[dict[str, Any], str]:
    """The fastest candidate whose held-out agreement is within ``tolerance`` of the best
    (and at least ``min_agreement``), speeds within ``noise`` counting as equal.

    ``working`` holds dicts with ``agreement`` (images out of ``holdout``), ``ips`` and
    optionally ``recipe``, ``mean_abs_diff`` and ``index`` (grid position); each gets
    ``eligible`` set. Among the eligible candidates within ``noise`` of the fastest, the
    choice follows :func:`preference`, so the same inputs on the same machine choose the same
    recipe unless one is faster beyond the measured noise. Returns the chosen dict and the
    reason, in words.
    """
    if len(working) == 1 or not holdout:
        working[0]["eligible"] = True
        return working[0], ("recipe fixed by the user" if mode == "fixed" else
                            "the only candidate that could be scored")
    best = max(c["agreement"] for c in working)
    for c in working:
        c["eligible"] = (c["agreement"] / holdout >= best / holdout - tolerance - 1e-12
                         and c["agreement"] / holdout >= min_agreement - 1e-12)
    eligible = [c for c in working if c["eligible"]]
    if not eligible:
        chosen = min(working, key=preference)
        return chosen, (f"the most faithful candidate; none reaches the quality gate "
                        f"({best:,}/{holdout:,} = {best / holdout:.2%} at best)")
    fastest = max(c["ips"] for c in eligible)
    tied = [c for c in eligible if c["ips"] >= (1 - noise) * fastest]
    chosen = min(tied, key=preference)
    which = (f"standard ONNX ops first, then the most faithful of the {len(tied)} fastest "
             f"(within {noise:.1%} of the top speed: the timing noise)" if len(tied) > 1
             else f"the fastest (beyond the {noise:.1%} timing noise)")
    return chosen, (f"{which} of {len(eligible)} candidates whose held-out agreement with fp32 "
                    f"is within {tolerance * 100:g} points of the best ({best:,}/{holdout:,} = "
                    f"{best / holdout:.2%})")
