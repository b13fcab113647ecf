"""Keras → ONNX: tf2onnx conversion, metadata, checks, atomic write.

The Keras file passes the safe pre-scan and is loaded by :mod:`resnet8_onnx.backends.keras.files`
(nothing in it runs) before anything is converted.

TensorFlow, Keras and tf2onnx are imported inside functions: importing this module (which
the CLI does for every command) must not cost TensorFlow's start-up time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from resnet8_onnx import __version__
from resnet8_onnx.backends.keras.files import (
    call_model,
    import_tensorflow,
    inspect_keras_file,
    load_keras_model,
    output_kind_of,
)
from resnet8_onnx.data.format import CLASS_NAMES, IMAGE_SHAPE, NUM_CLASSES
from resnet8_onnx.preprocess import Preprocessing
from resnet8_onnx.records import Conversion
from resnet8_onnx.support import progress
from resnet8_onnx.support.errors import (
    InvalidInputError,
    ToolError,
    UsageError,
    VerificationFailedError,
    one_line,
)
from resnet8_onnx.support.fsutil import (
    check_writable,
    file_digest,
    recorded_path,
    refuse_overwriting_inputs,
    write_bytes_atomic,
)

if TYPE_CHECKING:
    import keras
    import onnx

DEFAULT_OPSET = 17
# The opsets tf2onnx 1.17 is tested against; outside them a conversion may "work" and be wrong.
SUPPORTED_OPSETS = range(14, 19)
DEFAULT_INPUT_SHAPE: tuple[int, int, int] = IMAGE_SHAPE
DEFAULT_NUM_CLASSES = NUM_CLASSES
INPUT_NAME = "input"
BATCH_DIM = "N"
PREPROCESSING = "raw 0-255 float32 NHWC RGB, no normalisation"
CIFAR10_CLASSES: tuple[str, ...] = CLASS_NAMES


def _shape_text(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def _check_model_io(
    model: Any,
    source: Path,
    input_shape: tuple[int, int, int] | None,
    num_classes: int | None,
) -> tuple[tuple[int, ...], int]:
    """Refuse models that do not fit the task before spending time converting them."""
    inputs = list(getattr(model, "inputs", None) or [])
    outputs = list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidInputError(
            f"{source}: model has {len(inputs)} inputs and {len(outputs)} outputs; "
            "an image classifier has one of each"
        )
    shape = tuple(inputs[0].shape)
    dtype = str(getattr(inputs[0], "dtype", "float32"))
    if "float32" not in dtype:
        raise InvalidInputError(f"{source}: model input is {dtype}, expected float32")
    if len(shape) != 4:
        raise InvalidInputError(
            f"{source}: model input has shape {shape}, expected (batch, height, width, channels)"
        )
    image_shape = shape[1:]
    if input_shape is not None:
        if tuple(image_shape) != tuple(input_shape):
            raise InvalidInputError(
                f"{source}: model input is {_shape_text(image_shape)}, expected "
                f"{_shape_text(input_shape)} (convert --input-shape any accepts it)"
            )
    elif any(d is None for d in image_shape):
        raise InvalidInputError(
            f"{source}: model input {_shape_text(image_shape)} has unknown dimensions; "
            "only the batch dimension may be dynamic"
        )
    out_shape = tuple(outputs[0].shape)
    if len(out_shape) != 2 or out_shape[1] is None:
        raise InvalidInputError(
            f"{source}: model output has shape {out_shape}, expected (batch, classes)"
        )
    k = int(out_shape[1])
    if num_classes is not None and k != num_classes:
        raise InvalidInputError(
            f"{source}: model has {k} outputs, expected {num_classes} classes "
            "(convert --num-classes any accepts it)"
        )
    return tuple(int(d) for d in image_shape), k


def _resolve_class_names(
    class_names: Sequence[str] | None, k: int, source: Path
) -> list[str]:
    if class_names is None:
        return list(CIFAR10_CLASSES) if k == len(CIFAR10_CLASSES) else [str(i) for i in range(k)]
    names = [str(n) for n in class_names]
    if len(names) != k:
        raise UsageError(f"{source}: {len(names)} class names given but the model has {k} outputs")
    if len(set(names)) != len(names):
        raise UsageError(f"{source}: class names are not unique")
    return names


def _iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph (If/Loop bodies), which may reference outer names."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _iter_graphs(attr.g)
            for sub in attr.graphs:
                yield from _iter_graphs(sub)


def _rename_tensor(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename a tensor everywhere it is produced, consumed or declared."""
    if old == new:
        return
    for graph in _iter_graphs(model.graph):
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            for i, name in enumerate(node.output):
                if name == old:
                    node.output[i] = new
        for coll in (graph.input, graph.output, graph.value_info):
            for vi in coll:
                if vi.name == old:
                    vi.name = new
        for init in graph.initializer:
            if init.name == old:
                init.name = new


def _all_tensor_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()
    for graph in _iter_graphs(model.graph):
        for node in graph.node:
            names.update(node.input)
            names.update(node.output)
        names.update(vi.name for vi in graph.input)
        names.update(vi.name for vi in graph.initializer)
    return names


def _claim_name(model: onnx.ModelProto, current: str, wanted: str) -> None:
    """Give tensor ``current`` the name ``wanted``, moving any other holder of it aside."""
    if current == wanted:
        return
    taken = _all_tensor_names(model)
    if wanted in taken:
        i = 0
        while f"{wanted}__{i}" in taken:
            i += 1
        _rename_tensor(model, wanted, f"{wanted}__{i}")
    _rename_tensor(model, current, wanted)


_AUTO_NAME = re.compile(r"^(?P<base>.+?)__\d+(?P<suffix>(:\d+)?)$")


def _canonicalise(model: onnx.ModelProto) -> None:
    """Make the serialised model byte-for-byte reproducible.

    tf2onnx numbers the names it invents (``const_fold_opt__142``), merges identical
    constants under whichever name it meets first, and orders initializers differently from
    run to run, so two conversions of one file hashed differently. Naming every initializer
    after its first consumer (``<node>/input_<slot>``), renumbering other invented names in
    order of first use and sorting initializers the same way makes ``onnx_sha256`` a stable
    fingerprint of the conversion.
    """
    graph = model.graph
    for i, node in enumerate(graph.node):
        if match := _AUTO_NAME.match(node.name):
            node.name = f"{match['base']}__n{i}"
    order: dict[str, int] = {}
    first_use: dict[str, str] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            order.setdefault(name, len(order))
            first_use.setdefault(name, f"{node.name}/input_{slot}")
        for name in node.output:
            order.setdefault(name, len(order))
    keep = {vi.name for vi in (*graph.input, *graph.output)}
    initializers = {t.name for t in graph.initializer}
    renames: dict[str, str] = {}
    for name in sorted(order, key=order.__getitem__):
        if name in keep or not name:
            continue
        if name in initializers:
            renames[name] = first_use[name]
        elif match := _AUTO_NAME.match(name):
            renames[name] = f"{match['base']}__{len(renames)}{match['suffix']}"
    # Two phases so a new name never collides with an old one still waiting to be renamed.
    for i, name in enumerate(renames):
        _rename_tensor(model, name, f"\x00tmp{i}")
    for i, new in enumerate(renames.values()):
        _rename_tensor(model, f"\x00tmp{i}", new)
    final = {renames.get(name, name): index for name, index in order.items()}
    sorted_inits = sorted(graph.initializer, key=lambda t: (final.get(t.name, len(final)), t.name))
    value_info = sorted(graph.value_info, key=lambda v: v.name)
    for coll, items in ((graph.initializer, sorted_inits), (graph.value_info, value_info)):
        copies = [type(x)() for x in items]
        for copy, item in zip(copies, items, strict=True):
            copy.CopyFrom(item)
        del coll[:]
        coll.extend(copies)


def _set_batch_dim(model: onnx.ModelProto) -> None:
    """Name the dynamic batch dimension ``N`` on the graph's inputs and outputs.

    tf2onnx invents names like ``unk__149``; a shared readable name tells users (and
    shape inference) that input and output batch sizes are the same symbol.
    """
    old_names: set[str] = set()
    for vi in (*model.graph.input, *model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            if dims[0].dim_param:
                old_names.add(dims[0].dim_param)
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    for vi in model.graph.value_info:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param in old_names:
                dim.dim_param = BATCH_DIM


def _library_versions(tf: ModuleType, keras: ModuleType) -> dict[str, str]:
    import onnx
    import tf2onnx

    return {
        "tensorflow_version": str(tf.__version__),
        "keras_version": str(keras.__version__),
        "tf2onnx_version": str(tf2onnx.__version__),
        "onnx_version": str(onnx.__version__),
    }


def _check_onnx(model: onnx.ModelProto, output: Path, image_shape: tuple[int, ...], k: int,
                batch: int | str = BATCH_DIM) -> None:
    """Full ONNX checker plus strict shape inference; the output must come out (N, k) (or
    the model's fixed ``batch``)."""
    import onnx

    with progress.status("Checking the ONNX model"):
        try:
            onnx.checker.check_model(model, full_check=True)
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise VerificationFailedError(
                f"{output}: converted model fails the ONNX checker: {one_line(e)}"
            ) from e
    want_in = [batch, *image_shape]
    want_out = [batch, k]
    for vi, want in ((inferred.graph.input[0], want_in), (inferred.graph.output[0], want_out)):
        got = [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
        if got != want:
            raise VerificationFailedError(
                f"{output}: converted model's {vi.name!r} has shape {got}, expected {want}"
            )


def finish_onnx_model(
    proto: onnx.ModelProto,
    output: Path,
    *,
    output_kind: str,
    image_shape: tuple[int, ...],
    num_classes: int,
    metadata: Mapping[str, str],
    description: str,
    fixed_batch: int | None = None,
) -> onnx.ModelProto:
    """Give an ONNX model from another exporter this converter's interface and checks.

    Input ``input`` and output named after its kind with the batch dimension ``N``, the
    metadata (plus the interface fields), a doc string, then the full checker and strict shape
    inference, exactly as for a Keras conversion. Used for ``torch.onnx`` exports. A
    ``fixed_batch`` stays fixed: the batch dimension is only named when it is dynamic.
    """
    import onnx

    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise VerificationFailedError(
            f"{output}: the exporter produced {len(proto.graph.input)} inputs and "
            f"{len(proto.graph.output)} outputs, expected one of each")
    _claim_name(proto, proto.graph.input[0].name, INPUT_NAME)
    _claim_name(proto, proto.graph.output[0].name, output_kind)
    if fixed_batch is None:
        _set_batch_dim(proto)
    batch: int | str = BATCH_DIM if fixed_batch is None else fixed_batch
    props = {
        **metadata,
        "input_name": INPUT_NAME,
        "input_shape": json.dumps([batch, *image_shape]),
        "output_name": output_kind,
        "output_kind": output_kind,
        "num_classes": str(num_classes),
    }
    onnx.helper.set_model_props(proto, {k: str(v) for k, v in props.items()})
    proto.producer_name = "resnet8-onnx"
    proto.producer_version = __version__
    proto.doc_string = (
        f"{description}. Input {INPUT_NAME!r} ({batch}, {', '.join(map(str, image_shape))}): "
        f"{props.get('preprocessing', PREPROCESSING)}. Output {output_kind!r} ({batch}, "
        f"{num_classes}).")
    proto.graph.doc_string = proto.doc_string
    _check_onnx(proto, output, tuple(image_shape), num_classes, batch)
    return proto


def convert(
    model_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    input_shape: tuple[int, int, int] | None = DEFAULT_INPUT_SHAPE,
    num_classes: int | None = DEFAULT_NUM_CLASSES,
    class_names: Sequence[str] | None = None,
    force: bool = False,
    model: keras.Model | None = None,
    preprocessing: str = PREPROCESSING,
) -> Conversion:
    """Convert a Keras image classifier to a checked, self-describing ONNX file.

    ``input_shape=None`` / ``num_classes=None`` accept whatever the model has (any Keras
    image classifier); the defaults refuse anything that is not a CIFAR-10 32×32×3 model.
    ``model`` lets a caller that already loaded ``model_path`` skip loading it again. The
    output is written atomically: a failure at any step leaves no file behind.
    """
    start = time.perf_counter()
    if opset not in SUPPORTED_OPSETS:
        raise UsageError(
            f"opset {opset} is not supported (tf2onnx 1.17 is tested on opsets "
            f"{SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1})"
        )
    source = Path(model_path)
    refuse_overwriting_inputs([output_path], [source])  # --force or not
    out = check_writable(output_path, force=force)  # before any expensive work
    info = inspect_keras_file(source)
    if model is None:
        model = load_keras_model(source)
    image_shape, k = _check_model_io(model, source, input_shape, num_classes)
    names = _resolve_class_names(class_names, k, source)
    kind = output_kind_of(model)

    tf, keras = import_tensorflow()
    proto = _trace_to_onnx(model, source, image_shape, opset, tf)
    _claim_name(proto, proto.graph.input[0].name, INPUT_NAME)
    _claim_name(proto, proto.graph.output[0].name, kind)
    _set_batch_dim(proto)
    _canonicalise(proto)

    source_sha = file_digest(source)
    metadata = _describe(proto, source, source_sha, info.format, info.keras_version,
                         _library_versions(tf, keras), opset=opset, image_shape=image_shape,
                         kind=kind, num_classes=k, class_names=names,
                         preprocessing=preprocessing)

    _check_onnx(proto, out, image_shape, k)
    data = proto.SerializeToString()
    write_bytes_atomic(out, data, force=force)
    return Conversion(
        output_path=recorded_path(out),
        source_path=recorded_path(source),
        source_sha256=source_sha,
        onnx_sha256=hashlib.sha256(data).hexdigest(),
        opset=opset,
        input_name=INPUT_NAME,
        output_name=kind,
        output_kind=kind,
        num_classes=k,
        seconds=round(time.perf_counter() - start, 3),
        metadata=metadata,
    )


def _trace_to_onnx(model: keras.Model, source: Path, image_shape: tuple[int, ...],
                   opset: int, tf: Any) -> onnx.ModelProto:
    """tf2onnx's ONNX graph of ``model`` with one float32 NHWC input of any batch size.

    tf2onnx's own failures become an :class:`InvalidInputError` naming the file; a graph
    with other than one input and one output is refused, since every later step relies on it.
    """
    import tf2onnx
    from tf2onnx.graph import GraphUtil

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = tf.TensorSpec((None, *image_shape), tf.float32, name=INPUT_NAME)
    # from_function on our own trace rather than from_keras: from_keras looks outputs up by
    # Keras tensor names, which fails for Keras 3 Sequential models (KeyError keras_tensor_N).
    function = tf.function(lambda x: call_model(model, x), input_signature=(spec,))
    with progress.status(f"Converting to ONNX (opset {opset})"):
        try:
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=(spec,), opset=opset
            )
        except ToolError:
            raise
        except Exception as e:
            raise InvalidInputError(
                f"{source}: tf2onnx could not convert the model at opset {opset}: {one_line(e)}"
            ) from e

        # tf2onnx's optimisers occasionally miss a fold (about one run in ten here, e.g. the
        # Flatten reshape stays a Shape/Gather/Concat chain). A second pass over the proto
        # reaches the same fixed point either way, so the output is reproducible. Should that
        # pass fail, tf2onnx returns the first-pass model unchanged, which is still correct.
        proto = GraphUtil.optimize_model_proto(proto, catch_errors=True)

    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise VerificationFailedError(
            f"{source}: tf2onnx produced {len(proto.graph.input)} inputs and "
            f"{len(proto.graph.output)} outputs, expected one of each"
        )
    return proto


def _describe(proto: onnx.ModelProto, source: Path, source_sha: str, source_format: str,
              keras_version: str | None, library_versions: Mapping[str, str], *, opset: int,
              image_shape: tuple[int, ...], kind: str, num_classes: int,
              class_names: Sequence[str], preprocessing: str) -> dict[str, str]:
    """Write the metadata and doc strings that make the ONNX file self-describing (where it
    came from, how to feed it, what it outputs); returns the metadata."""
    import onnx

    metadata = {
        "source_file": source.name,
        "source_sha256": source_sha,
        "source_format": source_format,
        "source_keras_version": keras_version or "unknown",
        "converter": "resnet8-onnx",
        "converter_version": __version__,
        **library_versions,
        "opset": str(opset),
        "preprocessing": preprocessing,
        # machine-readable twin of the sentence, read by evaluate/compare (see preprocess.py)
        **({"preprocessing_spec": Preprocessing().to_metadata()["preprocessing_spec"]}
           if preprocessing == PREPROCESSING else {}),
        "input_name": INPUT_NAME,
        "input_shape": json.dumps([BATCH_DIM, *image_shape]),
        "output_name": kind,
        "output_kind": kind,
        "num_classes": str(num_classes),
        "class_names": json.dumps(list(class_names)),
    }
    onnx.helper.set_model_props(proto, metadata)
    proto.producer_name = "resnet8-onnx"
    proto.producer_version = __version__
    k = num_classes
    proto.doc_string = (
        f"{source.name} (sha256 {source_sha}) converted by resnet8-onnx {__version__} with "
        f"tf2onnx {metadata['tf2onnx_version']}, opset {opset}. Input {INPUT_NAME!r} "
        f"(N, {', '.join(map(str, image_shape))}): {preprocessing}. Output {kind!r} (N, {k}): "
        f"{'softmax probabilities' if kind == 'probabilities' else 'logits (no softmax)'} "
        f"over {k} classes."
    )
    proto.graph.doc_string = proto.doc_string
    return metadata
