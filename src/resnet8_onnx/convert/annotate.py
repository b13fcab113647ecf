"""Make an ONNX classifier describe its own input: preprocessing and class names as metadata,
or the preprocessing embedded in the graph.

``annotate`` writes the spec into ``metadata_props`` without touching the graph, so later
commands need no ``--layout``/``--scale``/… flags. ``embed=True`` instead prepends the
preprocessing as plain ONNX ops (:func:`resnet8_onnx.preprocess.embed`) so the model takes
raw uint8 NHWC RGB pixels; before anything is written, the embedded model is run against the
original plus its spec on real images with the parity gate ``verify`` uses
(:func:`resnet8_onnx.verify.compare_outputs`), and a mismatch writes nothing (exit 6).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx import __version__
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.data.format import IMAGE_SHAPE
from resnet8_onnx.evaluate import predict_all
from resnet8_onnx.preprocess import METADATA_EMBEDDED, embed, raw_uint8, record
from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    UsageError,
    VerificationFailedError,
    one_line,
)
from resnet8_onnx.support.fsutil import check_writable, file_digest, write_bytes_atomic
from resnet8_onnx.verify import DEFAULT_ATOL, DEFAULT_RTOL, compare_outputs


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """One class name per line (blank lines ignored), or a JSON list of strings."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError(f"{p}: class names file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{p}: cannot read class names ({exc})") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"{p}: not a JSON list of class names ({exc})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InvalidInputError(f"{p}: expected a JSON list of strings")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InvalidInputError(f"{p}: holds no class names")
    if len(set(names)) != len(names):
        raise InvalidInputError(f"{p}: class names repeat")
    return [str(n) for n in names]


ONNX_SUFFIX = ".onnx"


def check_output_suffix(path: str | os.PathLike[str]) -> None:
    """annotate writes ONNX: an output named ``.txt`` (or anything but ``.onnx``) would be an
    ONNX file under a name that says otherwise, so it is refused (exit 2), as convert does."""
    if Path(path).suffix.lower() != ONNX_SUFFIX:
        raise UsageError(f"{path}: annotate writes an ONNX model; give the output the "
                         f"{ONNX_SUFFIX} suffix")


def check_not_embedded(source: Path, metadata: Mapping[str, str], *, embed: bool,
                       preprocessing: Mapping[str, Any] | None) -> None:
    """A model whose preprocessing ``annotate --embed`` already embedded takes raw uint8
    pixels: embedding again, or stating another spec for it, would apply the spec twice.
    Refused (exit 2) rather than done or silently skipped."""
    if METADATA_EMBEDDED not in metadata:
        return
    given = {k: v for k, v in (preprocessing or {}).items() if v is not None}
    if embed or given:
        what = "--embed" if embed else ", ".join(f"--{k}" for k in given)
        raise UsageError(f"{source}: its preprocessing is already embedded (it takes raw uint8 "
                         f"NHWC RGB pixels); {what} would apply it twice")


def _set_props(model: Any, props: Mapping[str, str]) -> None:
    """Add or replace ``metadata_props`` entries, keeping every other entry and its order."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def _predict(backend: Any, images: np.ndarray, batch_size: int, label: str) -> np.ndarray:
    batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    outputs, _ = predict_all(backend, batches, len(images), label)
    if outputs is None:
        raise UsageError("annotate --embed needs at least one image to prove parity")
    return outputs


def annotate(
    model_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *,
    preprocessing: Mapping[str, Any] | None = None, class_names: Sequence[str] | None = None,
    output: str | None = None, embed_preprocessing: bool = False,
    images: np.ndarray | None = None, atol: float | None = None, rtol: float | None = None,
    batch_size: int = 128, force: bool = False,
) -> dict[str, Any]:
    """Write ``output_path``: ``model_path`` with its spec (and class names) recorded, or
    with the spec embedded (``embed_preprocessing``, proven on ``images``, uint8 NHWC).

    Returns the JSON-ready account: spec and sources, what was written, parity when embedded.
    """
    import onnx


    source = Path(model_path)
    if not source.is_file():
        raise InputNotFoundError(f"{source}: model file not found")
    check_output_suffix(output_path)
    out = check_writable(output_path, force=force)
    if out.resolve() == source.resolve():
        raise UsageError(f"{out}: output would overwrite the source model")
    if embed_preprocessing and images is None:
        raise UsageError("annotate --embed needs images (--data-dir) to prove parity")

    original = onnxrt.load(source, preprocessing=preprocessing, output=output)
    check_not_embedded(source, original.metadata, embed=embed_preprocessing,
                       preprocessing=preprocessing)
    session = original.onnx_session()
    spec, sources = original.preprocessing, session.preprocessing_sources
    _check_fits(original, source, images, class_names)

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # DecodeError and friends: ORT loaded it, but be safe
        raise InvalidInputError(f"{source}: cannot read the ONNX file: {exc}") from None
    props: dict[str, str] = {"annotated_by": f"resnet8-onnx {__version__}"}
    if class_names is not None:
        props["class_names"] = json.dumps(list(class_names))
        props["num_classes"] = str(len(class_names))
    account: dict[str, Any] = {
        "source": str(source), "source_sha256": file_digest(source), "output": str(out),
        "embedded": embed_preprocessing,
        "preprocessing": record(spec, sources),
        "output_name": session.output_name,
        **({"class_names": list(class_names)} if class_names is not None else {}),
    }
    if embed_preprocessing:
        assert images is not None
        data = _embed_and_prove(model, original, props, account, source=source, out=out,
                                images=images, output=output, atol=atol, rtol=rtol,
                                batch_size=batch_size)
    else:
        new = onnx.ModelProto()
        new.CopyFrom(model)
        props.update(spec.to_metadata())
        _set_props(new, props)
        data = new.SerializeToString()
    write_bytes_atomic(out, data, force=force)
    account["output_sha256"] = file_digest(out)
    account["metadata"] = props
    return account


def _check_fits(original: Any, source: Path, images: np.ndarray | None,
                class_names: Sequence[str] | None) -> None:
    """Refuse a model whose input does not take the images (CIFAR-10's shape when none are
    given) under its spec, or whose output count does not match the class names given."""
    spec = original.input_spec.preprocessing
    image_shape = tuple(images.shape[1:]) if images is not None else IMAGE_SHAPE
    got = original.input_spec.pixel_shape
    if any(g is not None and g != e for g, e in zip(got, image_shape, strict=True)):
        shown = "×".join("?" if d is None else str(d) for d in original.info.input_shape[1:])
        raise InvalidInputError(
            f"{source}: model input is {shown} ({spec.layout.upper()}), expected "
            f"{'×'.join(map(str, spec.model_shape(image_shape)))} for "
            f"{'×'.join(map(str, image_shape))} RGB images")
    k = original.info.num_classes
    if class_names is not None and k and len(class_names) != k:
        raise InvalidInputError(f"{source}: {len(class_names)} class names given for a model "
                                f"with {k} outputs")


def _embed_and_prove(model: Any, original: Any, props: dict[str, str],
                     account: dict[str, Any], *, source: Path, out: Path, images: np.ndarray,
                     output: str | None, atol: float | None, rtol: float | None,
                     batch_size: int) -> bytes:
    """The serialised model with ``original``'s spec embedded as graph nodes, once it gives
    the same outputs on ``images`` as the original with its spec applied outside; adds the
    parity and the new input to ``account``. A model that differs raises, so nothing is
    written."""
    import onnx


    spec = original.input_spec.preprocessing
    new = embed(model, spec, input_name=original.onnx_session().input_name)
    props.update(raw_uint8(spec).to_metadata())
    props[METADATA_EMBEDDED] = json.dumps(spec.to_dict(), sort_keys=True)
    _set_props(new, props)
    try:
        onnx.checker.check_model(new)
    except Exception as exc:
        raise InvalidInputError(f"{source}: the model with embedded preprocessing fails "
                                f"the ONNX checker: {one_line(exc, limit=None)}") from None
    data = new.SerializeToString()
    embedded = onnxrt.from_bytes(data, f"{out} (embedded)", output=output,
                                 preprocessing=raw_uint8())
    reference = _predict(original, images, batch_size, "original + spec")
    candidate = _predict(embedded, images, batch_size, "embedded")
    parity = compare_outputs(reference, candidate,
                             atol=DEFAULT_ATOL if atol is None else atol,
                             rtol=DEFAULT_RTOL if rtol is None else rtol)
    account["parity"] = parity.to_dict()
    account["input"] = {"name": embedded.onnx_session().input_name,
                        "shape": list(embedded.info.input_shape), "dtype": "uint8"}
    if not parity.passed:
        raise VerificationFailedError(
            f"{source}: embedded preprocessing differs from the original + spec: max |Δ| "
            f"{parity.max_abs_diff:.3g}, {parity.argmax_agreement:,}/{parity.samples:,} "
            "predictions agree; nothing written")
    return data
