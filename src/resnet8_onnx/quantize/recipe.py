"""The grid of recipes measured by default, and the choice among them.

A :class:`Recipe` (data, so defined with the records: :mod:`resnet8_onnx.records.recipe`) is
what ``onnxruntime.quantization.quantize_static`` is asked for; :func:`select_candidate` keeps
the fastest measured recipe whose held-out agreement with the float model is within a
tolerance of the best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet8_onnx.records.quantization import Candidate
from resnet8_onnx.records.recipe import (
    ACTIVATION_TYPES,
    FORMATS,
    METHODS,
    UNSUPPORTED_TYPES,
    Recipe,
)

# A candidate is eligible when its held-out agreement is at most this far below the best
# candidate's: 0.5 points is about one standard error of agreement on 1,000 images.
DEFAULT_TOLERANCE = 0.005
PRUNE_BELOW = 0.5  # candidates under half the fastest one's speed are not scored
SPEED_NOISE = 0.05  # speeds this close to the fastest count as equal when choosing


def auto_grid(
    formats: Sequence[str] | None = None, activations: Sequence[str] | None = None,
    methods: Sequence[str] | None = None, *, weights: str = "int8", per_channel: bool = True,
    exclude: Sequence[str] = (), float_pooling: Sequence[bool] | None = None,
) -> list[Recipe]:
    """Every combination of the given formats, activation types and methods (default: all),
    QDQ candidates with and without float pooling (QOperator pools with its own scales);
    activation types not given leave out those ONNX Runtime cannot pair with ``weights``."""
    if activations is None:
        activations = [a for a in ACTIVATION_TYPES if (a, weights) not in UNSUPPORTED_TYPES]
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


@dataclass(eq=False)
class Trial:
    """One recipe of the grid while it is quantised, timed and scored: the working state of
    its measurement (file, session, passes), whose :meth:`candidate` is its record."""

    recipe: Recipe | None = None
    index: int = 0  # position in the grid: the last tie-break
    path: Path | None = None
    error: str | None = None  # why this recipe could not be quantised or loaded
    seconds: float = 0.0  # quantisation time
    session: Any = None
    size: int = 0
    passes: list[float] = field(default_factory=list)  # images/s of each timed pass
    pruned: bool = False
    agreement: int | None = None  # held-out images whose top-1 equals fp32's
    mean_abs_diff: float | None = None
    ips: float = 0.0  # best pass
    speedup: float | None = None
    eligible: bool = False

    def candidate(self, *, chosen: bool, holdout: int) -> Candidate:
        """The record of this trial (``holdout``: how many images scored it)."""
        ok = self.error is None
        return Candidate(
            recipe=self.recipe,
            holdout_agreement=self.agreement if ok else None,
            holdout_count=holdout if self.agreement is not None else 0,
            holdout_mean_abs_diff=self.mean_abs_diff,
            images_per_second=round(self.ips, 1) if ok else None,
            speedup=round(self.speedup, 3) if ok and self.speedup is not None else None,
            size_bytes=self.size, quantize_seconds=self.seconds, eligible=self.eligible,
            chosen=chosen, error=self.error, pruned=self.pruned)


def preference(c: Trial) -> tuple[Any, ...]:
    """The fixed order among candidates whose speeds are within noise: standard ONNX ops
    (QDQ) first, then agreement, then mean |Δ|, then the grid's order — never the speed."""
    return (c.recipe is not None and c.recipe.format != "qdq", -(c.agreement or 0),
            c.mean_abs_diff or 0.0, c.index)


def faithfulness(c: Trial) -> tuple[Any, ...]:
    """The most faithful first: agreement, then mean |Δ|, then the grid's order."""
    return (-(c.agreement or 0), c.mean_abs_diff or 0.0, c.index)


def select_candidate(working: list[Trial], mode: str, tolerance: float,
                     holdout: int, *, noise: float = SPEED_NOISE,
                     min_agreement: float = 0.0) -> tuple[Trial, str]:
    """The fastest candidate whose held-out agreement is within ``tolerance`` of the best
    (and at least ``min_agreement``), speeds within ``noise`` counting as equal.

    ``working`` holds trials with ``agreement`` (images out of ``holdout``) and ``ips``
    measured; each gets ``eligible`` set. Among the eligible candidates within ``noise`` of
    the fastest, the choice follows :func:`preference`, so the same inputs on the same
    machine choose the same recipe unless one is faster beyond the measured noise. Returns
    the chosen trial and the reason, in words.
    """
    if len(working) == 1 or not holdout:
        working[0].eligible = True
        return working[0], ("recipe fixed by the user" if mode == "fixed" else
                            "the only candidate that could be scored")
    best = max(c.agreement or 0 for c in working)
    for c in working:
        agreement = (c.agreement or 0) / holdout
        c.eligible = (agreement >= best / holdout - tolerance - 1e-12
                      and agreement >= min_agreement - 1e-12)
    eligible = [c for c in working if c.eligible]
    if not eligible:  # the figure quoted is the best any candidate reached: by agreement
        chosen = min(working, key=faithfulness)
        return chosen, (f"the most faithful candidate; none reaches the quality gate "
                        f"({best:,}/{holdout:,} = {best / holdout:.2%} at best)")
    fastest = max(c.ips for c in eligible)
    tied = [c for c in eligible if c.ips >= (1 - noise) * fastest]
    chosen = min(tied, key=preference)
    which = (f"standard ONNX ops first, then the most faithful of the {len(tied)} fastest "
             f"(at most {noise:.1%} slower than the top speed: the timing noise)" if len(tied) > 1
             else f"the fastest (beyond the {noise:.1%} timing noise)")
    return chosen, (f"{which} of {len(eligible)} candidates whose held-out agreement with fp32 "
                    f"is within {tolerance * 100:g} points of the best ({best:,}/{holdout:,} = "
                    f"{best / holdout:.2%})")
