"""Shared test fixtures: where the real data lives and how its absence is handled.

Real-data tests read ``../shared`` beside the project root. In CI (``CI=true``) a missing file
is a failure, because a silently skipped real-data test proves nothing; elsewhere it skips with
a one-line reason so a contributor without the data can still run the unit tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RESNET8_ONNX_SHARED", PROJECT_ROOT.parent / "shared"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


CIFAR_RECORD = 1 + 3 * 32 * 32


def cifar_test_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` official test images as float32 NHWC 0–255, read straight from disk.

    Deliberately independent of ``resnet8_onnx.data``, so tests of other stages do not rest
    on the parser they would otherwise share.
    """
    path = shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    raw = np.fromfile(path, dtype=np.uint8, count=n * CIFAR_RECORD).reshape(n, CIFAR_RECORD)
    images = raw[:, 1:].reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    return images, raw[:, 0].astype(np.int64)


def train_subset(folder: Path, per_class: int = 20) -> Path:
    """The first ``per_class`` images of each class of ../shared's train-2000-png, copied to
    ``folder`` (a small labelled training set for int8 calibration)."""
    import shutil

    train = shared_path("cifar-10", "train-2000-png")
    for class_dir in sorted(p for p in train.iterdir() if p.is_dir()):
        (folder / class_dir.name).mkdir(parents=True)
        for png in sorted(class_dir.glob("*.png"))[:per_class]:
            shutil.copy(png, folder / class_dir.name / png.name)
    return folder


def shared_path(*parts: str) -> Path:
    """Path of a file under ``../shared``; fail in CI, skip elsewhere, when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"real data missing: {path}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the network or the user's cache unless a test opts in."""
    monkeypatch.setenv("RESNET8_ONNX_OFFLINE", "1")
    monkeypatch.setenv("RESNET8_ONNX_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RESNET8_ONNX_DATA_DIR", raising=False)
    # Speed figures measured in tests are not judged by how busy the test machine is: the
    # load read during a measurement is "unknown" unless a test fakes it (test_machine_load).
    from resnet8_onnx import machine

    monkeypatch.setattr(machine.LoadMeter, "sample", staticmethod(lambda: None))


# --------------------------------------------------------------------------- real model + data
@pytest.fixture(scope="session")
def resnet8_h5() -> Path:
    return shared_path("models", "pretrainedResnet.h5")


@pytest.fixture(scope="session")
def cifar_test():
    """The official CIFAR-10 test set (10,000 images) from ../shared."""
    from resnet8_onnx.data import load_dataset

    return load_dataset(shared_path("cifar-10", "cifar-10-batches-bin"), download=False)


@pytest.fixture(scope="session")
def resnet8_onnx(tmp_path_factory: pytest.TempPathFactory, resnet8_h5: Path) -> Path:
    """The real model converted once per test session (conversion costs seconds)."""
    from resnet8_onnx.convert.keras_to_onnx import convert

    out = tmp_path_factory.mktemp("resnet8") / "resnet8.onnx"
    convert(resnet8_h5, out)
    return out


@pytest.fixture(scope="session")
def keras_backend(resnet8_h5: Path):
    from resnet8_onnx.backends.keras import runner as keras

    return keras.load(resnet8_h5)


@pytest.fixture(scope="session")
def keras_full_outputs(keras_backend, cifar_test):
    """Keras outputs on all 10,000 test images, computed once."""
    from resnet8_onnx.evaluate import run_inference

    outputs, _ = run_inference(keras_backend, cifar_test)
    return outputs


@pytest.fixture(scope="session")
def pytorch_resnet8(resnet8_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ResNet8 behind a PyTorch-style interface (NCHW, normalised), no metadata."""
    from model_factory import wrap_pytorch_style

    return wrap_pytorch_style(resnet8_onnx, tmp_path_factory.mktemp("pt") / "pt_resnet8.onnx")


# --------------------------------------------------------------------------- PyTorch
@pytest.fixture(scope="session")
def tiny_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ResNet8 with random weights as a .pt2, exported once per session (no shared data)."""
    from torch_factory import make_tiny_pt2

    return make_tiny_pt2(tmp_path_factory.mktemp("pt2") / "tiny.pt2")


@pytest.fixture(scope="session")
def resnet8_pt2(tmp_path_factory: pytest.TempPathFactory, resnet8_h5: Path) -> Path:
    """The real model as a .pt2 from the native builder (no TensorFlow involved)."""
    from resnet8_onnx.convert import convert as convert_torch

    out = tmp_path_factory.mktemp("torch") / "resnet8.pt2"
    convert_torch(resnet8_h5, out, builder="native")
    return out


@pytest.fixture(scope="session")
def resnet8_onnx2torch_pt2(tmp_path_factory: pytest.TempPathFactory, resnet8_onnx: Path) -> Path:
    """The converted ONNX model as a .pt2 built by onnx2torch."""
    from resnet8_onnx.convert import convert as convert_torch

    out = tmp_path_factory.mktemp("torch") / "resnet8-onnx2torch.pt2"
    convert_torch(resnet8_onnx, out, builder="onnx2torch")
    return out


@pytest.fixture(scope="session")
def onnx_full_outputs(resnet8_onnx, cifar_test):
    """ONNX Runtime outputs on all 10,000 test images, computed once."""
    from resnet8_onnx.backends.onnxrt import runner as onnxrt
    from resnet8_onnx.evaluate import run_inference

    outputs, _ = run_inference(onnxrt.load(resnet8_onnx), cifar_test)
    return outputs


@pytest.fixture(scope="session")
def sample(cifar_test):
    """Every tenth official test image: 1,000 images, 100 per class."""
    return cifar_test.images[::10], cifar_test.labels[::10]


@pytest.fixture(scope="session")
def tflite_float() -> Path:
    return shared_path("models", "pretrainedResnet.tflite")


@pytest.fixture(scope="session")
def tflite_int8() -> Path:
    return shared_path("models", "pretrainedResnet_quant.tflite")
