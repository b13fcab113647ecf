"""Labelled image sets of any classes and size: layouts, class matching, resize/crop, bad files.

Real CIFAR-10 images (perf-png, train-2000-png) re-laid as folders of a few classes and
upscaled, against the real ResNet8 with its outputs restricted to those classes (class
names in its metadata) and a model with a Resize in front; each result is checked against
a bare PIL + ONNX Runtime loop written here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_runner import assert_refused, run, run_json
from conftest import shared_path
from resnet8_onnx.data import load_dataset
from resnet8_onnx.data.geometry import Geometry
from resnet8_onnx.data.images import FolderRequest
from resnet8_onnx.support.errors import INVALID_INPUT, InvalidInputError

PERF = ("cifar-10", "perf-png")


def relay(dest: Path, classes: list[str], *, size: int | None = None, per_class: int = 6,
          source: tuple[str, ...] = PERF) -> Path:
    """``dest/<class>/<file>.png`` from a shared folder, upscaled to ``size`` (bicubic)."""
    from PIL import Image

    for name in classes:
        (dest / name).mkdir(parents=True, exist_ok=True)
        for f in sorted(shared_path(*source, name).iterdir())[:per_class]:
            im = Image.open(f).convert("RGB")
            if size is not None:
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            im.save(dest / name / f.name)
    return dest


def restrict(model: Path, classes: list[str], out: Path, *, resize_from: int | None = None
             ) -> Path:
    """The converted ResNet8 with only ``classes``' outputs (the final MatMul's weight
    columns and bias sliced), their names in metadata; ``resize_from`` puts a Resize in front
    so it takes ``resize_from``-pixel images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from resnet8_onnx.data import CLASS_NAMES

    m = onnx.load(str(model))
    keep = [CLASS_NAMES.index(c) for c in classes]
    for init in m.graph.initializer:
        if init.name.endswith("dense_1/MatMul/input_1"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[:, keep], init.name))
        elif init.name.endswith("dense_1/BiasAdd/input_1"):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[keep], init.name))
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = len(keep)
    props = {p.key: p.value for p in m.metadata_props}
    props.update(class_names=json.dumps(classes), num_classes=str(len(classes)))
    if resize_from is not None:
        inp = m.graph.input[0]
        old = inp.name
        for node in m.graph.node:
            node.input[:] = ["resized" if i == old else i for i in node.input]
        scale = 32 / resize_from
        m.graph.initializer.append(numpy_helper.from_array(
            np.array([1, scale, scale, 1], np.float32), "resize_scales"))
        m.graph.node.insert(0, helper.make_node(
            "Resize", [old, "", "resize_scales"], ["resized"], mode="linear"))
        for d, v in zip(inp.type.tensor_type.shape.dim[1:3], (resize_from, resize_from),
                        strict=True):
            d.dim_value = v
        assert inp.type.tensor_type.elem_type == TensorProto.FLOAT
        props.pop("input_shape", None)
    del m.metadata_props[:]
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(out))
    return out


def bare_loop(model: Path, folder: Path, classes: list[str], *, size: int | None = None,
              resample: int | None = None) -> tuple[int, int, np.ndarray]:
    """(correct, total, outputs): PIL open → RGB → (resize) → float32 → one ORT run."""
    import onnxruntime as ort
    from PIL import Image

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = total = 0
    outputs = []
    for label, cls in enumerate(classes):
        if not (folder / cls).is_dir():
            continue
        for f in sorted((folder / cls).iterdir()):
            im = Image.open(f).convert("RGB")
            if size is not None:
                im = im.resize((size, size), resample)
            out = sess.run(None, {name: np.asarray(im, np.float32)[None]})[0]
            outputs.append(out[0])
            correct += int(out.argmax() == label)
            total += 1
    return correct, total, np.array(outputs)


@pytest.fixture(scope="module")
def three_class(resnet8_onnx, tmp_path_factory) -> Path:
    return restrict(resnet8_onnx, ["cat", "dog", "ship"],
                    tmp_path_factory.mktemp("m") / "three.onnx")


@pytest.mark.shared
def test_upscaled_subset_folder_resized_back_equals_a_bare_pil_loop(three_class, tmp_path,
                                                                     capsys) -> None:
    """96-px images of two of the model's three classes: matched by the metadata names,
    resized by PIL with the named filter, every output equal to the bare loop's."""
    from PIL import Image

    folder = relay(tmp_path / "imgs", ["ship", "dog"], size=96)
    record = run_json(capsys, "evaluate", str(three_class), "--data-dir", str(folder),
                      "--input-size", "32", "--interpolation", "bicubic")
    correct, total, _ = bare_loop(three_class, folder, ["cat", "dog", "ship"], size=32,
                                  resample=Image.Resampling.BICUBIC)
    metrics = record["metrics"]
    assert (metrics["correct"], metrics["total"]) == (correct, total) == (
        metrics["correct"], 12)
    assert metrics["num_classes"] == 3
    assert record["data"]["dataset"] == "labelled images"
    assert record["data"]["per_class"] == {"cat": 0, "dog": 6, "ship": 6}
    checks = " ".join(record["data"]["source"]["checks"])
    assert "resized to 32×32 (bicubic, crop_pct 1, center crop)" in checks
    assert "input_size: option" in checks
    assert "crop_pct: default" in checks


@pytest.mark.shared
def test_library_outputs_equal_the_bare_loop_at_64_px(three_class, tmp_path) -> None:
    from PIL import Image

    from resnet8_onnx.backends.onnxrt.runner import load
    from resnet8_onnx.evaluate import run_inference

    folder = relay(tmp_path / "imgs", ["cat", "dog", "ship"], size=64, per_class=4)
    backend = load(three_class)
    request = FolderRequest(class_names=("cat", "dog", "ship"),
                            geometry=Geometry((32, 32), "bilinear"))
    data = load_dataset(folder, request=request)
    outputs, _ = run_inference(backend, data)
    _, _, expected = bare_loop(three_class, folder, ["cat", "dog", "ship"], size=32,
                               resample=Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(outputs, expected)


@pytest.mark.shared
def test_model_with_a_resize_in_front_takes_the_folder_as_it_is(resnet8_onnx, tmp_path,
                                                                capsys) -> None:
    model = restrict(resnet8_onnx, ["bird", "frog", "truck"], tmp_path / "r.onnx",
                     resize_from=64)
    folder = relay(tmp_path / "imgs", ["bird", "frog", "truck"], size=64, per_class=5)
    record = run_json(capsys, "evaluate", str(model), "--data-dir", str(folder))
    correct, total, _ = bare_loop(model, folder, ["bird", "frog", "truck"])
    assert (record["metrics"]["correct"], record["metrics"]["total"]) == (correct, total)
    assert record["data"]["image_shape"] == [64, 64, 3]


@pytest.mark.shared
def test_other_sizes_unstated_and_unknown_classes_are_refused(three_class, tmp_path,
                                                              capsys) -> None:
    folder = relay(tmp_path / "big", ["cat", "dog"], size=64, per_class=2)
    assert_refused(capsys, INVALID_INPUT, "give --input-size", "evaluate", str(three_class),
                   "--data-dir", str(folder))
    odd = relay(tmp_path / "odd", ["cat", "truck", "horse"], per_class=2)
    assert_refused(capsys, INVALID_INPUT, "2 classes the model does not know", "evaluate",
                   str(three_class), "--data-dir", str(odd))
    code, _, err = run(capsys, "evaluate", str(three_class), "--data-dir", str(odd))
    assert code == INVALID_INPUT
    assert "horse, truck" in err


@pytest.mark.shared
def test_folder_names_sorted_when_the_model_names_none(resnet8_onnx, tmp_path, capsys
                                                       ) -> None:
    """No names anywhere: classes sorted by folder name (torchvision's rule); with
    --class-names FILE they are matched by name instead."""
    import onnx

    model = restrict(resnet8_onnx, ["cat", "dog", "ship"], tmp_path / "m.onnx")
    m = onnx.load(str(model))
    kept = [p for p in m.metadata_props if p.key != "class_names"]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    onnx.save(m, str(model))
    folder = tmp_path / "f"
    relay(folder, ["cat", "dog", "ship"], per_class=3)
    for old, new in (("cat", "a_cat"), ("dog", "b_dog"), ("ship", "c_ship")):
        (folder / old).rename(folder / new)
    record = run_json(capsys, "evaluate", str(model), "--data-dir", str(folder))
    correct, total, _ = bare_loop(model, folder, ["a_cat", "b_dog", "c_ship"])
    assert (record["metrics"]["correct"], record["metrics"]["total"]) == (correct, total)
    names = tmp_path / "names.txt"
    names.write_text("c_ship\na_cat\nb_dog\n")  # a different order: labels follow the names
    record = run_json(capsys, "evaluate", str(model), "--data-dir", str(folder),
                      "--class-names", str(names))
    correct, total, _ = bare_loop(model, folder, ["c_ship", "a_cat", "b_dog"])
    assert (record["metrics"]["correct"], record["metrics"]["total"]) == (correct, total)


# ----------------------------------------------------------------------------- resize / crop
_TORCHVISION = """
import math, sys, numpy as np
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
h, w, crop_pct, mode, interp, src, dst = sys.argv[1:]
size = (int(h), int(w))
scale = tuple(math.floor(s / float(crop_pct)) for s in size)
how = getattr(InterpolationMode, interp.upper())
resize = transforms.Resize(scale if mode == "squash" else scale[0], interpolation=how)
np.save(dst, np.asarray(transforms.CenterCrop(size)(resize(Image.open(src)))))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("size", "crop_pct", "mode", "interp"), [
    ((40, 40), 0.875, "center", "bicubic"),
    ((40, 40), 1.0, "center", "bilinear"),
    ((30, 30), 0.9, "squash", "nearest"),
    ((36, 24), 0.8, "squash", "bilinear"),
])
def test_geometry_equals_torchvisions_pil_transforms(tmp_path, size, crop_pct, mode,
                                                     interp) -> None:
    """timm's eval transform built from torchvision (Resize: the shorter side for center,
    both sides for squash, to floor(size/crop_pct); then CenterCrop), in a subprocess
    (torchvision beside TensorFlow in one process is not safe)."""
    import importlib.util
    import subprocess
    import sys

    from PIL import Image

    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (57, 83, 3), dtype=np.uint8))
    image.save(tmp_path / "in.png")
    subprocess.run([sys.executable, "-c", _TORCHVISION, str(size[0]), str(size[1]),
                    str(crop_pct), mode, interp, str(tmp_path / "in.png"),
                    str(tmp_path / "out.npy")], check=True, timeout=300)
    got = Geometry(size, interp, crop_pct, mode).apply(image)
    np.testing.assert_array_equal(np.asarray(got), np.load(tmp_path / "out.npy"))


def test_annotate_records_resize_and_evaluate_uses_it(tmp_path, capsys) -> None:
    """annotate --input-size/--interpolation/--crop-pct writes them into the spec metadata;
    a later evaluate resizes by them, saying they came from the metadata."""
    from PIL import Image

    from model_factory import make_classifier

    model = make_classifier(tmp_path / "m.onnx", classes=2)
    rng = np.random.default_rng(0)
    for c in ("x", "y"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(
                tmp_path / "d" / c / f"{i}.png")
    out = tmp_path / "a.onnx"
    code, _, err = run(capsys, "annotate", str(model), "-o", str(out), "--input-size", "32",
                       "--interpolation", "bicubic", "--crop-pct", "0.875")
    assert code == 0, err
    import onnx

    spec = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[
        "preprocessing_spec"])
    assert (spec["input_size"], spec["interpolation"], spec["crop_pct"]) == (
        [32, 32], "bicubic", 0.875)
    record = run_json(capsys, "evaluate", str(out), "--data-dir", str(tmp_path / "d"))
    checks = " ".join(record["data"]["source"]["checks"])
    assert "input_size: metadata; interpolation: metadata; crop_pct: metadata" in checks
    geometry = Geometry((32, 32), "bicubic", 0.875)
    data = load_dataset(tmp_path / "d", request=FolderRequest(geometry=geometry))
    first = np.asarray(geometry.apply(Image.open(tmp_path / "d" / "x" / "0.png")))
    np.testing.assert_array_equal(data.images[0], first)


# ----------------------------------------------------------------------------- layouts
def _write(folder: Path, names: dict[str, int], size=(20, 20), mode="RGB", seed=0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls, n in names.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).convert(
                mode).save(folder / cls / f"{cls}{i}.png")


def test_split_layout_defaults_to_val_and_says_so(tmp_path, capsys) -> None:
    _write(tmp_path / "train", {"ant": 3, "bee": 2})
    _write(tmp_path / "val", {"ant": 1, "bee": 1})
    data = load_dataset(tmp_path, split=None)
    assert (len(data), data.split, data.class_names) == (2, "val", ("ant", "bee"))
    assert "using val (choose with --split)" in data.notes[0]
    record = run_json(capsys, "data", "--data-dir", str(tmp_path), "--split", "train")
    assert (record["count"], record["split"]) == (5, "train")


def test_csv_of_path_label(tmp_path) -> None:
    _write(tmp_path / "imgs", {"a": 2, "b": 2})
    rows = ["path,label", "imgs/a/a0.png,b", "imgs/a/a1.png,a", "imgs/b/b0.png,b"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(tmp_path / "list.csv")
    assert data.source.kind == "image-csv"
    assert data.class_names == ("a", "b")
    assert sorted(data.labels.tolist()) == [0, 1, 1]
    (tmp_path / "bad.csv").write_text("imgs/a/missing.png,a\nimgs/a/a0.png,b\n")
    with pytest.raises(Exception, match=r"missing\.png not found"):
        load_dataset(tmp_path / "bad.csv")


def test_modes_and_exif_are_converted_as_pil_does_and_counted(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    (tmp_path / "p").mkdir()
    (tmp_path / "q").mkdir()
    rgb = Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    rgb.convert("P").save(tmp_path / "p" / "pal.png")
    rgb.convert("CMYK").save(tmp_path / "p" / "cmyk.tif")
    rgb.convert("LA").save(tmp_path / "q" / "la.png")
    turned = Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))
    exif = turned.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view: stored 20 wide, shown 30 wide
    turned.save(tmp_path / "q" / "turned.jpg", exif=exif, quality=95)
    data = load_dataset(tmp_path)
    assert data.images.shape[1:] == (20, 30, 3)
    by_name = {"cmyk.tif": 0, "pal.png": 1, "la.png": 2, "turned.jpg": 3}
    files = [tmp_path / "p" / "cmyk.tif", tmp_path / "p" / "pal.png", tmp_path / "q" / "la.png"]
    for f in files:
        np.testing.assert_array_equal(data.images[by_name[f.name]],
                                      np.asarray(Image.open(f).convert("RGB")))
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(Image.open(tmp_path / "q" / "turned.jpg")).convert("RGB")
    np.testing.assert_array_equal(data.images[3], np.asarray(upright))
    warnings = " ".join(data.source.warnings)
    assert "converted to RGB as PIL does: CMYK ×1, P ×1" in warnings
    assert "1 image turned upright by its EXIF orientation" in warnings
    assert "1 image is grayscale" in warnings


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("streamed", [False, True])
def test_truncated_image_names_the_file_or_is_skipped_and_counted(tmp_path, capsys,
                                                                   monkeypatch, streamed
                                                                   ) -> None:
    from resnet8_onnx.data import stream

    if streamed:  # the header pass (PIL's verify) finds it before any pixel is decoded
        monkeypatch.setattr(stream, "STREAM_BYTES", 0)
    _write(tmp_path, {"a": 3, "b": 2})
    bad = tmp_path / "b" / "b1.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(InvalidInputError, match=r"b/b1\.png: cannot read image"):
        load_dataset(tmp_path)
    data = load_dataset(tmp_path, request=FolderRequest(skip_bad=True))
    assert (len(data), data.skipped) == (4, 1)
    assert "skipped 1 unreadable image (--skip-bad-images)" in " ".join(data.source.warnings)
    record = run_json(capsys, "data", "--data-dir", str(tmp_path), "--skip-bad-images")
    assert record["skipped_images"] == 1


def test_decompression_bomb_is_an_error_not_a_warning(tmp_path, monkeypatch) -> None:
    from PIL import Image

    _write(tmp_path, {"a": 2, "b": 2})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 20×20 = 400 pixels is over it
    with pytest.raises(InvalidInputError, match="over PIL's limit of 300 pixels"):
        load_dataset(tmp_path)


def test_empty_class_folder_warned_and_non_images_counted(tmp_path) -> None:
    _write(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "c").mkdir()
    (tmp_path / "a" / "README").write_text("x")
    data = load_dataset(tmp_path)
    warnings = " ".join(data.source.warnings)
    assert "1 class folder without images: c" in warnings
    assert "ignored 1 non-image file" in warnings
    assert data.class_names == ("a", "b")


# ----------------------------------------------------------------------------- streaming
def test_a_streamed_set_gives_the_same_pixels_and_outputs_as_one_decoded_at_once(
        tmp_path, monkeypatch) -> None:
    """STREAM_BYTES forced to 0: batches are decoded as they are used (the next one ahead),
    an index array is another stream, and every pixel and output equals the in-memory set's
    and a bare PIL + ONNX Runtime loop's."""
    from PIL import Image

    from model_factory import make_classifier
    from resnet8_onnx.backends.onnxrt.runner import load
    from resnet8_onnx.data import stream
    from resnet8_onnx.evaluate import run_inference

    _write(tmp_path / "d", {"a": 7, "b": 6, "c": 4}, size=(40, 50))
    request = FolderRequest(geometry=Geometry((32, 32), "bicubic", 0.9))
    whole = load_dataset(tmp_path / "d", request=request)
    monkeypatch.setattr(stream, "STREAM_BYTES", 0)
    streamed = load_dataset(tmp_path / "d", request=request)
    assert isinstance(streamed.images, stream.StreamedImages)
    assert "streamed, decoded batch by batch" in " ".join(streamed.source.checks)
    np.testing.assert_array_equal(np.asarray(streamed.images), whole.images)
    np.testing.assert_array_equal(streamed.labels, whole.labels)
    limited = streamed.with_limit(6)
    np.testing.assert_array_equal(np.asarray(limited.images), whole.with_limit(6).images)

    model = load(make_classifier(tmp_path / "m.onnx", classes=3))
    calls = []
    original = stream.StreamedImages._decode
    monkeypatch.setattr(stream.StreamedImages, "_decode",
                        lambda self, paths: calls.append(len(paths)) or original(self, paths))
    outputs, _ = run_inference(model, streamed, batch_size=5)
    assert max(calls) == 5  # never more than one batch decoded at a time
    reference, _ = run_inference(model, whole, batch_size=5)
    np.testing.assert_array_equal(outputs, reference)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    files = sorted((tmp_path / "d").glob("*/*.png"))
    for i in (0, 9, 16):
        pixels = np.asarray(request.geometry.apply(Image.open(files[i]).convert("RGB")))
        bare = sess.run(None, {"input": pixels[None].astype(np.float32)})[0][0]
        np.testing.assert_array_equal(outputs[i], bare)


# ----------------------------------------------------------------------------- every stage
@pytest.mark.slow
@pytest.mark.shared
def test_compare_and_quantize_take_a_labelled_set(three_class, tmp_path, capsys) -> None:
    """compare: both models on the same resized 3-class set, the correct counts a bare loop's;
    quantize: calibrated on upscaled *training* images of those classes, tested on the
    upscaled test images, the fp32 figure equal to the bare loop's."""
    from PIL import Image

    classes = ["cat", "dog", "ship"]
    test = relay(tmp_path / "test", classes, size=64, per_class=8)
    calib = relay(tmp_path / "calib", classes, size=64, per_class=20,
                  source=("cifar-10", "train-2000-png"))
    correct, total, _ = bare_loop(three_class, test, classes, size=32,
                                  resample=Image.Resampling.BILINEAR)
    record = run_json(capsys, "compare", str(three_class), str(three_class), "--data-dir",
                      str(test), "--input-size", "32")
    assert [(m["metrics"]["correct"], m["metrics"]["total"]) for m in record["models"]] == [
        (correct, total)] * 2
    code, out, err = run(capsys, "quantize", str(three_class), "-o", str(tmp_path / "q.onnx"),
                         "--calibration-data", str(calib), "--data-dir", str(test),
                         "--input-size", "32", "--no-auto", "--min-agreement", "0", "--json",
                         "-")
    assert code == 0, err
    fp32 = json.loads(out)["evaluation"]["fp32"]
    assert (tmp_path / "q.onnx").is_file()
    assert (fp32["correct"], fp32["total"]) == (correct, total)


@pytest.mark.shared
def test_the_official_set_resized_for_a_model_of_another_size(monkeypatch) -> None:
    """The official test set stays official and in order; its images go through the stated
    resize (at once, or streamed batch by batch), each equal to PIL's own resize."""
    from PIL import Image

    from resnet8_onnx.data import stream

    official = shared_path("cifar-10", "cifar-10-batches-bin")
    raw = load_dataset(official)
    request = FolderRequest(geometry=Geometry((40, 40), "bicubic"),
                            geometry_sources=(("input_size", "option"),))
    monkeypatch.setattr(stream, "STREAM_BYTES", 0)
    streamed = load_dataset(official, request=request)
    assert isinstance(streamed.images, stream.StreamedImages)
    assert streamed.is_full_official_test_set
    assert "resized to 40×40 (bicubic" in " ".join(streamed.source.checks)
    np.testing.assert_array_equal(streamed.labels, raw.labels)
    for i in (0, 4321, 9999):
        expected = np.asarray(Image.fromarray(raw.images[i]).resize(
            (40, 40), Image.Resampling.BICUBIC))
        np.testing.assert_array_equal(streamed.images[i:i + 1][0], expected)
    limited = streamed.with_limit(20)
    picked = np.asarray(limited.images)
    assert picked.shape == (20, 40, 40, 3)
    np.testing.assert_array_equal(picked[3], np.asarray(Image.fromarray(
        raw.with_limit(20).images[3]).resize((40, 40), Image.Resampling.BICUBIC)))
