"""The package's facade: ``resnet8_onnx.evaluate(...)`` and its eight siblings, resolved on
first use, and ``resnet8_onnx.convert``'s dispatch on the suffix pair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import resnet8_onnx
from cifar_factory import write_png_folder
from model_factory import make_classifier
from quantize_helpers import float_model
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError

NAMES = ["load_runner", "load_dataset", "evaluate", "verify", "compare", "benchmark",
         "quantize", "convert", "load_record"]


def test_importing_the_package_loads_nothing_else() -> None:
    code = ("import sys, resnet8_onnx\n"
            "print(' '.join(m for m in sys.modules if m.startswith('resnet8_onnx') "
            "or m in ('numpy', 'onnx', 'onnxruntime', 'tensorflow', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["resnet8_onnx"]


@pytest.mark.parametrize("name", NAMES)
def test_every_facade_name_is_listed_and_callable(name: str) -> None:
    assert name in resnet8_onnx.__all__
    assert name in dir(resnet8_onnx)
    assert callable(getattr(resnet8_onnx, name))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        resnet8_onnx.no_such_thing  # noqa: B018


def test_a_module_named_like_its_function_stays_a_module() -> None:
    """Importing ``resnet8_onnx.evaluate`` (the module) must not break the facade's
    ``resnet8_onnx.evaluate(...)``, nor the other way round."""
    import resnet8_onnx.evaluate as module
    from resnet8_onnx import quantize as q

    assert resnet8_onnx.evaluate is module
    assert callable(module)
    assert callable(module.run_inference)
    assert callable(q.Recipe)
    assert callable(resnet8_onnx.quantize)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("facade")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(40) % 10
    folder = write_png_folder(root / "images", images, labels,
                              [f"img{i:02d}" for i in range(40)])
    return {"root": root, "images": images, "labels": labels, "folder": folder,
            "model": float_model(root / "m.onnx"),
            "other": make_classifier(root / "other.onnx", seed=5)}


def _bare_predictions(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": images.astype(np.float32)})[0].argmax(axis=1)


def test_the_facade_runs_every_stage(world: dict, tmp_path: Path) -> None:
    rn = resnet8_onnx
    runner = rn.load_runner(world["model"])
    dataset = rn.load_dataset(world["folder"])
    assert len(dataset.images) == 40
    record = rn.evaluate(runner, dataset)
    expected = _bare_predictions(world["model"], dataset.images)
    assert record.metrics.accuracy == pytest.approx(np.mean(expected == dataset.labels))

    other = rn.load_runner(world["other"])
    verification = rn.verify(runner, rn.load_runner(world["model"]), dataset.images)
    assert verification.passed
    assert not rn.verify(runner, other, dataset.images).passed

    comparison = rn.compare([world["model"], world["other"]], dataset)
    agree = np.mean(expected == _bare_predictions(world["other"], dataset.images))
    assert comparison.models[1].versus_reference.agreement_fraction == pytest.approx(agree)

    bench = rn.benchmark([world["model"]], batch_sizes=[4], threads=[1],
                         optimization_levels=["basic"], reference=False,
                         min_seconds=0.02, min_iterations=3, warmup_seconds=0.0)
    assert bench.results
    assert all(r.images_per_second > 0 for r in bench.results)

    out = tmp_path / "int8.onnx"
    quantized = rn.quantize(world["model"], out, dataset, rn.quantize.Recipe(),
                            min_agreement=0, timing_images=8, timing_rounds=1)
    assert out.is_file()
    assert quantized.output.size_bytes == out.stat().st_size

    saved = tmp_path / "report.json"
    saved_dict = record.to_dict()
    saved.write_text(json.dumps(saved_dict))
    assert rn.load_record(saved).to_dict() == saved_dict


def test_load_record_refuses_what_is_not_a_record(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        resnet8_onnx.load_record(tmp_path / "none.json")
    for text in ("{not json", "[1, 2]", json.dumps({"schema": "somebody-else/v9"})):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(InvalidInputError, match=str(bad)):
            resnet8_onnx.load_record(bad)


# --------------------------------------------------------------------------- convert
def test_convert_refuses_an_unknown_target_before_reading_anything(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"convert writes \.onnx, \.pt2, \.safetensors"):
        resnet8_onnx.convert(tmp_path / "missing.h5", tmp_path / "x.txt")


@pytest.mark.parametrize(("source", "target", "option", "words"), [
    ("m.h5", "m.onnx", {"preprocessing": {"layout": "nchw"}}, "a Keras model takes raw"),
    ("m.h5", "m.onnx", {"builder": "native"}, "builder does not apply to a Keras → ONNX"),
    ("m.pt2", "m.onnx", {"output_name": "logits"}, "a PyTorch model has one"),
    ("m.pt2", "m.onnx", {"input_shape": (32, 32, 3)}, "input_shape does not apply"),
    ("m.onnx", "m.pt2", {"class_names": ["a"]}, "class_names does not apply"),
])
def test_convert_refuses_an_option_its_direction_does_not_take(
        tmp_path: Path, source: str, target: str, option: dict, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        resnet8_onnx.convert(tmp_path / source, tmp_path / target, **option)
    assert not (tmp_path / target).exists()


@pytest.mark.parametrize(("source", "target", "label"), [
    ("m.h5", "m.onnx", "Keras → ONNX"), ("m.keras", "m.onnx", "Keras → ONNX"),
    ("m.pt2", "m.onnx", "PyTorch → ONNX"), ("m.safetensors", "m.onnx", "PyTorch → ONNX"),
    ("m.onnx", "m.pt2", "→ PyTorch"), ("m.h5", "m.safetensors", "→ PyTorch"),
    ("m.pt2", "m.safetensors", "→ PyTorch"),
])
def test_convert_picks_the_direction_by_the_suffix_pair(source: str, target: str,
                                                        label: str) -> None:
    from resnet8_onnx.convert import direction_for

    assert direction_for(source, target).label == label


def test_convert_runs_the_direction_it_picked(world: dict, tmp_path: Path) -> None:
    """An ONNX file to .pt2 through the facade: the PyTorch direction ran (onnx2torch)."""
    pytest.importorskip("torch")
    out = tmp_path / "m.pt2"
    result = resnet8_onnx.convert(world["other"], out)
    assert out.is_file()
    assert result.builder == "onnx2torch"
    assert result.target == "pt2"
