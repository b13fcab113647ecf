"""int8 models described as what they are: MACs counted through (de)quantisation, labelled
int8 in every command, and compared layer by layer with the right tensors.

The int8 files are made with the project's own ``quantize`` on 40 real CIFAR-10 *training*
images (QDQ and QOperator), once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import cifar_test_images, shared_path
from resnet8_onnx import quantize as q
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.backends.onnxrt.graph import count_macs, structure_report
from resnet8_onnx.bench import benchmark
from resnet8_onnx.cli import main
from resnet8_onnx.support import errors

# ResNet8 by hand: (output H×W, output channels, input channels, kernel area) per convolution,
# then the 64→10 dense layer — the ≈12.5 M MACs MLPerf Tiny quotes.
RESNET8_CONVS = [(32 * 32, 16, 3, 9), (32 * 32, 16, 16, 9), (32 * 32, 16, 16, 9),
                 (16 * 16, 32, 16, 9), (16 * 16, 32, 32, 9), (16 * 16, 32, 16, 1),
                 (8 * 8, 64, 32, 9), (8 * 8, 64, 64, 9), (8 * 8, 64, 32, 1)]
RESNET8_MACS = sum(hw * co * ci * k for hw, co, ci, k in RESNET8_CONVS) + 64 * 10


@pytest.fixture(scope="module")
def int8_models(resnet8_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'qdq', 'qoperator', 'foreign'}: the real model quantised on 40 training images; the
    'foreign' one is the QDQ file without the metadata ``quantize`` writes (another tool's)."""
    from resnet8_onnx.data import load_dataset

    train = load_dataset(shared_path("cifar-10", "train-2000-png"), split="train",
                         download=False).with_limit(40)
    out = tmp_path_factory.mktemp("int8")
    paths = {}
    for fmt in ("qdq", "qoperator"):
        paths[fmt] = out / f"r8_{fmt}.onnx"
        q.quantize(resnet8_onnx, paths[fmt], train, q.Recipe(format=fmt), holdout_count=0,
                   min_agreement=0,  # a 40-image fixture: nothing held out to gate on
                   timing_images=16, timing_rounds=1, batch_size=20, diagnose=False)
    model = onnx.load(str(paths["qdq"]))
    del model.metadata_props[:]
    paths["foreign"] = out / "foreign_int8.onnx"
    onnx.save(model, str(paths["foreign"]))
    return paths


def test_int8_graphs_count_the_float_models_macs(int8_models, resnet8_onnx) -> None:
    assert count_macs(onnx.load(str(resnet8_onnx))) == RESNET8_MACS
    for fmt in ("qdq", "qoperator"):
        assert count_macs(onnx.load(str(int8_models[fmt]))) == RESNET8_MACS, fmt


def test_int8_structure_says_int8_and_counts_its_stored_weights(int8_models) -> None:
    for fmt, name in (("qdq", "QDQ"), ("qoperator", "QOperator")):
        report = structure_report(int8_models[fmt])
        assert report["quantization"] == {"type": "int8", "format": name}
        arrays = [numpy_helper.to_array(t)
                  for t in onnx.load(str(int8_models[fmt])).graph.initializer
                  if not t.name.endswith("zero_point")]
        # Independently: int8 kernels (rank ≥ 2) and int32 biases; not scales, zero points,
        # nor the int64 Reshape shape.
        weights = sum(a.size for a in arrays if a.dtype == np.int8 and a.ndim >= 2)
        biases = sum(a.size for a in arrays if a.dtype == np.int32)
        assert report["parameter_dtypes"] == {"int32": biases, "int8": weights}
        assert report["parameters"] == weights + biases


def test_another_tools_int8_file_is_labelled_int8(int8_models, resnet8_onnx) -> None:
    assert onnxrt.load(int8_models["foreign"]).info.extra["quantization"] == "int8"
    assert "quantization" not in onnxrt.load(resnet8_onnx).info.extra


def test_evaluate_and_compare_label_another_tools_int8_file(int8_models, resnet8_onnx,
                                                          tmp_path, capsys) -> None:
    data = str(shared_path("cifar-10", "perf-png"))
    assert main(["-q", "evaluate", str(int8_models["foreign"]), "--data-dir", data,
                 "--limit", "10", "--out", str(tmp_path / "e")]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Evaluated foreign_int8.onnx (ONNX int8, onnxruntime" in text
    assert "(ONNX int8)" in (tmp_path / "e" / "report.md").read_text().splitlines()[0]
    assert main(["-q", "compare", str(resnet8_onnx), str(int8_models["foreign"]),
                 "--data-dir", data, "--limit", "10"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "#2 ONNX int8: foreign_int8.onnx" in text


def test_benchmark_labels_int8_and_gives_macs_and_gflops(int8_models, capsys) -> None:
    record = benchmark([int8_models["foreign"]], batch_sizes=(4,), threads=(1,),
                       optimization_levels=("all",), min_seconds=0.01, min_iterations=2,
                       warmup_seconds=0, reference=False)
    model = record.models[0]
    assert model.label == "#1 ONNX int8"
    assert model.macs_per_image == RESNET8_MACS
    result = record.results[0]
    assert result.gflops == pytest.approx(2 * RESNET8_MACS * result.images_per_second / 1e9)
    from resnet8_onnx.report import render_benchmark_terminal

    render_benchmark_terminal(record)
    text = capsys.readouterr().out
    assert "#1 ONNX int8" in text
    assert f"{RESNET8_MACS:,} MACs/image" in text


def _producers(path: Path) -> dict[str, str]:
    return {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}


@pytest.mark.slow
def test_layerwise_matches_keras_convolutions_to_conv_outputs(int8_models,
                                                             keras_backend) -> None:
    from resnet8_onnx.verify import localise_divergence

    images, _ = cifar_test_images(8)
    qdq = localise_divergence(keras_backend, onnxrt.load(int8_models["qdq"]), images)
    producers = _producers(int8_models["qdq"])
    layers = {e.layer: e.extra for e in qdq.layers or []}
    for match in qdq.layers or []:
        entry = {"layer": match.layer, **match.extra}
        if entry["class"] == "Conv2D":  # the Conv's own output, never one after BN/ReLU
            assert producers[entry["onnx_tensor"]] == "Conv", entry
        if entry["class"] == "Activation" and entry["layer"] != "activation_7":
            # the ReLU is the quantiser's clip: the DequantizeLinear after a QuantizeLinear
            assert producers[entry["onnx_tensor"]] == "DequantizeLinear", entry
            assert entry["through_quantisation"] is True
    # The int8 Conv computes the BatchNormalization folded into it: conv2d has no tensor of
    # its own, so it is not the first diverging layer.
    assert layers["conv2d"]["fused_into"] == "batch_normalization"
    first = qdq.first_diverging_layer
    assert first is not None
    assert "fused_into" not in first.extra

    qop = localise_divergence(keras_backend, onnxrt.load(int8_models["qoperator"]), images)
    producers = _producers(int8_models["qoperator"])
    for match in qop.layers or []:
        entry = match.extra
        if entry["class"] == "Conv2D":  # a QLinearConv output, dequantised
            tensor = entry["onnx_tensor"].removesuffix(" (dequantised)")
            assert producers[tensor] == "QLinearConv", entry


@pytest.mark.slow
def test_verify_describes_an_int8_candidate(int8_models, resnet8_h5, tmp_path, capsys) -> None:
    out = tmp_path / "v.json"
    code = main(["-q", "verify", str(resnet8_h5), str(int8_models["qdq"]), "--data-dir",
                 str(shared_path("cifar-10", "perf-png")), "--limit", "8", "--json", str(out)])
    text = " ".join(capsys.readouterr().out.split())
    assert code == errors.VERIFICATION_FAILED  # int8 is not its float source bit for bit
    assert f"{RESNET8_MACS:,} MACs/image" in text
    assert "; 0 MACs/image" not in text
    assert "int8 QDQ graph" in text
    assert "folded into the convolutions" not in text
    assert "first diverging layer: conv2d " not in text
    report = json.loads(out.read_text())
    assert report["structure"]["quantization"]["type"] == "int8"


def test_a_uint8_input_of_embedded_preprocessing_is_not_called_int8_arithmetic(
        tmp_path: Path) -> None:
    """`annotate --embed` gives a float model a uint8 pixel input (a Cast in front): benchmark
    labelled it 'ONNX uint8' with a 'uint8 arithmetic' note, and compare 'ONNX uint8'."""
    from model_factory import make_classifier, synthetic_dataset
    from resnet8_onnx import bench, compare, preprocess
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.evaluate import evaluate

    source = make_classifier(tmp_path / "m.onnx")
    embedded = preprocess.embed(onnx.load(str(source)), preprocess.Preprocessing(scale=1 / 255))
    path = tmp_path / "embedded.onnx"
    onnx.save(embedded, str(path))
    backend = load_backend(path)
    assert backend.info.input_dtype == "uint8"  # the condition under test
    assert bench._label(0, backend) == "#1 ONNX"
    notes = bench._bench_model(0, backend, "onnxruntime", "").notes
    assert not any("arithmetic" in n for n in notes), notes
    data = synthetic_dataset(8)
    record = evaluate(backend, data)
    assert compare._label(1, record) == "#2 ONNX"
