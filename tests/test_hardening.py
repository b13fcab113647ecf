"""Bad inputs through the real command line: exact exit code, one line, no traceback, no output.

Every case runs ``python -m resnet8_onnx ...`` in a subprocess, as a user would. The cheap
cases (none imports TensorFlow: Keras files are refused by the pre-scan before it) are built
once and run concurrently by a module fixture, then asserted one parametrized test each. A
case passes only if the exit code is the README's, stderr is one ``error:`` line naming the
file and the problem, there is no traceback, and no file anywhere in the case's directory or
the shared inputs was created or modified (the hidden report-directory lock file excepted:
it is deliberately left in a directory the command did not create, see
``fsutil.exclusive_directory`` and ``fsutil.report_directory``).

Also here: the documented "structurally valid but not official" behaviour, ``--debug``, and
fuzzing of the streaming record parser and the pickled-batch parser. (Write failures that are
not permission problems, ENOSPC and the like, are in ``test_fsutil.py``; the exit-code table
against ``errors.py`` in ``test_errors.py``.)
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import marshal
import os
import pickle
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cifar_factory import py2_pickle
from model_factory import make_classifier
from resnet8_onnx.data import CLASS_NAMES, parse_binary_records, parse_binary_stream
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InvalidInputError, UnsafeInputError

LOCK_NAME = ".resnet8-onnx.lock"
META_TXT = "".join(f"{name}\n" for name in CLASS_NAMES).encode()
RECORD = 3073


# --------------------------------------------------------------------------- running the CLI
def run_cli(argv: list[str], *, cwd: Path, cache: Path, extra_path: Path | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m resnet8_onnx ARGV`` offline, with a private cache, as a user would run it."""
    env = {**os.environ, "RESNET8_ONNX_OFFLINE": "1", "RESNET8_ONNX_CACHE_DIR": str(cache),
           "RESNET8_ONNX_DATA_DIR": "",
           # oneDNN on, as TensorFlow chooses by itself on AVX-512 CPUs: its start-up lines
           # then appear on any x86 CPU, and the one-line error checks see them.
           "TF_ENABLE_ONEDNN_OPTS": "1"}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path),
                                                          os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "resnet8_onnx", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (asserting there is exactly one)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert re.match(r"^resnet8-onnx( \w+)?: (error|interrupted)", lines[0]), lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root``: size, mtime and (for files under 64 MB) sha256."""
    state: dict[str, tuple[int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == LOCK_NAME:
            continue
        st_ = path.stat()
        digest = ""
        if st_.st_size < 64 << 20:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        state[str(path.relative_to(root))] = (st_.st_size, st_.st_mtime_ns, digest)
    return state


# --------------------------------------------------------------------------- input builders
def binary_records(n: int, *, seed: int = 0, labels: np.ndarray | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    records = rng.integers(0, 256, (n, RECORD), dtype=np.uint8)
    records[:, 0] = np.arange(n) % 10 if labels is None else labels
    return records.tobytes()


def binary_dir(parent: Path, test_batch: bytes, *, meta: bool = True) -> Path:
    directory = parent / "cifar-10-batches-bin"
    directory.mkdir(parents=True)
    (directory / "test_batch.bin").write_bytes(test_batch)
    if meta:
        (directory / "batches.meta.txt").write_bytes(META_TXT)
    return directory


class _System:
    """Pickles as ``os.system("touch MARKER")``: runs if anything unpickles it unrestricted."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def keras_layer(cls: str, name: str, inbound: str | None = None, **config: Any) -> dict[str, Any]:
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [[[inbound, 0, 0, {}]]] if inbound else []}


def keras_model(*middle: dict[str, Any]) -> dict[str, Any]:
    """A Keras 2 style Functional config: input → ``middle`` → Flatten → Dense(10, softmax)."""
    last = middle[-1]["name"] if middle else "in"
    layers = [keras_layer("InputLayer", "in", batch_input_shape=[None, 32, 32, 3],
                          dtype="float32"),
              *middle,
              keras_layer("Flatten", "flat", last),
              keras_layer("Dense", "out", "flat", units=10, activation="softmax")]
    return {"class_name": "Functional",
            "config": {"name": "m", "layers": layers, "input_layers": [["in", 0, 0]],
                       "output_layers": [["out", 0, 0]]}}


def lambda_layer(marker: Path) -> dict[str, Any]:
    """A Keras 2 ``Lambda`` whose marshalled bytecode writes ``marker`` when the layer runs."""
    def evil(x, path=str(marker)):  # pragma: no cover - must never run
        with open(path, "w") as f:
            f.write("pwned")
        return x

    code = base64.b64encode(marshal.dumps(evil.__code__)).decode()
    return keras_layer("Lambda", "evil", "in", function=[code, [str(marker)], None],
                       function_type="lambda", module="__main__", output_shape=None,
                       arguments={})


def write_h5(path: Path, config: Any) -> Path:
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["backend"] = "tensorflow"
    return path


def random_bytes(path: Path, n: int = 4096, seed: int = 1) -> Path:
    path.write_bytes(np.random.default_rng(seed).bytes(n))
    return path


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Shared, valid inputs every case may read (and none may modify)."""

    root: Path
    data: Path  # 20 generated images, binary layout (not the official set)
    model: Path  # a valid 32×32×3 → 10 ONNX classifier
    safe_h5: Path  # a Keras config the pre-scan accepts (never converted here)


def make_inputs(root: Path) -> Inputs:
    root.mkdir()
    data = binary_dir(root, binary_records(20))
    model = make_classifier(root / "good.onnx")
    safe_h5 = write_h5(root / "safe.h5", keras_model(
        keras_layer("Conv2D", "conv", "in", filters=4, kernel_size=[1, 1])))
    return Inputs(root, data, model, safe_h5)


def read_only_dir(d: Path) -> tuple[Path | None, str]:
    """A directory this process cannot create files in, and how that was arranged.

    As a normal user a ``chmod 0555`` directory is enough. Root ignores permission bits (and
    ``os.access`` says yes), so for root we use sysfs, where even root cannot create files;
    that also proves the refusal comes from a real write probe, not from ``os.access``.
    """
    if os.geteuid() != 0:
        ro = d / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro, "chmod 0555"
    sysfs = Path("/sys")
    try:
        fd, probe = tempfile.mkstemp(dir=sysfs)
    except OSError:
        return sysfs, "sysfs (root ignores permission bits)"
    os.close(fd)  # pragma: no cover - a writable /sys: no read-only place for root here
    os.unlink(probe)
    return None, "running as root and /sys is writable: no directory root cannot write"


# --------------------------------------------------------------------------- the corpus
@dataclasses.dataclass(frozen=True)
class Run:
    argv: list[str]
    fragments: tuple[str, ...]  # all must appear in the error line (file name + problem)
    outputs: tuple[Path, ...] = ()  # paths that must not exist afterwards
    unchanged: tuple[Path, ...] = ()  # pre-existing outputs that must keep their bytes
    extra_path: Path | None = None  # put on PYTHONPATH (an importable "custom layer" module)
    skip: str | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    code: int
    build: Callable[[Path, Inputs], Run]


def _data_case(batch: Callable[[Path], Path], fragment: str, code: int = errors.INVALID_INPUT,
               command: str = "data") -> Callable[[Path, Inputs], Run]:
    """A data directory built by ``batch(d)``, read by ``data`` or ``evaluate``."""
    def build(d: Path, inp: Inputs) -> Run:
        data = batch(d)
        out = d / "out.json"
        head = ["data"] if command == "data" else ["evaluate", str(inp.model)]
        return Run([*head, "--data-dir", str(data), "--offline", "--json", str(out)],
                   (str(data.name), fragment), outputs=(out,))
    return build


def _truncated(d: Path) -> Path:
    return binary_dir(d, binary_records(10)[:-100]).parent


def _empty_batch(d: Path) -> Path:
    return binary_dir(d, b"").parent


def _huge_batch(d: Path) -> Path:
    directory = binary_dir(d, b"")
    os.truncate(directory / "test_batch.bin", 300 << 20)  # sparse: costs no disk, no time
    return directory


def _bad_label(d: Path) -> Path:
    labels = np.arange(10) % 10
    labels[7] = 200
    return binary_dir(d, binary_records(10, labels=labels))


def _pickle_dir(d: Path) -> Path:
    directory = d / "cifar-10-batches-py"
    directory.mkdir()
    (directory / "test_batch").write_bytes(pickle.dumps(_System(d / "MARKER"), protocol=2))
    return directory


def _pickle_tar(d: Path) -> Path:
    payload = pickle.dumps({b"data": _System(d / "MARKER"), b"labels": [0]}, protocol=2)
    path = d / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def _garbage_tar(d: Path) -> Path:
    return random_bytes(d / "cifar-10-binary.tar.gz", 20_000)


def _empty_dir(d: Path) -> Path:
    empty = d / "empty"
    empty.mkdir()
    return empty


def _model_case(model: Callable[[Path, Inputs], Path], fragment: str,
                command: str = "evaluate") -> Callable[[Path, Inputs], Run]:
    """``evaluate MODEL`` (or ``verify good.onnx MODEL``) on valid data."""
    def build(d: Path, inp: Inputs) -> Run:
        path = model(d, inp)
        out, reports = d / "out.json", d / "reports"
        if command == "verify":
            argv = ["verify", str(inp.model), str(path)]
        else:
            argv = ["evaluate", str(path), "--out", str(reports)]
        return Run([*argv, "--data-dir", str(inp.data), "--json", str(out)],
                   (str(path), fragment), outputs=(out, reports / "report.json"))
    return build


def _truncated_onnx(d: Path, inp: Inputs) -> Path:
    data = inp.model.read_bytes()
    (d / "cut.onnx").write_bytes(data[: len(data) // 2])
    return d / "cut.onnx"


def _convert_case(model: Callable[[Path, Inputs], Path], fragment: str,
                  output: Callable[[Path], Path] | None = None,
                  extra_path: bool = False) -> Callable[[Path, Inputs], Run]:
    """``convert MODEL -o OUT``; every case here must stop before TensorFlow is imported."""
    def build(d: Path, inp: Inputs) -> Run:
        path = model(d, inp)
        out = output(d) if output else d / "out.onnx"
        return Run(["convert", str(path), "-o", str(out)], (str(path.name), fragment),
                   outputs=(out,), extra_path=d if extra_path else None)
    return build


def _custom_layer_h5(d: Path, inp: Inputs) -> Path:
    # An importable module that would leave a marker if anything imported it.
    package = d / "evil_layers"
    package.mkdir()
    (package / "__init__.py").write_text(
        f"open({str(d / 'MARKER')!r}, 'w').write('imported')\n"
        "class EvilLayer:\n    pass\n")
    layer = keras_layer("EvilLayer", "evil", "in")
    layer["module"] = "evil_layers"
    layer["registered_name"] = "evil_layers>EvilLayer"
    return write_h5(d / "custom.h5", keras_model(layer))


def _lambda_keras_zip(d: Path, inp: Inputs) -> Path:
    path = d / "lambda.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        zf.writestr("config.json", json.dumps(keras_model(lambda_layer(d / "MARKER"))))
    return path


def _hdf5_not_a_model(d: Path, inp: Inputs) -> Path:
    with h5py.File(d / "weights.h5", "w") as f:
        f.create_dataset("conv/kernel", data=np.zeros((3, 3), np.float32))
    return d / "weights.h5"


def _zip_named_h5(d: Path, inp: Inputs) -> Path:
    with zipfile.ZipFile(d / "renamed.h5", "w") as zf:
        zf.writestr("config.json", "{}")
    return d / "renamed.h5"


def _output_case(argv: Callable[[Path, Inputs, Path], list[str]], target: Callable[[Path], Path],
                 fragment: str, *, existing: bool = False, read_only: bool = False,
                 in_the_way: bool = False) -> Callable[[Path, Inputs], Run]:
    """A valid command whose output cannot be written at ``target(d)``: ``existing`` makes it
    a previous output that must survive byte for byte, ``in_the_way`` says ``target(d)`` is
    already something else (a file where a directory goes, or the reverse)."""
    def build(d: Path, inp: Inputs) -> Run:
        if read_only:
            ro, how = read_only_dir(d)
            if ro is None:
                return Run([], (), skip=how)
            d_out = ro
        else:
            d_out = d
        out = target(d_out)
        unchanged: tuple[Path, ...] = ()
        outputs: tuple[Path, ...] = () if in_the_way else (out,)
        if existing:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(b"previous output\n")
            unchanged, outputs = (out,), ()
        return Run(argv(d, inp, out), (str(out), fragment), outputs=outputs,
                   unchanged=unchanged)
    return build


def _evaluate_json(d: Path, inp: Inputs, out: Path) -> list[str]:
    return ["evaluate", str(inp.model), "--data-dir", str(inp.data), "--json", str(out)]


def _evaluate_out(d: Path, inp: Inputs, out: Path) -> list[str]:
    return ["evaluate", str(inp.model), "--data-dir", str(inp.data), "--out", str(out)]


def _evaluate_out_existing(d: Path, inp: Inputs, out: Path) -> list[str]:
    return ["evaluate", str(inp.model), "--data-dir", str(inp.data), "--out", str(out.parent)]


def _data_json(d: Path, inp: Inputs, out: Path) -> list[str]:
    return ["data", "--data-dir", str(inp.data), "--json", str(out)]


def _convert_to(d: Path, inp: Inputs, out: Path) -> list[str]:
    return ["convert", str(inp.safe_h5), "-o", str(out)]


def _run_to(d: Path, inp: Inputs, out: Path) -> list[str]:
    return ["run", "--model", str(inp.safe_h5), "--data-dir", str(inp.data), "--out", str(out)]


def _a_file(d: Path) -> Path:
    (d / "plain.txt").write_text("not a directory\n")
    return d / "plain.txt"


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _previous(path: Path) -> Path:
    """An earlier output at ``path`` (which must survive byte for byte)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"previous output\n")
    return path


QUICK_BENCH = ["--quick", "--batch-sizes", "1", "--threads", "1", "--optimization", "all"]

INVALID, UNSAFE, NOT_FOUND = errors.INVALID_INPUT, errors.UNSAFE_INPUT, errors.NOT_FOUND
OUTPUT, USAGE = errors.OUTPUT_ERROR, errors.USAGE

CASES = [
    # ---- CIFAR-10 files
    Case("data-truncated-batch", INVALID, _data_case(_truncated, "truncated")),
    Case("data-empty-batch", INVALID, _data_case(_empty_batch, "empty file")),
    Case("data-oversized-batch", INVALID,
         _data_case(_huge_batch, "far larger than a CIFAR-10 batch")),
    Case("data-label-out-of-range", INVALID,
         _data_case(_bad_label, "label 200 out of range", command="evaluate")),
    Case("data-garbage-tarball", INVALID, _data_case(_garbage_tar, "not a readable tar archive")),
    Case("data-pickle-runs-code-dir", UNSAFE, _data_case(
        _pickle_dir, "refused pickled global", code=UNSAFE, command="evaluate")),
    Case("data-pickle-runs-code-tar", UNSAFE, _data_case(
        _pickle_tar, "refused pickled global", code=UNSAFE)),
    Case("data-empty-dir-offline", NOT_FOUND, _data_case(
        _empty_dir, "no CIFAR-10 data under", code=NOT_FOUND, command="evaluate")),
    Case("data-dir-missing", NOT_FOUND, lambda d, inp: Run(
        ["data", "--data-dir", str(d / "nope"), "--json", str(d / "o.json")],
        (str(d / "nope"), "does not exist"), outputs=(d / "o.json",))),
    Case("indices-pickled-object-array", INVALID, lambda d, inp: (
        np.save(d / "idx.npy", np.array([_System(d / "MARKER")], dtype=object),
                allow_pickle=True),
        Run(["evaluate", str(inp.model), "--data-dir", str(inp.data), "--subset", "perf",
             "--indices", str(d / "idx.npy"), "--json", str(d / "o.json")],
            ("idx.npy", "not a plain .npy array"), outputs=(d / "o.json",)))[1]),
    Case("indices-missing", NOT_FOUND, lambda d, inp: Run(
        ["evaluate", str(inp.model), "--data-dir", str(inp.data), "--subset", "perf",
         "--indices", str(d / "nope.npy")], ("nope.npy", "not found"))),
    # ---- models for evaluation / verification
    Case("onnx-random-bytes", INVALID, _model_case(
        lambda d, inp: random_bytes(d / "random.onnx"), "not a readable ONNX file")),
    Case("onnx-truncated", INVALID, _model_case(_truncated_onnx, "not a readable ONNX file")),
    Case("onnx-truncated-verify", INVALID, _model_case(
        _truncated_onnx, "not a readable ONNX file", command="verify")),
    Case("onnx-input-rank-2", INVALID, _model_case(
        lambda d, inp: make_classifier(d / "flat.onnx", rank=2), "rank 2")),
    Case("onnx-one-channel", INVALID, _model_case(
        lambda d, inp: make_classifier(d / "gray.onnx", channels=1), "model input is 32×32×1")),
    Case("onnx-100-classes", INVALID, _model_case(
        lambda d, inp: make_classifier(d / "c100.onnx", classes=100), "100 outputs")),
    Case("onnx-nan-output", INVALID, _model_case(
        lambda d, inp: make_classifier(d / "nan.onnx", nan_output=True), "NaN")),
    Case("tflite-random-bytes", INVALID, _model_case(
        lambda d, inp: random_bytes(d / "random.tflite"), "not a loadable TFLite model")),
    Case("model-missing", NOT_FOUND, _model_case(lambda d, inp: d / "nope.onnx", "not found")),
    Case("onnx-missing-verify", NOT_FOUND, _model_case(
        lambda d, inp: d / "nope.onnx", "model file not found", command="verify")),
    Case("model-unknown-suffix", USAGE, _model_case(
        lambda d, inp: random_bytes(d / "model.bin"), "unknown model type")),
    Case("model-pt-garbage", INVALID, _model_case(
        lambda d, inp: random_bytes(d / "model.pt"), "not a valid pickle")),
    # ---- Keras files (refused by the pre-scan, before TensorFlow)
    Case("h5-lambda", UNSAFE, _convert_case(
        lambda d, inp: write_h5(d / "lambda.h5", keras_model(lambda_layer(d / "MARKER"))),
        "Lambda")),
    Case("h5-custom-layer", UNSAFE, _convert_case(_custom_layer_h5, "EvilLayer",
                                                  extra_path=True)),
    Case("keras-zip-lambda", UNSAFE, _convert_case(_lambda_keras_zip, "Lambda")),
    Case("h5-random-bytes", INVALID, _convert_case(
        lambda d, inp: random_bytes(d / "random.h5"), "not an HDF5 file")),
    Case("h5-not-a-model", INVALID, _convert_case(_hdf5_not_a_model, "no model_config")),
    Case("h5-that-is-a-zip", INVALID, _convert_case(_zip_named_h5, "not an HDF5 file")),
    Case("h5-missing", NOT_FOUND, _convert_case(lambda d, inp: d / "nope.h5", "file not found")),
    Case("run-lambda-model", UNSAFE, lambda d, inp: Run(
        ["run", "--model", str(write_h5(d / "lambda.h5", keras_model(lambda_layer(d / "M")))),
         "--data-dir", str(inp.data), "--out", str(d / "report")],
        ("lambda.h5", "Lambda"), outputs=(d / "report" / "model.onnx",))),
    Case("convert-onto-its-source", OUTPUT, lambda d, inp: Run(
        ["convert", str(inp.safe_h5), "-o", str(inp.safe_h5), "--force"],
        ("safe.h5", "would overwrite the input"))),
    # ---- outputs
    Case("json-in-missing-dir", OUTPUT, _output_case(
        _evaluate_json, lambda d: d / "missing" / "r.json", "does not exist")),
    Case("out-in-missing-parent", OUTPUT, _output_case(
        _evaluate_out, lambda d: d / "missing" / "reports", "does not exist")),
    Case("convert-to-missing-dir", OUTPUT, _output_case(
        _convert_to, lambda d: d / "missing" / "m.onnx", "does not exist")),
    Case("json-under-a-file", OUTPUT, _output_case(
        _data_json, lambda d: _a_file(d) / "r.json", "does not exist")),
    Case("out-is-a-file", OUTPUT, _output_case(
        _evaluate_out, _a_file, "exists and is not a directory", in_the_way=True)),
    Case("json-is-a-directory", OUTPUT, _output_case(
        _evaluate_json, lambda d: d, "is a directory", in_the_way=True)),
    Case("json-read-only-dir", OUTPUT, _output_case(
        _evaluate_json, lambda d: d / "resnet8-onnx-test.json", "writ", read_only=True)),
    Case("out-read-only-dir", OUTPUT, _output_case(
        _evaluate_out, lambda d: d / "resnet8-onnx-reports", "cannot create directory",
        read_only=True)),
    Case("convert-read-only-dir", OUTPUT, _output_case(
        _convert_to, lambda d: d / "resnet8-onnx-test.onnx", "writ", read_only=True)),
    Case("run-read-only-dir", OUTPUT, _output_case(
        _run_to, lambda d: d / "resnet8-onnx-report", "cannot create directory",
        read_only=True)),
    Case("json-exists", OUTPUT, _output_case(
        _data_json, lambda d: d / "r.json", "already exists", existing=True)),
    Case("convert-output-exists", OUTPUT, _output_case(
        _convert_to, lambda d: d / "m.onnx", "already exists", existing=True)),
    Case("report-exists", OUTPUT, _output_case(
        _evaluate_out_existing, lambda d: d / "reports" / "report.json", "already exists",
        existing=True)),
    # ---- outputs onto inputs: refused (exit 8) with or without --force, nothing written
    Case("json-onto-the-model", OUTPUT, lambda d, inp: Run(
        ["evaluate", str(_copy(inp.model, d / "victim.onnx")), "--data-dir", str(inp.data),
         "--json", str(d / "victim.onnx"), "--force"],
        ("victim.onnx", "would overwrite the input"))),
    Case("compare-json-onto-a-model", OUTPUT, lambda d, inp: Run(
        ["compare", str(inp.model), str(_copy(inp.model, d / "b.onnx")), "--data-dir",
         str(inp.data), "--json", str(d / "b.onnx"), "--force"],
        ("b.onnx", "would overwrite the input"))),
    Case("json-onto-a-symlinked-model", OUTPUT, lambda d, inp: (
        (d / "link.onnx").symlink_to(_copy(inp.model, d / "real.onnx")),
        Run(["evaluate", str(d / "link.onnx"), "--data-dir", str(inp.data),
             "--json", str(d / "real.onnx"), "--force"],
            ("real.onnx", "would overwrite the input")))[1]),
    Case("json-onto-a-hard-linked-model", OUTPUT, lambda d, inp: (
        os.link(_copy(inp.model, d / "real.onnx"), d / "hard.onnx"),
        Run(["evaluate", str(d / "hard.onnx"), "--data-dir", str(inp.data),
             "--json", str(d / "real.onnx"), "--force"],
            ("real.onnx", "would overwrite the input")))[1]),
    Case("report-file-onto-the-model", OUTPUT, lambda d, inp: Run(
        ["evaluate", str(_copy(inp.model, d / "rep" / "report.json")), "--backend",
         "onnxruntime", "--data-dir", str(inp.data), "--out", str(d / "rep"), "--force"],
        ("report.json", "would overwrite the input"))),
    Case("json-onto-a-data-file", OUTPUT, lambda d, inp: (
        (d / "data").mkdir(),
        Run(["data", "--data-dir", str(binary_dir(d / "data", binary_records(20))),
             "--json", str(d / "data" / "cifar-10-batches-bin" / "test_batch.bin"),
             "--force"], ("test_batch.bin", "written into the input directory")))[1]),
    Case("indices-onto-json", OUTPUT, lambda d, inp: (
        np.save(d / "idx.npy", np.array([3, 1, 2])),
        Run(["evaluate", str(inp.model), "--data-dir", str(inp.data), "--subset", "perf",
             "--indices", str(d / "idx.npy"), "--json", str(d / "idx.npy"), "--force"],
            ("idx.npy", "would overwrite the input")))[1]),
    Case("plot-onto-the-model", OUTPUT, lambda d, inp: Run(
        ["benchmark", str(_copy(inp.model, d / "m.onnx")), *QUICK_BENCH,
         "--plot", str(d / "m.onnx"), "--force"], ("m.onnx", "would overwrite the input"))),
    Case("save-optimized-onto-the-model", OUTPUT, lambda d, inp: Run(
        ["benchmark", str(_copy(inp.model, d / "m.onnx")), *QUICK_BENCH,
         "--save-optimized", str(d / "m.onnx"), "--force"],
        ("m.onnx", "would overwrite the input"))),
    Case("json-and-plot-one-file", OUTPUT, lambda d, inp: Run(
        ["benchmark", str(inp.model), *QUICK_BENCH, "--json", str(d / "x"), "--plot",
         str(d / "x")], ("x", "named twice as an output")), ),
    Case("run-out-onto-its-model", OUTPUT, lambda d, inp: Run(
        ["run", "--model", str(_copy(inp.safe_h5, d / "rep" / "model.onnx")), "--data-dir",
         str(inp.data), "--out", str(d / "rep"), "--force"],
        ("model.onnx", "would overwrite the input"))),
    # ---- outputs are checked before the models and data are even looked at
    Case("existing-report-refused-before-the-model", OUTPUT, lambda d, inp: Run(
        ["evaluate", str(d / "nope.onnx"), "--data-dir", str(d / "nope"), "--out",
         str(_previous(d / "rep" / "per_class.csv").parent)],
        ("per_class.csv", "already exists"),
        unchanged=(d / "rep" / "per_class.csv",))),
    Case("existing-compare-report-refused-before-the-models", OUTPUT, lambda d, inp: Run(
        ["compare", str(d / "a.onnx"), str(d / "b.onnx"), "--data-dir", str(d / "nope"),
         "--out", str(_previous(d / "rep" / "compare.md").parent)],
        ("compare.md", "already exists"), unchanged=(d / "rep" / "compare.md",))),
    Case("existing-data-json-refused-before-the-data", OUTPUT, lambda d, inp: Run(
        ["data", "--data-dir", str(d / "nope"), "--json", str(_previous(d / "d.json"))],
        ("d.json", "already exists"), unchanged=(d / "d.json",))),
    Case("existing-run-report-refused-before-the-model", OUTPUT, lambda d, inp: Run(
        ["run", "--model", str(d / "nope.h5"), "--data-dir", str(d / "nope"), "--out",
         str(_previous(d / "rep" / "report.md").parent)],
        ("report.md", "already exists"), unchanged=(d / "rep" / "report.md",))),
    # ---- options
    Case("batch-size-zero", USAGE, lambda d, inp: Run(
        ["evaluate", str(inp.model), "--batch-size", "0"], ("--batch-size", "'0'"))),
]


@dataclasses.dataclass
class Outcome:
    run: Run
    proc: subprocess.CompletedProcess[str] | None
    before: dict[str, tuple[int, int, str]]
    after: dict[str, tuple[int, int, str]]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("hardening") / "inputs")


@pytest.fixture(scope="module")
def corpus(inputs: Inputs) -> dict[str, Outcome]:
    """Build every case in its own directory, run them all concurrently, snapshot around it."""
    root = inputs.root.parent
    cache = root / "cache"
    cache.mkdir()
    runs: dict[str, tuple[Path, Run]] = {}
    for case in CASES:
        d = root / case.id
        d.mkdir()
        runs[case.id] = (d, case.build(d, inputs))
    before = {cid: snapshot(d) for cid, (d, _) in runs.items()}
    inputs_before = snapshot(inputs.root)

    def go(item: tuple[str, tuple[Path, Run]]):
        cid, (d, run) = item
        if run.skip:
            return cid, None
        return cid, run_cli(["-q", *run.argv], cwd=d, cache=cache, extra_path=run.extra_path)

    workers = max(2, min(6, 2 * (os.cpu_count() or 1)))
    with ThreadPoolExecutor(workers) as pool:
        procs = dict(pool.map(go, runs.items()))
    assert snapshot(inputs.root) == inputs_before, "a case modified the shared inputs"
    assert not list(cache.rglob("*")), "a case downloaded or cached something while offline"
    outcomes = {cid: Outcome(run, procs[cid], before[cid], snapshot(d))
                for cid, (d, run) in runs.items()}
    for d, _ in runs.values():  # let pytest clean up the chmod-0555 directories
        for sub in d.iterdir():
            if sub.is_dir():
                sub.chmod(0o755)
    return outcomes


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_with_its_exit_code_and_writes_nothing(
        case: Case, corpus: dict[str, Outcome]) -> None:
    outcome = corpus[case.id]
    run, proc = outcome.run, outcome.proc
    if proc is None:
        pytest.skip(run.skip or "not applicable here")
    assert proc.returncode == case.code, (proc.returncode, proc.stderr)
    line = error_line(proc)
    for fragment in run.fragments:
        assert fragment in line, (fragment, line)
    assert outcome.after == outcome.before, "files created or modified"
    for path in run.outputs:
        assert not path.exists(), f"{path} was created"
    for path in run.unchanged:
        assert path.read_bytes() == b"previous output\n"


def test_no_case_left_temporary_files(corpus: dict[str, Outcome], inputs: Inputs) -> None:
    root = inputs.root.parent
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".part") or p.name == "MARKER"
                 or p.name == "M"]
    assert leftovers == []


# --------------------------------------------------------------------------- not errors
@pytest.mark.parametrize("records", [10_000, 9_999], ids=["official-size", "one-short"])
def test_wrong_md5_but_valid_structure_loads_as_unofficial(tmp_path: Path, records: int) -> None:
    """Decision (README "Data"): an official file name with other bytes is loaded when its
    structure is sound (whole records, labels 0-9, 1,000 per class when it holds 10,000),
    marked unofficial with a warning naming the file, and never reported as the official
    test set. A user's own re-export of CIFAR-10 is legitimate input; passing its figures off
    as official would not be. A batch of another size is loaded the same way and says so."""
    data = binary_dir(tmp_path, binary_records(records, labels=np.arange(records) % 10))
    out = tmp_path / "data.json"
    proc = run_cli(["-q", "data", "--data-dir", str(data), "--json", str(out)], cwd=tmp_path,
                   cache=tmp_path / "cache")
    assert proc.returncode == errors.OK, proc.stderr
    described = json.loads(out.read_text())
    assert described["count"] == records
    assert described["source"]["official"] is False
    assert described["full_official_test_set"] is False
    warnings = described["source"]["warnings"]
    assert any("test_batch.bin: not the official file (md5 differs)" in w for w in warnings)
    assert any("not the 10,000 of an official batch" in w for w in warnings) == (records != 10_000)
    assert "warning:" in proc.stdout
    assert "not the official file" in proc.stdout


@pytest.mark.slow
def test_keras_cases_that_import_tensorflow(tmp_path: Path) -> None:
    """The two costly cases, run side by side: the Keras backend (which imports TensorFlow
    first) still refuses a Lambda model through the pre-scan, and a model Keras itself cannot
    load (a config without weights) is one line, exit 4, no output."""
    marker = tmp_path / "MARKER"
    evil = write_h5(tmp_path / "lambda.h5", keras_model(lambda_layer(marker)))
    hollow = write_h5(tmp_path / "hollow.h5", keras_model(
        keras_layer("Conv2D", "conv", "in", filters=4, kernel_size=[1, 1])))
    data = binary_dir(tmp_path, binary_records(20))
    runs = {
        "evaluate": (["-q", "evaluate", str(evil), "--data-dir", str(data)],
                     errors.UNSAFE_INPUT, ("lambda.h5", "Lambda")),
        "convert": (["-q", "convert", str(hollow), "-o", str(tmp_path / "hollow.onnx")],
                    errors.INVALID_INPUT, ("hollow.h5", "Keras could not load the model")),
    }
    before = snapshot(tmp_path)
    with ThreadPoolExecutor(2) as pool:
        procs = dict(zip(runs, pool.map(
            lambda argv: run_cli(argv, cwd=tmp_path, cache=tmp_path / "cache"),
            [argv for argv, _, _ in runs.values()]), strict=True))
    for name, (_, code, fragments) in runs.items():
        proc = procs[name]
        assert proc.returncode == code, (name, proc.stderr)
        line = error_line(proc)
        for fragment in fragments:
            assert fragment in line, (name, line)
    assert not marker.exists()
    assert snapshot(tmp_path) == before


def test_debug_shows_the_traceback_and_keeps_the_exit_code(tmp_path: Path,
                                                           inputs: Inputs) -> None:
    model = random_bytes(tmp_path / "random.onnx")
    proc = run_cli(["--debug", "-q", "evaluate", str(model), "--data-dir", str(inputs.data)],
                   cwd=tmp_path, cache=tmp_path / "cache")
    assert "Traceback" in proc.stderr
    assert "InvalidInputError" in proc.stderr
    assert proc.returncode == errors.INVALID_INPUT


# --------------------------------------------------------------------------- fuzzing
def _outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str | None, Any]:
    """(message, None) for a documented tool error, (None, result) otherwise; anything else
    (TypeError, MemoryError, ...) propagates and fails the property."""
    try:
        return None, fn(*args, **kwargs)
    except (InvalidInputError, UnsafeInputError) as exc:
        return str(exc), None


class _Trickle(io.RawIOBase):
    """A stream that returns at most a few bytes per read, as pipes and tar members may."""

    def __init__(self, data: bytes, steps: list[int]) -> None:
        self._data, self._pos, self._steps, self._i = data, 0, steps or [1], 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        step = self._steps[self._i % len(self._steps)]
        self._i += 1
        n = min(len(buffer), step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


_records = st.integers(1, 3).flatmap(lambda k: st.binary(min_size=k * RECORD,
                                                         max_size=k * RECORD))


@settings(max_examples=60, deadline=None)
@given(_records, st.lists(st.integers(1, 5000), min_size=1, max_size=8),
       st.integers(-RECORD, RECORD))
def test_streaming_parser_equals_whole_buffer_parse_or_refuses(
        data: bytes, steps: list[int], declared_delta: int) -> None:
    """Short reads never change the result; a stream shorter or longer than its declared
    size (a file changed while being read) is an InvalidInputError naming the file."""
    declared = len(data) + declared_delta
    try:
        expected = parse_binary_records(data, name="f.bin")
    except InvalidInputError:
        expected = None
    message, result = _outcome(parse_binary_stream, _Trickle(data, steps), declared,
                               name="f.bin")
    if message is not None:
        assert message.startswith("f.bin: ")
        assert "\n" not in message
        assert expected is None or declared_delta != 0
        return
    images, labels, md5 = result
    assert declared_delta == 0
    assert expected is not None
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    assert md5 == hashlib.md5(data).hexdigest()


def _values() -> st.SearchStrategy[Any]:
    """Anything a pickle can hold without a global beyond numpy arrays."""
    arrays = st.builds(
        lambda shape, dtype, fill: np.full(shape, fill, dtype=dtype),
        st.sampled_from([(), (0,), (1,), (2,), (1, 3072), (2, 3072), (1, 100), (2, 3, 1024),
                         (1, 1)]),
        st.sampled_from([np.uint8, np.int64, np.int8, np.float32, np.bool_, object]),
        st.integers(0, 12))
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                        st.floats(allow_nan=True), st.binary(max_size=8),
                        st.text(st.characters(max_codepoint=255), max_size=8))
    return st.recursive(st.one_of(scalars, arrays),
                        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                st.dictionaries(st.binary(max_size=6), inner,
                                                                max_size=3)),
                        max_leaves=8)


_valid_data = st.integers(1, 3).map(lambda n: np.zeros((n, 3072), np.uint8))
_label_arrays = st.builds(
    lambda fill, shape, dtype: np.full(shape, fill, dtype=dtype), st.integers(0, 12),
    st.sampled_from([(), (1,), (2,), (3,), (1, 1), (2, 1)]),
    st.sampled_from([np.int64, np.uint8, np.bool_, np.float64, object]))
_labels = st.one_of(st.lists(st.integers(-2, 12), max_size=4),
                    st.lists(st.integers(-2**70, 2**70), min_size=1, max_size=2),
                    _label_arrays, _values())


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.fixed_dictionaries({b"data": _valid_data | _values(), b"labels": _labels}),
    st.fixed_dictionaries({"data": _valid_data, "labels": _labels}),
    st.dictionaries(st.sampled_from([b"data", b"labels", b"x"]), _values(), max_size=3),
    _values()),
    st.sampled_from(["python2", "protocol4"]))
def test_pickled_batch_parser_refuses_any_structure_cleanly(obj: Any, writer: str) -> None:
    """Well-formed pickles of arbitrary shapes and types (0-d arrays, huge ints, bools, object
    arrays, nested dicts, str keys) reach the batch checks; the only outcome besides a valid
    batch is a one-line InvalidInputError. (This found 0-d ``labels`` crashing the parser.)"""
    from resnet8_onnx.data import parse_python_file_batch

    # Python 2's cPickle (the official files) or protocol 4; Python 3's protocols 0-2 write
    # bytes through _codecs.encode, which the unpickler refuses before any structure check.
    raw = py2_pickle(obj) if writer == "python2" else pickle.dumps(obj, protocol=4)
    message, result = _outcome(parse_python_file_batch, raw, name="test_batch")
    if message is not None:
        assert message.startswith("test_batch: ")
        assert "\n" not in message
        return
    images, labels = result
    assert images.dtype == np.uint8
    assert images.shape == (len(labels), 32, 32, 3)
    assert labels.min() >= 0
    assert labels.max() <= 9
