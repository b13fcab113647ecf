"""backends.onnxrt: the ONNX Runtime runner: providers, fixed batches, several outputs,
what it declares, and refusals. Outputs are checked against a bare ONNX Runtime session."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from model_factory import make_classifier
from resnet8_onnx.backends import load_backend
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.support.errors import InvalidInputError, UsageError
from resnet8_onnx.verify import structure_checks


def bare_run(path: Path, x: np.ndarray, output: int = 0) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[output]


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_an_in_memory_onnx_model_declares_no_file_abilities(tmp_path: Path) -> None:
    data = onnx.load(str(make_classifier(tmp_path / "m.onnx"))).SerializeToString()
    runner = onnxrt.from_bytes(data, "in memory")
    assert runner.info.model_path == "in memory"
    assert runner.abilities == {"session"}
    with pytest.raises(UsageError, match="verify checks an ONNX or PyTorch model"):
        structure_checks(runner, runner)


def test_optimisation_level_and_optimized_model_are_onnx_loader_options(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    saved = tmp_path / "optimized.onnx"
    runner = load_backend(path, optimization="basic", optimized_model_path=saved)
    assert runner.info.extra["optimization"] == "basic"
    assert saved.is_file()
    assert onnx.load(str(saved)).graph.node
    with pytest.raises(UsageError, match="unknown optimisation level"):
        load_backend(path, optimization="fastest")


@pytest.mark.parametrize("name", [None, "cpu", "CPU", "CPUExecutionProvider",
                                  " cpuexecutionprovider "])
def test_provider_names_are_forgiving(name) -> None:
    assert onnxrt.resolve_provider(name) == "CPUExecutionProvider"


def test_an_unknown_provider_lists_the_available_ones() -> None:
    with pytest.raises(UsageError, match="'warp' is not available") as info:
        onnxrt.resolve_provider("warp")
    assert all(p in str(info.value) for p in ort.get_available_providers())


def test_a_fixed_batch_runs_in_padded_chunks_and_drops_the_padding(tmp_path: Path) -> None:
    fixed = make_classifier(tmp_path / "fixed.onnx", batch=4, seed=3)
    dynamic = make_classifier(tmp_path / "dynamic.onnx", seed=3)  # the same weights
    runner = onnxrt.load(fixed)
    assert runner.fixed_batch == runner.input_spec.fixed_batch == 4
    assert runner.info.extra["fixed_batch"] == 4
    assert "fixed at 4" in runner.info.extra["notes"][0]
    x = pixels(10)
    got = runner.predict(x)
    assert got.shape == (10, 10)
    np.testing.assert_allclose(got, bare_run(dynamic, x.astype(np.float32)), rtol=1e-6,
                               atol=1e-7)


def test_a_model_with_several_outputs_needs_one_named(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx", outputs=2)
    with pytest.raises(UsageError, match=r"2 outputs .*choose one with --output-name NAME"):
        onnxrt.load(path)
    with pytest.raises(UsageError, match="no output named 'nope'"):
        onnxrt.load(path, output="nope")
    runner = onnxrt.load(path, output="probabilities")
    x = pixels(3)
    np.testing.assert_allclose(runner.predict(x), bare_run(path, x.astype(np.float32)),
                               rtol=1e-6)
    assert runner.info.extra["output_name"] == "probabilities"


def test_an_input_that_is_no_image_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="rank 2"):
        onnxrt.load(make_classifier(tmp_path / "flat.onnx", rank=2))
    # the control: an 8×32 image model loads, and says which images it takes
    assert onnxrt.load(make_classifier(tmp_path / "m.onnx", height=8)).input_spec.pixel_shape \
        == (8, 32, 3)


def test_what_the_file_says_about_itself_is_declared(tmp_path: Path) -> None:
    path = make_classifier(tmp_path / "m.onnx")
    assert onnxrt.load(path).output_kind is None
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"output_kind": "logits",
                                        "quantization_recipe": "{}"})
    onnx.save(model, str(path))
    runner = onnxrt.load(path)
    assert runner.output_kind == "logits"
    assert runner.info.extra["output_kind"] == "logits"
    assert runner.info.extra["quantization"] == "int8"
    assert runner.info.model_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_onnx_runtime_cannot_load_is_invalid_input(tmp_path: Path) -> None:
    """The checker says what is wrong with a broken file; ONNX Runtime's own message stays
    for a valid graph it cannot run."""
    path = make_classifier(tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InvalidInputError, match="not a readable ONNX file"):
        onnxrt.load(path)
    model = onnx.load(str(make_classifier(tmp_path / "ok.onnx")))
    model.graph.node[0].op_type = "NoSuchOp"
    model.graph.node[0].domain = "example.custom"
    model.opset_import.append(onnx.helper.make_opsetid("example.custom", 1))
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(InvalidInputError, match="not a loadable ONNX model"):
        onnxrt.load(tmp_path / "custom.onnx")


def _impossible_expand(tmp_path: Path) -> Path:
    """A valid graph that fails only when run: its Expand asks for batch 7 of any batch."""
    from onnx import numpy_helper

    model = onnx.load(str(make_classifier(tmp_path / "m.onnx")))
    graph = model.graph
    graph.initializer.append(numpy_helper.from_array(np.array([7, 32, 32, 3], np.int64),
                                                     "bad_shape"))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == "input":
                node.input[i] = "expanded"
    graph.node.insert(0, onnx.helper.make_node("Expand", ["input", "bad_shape"], ["expanded"],
                                               name="expand"))
    onnx.checker.check_model(model)
    path = tmp_path / "expand.onnx"
    onnx.save(model, str(path))
    return path


def test_a_model_failing_at_run_time_is_invalid_input_in_one_line(tmp_path: Path) -> None:
    """The model's own failure, not ours: exit 4, one line naming the model and ONNX Runtime's
    message in short, and ONNX Runtime's logger says nothing of its own."""
    from cli_runner import assert_one_line_error, cli
    from conftest import shared_path
    from resnet8_onnx.support import errors

    path = _impossible_expand(tmp_path)
    with pytest.raises(InvalidInputError, match=r"expand\.onnx.*invalid expand shape"):
        onnxrt.load(path).predict(np.zeros((4, 32, 32, 3), np.uint8))
    proc = cli("evaluate", str(path), "--data-dir", str(shared_path("cifar-10", "perf-png")),
               "--limit", "10")
    assert_one_line_error(proc, errors.INVALID_INPUT, "expand.onnx")
    assert "expand.onnx: the model fails in ONNX Runtime: Expand node 'expand': invalid " \
        "expand shape" in proc.stderr
    assert "internal error" not in proc.stderr
    assert "[E:onnxruntime" not in proc.stderr
    assert "[ONNXRuntimeError]" not in proc.stderr  # ORT's prefix is noise, not the message
