"""torch_io: PyTorch files are pre-scanned and refused before anything in them can run;
state dicts and exported programs are written and read back exactly.

Every hostile payload here would create a marker file if any of its code ran (``Marker``); the
tests check the refusal *and* that the marker never appeared. Each hostile variant of a .pt2
is a real exported archive with one edit, and an unedited copy still loads (the control).
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet8_onnx.backends import load_backend
from resnet8_onnx.backends.pytorch.safe_io import (
    METADATA_FILE,
    inspect_pt2_file,
    load_exported_program,
    load_state_dict,
    save_state_dict,
    scan_pickle,
    scan_torch_save,
)
from resnet8_onnx.cli import main
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import (
    InputNotFoundError,
    InvalidInputError,
    OutputError,
    UnsafeInputError,
)
from torch_factory import Marker, evaluate_cli, rewrite_pt2


# --------------------------------------------------------------------------- hostile files
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_hostile_pt_is_refused_before_anything_runs(tmp_path: Path, fmt: str, capsys) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"conv.weight": torch.zeros(2), "x": Marker(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps({"x": Marker(marker)}, protocol=2))
    for argv in (["evaluate", str(path), "--data-dir", "/x"],
                 ["convert", str(path), "-o", str(tmp_path / "out.pt2")],
                 ["convert", str(path), "-o", str(tmp_path / "out.onnx")]):
        assert main(["-q", *argv]) == errors.UNSAFE_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert "refuses pickled global" in err[0]
        assert "system" in err[0]
    assert not marker.exists()
    assert not list(tmp_path.glob("out.*"))
    # The file really is hostile: an unrestricted unpickler would have run it.
    with open(path, "rb") as f:
        data = f.read()
    if fmt == "legacy":
        pickle.loads(data)
        assert marker.exists()


def _evil_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(((Marker(marker),), {}), buffer)
    return buffer.getvalue()


def _program_edit(mutate):
    def edit(name: str, data: bytes):
        if name == "models/model.json":
            program = json.loads(data)
            mutate(program)
            return json.dumps(program).encode()
        return None if name == "<new>" else data
    return edit


def _first_node(program: dict) -> dict:
    return program["graph_module"]["graph"]["nodes"][0]


HOSTILE_PT2 = {
    "pickled-weight": (lambda marker: lambda name, data: (
        json.dumps({"config": {k: {**v, "use_pickle": True} for k, v in
                               json.loads(data)["config"].items()}}).encode()
        if name == "data/weights/model_weights_config.json"
        else (None if name == "<new>" else data)), "stored as a pickle"),
    "sample-inputs": (lambda marker: lambda name, data: (
        _evil_pickle(marker) if name == "data/sample_inputs/model.pt"
        else (None if name == "<new>" else data)), "refuses pickled global"),
    "node-target": (lambda marker: _program_edit(
        lambda p: _first_node(p).update(target="torch.os.system")), "torch.os.system"),
    "sympy-expression": (lambda marker: _program_edit(
        lambda p: p["range_constraints"].update(
            {f"__import__('os').system('touch {marker}')": {"min_val": 0, "max_val": None}})),
        "symbolic expression"),
    "guards": (lambda marker: _program_edit(
        lambda p: p.update(guards_code=[f"__import__('os').system('touch {marker}')"])),
        "guard code"),
    "aoti": (lambda marker: lambda name, data: (
        ("data/aotinductor/model/model.so", b"\x7fELF") if name == "<new>" else data),
        "AOTInductor"),
    "file-op": (lambda marker: _program_edit(
        lambda p: _first_node(p).update(target="torch.ops.aten.from_file.default")),
        "from_file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_PT2))
def test_hostile_pt2_is_refused_before_torch_loads_it(tiny_pt2: Path, tmp_path: Path,
                                                      case: str, capsys) -> None:
    marker = tmp_path / "marker"
    make_edit, fragment = HOSTILE_PT2[case]
    path = rewrite_pt2(tiny_pt2, tmp_path / "evil.pt2", make_edit(marker))
    with pytest.raises(UnsafeInputError, match=fragment.replace(".", r"\.")):
        load_backend(path)
    code, err = evaluate_cli(path, capsys)
    assert code == errors.UNSAFE_INPUT
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()


def test_untouched_copy_of_an_archive_still_loads(tiny_pt2: Path, tmp_path: Path) -> None:
    """The rewriting used above changes nothing by itself (so the refusals are the edits')."""
    path = rewrite_pt2(tiny_pt2, tmp_path / "copy.pt2",
                       lambda name, data: None if name == "<new>" else data)
    x = np.zeros((2, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(load_backend(path).predict(x), load_backend(tiny_pt2).predict(x))
    assert load_backend(path).metadata["builder"] == "native"


def test_not_a_pt2_archive(tmp_path: Path, capsys) -> None:
    path = tmp_path / "junk.pt2"
    path.write_bytes(b"not a zip")
    code, err = evaluate_cli(path, capsys)
    assert code == errors.INVALID_INPUT
    assert "not a torch.export archive" in err


def test_our_metadata_is_plain_json(tiny_pt2: Path) -> None:
    with zipfile.ZipFile(tiny_pt2) as archive:
        names = archive.namelist()
        meta = [n for n in names if n.endswith("/extra/" + METADATA_FILE)]
        assert len(meta) == 1
        assert json.loads(archive.read(meta[0]))["builder"] == "native"
        assert not any(n.endswith(".pkl") for n in names if "sample_inputs" not in n)


# --------------------------------------------------------------------------- imports
def test_missing_torch_extra_is_one_line_naming_it(tiny_pt2: Path, tmp_path: Path,
                                                    resnet8_h5: Path) -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # as if the extra were not installed
        from resnet8_onnx.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    for argv in (["evaluate", str(tiny_pt2), "--data-dir", "/x"],
                 ["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.pt2")],
                 ["convert", str(resnet8_h5), "-o", str(tmp_path / "k.pt2")],  # auto builder
                 ["convert", str(resnet8_h5), "-o", str(tmp_path / "k.safetensors")]):
        (tmp_path / "m.onnx").write_bytes(b"")
        proc = subprocess.run([sys.executable, "-c", code, "-q", *argv], capture_output=True,
                              text=True, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == errors.USAGE, proc.stderr
        assert len(lines) == 1
        assert "'torch' extra" in lines[0]
        assert "pip install" in lines[0]


# --------------------------------------------------------------------------- the scans themselves
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickled_call_is_named_and_never_made(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    data = pickle.dumps([collections.OrderedDict(a=1), Marker(marker)], protocol=protocol)
    with pytest.raises(UnsafeInputError, match=r"evil\.pt: refuses pickled global (posix|os)"
                                               r"\.system"):
        scan_pickle(data, "evil.pt")
    assert not marker.exists()
    pickle.loads(data)  # the control: an ordinary unpickler does run it
    assert marker.exists()


def test_tensors_and_plain_containers_pass_the_dry_run() -> None:
    buffer = io.BytesIO()
    state = collections.OrderedDict(w=torch.arange(6.0).reshape(2, 3), n=torch.tensor(3))
    torch.save({"state_dict": state, "epoch": 3, "names": ["a", "b"]}, buffer)
    scan_torch_save(buffer.getvalue(), "ok.pt")  # no exception
    legacy = io.BytesIO()
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    scan_torch_save(legacy.getvalue(), "legacy.pt")


@pytest.mark.parametrize(("data", "fragment"), [
    (b"\x80\x02}q\x00(X", "not a valid pickle"),
    (b"PK\x03\x04 truncated zip", "corrupt zip archive"),
])
def test_broken_files_are_invalid_not_unsafe(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        scan_torch_save(data, "broken.pt")


def test_a_zip_without_exactly_one_data_pickle_is_not_a_torch_save(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a/data.pkl", pickle.dumps({}))
        archive.writestr("b/data.pkl", pickle.dumps({}))
    with pytest.raises(InvalidInputError, match=r"expected one data\.pkl, found 2"):
        scan_torch_save(buffer.getvalue(), "two.pt")


def test_unexpected_members_of_a_pt2_are_refused(tiny_pt2: Path, tmp_path: Path) -> None:
    for member in ("code/__torch__/evil.py", "data/aotinductor/model/model.so"):
        path = rewrite_pt2(tiny_pt2, tmp_path / "odd.pt2",
                           lambda name, data, m=member: (m, b"x") if name == "<new>" else data)
        with pytest.raises(UnsafeInputError, match="refuses"):
            inspect_pt2_file(path)
    missing = rewrite_pt2(tiny_pt2, tmp_path / "missing.pt2",
                          lambda name, data: None if name in ("<new>", "models/model.json")
                          else data)
    with pytest.raises(InvalidInputError, match=r"models/model\.json missing"):
        inspect_pt2_file(missing)
    with pytest.raises(InputNotFoundError):
        inspect_pt2_file(tmp_path / "nope.pt2")


def test_the_scan_summarises_a_clean_pt2_and_loading_matches_it(tiny_pt2: Path) -> None:
    scan = inspect_pt2_file(tiny_pt2)
    assert scan["metadata"]["builder"] == "native"
    assert all(t.startswith("torch.ops.aten.") for t in scan["targets"])
    # ResNet8's structure: 9 convolutions, 7 BatchNorms, 2 explicit (bottom/right) paddings
    # for the stride-2 3×3 convolutions, 3 residual additions.
    targets = {t.split(".")[3]: n for t, n in scan["targets"].items()}
    assert (targets["conv2d"], targets["batch_norm"], targets["pad"], targets["add"]) == (
        9, 7, 2, 3)
    program, metadata = load_exported_program(tiny_pt2)
    assert metadata == scan["metadata"]
    x = torch.zeros(2, 32, 32, 3)
    assert tuple(program.module()(x).shape) == (2, 10)


# --------------------------------------------------------------------------- state dicts
def test_a_state_dict_survives_safetensors_exactly(tmp_path: Path) -> None:
    state = {"a.weight": torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),
             "a.steps": torch.tensor([7], dtype=torch.int64)}
    path = tmp_path / "w.safetensors"
    data = save_state_dict(state, path, {"note": "hello"})
    assert path.read_bytes() == data
    loaded, metadata = load_state_dict(path)
    assert metadata == {"note": "hello"}
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype
    with pytest.raises(OutputError, match="already exists"):
        save_state_dict(state, path, {})
    assert path.read_bytes() == data


def test_a_pt_state_dict_or_checkpoint_loads_as_named_tensors(tmp_path: Path) -> None:
    state = {"w": torch.arange(4.0)}
    torch.save({"state_dict": state, "epoch": 2}, tmp_path / "ckpt.pth")
    loaded, metadata = load_state_dict(tmp_path / "ckpt.pth")
    assert metadata == {}
    np.testing.assert_array_equal(loaded["w"].numpy(), np.arange(4.0))
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"torch\.load could not read it"):
        load_state_dict(tmp_path / "empty.pt")
    (tmp_path / "w.bin").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="not a PyTorch state dict file"):
        load_state_dict(tmp_path / "w.bin")
    with pytest.raises(InputNotFoundError):
        load_state_dict(tmp_path / "missing.pt")
