"""verify: structure report, interface contract, parity figures, dynamic batch, localisation."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import shared_path
from model_factory import make_classifier
from resnet8_onnx.backends.onnxrt.graph import structure_report
from resnet8_onnx.backends.onnxrt.runner import load as load_onnx
from resnet8_onnx.cli import main
from resnet8_onnx.evaluate import run_inference
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InvalidInputError
from resnet8_onnx.verify import (
    check_dynamic_batch,
    check_io_contract,
    compare_outputs,
    verify,
    verify_outputs,
)


# --------------------------------------------------------------------------- pure comparison
def test_compare_identical_outputs_pass() -> None:
    x = np.random.default_rng(0).random((20, 10)).astype(np.float32)
    cmp = compare_outputs(x, x.copy())
    assert cmp.passed
    assert cmp.max_abs_diff == 0.0
    assert cmp.argmax_agreement == 20
    assert cmp.min_cosine_similarity == pytest.approx(1.0)


#: The parity block's JSON keys, as reports have always written them.
PARITY_KEYS = ["passed", "samples", "argmax_agreement", "max_abs_diff", "mean_abs_diff",
               "p99_abs_diff", "max_rel_diff", "p99_rel_diff", "min_cosine_similarity",
               "mean_cosine_similarity", "elements_over_tolerance", "nonfinite_reference",
               "nonfinite_candidate", "atol", "rtol", "first_disagreements"]


@pytest.mark.parametrize("shift", [0.0, 1e-3])
def test_compare_outputs_is_the_records_parity_block(shift: float) -> None:
    """One shape: what compare_outputs returns is the record's Parity, keys unchanged."""
    from resnet8_onnx.records import Parity

    rng = np.random.default_rng(2)
    ref = rng.random((30, 10))
    cand = ref + shift * rng.standard_normal(ref.shape)
    cmp = compare_outputs(ref, cand, atol=1e-4, rtol=1e-4)
    assert isinstance(cmp, Parity)
    saved = cmp.to_dict()
    assert list(saved) == PARITY_KEYS
    assert Parity.from_dict(json.loads(json.dumps(saved))) == cmp
    diff = np.abs(ref - cand)
    over = int(((diff > 1e-4) & (diff > 1e-4 * np.abs(ref))).sum())
    agree = int((ref.argmax(1) == cand.argmax(1)).sum())
    assert (cmp.elements_over_tolerance, cmp.argmax_agreement) == (over, agree)
    assert cmp.passed is (over == 0 and agree == 30)
    assert cmp.max_abs_diff == pytest.approx(diff.max())


def test_element_fails_only_when_over_both_tolerances() -> None:
    ref = np.array([[100.0, 1.0], [0.0, 1.0]])
    # 1e-4 on 100 is over atol but under rtol*|ref| (1e-3): passes.
    assert compare_outputs(ref, ref + np.array([[1e-4, 0], [0, 0]]), atol=1e-5, rtol=1e-5).passed
    # 1e-4 on 0 is over atol and over rtol*0: fails.
    cmp = compare_outputs(ref, ref + np.array([[0, 0], [1e-4, 0]]), atol=1e-5, rtol=1e-5)
    assert not cmp.passed
    assert cmp.elements_over_tolerance == 1
    assert cmp.max_abs_diff == pytest.approx(1e-4)


def test_argmax_disagreement_fails_and_is_located() -> None:
    ref = np.eye(10)[:5]
    cand = ref.copy()
    cand[3] = np.roll(cand[3], 1)
    cmp = compare_outputs(ref, cand, atol=10, rtol=10, indices=np.arange(100, 105))
    assert cmp.argmax_agreement == 4
    assert not cmp.passed
    assert cmp.first_disagreements == [103]


def test_nan_candidate_fails() -> None:
    ref = np.ones((3, 10))
    cand = ref.copy()
    cand[1, 2] = np.nan
    cmp = compare_outputs(ref, cand)
    assert cmp.nonfinite_candidate == 1
    assert not cmp.passed


def test_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(1)
    ref = rng.random((50, 10))
    cand = ref + rng.normal(0, 1e-3, ref.shape)
    cmp = compare_outputs(ref, cand)
    diff = np.abs(ref - cand)
    assert cmp.mean_abs_diff == pytest.approx(diff.mean())
    assert cmp.p99_abs_diff == pytest.approx(np.percentile(diff, 99))
    cos = (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    assert cmp.min_cosine_similarity == pytest.approx(cos.min())


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(InvalidInputError):
        compare_outputs(np.zeros((2, 10)), np.zeros((2, 9)))


# --------------------------------------------------------------------------- structure
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"channels": 1}, "expected [N, 32, 32, 3]"), ({"classes": 100}, "expected [N, 10]"),
     ({"batch": 4}, "fixed batch"), ({"rank": 2}, "expected [N, 32, 32, 3]")],
)
def test_interface_contract_problems(tmp_path, kwargs, fragment) -> None:
    report = structure_report(make_classifier(tmp_path / "m.onnx", **kwargs))
    problems = check_io_contract(report)
    assert any(fragment in p for p in problems), problems


def test_dynamic_batch_on_generated_model(tmp_path) -> None:
    backend = load_onnx(make_classifier(tmp_path / "m.onnx"))
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3)).astype(np.float32)
    result = check_dynamic_batch(backend, images, sizes=(1, 7, 40))
    assert result.passed
    assert set(result.batch_sizes) == {"1", "7", "40"}


# --------------------------------------------------------------------------- real model
@pytest.mark.slow
def test_real_parity_on_full_test_set(keras_backend, resnet8_onnx, cifar_test,
                                      keras_full_outputs) -> None:
    candidate = load_onnx(resnet8_onnx)
    outputs, _ = run_inference(candidate, cifar_test)
    report = verify_outputs(keras_backend, candidate, cifar_test.images, keras_full_outputs,
                            outputs, indices=cifar_test.indices)
    assert report.samples == 10_000
    assert report.argmax_agreement == 10_000
    assert report.max_abs_diff <= 1e-5
    assert report.dynamic_batch.passed
    assert report.passed
    assert report.layerwise is None
    assert "layerwise" not in report.to_dict()


def _corrupt_one_conv(src, dst, conv_index: int) -> np.ndarray:
    """Change one weight of one Conv; return that conv's (original) weight tensor."""
    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    conv = [n for n in model.graph.node if n.op_type == "Conv"][conv_index]
    tensor = inits[conv.input[1]]
    weights = numpy_helper.to_array(tensor).copy()
    original = weights.copy()
    weights.flat[0] += 0.5
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    onnx.save(model, str(dst))
    return original


@pytest.mark.slow
def test_corrupted_weight_fails_and_is_localised(tmp_path, keras_backend, resnet8_onnx,
                                                 cifar_test) -> None:
    bad = tmp_path / "bad.onnx"
    original = _corrupt_one_conv(resnet8_onnx, bad, conv_index=3)
    # Which Keras layer owns that kernel? Found by value, independently of verify's matching.
    owner = next(
        layer.name for layer in keras_backend.model.layers
        if type(layer).__name__ == "Conv2D"
        and layer.get_weights()[0].transpose(3, 2, 0, 1).shape == original.shape
        and np.array_equal(layer.get_weights()[0].transpose(3, 2, 0, 1), original)
    )
    report = verify(keras_backend, load_onnx(bad), cifar_test.images[:64])
    assert not report.passed
    first = report.layerwise.first_diverging_layer
    assert first is not None
    assert first.layer == owner
    assert first.max_abs_diff > 1e-3


@pytest.mark.slow
def test_layerwise_on_clean_model_finds_no_divergence(keras_backend, resnet8_onnx,
                                                      cifar_test) -> None:
    report = verify(keras_backend, load_onnx(resnet8_onnx), cifar_test.images[:32],
                    layerwise=True)
    assert report.passed
    assert report.layerwise.first_diverging_layer is None
    matched = [entry for entry in report.layerwise.layers if entry.matched]
    assert len(matched) >= 20  # most of ResNet8's 30 layers have an ONNX twin


# --------------------------------------------------------------------------- through the CLI
def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _h5_weights(path: Path) -> dict[str, np.ndarray]:
    """Every weight array stored in a Keras .h5 file, read with h5py (no Keras involved)."""
    import h5py

    found: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(
            lambda name, obj: found.__setitem__(name, obj[()])
            if isinstance(obj, h5py.Dataset) else None)
    return found


def _verify(capsys, *args: str) -> tuple[int, str, dict]:
    data = shared_path("cifar-10", "perf-png")
    out = Path(args[-1]).with_suffix(".json")
    code = main(["-q", "verify", *args[:-1], "--data-dir", str(data), "--limit", "16",
                 "--json", str(out)])
    text = " ".join(capsys.readouterr().out.split())  # undo the terminal's line wrapping
    return code, text, json.loads(out.read_text())


@pytest.mark.slow
def test_verify_says_first_that_the_onnx_file_comes_from_another_model(
        tmp_path, resnet8_h5, capsys) -> None:
    import h5py

    retrained = tmp_path / "retrained.h5"
    shutil.copy(resnet8_h5, retrained)
    with h5py.File(retrained, "r+") as f:
        kernel = f["model_weights/conv2d_3/conv2d_3/kernel:0"]
        kernel[...] = kernel[()] * 1.5
    other_onnx = tmp_path / "retrained.onnx"
    assert main(["-q", "convert", str(retrained), "-o", str(other_onnx)]) == 0
    capsys.readouterr()

    code, text, report = _verify(capsys, str(resnet8_h5), str(other_onnx), str(tmp_path / "x"))
    assert code == errors.VERIFICATION_FAILED  # the verdict is still decided by parity
    assert report["provenance"]["converted_from_reference"] is False
    assert report["provenance"]["onnx_source_sha256"] == _sha256(retrained)
    assert report["provenance"]["reference_sha256"] == _sha256(resnet8_h5)
    assert report["provenance"]["onnx_source_file"] == "retrained.h5"
    said = text.index("retrained.onnx was NOT converted from pretrainedResnet.h5")
    assert "retrained.h5" in text[said:said + 200]
    assert said < text.index("Parity") < text.index("first diverging layer")


@pytest.mark.slow
def test_verify_layer_matching_uses_the_given_tolerance(tmp_path, resnet8_h5, resnet8_onnx,
                                                        capsys) -> None:
    code, text, report = _verify(capsys, str(resnet8_h5), str(resnet8_onnx), "--atol", "0",
                                 "--rtol", "0", str(tmp_path / "x"))
    assert code == errors.VERIFICATION_FAILED
    layerwise = report["layerwise"]
    assert layerwise["tolerance"]["atol"] == 0
    assert layerwise["tolerance"]["rtol"] == 0
    layers = layerwise["layers"]
    matched = [entry for entry in layers if entry["matched"]]
    # At zero tolerance a layer matches only if reproduced bit for bit.
    assert all(entry["max_abs_diff"] == 0 for entry in matched)
    assert len(matched) < len(layers)
    assert layerwise["first_diverging_layer"] is not None
    assert f"{len(matched)}/{len(layers)} Keras layers matched" in text
    assert "within atol 0 or rtol 0" in text
    assert report["provenance"]["converted_from_reference"] is True
    assert "resnet8.onnx was converted from pretrainedResnet.h5" in text

    # Parameters: the Keras count beside the ONNX one, and why they differ.
    keras_count = sum(int(w.size) for w in _h5_weights(resnet8_h5).values())
    assert report["reference_parameters"] == keras_count
    onnx_count = report["structure"]["parameters"]
    assert onnx_count < keras_count
    # ... measured from the graph: float weights only, each BatchNormalization as Mul+Add
    # (two per-channel vectors where Keras stores four), not "folded into the convolutions".
    layers = report["reference_batch_normalization_layers"]
    bn_channels = sum(int(w.size) for k, w in _h5_weights(resnet8_h5).items()
                      if "batch_normalization" in k and k.endswith("gamma:0"))
    assert keras_count - onnx_count == 2 * bn_channels
    assert (f"{onnx_count:,} parameters (the Keras model has {keras_count:,}: its "
            f"{layers} BatchNormalization layers appear as Mul+Add after their Conv, two "
            "per-channel vectors each where Keras stores four)") in text
    assert "folded" not in text

    code, text, report = _verify(capsys, str(resnet8_h5), str(resnet8_onnx), "--layerwise",
                                 str(tmp_path / "y"))
    assert code == 0
    assert report["layerwise"]["tolerance"]["rtol"] == report["parity"]["rtol"]
    assert report["layerwise"]["first_diverging_layer"] is None
    layers = report["layerwise"]["layers"]
    assert f"{len(layers)}/{len(layers)} Keras layers matched" in text


def test_verify_reads_and_checks_an_onnx_candidate_once(tmp_path, monkeypatch, capsys) -> None:
    from cifar_factory import make_images, write_png_folder

    model = make_classifier(tmp_path / "m.onnx")
    images, labels = make_images(12)
    data = write_png_folder(tmp_path / "pngs", images, labels, [f"{i:05d}" for i in range(12)])
    loads: list[str] = []
    checks: list[str] = []
    real_load, real_check = onnx.load, onnx.checker.check_model

    def load(f, *args, **kwargs):
        loads.append(str(f))
        return real_load(f, *args, **kwargs)

    def check(model, *args, **kwargs):
        checks.append(model.graph.name)
        return real_check(model, *args, **kwargs)

    monkeypatch.setattr(onnx, "load", load)
    monkeypatch.setattr(onnx.checker, "check_model", check)
    assert main(["-q", "verify", str(model), str(model), "--data-dir", str(data),
                 "--json", "-"]) == errors.OK
    record = json.loads(capsys.readouterr().out)
    assert record["structure"]["checker"] == "passed (full_check)"
    assert record["structure"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (loads, len(checks)) == ([str(model)], 1)
