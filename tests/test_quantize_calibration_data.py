"""Calibration data: test images are recognised wherever they are found, refusals name only the
printing command's options, and the int8 file records only the spec fields that were given."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from cifar_factory import layout_files, make_images, write_layout
from conftest import shared_path
from model_factory import make_classifier
from quantize_helpers import float_model, png_folder, run_cli, train_images
from resnet8_onnx import pipeline, preprocess
from resnet8_onnx import quantize as q
from resnet8_onnx.cli.commands import _quantize_remedies, _run_remedies
from resnet8_onnx.data import CLASS_NAMES
from resnet8_onnx.support import errors

QUANTIZE_ONLY = ("--calibration-count", "--no-auto", "--allow-test-calibration",
                 "--calibration-indices", "--min-agreement")


def _perf_png() -> Path:
    return shared_path("cifar-10", "perf-png")


def _test_batch_dir() -> Path:
    return shared_path("cifar-10", "cifar-10-batches-bin")


def _copy_renamed(src: Path, dst: Path, name, limit: int = 1000) -> list[tuple[str, str]]:
    """Copy an image folder (``limit`` files a class) with each file renamed
    ``name(class, i, stem)``; returns (class, old stem) of each."""
    copied = []
    for c in CLASS_NAMES:
        (dst / c).mkdir(parents=True)
        for i, f in enumerate(sorted((src / c).glob("*.png"))[:limit]):
            shutil.copyfile(f, dst / c / f"{name(c, i, f.stem)}.png")
            copied.append((c, f.stem))
    return copied


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


# ----------------------------------------------------------------- item 2: found one level down
def test_test_images_one_level_down_are_refused_then_marked_test(tmp_path, capsys) -> None:
    onlyperf = tmp_path / "onlyperf"
    onlyperf.mkdir()
    (onlyperf / "perf-png").symlink_to(_perf_png(), target_is_directory=True)
    model, out = float_model(tmp_path / "m.onnx"), tmp_path / "a.onnx"
    code, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(onlyperf),
                        "--no-auto")
    assert code == errors.INVALID_INPUT, err
    assert len(err) == 1, err
    assert "TEST" in err[0]
    assert "--allow-test-calibration" in err[0]
    assert not out.exists()
    code, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(onlyperf),
                        "--no-auto", "--allow-test-calibration", "--json", str(tmp_path / "r.json"))
    assert code == errors.OK, err
    meta = _meta(out)
    assert meta["quantization_calibration_split"] == "test"
    assert meta["quantization_calibration_test_images"] == "true"
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["calibration"]["test_images"] is True


# ------------------------------------------------------------- item 3: recognised by content
def test_renamed_training_images_are_not_taken_for_test_images(tmp_path, monkeypatch) -> None:
    """Training PNGs named 00029.png: compared by content with the official test set, they
    are not test images; perf-png renamed train-*.png are, with their true test indices."""
    monkeypatch.setenv("RESNET8_ONNX_DATA_DIR", str(_test_batch_dir()))
    train = shared_path("cifar-10", "train-2000-png")
    numeric = tmp_path / "numeric"
    _copy_renamed(train, numeric, lambda c, i, stem: f"{CLASS_NAMES.index(c) * 20 + i:05d}",
                  limit=20)
    data = q.load_calibration_data(numeric)
    assert data.split == "train"
    assert len(data) == 200

    disguised = tmp_path / "disguised"
    copied = _copy_renamed(_perf_png(), disguised, lambda c, i, stem: f"train-{i:05d}")
    with pytest.raises(errors.InvalidInputError, match=r"200 of its 200 images are CIFAR-10 TEST"):
        q.load_calibration_data(disguised)
    allowed = q.load_calibration_data(disguised, allow_test=True)
    assert allowed.split == "test"
    # independently: each image's position in test_batch.bin, found by a byte comparison
    raw = np.frombuffer((_test_batch_dir() / "test_batch.bin").read_bytes(), np.uint8)
    test = raw.reshape(10_000, 3073)[:, 1:].reshape(10_000, 3, 32, 32).transpose(0, 2, 3, 1)
    for img, idx in zip(allowed.images[::37], allowed.indices[::37], strict=True):
        assert np.array_equal(test[idx], img)
    assert sorted(allowed.indices.tolist()) == sorted(int(s) for _, s in copied)


def test_without_the_test_set_the_name_rule_says_it_is_a_guess(tmp_path) -> None:
    folder = png_folder(tmp_path / "perf", 2, stem="{}")
    with pytest.raises(errors.InvalidInputError, match="named like test-set indices") as info:
        q.load_calibration_data(folder)
    assert "--" not in str(info.value)  # the library names no option; the CLI adds its own
    assert q.load_calibration_data(folder, allow_test=True).split == "test"


# --------------------------------------------------- item 6: a named --data-dir is not downloaded
def test_run_int8_never_downloads_into_a_named_data_dir(tmp_path, monkeypatch) -> None:
    batches = write_layout(tmp_path / "d", "binary-dir", layout_files("binary", make_images(20)))

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although --data-dir was named")

    monkeypatch.setattr("resnet8_onnx.data.discover.fetch", no_download)
    monkeypatch.setattr("resnet8_onnx.data.sources.fetch", no_download)
    with pytest.raises(errors.InputNotFoundError) as info:
        pipeline._int8(tmp_path / "x.onnx", tmp_path / "x_int8.onnx", None, None,
                       data_dir=batches, calibration_data=None, batch_size=32, threads=None,
                       force=False, download=None)
    exc = info.value
    assert exc.exit_code == errors.NOT_FOUND
    assert "no training images" in str(exc)
    assert str(batches) in str(exc)
    with pytest.raises(errors.InputNotFoundError), errors.remedies(_run_remedies()):
        raise exc
    worded = exc.cli_message()
    assert "--calibration-data DIR" in worded
    assert not any(opt in worded for opt in QUANTIZE_ONLY), worded


# ------------------------------------------------- item 7: each command names its own options
def test_too_few_images_for_run_names_runs_option(tmp_path) -> None:
    model = float_model(tmp_path / "m.onnx")
    with pytest.raises(errors.InvalidInputError) as info, errors.remedies(_run_remedies()):
        q.quantize(model, tmp_path / "o.onnx", train_images(150), timing_images=32,
                   timing_rounds=1)
    worded = info.value.cli_message()
    assert "held out" in worded
    assert "--calibration-data at least 200" in worded
    assert not any(opt in worded for opt in QUANTIZE_ONLY), worded
    assert "--" not in str(info.value)


def test_allow_test_calibration_takes_an_official_test_batch_dir(tmp_path, capsys) -> None:
    images, labels = make_images(300, seed=3)
    batches = write_layout(tmp_path / "d", "binary-dir",
                           layout_files("binary", (images, labels)))
    model, out = float_model(tmp_path / "m.onnx"), tmp_path / "o.onnx"
    code, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(batches),
                        "--no-auto")
    assert code == errors.NOT_FOUND
    assert len(err) == 1
    assert "--allow-test-calibration" in err[0]
    code, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(batches),
                        "--no-auto", "--allow-test-calibration")
    assert code == errors.OK, err
    assert _meta(out)["quantization_calibration_split"] == "test"
    words = _quantize_remedies(type("A", (), {"allow_test_calibration": True})())
    assert "--allow-test-calibration for" not in words[q.calibration.NO_TRAINING_IMAGES]


# ------------------------------------------------ item 9: only given spec fields become metadata
def test_int8_metadata_states_only_given_fields(tmp_path) -> None:
    model = make_classifier(tmp_path / "pt9.onnx", layout="nchw", batch=1, opset=9)
    data = train_images(240)
    record = q.quantize(model, tmp_path / "pt9_int8.onnx", data, q.Recipe(), timing_images=32,
                        timing_rounds=1, batch_size=1)
    said = record.to_dict()["preprocessing"]["sources"]
    assert said["layout"] == preprocess.INPUT_SHAPE
    assert said["mean"] == preprocess.DEFAULT
    int8 = onnx.load(str(tmp_path / "pt9_int8.onnx"))
    shape = [d.dim_value or None for d in int8.graph.input[0].type.tensor_type.shape.dim]
    meta = {p.key: p.value for p in int8.metadata_props}
    assert json.loads(meta[preprocess.METADATA_SPEC]) == {}
    _, again = preprocess.resolve(None, meta, shape)
    assert {k: again[k] for k in said} == said  # a later stage sees the same sources

    given = q.quantize(model, tmp_path / "g_int8.onnx", data, q.Recipe(), timing_images=32,
                       timing_rounds=1, batch_size=1,
                       preprocessing={"scale": 255.0, "mean": [0.5] * 3, "std": [0.25] * 3})
    said = given.to_dict()["preprocessing"]["sources"]
    meta = _meta(tmp_path / "g_int8.onnx")
    assert set(json.loads(meta[preprocess.METADATA_SPEC])) == {"scale", "mean", "std"}
    _, again = preprocess.resolve(None, meta, shape)
    assert again["mean"] == preprocess.METADATA
    assert again["layout"] == preprocess.INPUT_SHAPE
    assert said["mean"] == preprocess.OPTION


# ------------------------------------------- item 14: the record says how much of the list is used
def test_calibration_indices_record_says_how_many_of_the_list(tmp_path) -> None:
    images, labels = make_images(500, seed=4)
    batches = write_layout(tmp_path / "d", "binary-dir", layout_files("binary", (images, labels)))
    listed = np.arange(0, 500, 2, dtype=np.int64)  # 250 test indices: the gate holds out 100+
    np.save(tmp_path / "idx.npy", listed)
    data = q.load_calibration_data(batches, indices_file=tmp_path / "idx.npy")
    record = q.quantize(float_model(tmp_path / "m.onnx"), tmp_path / "o.onnx", data, q.Recipe(),
                        timing_images=32, timing_rounds=1)
    calibration = record.to_dict()["calibration"]
    used = calibration["count"]
    assert used < len(listed)  # the rest is held out, not calibrated on
    assert calibration["selection"].startswith(f"{used:,} of the 250 test images listed in "
                                               "idx.npy")
    assert f"other {250 - used:,} are not calibrated on" in calibration["selection"]
    assert calibration["test_indices"] == listed[(np.arange(used) * 250) // used][:20].tolist()
