"""The loader table and the runner protocol: what a runner declares instead of being probed."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from model_factory import make_classifier, wrap_pytorch_style
from resnet8_onnx.backends import LOADERS, Runner, backend_for, load_backend
from resnet8_onnx.backends.base import ABILITIES, InputSpec, RawPixelRunner
from resnet8_onnx.records import RunnerInfo
from resnet8_onnx.support.errors import UsageError
from resnet8_onnx.verify import structure_checks

# The abilities and the methods each one promises (see backends/base.py).
PROMISES = {"macs": ("macs", "macs_source"), "layer_outputs": ("layer_outputs", "layer_graph"),
            "tensor_outputs": ("tensor_outputs",), "structure": ("structure",),
            "session": ("onnx_session",), "parameters": ("source_parameters",),
            "conversion_source": ()}


def test_every_registered_runtime_has_a_loader_and_owns_its_suffixes() -> None:
    assert set(PROMISES) == set(ABILITIES)
    for name, loader in LOADERS.items():
        module = importlib.import_module(f"resnet8_onnx.backends.{loader.module}")
        assert callable(module.load), name
        for suffix in loader.suffixes:
            assert backend_for(f"model{suffix.upper()}") == name


def test_onnx_runner_declares_its_input_and_keeps_its_promises(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx", layout="nchw", height=16, width=24)
    runner = load_backend(path)
    assert isinstance(runner, Runner)
    spec = runner.input_spec
    assert (spec.layout, spec.shape, spec.pixel_shape, spec.dtype) == (
        "nchw", (None, 3, 16, 24), (16, 24, 3), "float32")
    assert spec.model_shape((16, 24, 3)) == (3, 16, 24)
    assert {"macs", "structure", "session", "tensor_outputs"} <= runner.abilities
    for ability in runner.abilities:
        for method in PROMISES[ability]:
            assert hasattr(runner, method), (ability, method)
    # 1×1 convolution 3 → 8 channels on 16×24 pixels, then an 8 → 10 matrix product.
    assert runner.macs() == 16 * 24 * 8 * 3 + 8 * 10
    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(runner.run(runner.prepare(pixels)), runner.predict(pixels))
    assert runner.prepare(pixels).shape == (4, 3, 16, 24)


@pytest.mark.parametrize("option", [{"optimization": "basic"}, {"output": "logits"},
                                    {"provider": "cpu"}, {"device": "cuda"}])
def test_options_of_another_runtime_are_refused_before_loading(tmp_path: Path,
                                                               option: dict) -> None:
    path = tmp_path / "not-really.tflite"
    path.write_bytes(b"never read")  # refused before LiteRT would fail to load it
    with pytest.raises(UsageError, match="applies to"):
        load_backend(path, **option)


class DeclaredOnly:
    """A runner reduced to the protocol and the abilities it declares: a caller that reads
    anything else (``.session``, ``.input_name``, ``.fixed_batch`` …) fails on it."""

    def __init__(self, runner: Runner) -> None:
        self.info, self.input_spec = runner.info, runner.input_spec
        self.output_kind, self.abilities = runner.output_kind, runner.abilities
        self.predict, self.prepare, self.run = runner.predict, runner.prepare, runner.run
        for ability in runner.abilities:
            for method in PROMISES[ability]:
                setattr(self, method, getattr(runner, method))


def test_the_session_ability_hands_out_the_session_and_its_names(tmp_path: Path) -> None:
    path = wrap_pytorch_style(make_classifier(tmp_path / "m.onnx", softmax=False),
                              tmp_path / "torch.onnx")
    runner = load_backend(path, preprocessing={"scale": "1/255"})
    onnx_session = runner.onnx_session()
    model = onnx.load(str(path))
    assert onnx_session.input_name == model.graph.input[0].name
    assert onnx_session.output_name == "logits"
    assert onnx_session.session.get_inputs()[0].name == onnx_session.input_name
    assert onnx_session.preprocessing_sources["layout"] == "input shape"
    assert onnx_session.preprocessing_sources["scale"] == "option"
    pixels = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(onnx_session.run(runner.prepare(pixels)),
                                  runner.predict(pixels))


@pytest.mark.parametrize("batch", ["N", 2])
def test_test_data_needs_only_what_the_runner_declares(tmp_path: Path, batch) -> None:
    from onnx import numpy_helper

    from resnet8_onnx.backends.onnxrt.testdata import save_test_data

    runner = load_backend(make_classifier(tmp_path / "m.onnx", batch=batch))
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    saved = save_test_data(DeclaredOnly(runner), images, tmp_path / "sets")
    assert len(saved["sets"]) == (3 if batch == "N" else 2)
    assert (saved["input_name"], saved["input_dtype"]) == ("input", "float32")
    replayed = [numpy_helper.to_array(onnx.load_tensor(str(tmp_path / "sets" / s["name"] /
                                                           "output_0.pb")))
                for s in saved["sets"]]
    np.testing.assert_allclose(np.concatenate(replayed)[:3], runner.predict(images), rtol=1e-6)


def test_test_data_refuses_a_runner_without_a_session(tmp_path: Path) -> None:
    from resnet8_onnx.backends.onnxrt.testdata import save_test_data

    runner = DeclaredOnly(load_backend(make_classifier(tmp_path / "m.onnx")))
    runner.abilities = frozenset()
    with pytest.raises(UsageError, match="needs an ONNX model"):
        save_test_data(runner, np.zeros((1, 32, 32, 3), np.uint8), tmp_path / "sets")
    assert not (tmp_path / "sets").exists()


def test_verify_checks_a_candidate_through_its_declared_abilities(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx", outputs=2)
    candidate = DeclaredOnly(load_backend(path, output="probabilities"))
    checks = structure_checks(candidate, candidate)
    assert checks["interface_problems"] == []  # the chosen output, not the pooled features
    assert checks["provenance"].note == "the ONNX metadata records no source checksum"


def test_provenance_is_checked_for_a_reference_declaring_it_a_conversion_source(
        tmp_path: Path) -> None:
    from resnet8_onnx.verify import check_provenance

    reference = DeclaredOnly(load_backend(make_classifier(tmp_path / "m.onnx")))
    assert "conversion_source" in reference.abilities  # convert turns ONNX into .pt2
    sha = reference.info.model_sha256
    claims = {"metadata": {"source_sha256": sha}}
    reference.abilities = reference.abilities - {"conversion_source"}
    unknown = check_provenance(reference, claims)  # a runtime convert reads nothing of
    assert unknown.converted_from_reference is None
    assert "not a conversion source" in (unknown.note or "")
    reference.abilities = reference.abilities | {"conversion_source"}
    assert check_provenance(reference, claims).converted_from_reference is True
    other = {"metadata": {"source_sha256": "0" * 64}}
    assert check_provenance(reference, other).converted_from_reference is False


class _NumpyRunner(RawPixelRunner):
    """A runtime made up for the test: a fixed linear classifier over mean colours."""

    abilities = frozenset()
    output_kind = "logits"

    def __init__(self, path: Path) -> None:
        self.weights = np.load(path)
        self.info = RunnerInfo(name="numpy", model_path=str(path), model_sha256="0" * 64,
                               runtime_version=np.__version__,
                               input_shape=(None, 32, 32, 3), num_classes=10)
        self.input_spec = InputSpec(shape=(None, 32, 32, 3), pixel_shape=(32, 32, 3))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.prepare(batch).mean(axis=(1, 2)) @ self.weights


def test_a_new_runtime_is_one_module_and_one_line_in_the_table(tmp_path, monkeypatch,
                                                               capsys) -> None:
    """Register a runtime the package has never seen: evaluate and compare run it, and the
    reports call it by the label its line declares."""
    import sys
    import types

    from resnet8_onnx import backends
    from resnet8_onnx.cli import main

    module = types.ModuleType("resnet8_onnx.backends.numpyrt")
    module.load = lambda path, *, threads=None: _NumpyRunner(Path(path))  # the one module
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(backends.LOADERS, "numpy", backends.Loader((".npy",), "numpyrt",
                                                                   "NumPy"))  # the one line
    weights = np.random.default_rng(0).normal(size=(3, 10))
    np.save(tmp_path / "m.npy", weights)
    from cifar_factory import make_images, write_png_folder

    images, labels = make_images(20)
    data = write_png_folder(tmp_path / "pngs", images, labels, [f"{i:05d}" for i in range(20)])
    assert main(["-q", "evaluate", str(tmp_path / "m.npy"), "--data-dir", str(data),
                 "--json", "-"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = (images.astype(np.float32).mean(axis=(1, 2)) @ weights).argmax(axis=1)
    assert record["metrics"]["correct"] == int((expected == labels).sum())
    assert record["model"]["backend"] == "numpy"
    assert main(["-q", "compare", str(tmp_path / "m.npy"), str(tmp_path / "m.npy"),
                 "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "#1 NumPy" in out
    assert "#2 NumPy" in out


def test_every_runtime_has_the_label_a_saved_record_is_rendered_with() -> None:
    """Reports render a saved record without loading a runtime: the records know the label
    of every registered runtime's name, and the registry uses the same one."""
    from resnet8_onnx import backends, records

    for name in backends.LOADERS:
        assert records.runtime_label(name) != name, name
        assert backends.label_of(name) == records.runtime_label(name)
    assert records.runtime_label("something-new") == "something-new"
