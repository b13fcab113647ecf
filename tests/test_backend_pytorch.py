"""backends.pytorch: loading .pt2 and state dicts, devices, torch-free paths, and the PyTorch
rows of evaluate/verify/compare. (Hostile files and the missing extra: test_torch_io.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet8_onnx.backends import load_backend
from resnet8_onnx.backends.pytorch.resnet8 import ResNet8
from resnet8_onnx.backends.pytorch.runner import TorchBackend
from resnet8_onnx.cli import main
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InvalidInputError
from resnet8_onnx.verify import check_dynamic_batch
from torch_factory import evaluate_cli


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
    assert check_dynamic_batch(backend, images).passed
    # MACs of the MLCommons ResNet8 from its shapes: stem + 3 stacks + dense.
    convs = [(32 * 32, 3 * 9, 16), (32 * 32, 16 * 9, 16), (32 * 32, 16 * 9, 16),
             (16 * 16, 16 * 9, 32), (16 * 16, 32 * 9, 32), (16 * 16, 16, 32),
             (8 * 8, 32 * 9, 64), (8 * 8, 64 * 9, 64), (8 * 8, 32, 64)]
    expected = sum(pixels * k * filters for pixels, k, filters in convs) + 64 * 10
    assert backend.macs() == expected


@pytest.mark.shared
def test_macs_match_the_onnx_count(resnet8_pt2, resnet8_onnx) -> None:
    import onnx

    from resnet8_onnx.backends.onnxrt.graph import count_macs

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


# --------------------------------------------------------------------------- imports
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


def test_default_threads_never_exceed_the_cores_this_process_may_use(
        tiny_pt2: Path, monkeypatch) -> None:
    """torch sizes its default pool by the host's physical cores; an affinity mask of one
    core (forced here) must cap it, at load and before each batch."""
    from resnet8_onnx import machine

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)  # a host default larger than the allowed set
        monkeypatch.setattr(machine, "allowed_cpus", lambda: {0})
        backend = load_backend(tiny_pt2)
        assert torch.get_num_threads() == 1
        assert backend.info.extra["threads"] == 1
        torch.set_num_threads(4)  # another library raised it again
        backend.predict(np.zeros((2, 32, 32, 3), np.float32))
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(machine, "allowed_cpus", lambda: {0, 1, 2, 3, 4, 5, 6, 7})
        torch.set_num_threads(2)  # within the allowed set: left as the runtime chose
        backend.predict(np.zeros((2, 32, 32, 3), np.float32))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
