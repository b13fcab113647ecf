"""Resize and crop: timm's eval transform (input size, interpolation, crop_pct, crop mode).

The fields mean what they mean in timm's ``resolve_data_config`` / ``transforms_factory``:
the image is resized to ``floor(size / crop_pct)`` and the centre ``size`` is cut out of it.
``center`` keeps the aspect ratio (the shorter side becomes the scale size, as torchvision's
``Resize(int)`` does; timm's ``ResizeKeepRatio`` for a non-square size); ``squash`` resizes
both sides to the scale size. Resizing is PIL's ``Image.resize`` with the named filter and
cropping PIL's ``Image.crop`` at torchvision's ``CenterCrop`` offsets, so a bare loop of
those calls reproduces every pixel.

Unlike timm, ``crop_pct`` defaults to 1.0 (resize only, nothing cut): cutting away an eighth
of the user's image is a choice the user makes, not one made for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resnet8_onnx.support.errors import UsageError

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CROP_MODES = ("center", "squash")
GEOMETRY_FIELDS = ("input_size", "interpolation", "crop_pct", "crop_mode")
DEFAULT_INTERPOLATION = "bilinear"
DEFAULT_CROP_PCT = 1.0
DEFAULT_CROP_MODE = "center"


def parse_input_size(text: str | Sequence[int]) -> tuple[int, int]:
    """``'224'`` → (224, 224); ``'224,192'`` (H,W) → (224, 192); a list of one or two ints."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace("x", ",").split(",")]
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise UsageError(f"input size {text!r} is not H or H,W (e.g. 224 or 224,192)"
                             ) from None
    else:
        dims = [int(d) for d in text]
    if len(dims) == 3:  # a timm input_size (C, H, W)
        dims = dims[1:]
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 1:
        raise UsageError(f"input size {text!r} is not H or H,W of positive whole numbers")
    return dims[0], dims[1]


def parse_crop_pct(text: str | float) -> float:
    """A fraction in (0, 1]: the share of the resized image the crop keeps."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"crop_pct {text!r} is not a number") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise UsageError(f"crop_pct {text!r} must be greater than 0 and at most 1")
    return value


def parse_choice(text: Any, options: Sequence[str], what: str) -> str:
    value = str(text).strip().lower()
    if value not in options:
        raise UsageError(f"{what} {text!r} is not one of {', '.join(options)}")
    return value


PARSERS = {
    "input_size": parse_input_size,
    "interpolation": lambda t: parse_choice(t, INTERPOLATIONS, "interpolation"),
    "crop_pct": parse_crop_pct,
    "crop_mode": lambda t: parse_choice(t, CROP_MODES, "crop mode"),
}


@dataclass(frozen=True)
class Geometry:
    """Resize-and-crop to ``size`` (H, W), timm's way; see the module docstring."""

    size: tuple[int, int]
    interpolation: str = DEFAULT_INTERPOLATION
    crop_pct: float = DEFAULT_CROP_PCT
    crop_mode: str = DEFAULT_CROP_MODE

    @property
    def scale_size(self) -> tuple[int, int]:
        """The size resized to before the centre crop (timm: ``floor(size / crop_pct)``)."""
        return (math.floor(self.size[0] / self.crop_pct), math.floor(self.size[1] / self.crop_pct))

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(W, H) an image of ``width``×``height`` is resized to before the crop."""
        sh, sw = self.scale_size
        if self.crop_mode == "squash":
            return sw, sh
        if sh == sw:  # torchvision Resize(int): the shorter side becomes sh
            short, long = min(width, height), max(width, height)
            new_long = int(sh * long / short)
            return (sh, new_long) if width <= height else (new_long, sh)
        ratio = min(height / sh, width / sw)  # timm ResizeKeepRatio (longest=0)
        return round(width / ratio), round(height / ratio)

    def apply(self, image: Any) -> Any:
        """The PIL image resized with the named filter, then centre-cropped to ``size``."""
        from PIL import Image

        filters = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
                   "bicubic": Image.Resampling.BICUBIC}
        resized = image.resize(self.resized_size(*image.size), filters[self.interpolation])
        th, tw = self.size
        w, h = resized.size
        if (w, h) == (tw, th):
            return resized
        top = round((h - th) / 2.0)  # torchvision CenterCrop's offsets (int(round(...)))
        left = round((w - tw) / 2.0)
        return resized.crop((left, top, left + tw, top + th))

    def describe(self) -> str:
        """``resized to 64×64 (bilinear, crop_pct 0.875, center crop)``."""
        h, w = self.size
        return (f"resized to {h}×{w} ({self.interpolation}, crop_pct {self.crop_pct:g}, "
                f"{self.crop_mode} crop)")

    def to_dict(self) -> dict[str, Any]:
        return {"input_size": list(self.size), "interpolation": self.interpolation,
                "crop_pct": self.crop_pct, "crop_mode": self.crop_mode}


def parse_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The geometry fields of ``values`` (others ignored, ``None`` dropped), validated."""
    return {k: PARSERS[k](v) for k, v in values.items()
            if k in GEOMETRY_FIELDS and v is not None}


def resolve_geometry(options: Mapping[str, Any], stated: Mapping[str, Any],
                     model_size: tuple[int | None, int | None] | None
                     ) -> tuple[Geometry | None, dict[str, str]]:
    """The resize-and-crop to apply and where each field came from (option, metadata,
    input shape, default); ``None`` when neither the options nor the model state any field:
    images are then fed at their own size, which must be the model's (see the loader).

    A stated field without an input size takes the model's fixed H×W; with neither, the
    user must give ``--input-size``.
    """
    given, meta = parse_fields(options), parse_fields(stated)
    if not given and not meta:
        return None, {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    defaults = {"interpolation": DEFAULT_INTERPOLATION, "crop_pct": DEFAULT_CROP_PCT,
                "crop_mode": DEFAULT_CROP_MODE}
    for name in GEOMETRY_FIELDS:
        if name in given:
            values[name], sources[name] = given[name], "option"
        elif name in meta:
            values[name], sources[name] = meta[name], "metadata"
        elif name == "input_size":
            if model_size is None or not all(isinstance(d, int) for d in model_size):
                raise UsageError(f"{', '.join(sorted({*given, *meta}))} given but no input "
                                 "size, and the model's is not fixed: give --input-size H[,W]")
            values[name], sources[name] = tuple(model_size), "input shape"
        else:
            values[name], sources[name] = defaults[name], "default"
    geometry = Geometry(size=values["input_size"], interpolation=values["interpolation"],
                        crop_pct=values["crop_pct"], crop_mode=values["crop_mode"])
    return geometry, sources
