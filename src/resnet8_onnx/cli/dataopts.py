"""The image-set options (class names, resize/crop, bad images) and what a loaded model asks
of the data: its class names, its input size and the resize/crop it or the user states."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from resnet8_onnx.support import errors

GEOMETRY_OPTIONS = ("input_size", "interpolation", "crop_pct", "crop_mode")


def _typed(name: str) -> Any:
    from resnet8_onnx.data.geometry import PARSERS

    def convert(text: str) -> Any:
        try:
            return PARSERS[name](text)
        except errors.UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name.replace("_", " ")
    return convert


def add_image_options(p: argparse.ArgumentParser) -> None:
    """--class-names, --input-size, --interpolation, --crop-pct, --crop-mode,
    --skip-bad-images: how a labelled image set meets the model."""
    from resnet8_onnx.data.geometry import CROP_MODES, INTERPOLATIONS

    g = p.add_argument_group(
        "labelled images", "An image folder root/<class>/<file>, root/<split>/<class>/<file> "
        "or a .csv of path,label given as --data-dir. Resize and crop follow timm's eval "
        "transform (resize to input/crop_pct, centre crop), done with PIL's Image.resize; "
        "without them every image must already be the model's input size.")
    if "--class-names" not in p._option_string_actions:
        g.add_argument("--class-names", metavar="FILE", default=None,
                       help="the model's class names, one per line (or a JSON list), in "
                            "output order: folder classes are matched by name (default: the "
                            "model's metadata class_names, else the folder names, sorted)")
    g.add_argument("--input-size", type=_typed("input_size"), metavar="H[,W]", default=None,
                   help="resize (and crop) images to H×W (default: the model's metadata; "
                        "images of another size are refused)")
    g.add_argument("--interpolation", type=_typed("interpolation"), default=None,
                   metavar="{" + ",".join(INTERPOLATIONS) + "}",
                   help="PIL resize filter (default: bilinear once resizing)")
    g.add_argument("--crop-pct", type=_typed("crop_pct"), metavar="F", default=None,
                   help="resize to input_size/F, then centre-crop input_size (timm's "
                        "crop_pct; default 1: resize only)")
    g.add_argument("--crop-mode", type=_typed("crop_mode"), default=None,
                   metavar="{" + ",".join(CROP_MODES) + "}",
                   help="center: keep the aspect ratio (shorter side); squash: both sides "
                        "(default: center)")
    g.add_argument("--skip-bad-images", action="store_true",
                   help="skip unreadable images (counted in the report) instead of exit 4")


def geometry_options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in GEOMETRY_OPTIONS if getattr(args, k, None) is not None}


def _metadata_names(backend: Any) -> list[str] | None:
    raw = (getattr(backend, "metadata", None) or {}).get("class_names")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    outputs = getattr(getattr(backend, "info", None), "num_classes", 0)
    if (isinstance(raw, list) and raw and all(isinstance(n, str) for n in raw)
            and (not outputs or len(raw) == outputs)):  # a list that fits the output
        return raw
    return None


def _model_size(backend: Any) -> tuple[int, int] | None:
    shape = tuple(backend.input_spec.pixel_shape)
    if len(shape) == 3 and all(isinstance(d, int) for d in shape[:2]):
        return shape[0], shape[1]
    return None


def folder_request(args: argparse.Namespace, backends: Sequence[Any]) -> Any:
    """What the models ask of the data (see ``data.images.FolderRequest``): class names from
    --class-names, else the first model's metadata; the input size of the first model with a
    fixed one; the resize/crop from the options, else the first model stating one."""
    from resnet8_onnx.data.geometry import resolve_geometry
    from resnet8_onnx.data.images import FolderRequest

    names: list[str] | None = None
    source = None
    if getattr(args, "class_names", None):
        from resnet8_onnx.convert.annotate import read_class_names

        names, source = read_class_names(args.class_names), f"--class-names {args.class_names}"
    else:
        for backend in backends:
            names = _metadata_names(backend)
            if names is not None:
                source = f"{backend.info.model_path} metadata class_names"
                break
    size = next((s for b in backends if (s := _model_size(b)) is not None), None)
    stated: dict[str, Any] = {}
    for backend in backends:
        spec = backend.input_spec.preprocessing
        if spec is not None and spec.geometry_stated:
            stated = spec.geometry_stated
            break
    geometry, sources = resolve_geometry(geometry_options(args), stated, size)
    return FolderRequest(
        class_names=tuple(names) if names is not None else None, class_source=source,
        geometry=geometry, geometry_sources=tuple(sources.items()), image_size=size,
        skip_bad=bool(getattr(args, "skip_bad_images", False)))
