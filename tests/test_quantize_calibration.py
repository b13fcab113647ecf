"""quantize.calibration: which images calibrate, which are held out, where they come from."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from cifar_factory import layout_files, make_images, write_layout
from model_factory import synthetic_dataset
from quantize_helpers import cli_setup, float_model, png_folder, run_cli
from resnet8_onnx import quantize as q
from resnet8_onnx.quantize.calibration import as_dataset
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError, UsageError


def test_split_positions_are_disjoint_spread_and_sized() -> None:
    cal, hold = q.split_positions(2000, 1000, 1000)
    assert cal.tolist() == list(range(0, 2000, 2))  # train-2000-png: even positions
    assert hold.tolist() == list(range(1, 2000, 2))
    cal, hold = q.split_positions(50_000, 1000, 1000)
    assert len(cal) == len(np.unique(cal)) == 1000
    assert len(hold) == 1000
    assert not set(cal.tolist()) & set(hold.tolist())
    assert cal.max() > 49_000
    assert hold.max() > 49_000
    cal, hold = q.split_positions(10, 10, 1000)
    assert len(cal) == 10
    assert len(hold) == 0
    with pytest.raises(InvalidInputError, match="fewer than the 11"):
        q.split_positions(10, 11, 0)


def test_split_positions_take_every_class_of_a_class_sorted_folder() -> None:
    """An image folder is sorted by class: both parts must hold every class equally."""
    labels = np.repeat(np.arange(10), 200)  # 2,000 images, class-sorted
    cal, hold = q.split_positions(len(labels), 500, 300)
    assert np.bincount(labels[cal], minlength=10).tolist() == [50] * 10
    assert np.bincount(labels[hold], minlength=10).tolist() == [30] * 10
    with pytest.raises(UsageError, match="at least 1"):
        q.split_positions(10, 0, 5)


def test_images_sha256_identifies_the_exact_pixels() -> None:
    images = synthetic_dataset(8).images
    digest = q.images_sha256(images)
    h = hashlib.sha256(str(images.shape).encode() + images.tobytes())  # independently
    assert digest == h.hexdigest()
    assert q.images_sha256(images.copy()) == digest
    assert q.images_sha256(images[::-1]) != digest  # same images, another order
    changed = images.copy()
    changed[3, 5, 7, 1] ^= 1
    assert q.images_sha256(changed) != digest
    assert q.images_sha256(images.reshape(4, 64, 32, 3)) != digest  # same bytes, other shape


def test_calibration_on_test_images_is_flagged(tmp_path) -> None:
    data = synthetic_dataset(240, seed=2)  # split="test"
    record = q.quantize(float_model(tmp_path / "m.onnx"), tmp_path / "o.onnx", data, q.Recipe(),
                        timing_images=32, timing_rounds=1)
    d = record.to_dict()
    assert d["calibration"]["test_images"] is True
    assert any("TEST images" in n for n in d["notes"])
    from resnet8_onnx.report import int8_verdict_line

    assert "TEST" in int8_verdict_line(record)


def test_bad_calibration_sources(tmp_path, capsys) -> None:
    model, cal, out = cli_setup(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    small = png_folder(tmp_path / "small", 2, size=16)
    broken = png_folder(tmp_path / "broken", 1)
    (broken / "cat" / "train-03000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cases = [([str(empty)], errors.NOT_FOUND, "CIFAR-10"),
             ([str(small)], errors.INVALID_INPUT, "expected 32×32"),
             ([str(broken)], errors.INVALID_INPUT, "cannot read image"),
             ([str(cal), "--calibration-count", "241"], errors.INVALID_INPUT, "fewer than"),
             ([str(cal), "--calibration-count", "230"], errors.INVALID_INPUT, "held out")]
    for extra, code, fragment in cases:
        got, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", *extra)
        assert got == code, (extra, err)
        assert len(err) == 1, (extra, err)
        assert fragment in err[0], (extra, err)
        assert not out.exists()


def test_training_images_are_found_near_the_data(tmp_path) -> None:
    """An official layout with training batches first, else a folder named train…; the test
    set or a perf folder alone is no calibration source."""
    root = tmp_path / "shared"
    png_folder(root / "cifar-10" / "perf-png", 1, stem="{}")
    assert q.find_calibration_source(root) is None
    train_folder = png_folder(root / "cifar-10" / "train-2000-png", 1)
    assert q.find_calibration_source(root) == train_folder
    official = write_layout(root / "cifar-10", "binary-dir",
                            layout_files("binary", make_images(10)))
    assert q.find_calibration_source(root) == train_folder  # a test batch alone is not it
    (official / "data_batch_1.bin").write_bytes(b"")  # only its presence is looked at here
    assert q.find_calibration_source(root) == official


def test_a_folder_named_by_test_index_is_test_images(tmp_path) -> None:
    """Refused unless explicitly allowed (issue 19 item 9); allowed, it is marked test."""
    folder = png_folder(tmp_path / "perf", 2, stem="{}")
    with pytest.raises(InvalidInputError, match=r"named like test-set indices.*TEST images"):
        q.load_calibration_data(folder)
    perf = q.load_calibration_data(folder, allow_test=True)
    train = q.load_calibration_data(png_folder(tmp_path / "train", 2))
    assert perf.split == "test"
    assert train.split == "train"
    assert len(perf) == len(train) == 20
    with pytest.raises(InputNotFoundError, match="calibration indices file not found"):
        q.load_calibration_data(tmp_path / "train", indices_file=tmp_path / "nope.npy")


def test_an_array_is_calibration_of_unknown_origin() -> None:
    images = synthetic_dataset(12).images
    data = as_dataset(images)
    assert data.split == "unknown"
    assert data.images is images
    assert any("origin" in w for w in data.source.warnings)
    with pytest.raises(InvalidInputError, match="uint8 NHWC"):
        as_dataset(images.astype(np.float32))
    with pytest.raises(InvalidInputError, match="uint8 NHWC"):
        as_dataset(images[0])
