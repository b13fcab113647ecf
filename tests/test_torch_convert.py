"""torch_convert: Keras/ONNX → PyTorch and back: the builder choice, export, round trip.

Numbers are checked against independent implementations: Keras (the source) and ONNX Runtime
(the converted model). The module itself is tested in test_torch_models.py, recognition and
weight porting in test_torch_native.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from resnet8_onnx.backends.pytorch.resnet8 import ResNet8
from resnet8_onnx.cli import main
from resnet8_onnx.convert import convert as convert_torch
from resnet8_onnx.convert.to_torch import (
    _choose_builder,
    export_program,
    native_from_state_dict,
)
from resnet8_onnx.evaluate import run_inference
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import UsageError
from resnet8_onnx.verify import compare_outputs, verify_outputs
from torch_factory import ort_output


@pytest.mark.shared
def test_auto_builder_falls_back_to_onnx2torch(tmp_path: Path, resnet8_h5: Path) -> None:
    import shutil

    import h5py

    assert _choose_builder(resnet8_h5, "auto") == "native"
    other = tmp_path / "other.h5"
    shutil.copy(resnet8_h5, other)
    with h5py.File(other, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][3]["config"]["activation"] = "tanh"
        f.attrs["model_config"] = json.dumps(config)
    assert _choose_builder(other, "auto") == "onnx2torch"
    with pytest.raises(UsageError, match="not recognised as the MLCommons ResNet8"):
        convert_torch(other, tmp_path / "x.pt2", builder="native")
    assert not (tmp_path / "x.pt2").exists()


# --------------------------------------------------------------------------- real-data parity
def _torch_outputs(path: Path, dataset) -> np.ndarray:
    from resnet8_onnx.backends import load_backend

    outputs, _ = run_inference(load_backend(path), dataset)
    return outputs


@pytest.mark.shared
@pytest.mark.slow
def test_native_pt2_matches_keras_on_the_test_set(resnet8_pt2, cifar_test,
                                                  keras_full_outputs) -> None:
    outputs = _torch_outputs(resnet8_pt2, cifar_test)
    cmp = compare_outputs(keras_full_outputs, outputs)
    assert cmp.passed
    assert cmp.max_abs_diff <= 1e-5
    assert cmp.argmax_agreement == len(cifar_test) == 10_000
    labels = np.asarray(cifar_test.labels)
    assert (outputs.argmax(1) == labels).sum() == (keras_full_outputs.argmax(1) == labels).sum()


@pytest.mark.shared
@pytest.mark.slow
def test_onnx2torch_pt2_matches_onnx_runtime_and_keras(resnet8_onnx2torch_pt2, cifar_test,
                                                       onnx_full_outputs,
                                                       keras_full_outputs) -> None:
    outputs = _torch_outputs(resnet8_onnx2torch_pt2, cifar_test)
    for reference in (onnx_full_outputs, keras_full_outputs):
        cmp = compare_outputs(reference, outputs)
        assert cmp.passed
        assert cmp.argmax_agreement == 10_000


@pytest.mark.shared
@pytest.mark.slow
def test_round_trip_to_onnx_verifies_against_keras(tmp_path: Path, resnet8_pt2, cifar_test,
                                                   keras_backend, keras_full_outputs,
                                                   capsys) -> None:
    back = tmp_path / "back.onnx"
    assert main(["-q", "convert", str(resnet8_pt2), "-o", str(back), "--json", "-"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["target"] == "onnx"
    assert result["checks"][0]["max_abs_diff"] <= 1e-5
    from resnet8_onnx.backends import load_backend

    candidate = load_backend(back)
    outputs, _ = run_inference(candidate, cifar_test)
    report = verify_outputs(keras_backend, candidate, cifar_test.images, keras_full_outputs,
                            outputs)
    assert report.passed, report.parity
    assert report.argmax_agreement == 10_000
    assert report.max_abs_diff <= 1e-5
    structure = report.to_dict()["structure"]
    assert structure["inputs"][0]["name"] == "input"
    assert structure["inputs"][0]["shape"] == ["N", 32, 32, 3]
    assert structure["outputs"][0]["name"] == "probabilities"
    assert structure["metadata"]["source_format"] == "pt2"
    assert structure["metadata"]["source_sha256"] == result["source_sha256"]


@pytest.mark.shared
def test_safetensors_state_dict_for_fine_tuning(tmp_path: Path, resnet8_h5, resnet8_pt2) -> None:
    from safetensors import safe_open

    out = tmp_path / "r8.safetensors"
    result = convert_torch(resnet8_h5, out)
    assert result.target == "safetensors"
    assert result.builder == "native"
    with safe_open(str(out), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    assert "stacks.2.bn2.running_var" in keys  # BatchNorm kept: trainable
    assert json.loads(meta["resnet8_config"])["epsilon"] == pytest.approx(1e-3)
    module, info = native_from_state_dict(out)
    assert module.training is False
    assert info["output_kind"] == "probabilities"
    module.train()  # fine-tunable: gradients reach the first convolution
    module(torch.rand(4, 32, 32, 3) * 255).sum().backward()
    assert module.conv.weight.grad is not None
    # The same weights as the exported program.
    from resnet8_onnx.backends import load_backend

    x = np.random.default_rng(1).integers(0, 256, (9, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(load_backend(out).predict(x), load_backend(resnet8_pt2).predict(x),
                               atol=1e-5)


# --------------------------------------------------------------------------- export
def test_exported_program_has_a_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = ResNet8().eval()
    program = export_program(module, (32, 32, 3))
    x = torch.rand(256, 32, 32, 3) * 255
    with torch.no_grad():
        reference = module(x)
        for n in (1, 7, 256):
            got = torch.cat([program.module()(x[i:i + n]) for i in range(0, 256, n)])
            torch.testing.assert_close(got, reference, atol=1e-5, rtol=1e-5)


def test_convert_state_dict_pt_to_pt2_and_onnx(tmp_path: Path) -> None:
    """A plain .pt state dict (weights_only-loadable) builds the native module."""
    torch.manual_seed(0)
    module = ResNet8().eval()
    pt = tmp_path / "weights.pt"
    torch.save(module.state_dict(), pt)
    assert main(["-q", "convert", str(pt), "-o", str(tmp_path / "w.pt2")]) == 0
    assert main(["-q", "convert", str(tmp_path / "w.pt2"), "-o", str(tmp_path / "w.onnx")]) == 0
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3)).astype(np.float32)
    expected = module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ort_output(onnx.load(str(tmp_path / "w.onnx")), x), expected,
                               atol=1e-5)


def test_conversion_errors_are_one_line_usage_errors(tmp_path: Path, capsys) -> None:
    pt = tmp_path / "w.pt"
    torch.save(ResNet8().state_dict(), pt)
    cases = [
        (["convert", str(pt), "-o", str(tmp_path / "x.pt2"), "--torch-builder", "onnx2torch"],
         "onnx2torch needs an ONNX or Keras source"),
        (["convert", str(pt), "-o", str(tmp_path / "x.onnx"), "--opset", "17"],
         "opset 18 or newer"),
    ]
    for argv, fragment in cases:
        assert main(argv) == errors.USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert fragment in err[0]
    assert not list(tmp_path.glob("x.*"))
