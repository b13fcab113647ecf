"""Decode image files into one uint8 RGB array: PIL's conversions, EXIF orientation, resize.

Each file is opened with PIL, turned upright (``ImageOps.exif_transpose``), converted to RGB
as ``Image.convert("RGB")`` does (greyscale, palette, RGBA, CMYK alike; the modes met are
counted for the report), resized and cropped by a :class:`~.geometry.Geometry` when one is
given, and written into a preallocated array. A small thread pool decodes ahead (PIL releases
the GIL while decoding and resizing). A file PIL cannot read, or one over PIL's pixel limit
(``Image.MAX_IMAGE_PIXELS``: a decompression bomb), is refused naming it, or skipped and
counted with ``skip_bad``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx.data.geometry import Geometry
from resnet8_onnx.support.errors import InvalidInputError, one_line
from resnet8_onnx.support.progress import track

LOSSLESS_FORMATS = {"PNG", "BMP", "PPM", "TIFF", "WEBP", "GIF"}
LOSSY_FORMATS = {"JPEG"}
IMAGE_SUFFIXES = {".png", ".bmp", ".ppm", ".tif", ".tiff", ".jpg", ".jpeg", ".webp", ".gif"}
_DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "F")
_WORKERS = 4


@dataclass
class Tally:
    """What reading the images found: formats, modes converted, rotations, files skipped."""

    formats: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)  # non-RGB modes converted to RGB
    transparent: int = 0
    alpha: int = 0  # streamed sets: images with an alpha channel (pixels not yet decoded)
    grayscale: int = 0
    rotated: int = 0  # EXIF orientation applied
    resized: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)  # (W, H) as stored
    skipped: list[str] = field(default_factory=list)  # "path: why"


@dataclass(frozen=True)
class _Read:
    pixels: np.ndarray | None
    fmt: str = ""
    mode: str = ""
    transparent: bool = False
    rotated: bool = False
    size: tuple[int, int] = (0, 0)
    error: str | None = None


class SizeMismatch(InvalidInputError):
    """An image whose size is not the one every image must have (no resize stated)."""


def _checked(im: Any, path: Path) -> tuple[int, int, str]:
    """Width, height and format of an opened image, refusing what no stage can read: a
    decompression bomb (PIL's pixel limit), an unsupported format, 16-bit or float pixels."""
    from PIL import Image

    w, h = im.size
    if Image.MAX_IMAGE_PIXELS is not None and w * h > Image.MAX_IMAGE_PIXELS:
        raise InvalidInputError(f"{path}: {w}×{h} is over PIL's limit of "
                                f"{Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb?)")
    fmt = im.format or "unknown"
    if fmt not in LOSSLESS_FORMATS | LOSSY_FORMATS:
        raise InvalidInputError(f"{path}: {fmt} images are not supported, use PNG")
    if im.mode in _DEEP_MODES:
        raise InvalidInputError(
            f"{path}: {im.mode} (16-bit/float) images are not supported, use 8-bit RGB")
    return w, h, fmt


def _open(path: Path, geometry: Geometry | None) -> _Read:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        w, h, fmt = _checked(im, path)
        mode = im.mode
        transparent = False
        if mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
            transparent = bool(np.any(np.asarray(im.convert("RGBA"))[..., 3] != 255))
        rotated = im.getexif().get(0x0112, 1) not in (1, None)
        upright = ImageOps.exif_transpose(im) if rotated else im
        rgb = upright.convert("RGB")
        if geometry is not None:
            rgb = geometry.apply(rgb)
        return _Read(np.asarray(rgb), fmt, mode, transparent, rotated, (w, h))


def _header(path: Path) -> _Read:
    """What a file is without decoding its pixels (a streamed set's first pass): format,
    mode, size as shown (EXIF orientation applied), PIL's ``verify`` of its structure."""
    from PIL import Image

    with Image.open(path) as im:
        w, h, fmt = _checked(im, path)
        mode = im.mode
        orientation = im.getexif().get(0x0112, 1)
    with Image.open(path) as im:  # verify must come straight after open
        im.verify()
    shown = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return _Read(None, fmt, mode, mode in ("RGBA", "LA", "PA"), orientation not in (1, None),
                 shown)


def scan_headers(paths: Sequence[Path], *, geometry: Geometry | None,
                 size: tuple[int, int] | None, size_why: str, skip_bad: bool,
                 description: str) -> tuple[tuple[int, int], np.ndarray, Tally]:
    """``((H, W), kept, tally)`` of a set to stream: every file's header checked (and the
    sizes, when no ``geometry`` resizes them) without holding any pixels."""
    from PIL import Image

    def one(path: Path) -> _Read:
        try:
            return _header(path)
        except InvalidInputError as exc:
            return _Read(None, error=str(exc))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            return _Read(None, error=f"{path}: cannot read image ({one_line(exc, 120)})")

    tally = Tally()
    kept = np.zeros(len(paths), dtype=bool)
    want = geometry.size if geometry is not None else size
    workers = max(1, min(_WORKERS, os.cpu_count() or 1))
    with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool, \
            track(description, len(paths)) as advance:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for i, result in enumerate(_in_chunks(pool, one, paths)):
            advance(1)
            if result.error is not None:
                if not skip_bad:
                    raise InvalidInputError(result.error)
                tally.skipped.append(result.error)
                continue
            w, h = result.size
            if want is None:
                want, size_why = (h, w), f"the size of {paths[i].name}, the first image"
            if geometry is None and (h, w) != want:
                raise SizeMismatch(_size_refusal(paths[i], (w, h), want, size_why))
            kept[i] = True
            _count(tally, result, geometry)
            tally.transparent -= result.transparent  # unknown until decoded: say "alpha"
            tally.alpha += result.transparent
    if want is None or not kept.any():
        raise InvalidInputError(f"none of the {len(paths):,} images could be read"
                                + (f" (first: {tally.skipped[0]})" if tally.skipped else ""))
    return want, kept, tally


def read_one(path: Path, geometry: Geometry | None) -> _Read:
    """One file, as a result: an unreadable file is a ``_Read`` with ``error`` set."""
    from PIL import Image

    try:
        return _open(path, geometry)
    except InvalidInputError as exc:
        return _Read(None, error=str(exc))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return _Read(None, error=f"{path}: cannot read image ({one_line(exc, 120)})")


_CHUNK = 256  # files in flight at once: decoded results never pile up beyond these


def _in_chunks(pool: ThreadPoolExecutor, fn: Any, items: Sequence[Any]) -> Any:
    """``pool.map(fn, items)`` a chunk at a time (map alone submits every item at once, so
    workers running ahead of the consumer would hold every decoded image)."""
    for start in range(0, len(items), _CHUNK):
        yield from pool.map(fn, items[start:start + _CHUNK])


def _size_refusal(path: Path, got: tuple[int, int], want: tuple[int, int], why: str) -> str:
    return (f"{path}: image is {got[0]}×{got[1]}, expected {want[1]}×{want[0]} ({why}); "
            f"give --input-size H[,W] (with --interpolation, --crop-pct) to resize")


def decode_all(paths: Sequence[Path], *, geometry: Geometry | None,
               size: tuple[int, int] | None, size_why: str, skip_bad: bool,
               description: str) -> tuple[np.ndarray, np.ndarray, Tally]:
    """``(images, kept, tally)``: uint8 (N, H, W, 3) of the files read and a boolean mask
    of which of ``paths`` they are (all true unless ``skip_bad`` skipped some).

    ``size`` (H, W) is what every image must be when no ``geometry`` resizes them (the
    model's; ``None``: the first image's); a mismatch is refused naming the file and
    ``--input-size``, never guessed.
    """
    from PIL import Image

    tally = Tally()
    n = len(paths)
    kept = np.zeros(n, dtype=bool)
    images: np.ndarray | None = None
    want = geometry.size if geometry is not None else size
    workers = max(1, min(_WORKERS, os.cpu_count() or 1))
    with warnings.catch_warnings(), ThreadPoolExecutor(workers) as pool, \
            track(description, n) as advance:
        # the limit is checked in _open as an error; PIL's own warning would only repeat it
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for i, result in enumerate(_in_chunks(pool, lambda p: read_one(p, geometry), paths)):
            advance(1)
            if result.error is None and result.pixels is not None:
                h, w = result.pixels.shape[:2]
                if want is None:
                    want, size_why = (h, w), f"the size of {paths[i].name}, the first image"
                if (h, w) != want:
                    message = _size_refusal(paths[i], (w, h), want, size_why)
                    raise SizeMismatch(message)
            if result.error is not None or result.pixels is None:
                if not skip_bad:
                    raise InvalidInputError(result.error or f"{paths[i]}: cannot read image")
                tally.skipped.append(result.error or str(paths[i]))
                continue
            if images is None:
                assert want is not None  # set by the first readable image, above
                images = np.empty((n, *want, 3), dtype=np.uint8)
            images[i] = result.pixels
            kept[i] = True
            _count(tally, result, geometry)
    if images is None:
        raise InvalidInputError(f"none of the {n:,} images could be read"
                                + (f" (first: {tally.skipped[0]})" if tally.skipped else ""))
    if not kept.all():
        images = images[kept]
    return images, kept, tally


def _count(tally: Tally, result: _Read, geometry: Geometry | None) -> None:
    tally.formats[result.fmt] = tally.formats.get(result.fmt, 0) + 1
    if result.mode != "RGB":
        tally.modes[result.mode] = tally.modes.get(result.mode, 0) + 1
    tally.transparent += result.transparent
    tally.grayscale += result.mode in ("1", "L", "LA")
    tally.rotated += result.rotated
    tally.sizes.add(result.size)
    if geometry is not None and (result.size[1], result.size[0]) != geometry.size:
        tally.resized += 1


def resize_array(images: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Every image of a uint8 NHWC array through ``geometry`` (the official CIFAR-10 set
    for a model that takes another size)."""
    from PIL import Image

    out = np.empty((len(images), *geometry.size, 3), dtype=np.uint8)
    with track("Resizing", len(images)) as advance:
        for i, image in enumerate(images):
            out[i] = np.asarray(geometry.apply(Image.fromarray(image)))
            advance(1)
    return out
