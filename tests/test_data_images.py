"""data.images: image folders (names, order, split, formats, warnings), library and CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar_factory import (
    data_cli,
    data_json,
    layout_files,
    make_images,
    write_layout,
    write_png_folder,
)
from conftest import shared_path
from resnet8_onnx.data import CLASS_NAMES, load_dataset
from resnet8_onnx.support.errors import InvalidInputError


# ------------------------------------------------------------------------------ image folder
def test_image_folder_with_index_names(tmp_path) -> None:
    images, labels = make_images(12)
    idx = np.array([9000, 5, 77, 1234, 3, 600, 42, 8, 9999, 100, 2500, 31])
    write_png_folder(tmp_path / "pngs", images, labels, [f"{i:05d}" for i in idx])
    data = load_dataset(tmp_path / "pngs")
    order = np.argsort(idx)
    assert data.source.kind == "image-folder"
    assert data.source.official is False
    np.testing.assert_array_equal(data.indices, idx[order])
    np.testing.assert_array_equal(data.images, images[order])
    np.testing.assert_array_equal(data.labels, labels[order])
    picked = data.select(np.array([77, 9999, 3]), "mine")
    np.testing.assert_array_equal(picked.images, images[[2, 8, 4]])


def test_image_folder_with_other_names_sorts_by_class_then_name(tmp_path) -> None:
    images, labels = make_images(10)
    names = ["zeta", "alpha", "mid", "b2", "b10", "q", "r", "s", "t", "u"]
    write_png_folder(tmp_path, images, labels, names)
    data = load_dataset(tmp_path)
    assert data.indices is None
    expected = sorted(range(10), key=lambda i: (labels[i], f"{names[i]}.png"))
    np.testing.assert_array_equal(data.images, images[expected])
    with pytest.raises(InvalidInputError, match="carry no test-set index"):
        data.select(np.array([1]), "perf")


def test_image_folder_jpeg_warns(tmp_path) -> None:
    images, labels = make_images(3)
    write_png_folder(tmp_path, images, labels, ["1", "2", "3"], fmt="JPEG")
    data = load_dataset(tmp_path)
    assert any("JPEG (lossy)" in w for w in data.source.warnings)


def test_image_folder_wrong_size_names_the_file(tmp_path) -> None:
    from PIL import Image

    (tmp_path / "cat").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "cat" / "1.png")
    Image.new("RGB", (64, 32)).save(tmp_path / "cat" / "2.png")
    with pytest.raises(InvalidInputError, match=r"cat/2\.png: image is 64×32, expected 32×32"):
        load_dataset(tmp_path)


def test_image_folder_of_other_classes_sorts_them_by_name(tmp_path) -> None:
    """A class the CIFAR-10 names do not hold makes a set of the folder's own classes,
    sorted by name as torchvision's ImageFolder sorts them; a model naming its classes
    refuses the one it does not know (exit 4, named)."""
    from resnet8_onnx.data.images import FolderRequest

    images, _ = make_images(4)
    write_png_folder(tmp_path, images, np.array([0, 0, 1, 1]), ["a", "b", "c", "d"])
    (tmp_path / "airplane").rename(tmp_path / "unicorn")
    data = load_dataset(tmp_path)
    assert data.class_names == ("automobile", "unicorn")
    assert data.name == "labelled images"
    np.testing.assert_array_equal(data.labels, [0, 0, 1, 1])
    request = FolderRequest(class_names=CLASS_NAMES, class_source="model metadata")
    with pytest.raises(InvalidInputError, match="1 class the model does not know "
                                                r"\(model metadata\): unicorn"):
        load_dataset(tmp_path, request=request)


def test_image_folder_corrupt_png(tmp_path) -> None:
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InvalidInputError, match=r"dog/1\.png: cannot read image"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("depth", [1, 2])
def test_cli_finds_an_image_folder_inside_the_data_dir(tmp_path, capsys, depth) -> None:
    """--data-dir NEST where NEST/imgs/<class>/*.png (or one level deeper), as the README's
    "up to two levels deep" promises; no download is tried."""
    images, labels = make_images(20)
    nest = tmp_path / "nest"
    folder = nest / "x" / "imgs" if depth == 2 else nest / "imgs"
    write_png_folder(folder, images, labels, [f"{i:05d}" for i in range(20)])
    code, record, err = data_json(capsys, nest)
    assert code == 0, err
    assert record["source"]["kind"] == "image-folder"
    assert record["source"]["path"] == str(folder)
    assert record["count"] == 20
    assert record["source"]["notes"] == []  # the only candidate: nothing to explain
    assert err == ""


def _class_sorted_folder(root: Path, stems: list[str]) -> Path:
    """Two images per class, written class by class (as a folder sorted by class lists them)."""
    images, _ = make_images(20)
    labels = np.repeat(np.arange(10), 2)
    return write_png_folder(root, images, labels, stems)


@pytest.mark.parametrize(("stems", "split"), [
    ([f"train-{i:05d}" for i in range(20)], "train"),
    ([f"img{i}" for i in range(20)], "unknown"),
    ([f"{i:05d}" for i in range(20)], "test"),
])
def test_cli_image_folder_is_reported_as_what_it_is(tmp_path, capsys, stems, split) -> None:
    """train-NNNNN files are training images, numeric stems test images, anything else of
    unknown split: never "CIFAR-10 test" just because --split defaults to test."""
    from resnet8_onnx.cli import main

    folder = _class_sorted_folder(tmp_path / "pngs", stems)
    code, record, err = data_json(capsys, folder)
    assert code == 0, err
    assert record["split"] == split
    assert main(["-q", "data", "--data-dir", str(folder)]) == 0
    headline = " ".join(capsys.readouterr().out.split("source:")[0].split())
    assert "image folder pngs: 20 images" in headline
    words = {"train": "training images", "unknown": "images of unknown split",
             "test": "test images"}
    assert f"CIFAR-10 {words[split]}" in headline
    if split != "test":
        assert "CIFAR-10 test" not in headline
        assert "test set" in headline.split("—")[1]  # "not the (official) test set"


def test_cli_split_train_on_an_image_folder_says_training(tmp_path, capsys) -> None:
    from resnet8_onnx.cli import main

    folder = _class_sorted_folder(tmp_path / "pngs", [f"img{i}" for i in range(20)])
    assert main(["-q", "data", "--data-dir", str(folder), "--split", "train"]) == 0
    headline = " ".join(capsys.readouterr().out.split("source:")[0].split())
    assert headline.startswith("CIFAR-10 training images, image folder pngs")
    assert "official test set" not in headline


def test_cli_limit_is_class_balanced_on_a_class_sorted_folder(tmp_path, capsys) -> None:
    """--limit 10 on a folder listed class by class: one image of each class, not ten
    airplanes; the same rule on an official layout; the default (no --limit) unchanged."""
    import json

    from resnet8_onnx.cli import main

    folder = _class_sorted_folder(tmp_path / "pngs", [f"train-{i:05d}" for i in range(20)])
    images, labels = make_images(40)
    labels = np.array([0] * 20 + list(range(10)) * 2, np.int64)  # the first 20 all airplanes
    layout = write_layout(tmp_path / "bin", "binary-dir",
                          layout_files("binary", (images, labels)))
    # one round over the ten classes, then the eleventh image opens the next round
    expected = {name: 2 if name == "airplane" else 1 for name in CLASS_NAMES}
    for source in (folder, layout):
        assert main(["-q", "data", "--data-dir", str(source), "--limit", "11",
                     "--json", "-"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert record["count"] == 11
        assert record["subset"] == "balanced-11 of full"
        assert record["limit"] == 11
        assert record["per_class"] == expected
    assert main(["-q", "data", "--data-dir", str(layout), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["per_class"]["airplane"] == 22


@pytest.mark.shared
def test_real_training_image_folder_is_reported_as_training_images() -> None:
    from resnet8_onnx.report import describe_data

    data = load_dataset(shared_path("cifar-10", "train-2000-png"))
    assert data.split == "train"
    assert describe_data(data.info()) == (
        "CIFAR-10 training images, image folder train-2000-png: 2,000 images — not the test set")
    limited = data.with_limit(100)
    assert limited.per_class == {name: 10 for name in CLASS_NAMES}
    assert describe_data(limited.info()) == (
        "CIFAR-10 training images, image folder train-2000-png, 100 of 2,000 images, the first "
        "10 of each class — NOT the whole folder")


@pytest.mark.shared
def test_real_perf_png_is_pixel_identical_to_the_binary_batch() -> None:
    full = load_dataset(shared_path("cifar-10", "cifar-10-batches-bin"))
    folder = load_dataset(shared_path("cifar-10", "perf-png"))
    assert folder.source.kind == "image-folder"
    assert len(folder) == 200
    assert folder.indices is not None
    np.testing.assert_array_equal(folder.images, full.images[folder.indices])
    np.testing.assert_array_equal(folder.labels, full.labels[folder.indices])
    perf = folder.select(np.load(shared_path("mlperf-tiny", "perf_samples_idxs.npy")), "perf")
    assert perf.per_class == {name: 20 for name in CLASS_NAMES}


def test_image_folder_warns_of_grayscale_images_and_counts_in_the_singular(tmp_path,
                                                                           capsys) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "cat/0.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(root / "dog/1.png")
    (root / "dog" / "notes.txt").write_text("not an image")
    text = " ".join(" ".join(data_cli(capsys, root)).split())
    assert "warning: folder: 1 image is grayscale, converted to RGB" in text
    assert "ignored 1 non-image file (e.g. notes.txt)" in text

    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8), "L").save(root / "cat/2.png")
    (root / "cat" / "more.txt").write_text("not an image either")
    text = " ".join(" ".join(data_cli(capsys, root)).split())
    assert "2 images are grayscale" in text
    assert "ignored 2 non-image files" in text
    gray = load_dataset(root).images
    assert (gray[..., 0] == gray[..., 1]).all(axis=(1, 2)).sum() == 2  # R = G = B
