"""The PyTorch backend: loading .pt2 and state dicts safely, refusing hostile files, devices,
the missing-extra path, and the PyTorch rows of evaluate/verify/compare.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet8_onnx import errors
from resnet8_onnx.backends import load_backend
from resnet8_onnx.backends.pytorch import TorchBackend
from resnet8_onnx.cli import main
from resnet8_onnx.errors import InvalidInputError, UnsafeInputError
from resnet8_onnx.torch_convert import export_program
from resnet8_onnx.torch_io import METADATA_FILE, save_exported_program
from resnet8_onnx.torch_models import ResNet8
from resnet8_onnx.verify import check_dynamic_batch


class _Marker:
    """Pickles to a call that creates a marker file: what a hostile model file would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def tiny_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet8 with random weights, exported as we export the real one (no shared data)."""
    torch.manual_seed(0)
    module = ResNet8().eval()
    out = tmp_path_factory.mktemp("pt2") / "tiny.pt2"
    save_exported_program(export_program(module, (32, 32, 3)), out,
                          {"output_kind": "probabilities", "input_shape": ["N", 32, 32, 3],
                           "num_classes": 10, "builder": "native"})
    return out


def rewrite_pt2(source: Path, target: Path, edit) -> Path:
    """Copy a .pt2 archive, letting ``edit(relative name, bytes) -> bytes | None`` change it."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            root, relative = info.filename.split("/", 1)
            data = edit(relative, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
        extra = edit("<new>", b"")
        if extra:
            name, data = extra
            dst.writestr(f"{root}/{name}", data)
    return target


def evaluate_cli(path: Path, capsys) -> tuple[int, str]:
    code = main(["-q", "evaluate", str(path), "--data-dir", "/nonexistent", "--offline"])
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- the backend
def test_backend_loads_a_pt2_and_describes_itself(tiny_pt2: Path) -> None:
    backend = load_backend(tiny_pt2, threads=1)
    assert isinstance(backend, TorchBackend)
    info = backend.info
    assert info.name == "torch"
    assert info.runtime_version == torch.__version__
    assert info.input_shape == (None, 32, 32, 3)
    assert info.num_classes == 10
    assert info.extra["device"] == "cpu"
    assert info.extra["tf32"] is False
    assert info.extra["compute_dtype"] == "float32"
    assert info.extra["threads"] == 1
    assert not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32
    x = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.float32)
    out = backend.predict(x)
    assert out.shape == (5, 10)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(InvalidInputError, match="expected"):
        backend.predict(np.zeros((2, 3, 32, 32), np.float32))  # NCHW by mistake


def test_dynamic_batch_and_macs(tiny_pt2: Path) -> None:
    backend = load_backend(tiny_pt2)
    images = np.random.default_rng(1).integers(0, 256, (256, 32, 32, 3)).astype(np.float32)
    assert check_dynamic_batch(backend, images)["passed"]
    # MACs of the MLCommons ResNet8 from its shapes: stem + 3 stacks + dense.
    convs = [(32 * 32, 3 * 9, 16), (32 * 32, 16 * 9, 16), (32 * 32, 16 * 9, 16),
             (16 * 16, 16 * 9, 32), (16 * 16, 32 * 9, 32), (16 * 16, 16, 32),
             (8 * 8, 32 * 9, 64), (8 * 8, 64 * 9, 64), (8 * 8, 32, 64)]
    expected = sum(pixels * k * filters for pixels, k, filters in convs) + 64 * 10
    assert backend.macs() == expected


@pytest.mark.shared
def test_macs_match_the_onnx_count(resnet8_pt2, resnet8_onnx) -> None:
    import onnx

    from resnet8_onnx.verify import count_macs

    assert load_backend(resnet8_pt2).macs() == count_macs(onnx.load(str(resnet8_onnx)))


def test_state_dict_files_load_as_the_native_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = ResNet8().eval()
    x = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3)).astype(np.float32)
    expected = module(torch.from_numpy(x)).detach().numpy()
    torch.save(module.state_dict(), tmp_path / "a.pt")
    torch.save({"state_dict": module.state_dict(), "epoch": 3}, tmp_path / "b.pth")
    for name in ("a.pt", "b.pth"):
        backend = load_backend(tmp_path / name)
        assert backend.info.extra["format"] == "state_dict"
        np.testing.assert_allclose(backend.predict(x), expected, atol=1e-5)


@pytest.mark.parametrize(("content", "fragment"), [
    ({"a": 1}, "not a named tensor"),
    ([torch.zeros(2)], "expected a state dict"),
    ({"conv.weight": torch.zeros(16, 3, 3, 3)}, "not a state dict of the ResNet8"),
])
def test_plain_pickles_that_are_no_resnet8_state_dict(tmp_path: Path, content, fragment,
                                                      capsys) -> None:
    path = tmp_path / "x.pt"
    torch.save(content, path)
    code, err = evaluate_cli(path, capsys)
    assert code == errors.INVALID_INPUT
    assert fragment in err


def test_cuda_without_a_gpu_is_a_usage_error(tiny_pt2: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    code = main(["-q", "evaluate", str(tiny_pt2), "--device", "cuda", "--data-dir", "/x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == errors.USAGE
    assert len(err) == 1
    assert "--device cuda" in err[0]


def test_device_is_for_pytorch_models_only(tmp_path: Path, capsys) -> None:
    from model_factory import make_classifier

    model = make_classifier(tmp_path / "m.onnx")
    assert main(["-q", "evaluate", str(model), "--device", "cuda", "--data-dir", "/x"]) \
        == errors.USAGE
    assert "applies to PyTorch models only" in capsys.readouterr().err


# --------------------------------------------------------------------------- hostile files
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_hostile_pt_is_refused_before_anything_runs(tmp_path: Path, fmt: str, capsys) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"conv.weight": torch.zeros(2), "x": _Marker(marker)}
    if fmt == "zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps({"x": _Marker(marker)}, protocol=2))
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
    torch.save(((_Marker(marker),), {}), buffer)
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
def test_missing_torch_extra_is_one_line_naming_it(tiny_pt2: Path, tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # as if the extra were not installed
        from resnet8_onnx.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    for argv in (["evaluate", str(tiny_pt2), "--data-dir", "/x"],
                 ["convert", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.pt2")]):
        (tmp_path / "m.onnx").write_bytes(b"")
        proc = subprocess.run([sys.executable, "-c", code, "-q", *argv], capture_output=True,
                              text=True, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == errors.USAGE, proc.stderr
        assert len(lines) == 1
        assert "'torch' extra" in lines[0]
        assert "pip install" in lines[0]


def test_onnx_and_keras_free_paths_never_import_torch(tmp_path: Path) -> None:
    """Choosing a backend by suffix, ONNX evaluation and the CLI parser stay torch-free."""
    from model_factory import make_classifier

    model = make_classifier(tmp_path / "m.onnx")
    tests_dir = str(Path(__file__).parent)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {tests_dir!r})
        from model_factory import synthetic_dataset
        from resnet8_onnx.backends import backend_for, load_backend
        from resnet8_onnx.cli import build_parser
        from resnet8_onnx.evaluate import evaluate
        build_parser()
        assert backend_for("m.pt2") == "torch"
        evaluate(load_backend({str(model)!r}), synthetic_dataset(20))
        print(",".join(m for m in ("torch", "onnx2torch", "safetensors") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- commands
@pytest.mark.shared
@pytest.mark.slow
def test_verify_evaluate_and_compare_a_pt2(resnet8_h5, resnet8_onnx, resnet8_pt2,
                                           tmp_path: Path, capsys) -> None:
    data = str(Path(resnet8_h5).parents[1])
    assert main(["-q", "verify", str(resnet8_h5), str(resnet8_pt2), "--data-dir", data,
                 "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"]
    assert report["argmax_agreement"] == 10_000
    assert report["max_abs_diff"] <= 1e-5
    assert report["dynamic_batch"]["passed"]
    assert report["structure"]["kind"] == "PyTorch"

    assert main(["-q", "compare", str(resnet8_h5), str(resnet8_onnx), str(resnet8_pt2),
                 "--data-dir", data, "--json", "-"]) == 0
    record = json.loads(capsys.readouterr().out)
    models = record["models"]
    assert [m["model"]["backend"] for m in models] == ["keras", "onnxruntime", "torch"]
    assert len({m["metrics"]["correct"] for m in models}) == 1
    assert len({json.dumps([c["correct"] for c in m["metrics"]["per_class"]])
                for m in models}) == 1
    for m in models[1:]:
        assert m["versus_reference"]["agreement"] == 10_000
        assert m["versus_reference"]["max_abs_diff"] <= 1e-5
    torch_model = models[2]["model"]
    assert torch_model["device"] == "cpu"
    assert torch_model["tf32"] is False
    assert models[2]["environment"]["torch"] == torch.__version__


def test_benchmark_measures_a_pt2(tiny_pt2: Path, capsys) -> None:
    assert main(["-q", "benchmark", str(tiny_pt2), "--batch-sizes", "1,4", "--threads", "1",
                 "--min-seconds", "0", "--min-iterations", "1", "--json", "-"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["models"][0]["backend"] == "torch"
    assert record["models"][0]["macs_per_image"] > 12_000_000
    assert {r["batch_size"] for r in record["results"]} == {1, 4}


def test_unknown_model_file_under_torch_backend(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(InvalidInputError, match="safetensors"):
        load_backend(path)
