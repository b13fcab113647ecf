"""data.indices: indices files; the official perf file by sha256, others named as such."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cifar_factory import (
    layout_files,
    make_images,
    write_layout,
)
from conftest import shared_path
from resnet8_onnx.data import CLASS_NAMES, load_dataset, load_indices
from resnet8_onnx.support.errors import InputNotFoundError, InvalidInputError


# ------------------------------------------------------------------------------ indices
def test_load_indices_checks_structure(tmp_path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.array([5, 1, 9999], dtype=np.int32))
    out = load_indices(good)
    assert out.dtype == np.int64
    assert out.tolist() == [5, 1, 9999]
    cases = {
        "2d.npy": (np.zeros((2, 2), np.int64), "expected a 1-D integer array"),
        "float.npy": (np.array([1.0, 2.0]), "expected a 1-D integer array"),
        "dup.npy": (np.array([3, 4, 3]), "index 3 appears more than once"),
        "range.npy": (np.array([1, 10000]), "index 10000 out of range"),
        "neg.npy": (np.array([-1, 2]), "index -1 out of range"),
        "empty.npy": (np.array([], np.int64), "holds no indices"),
        "obj.npy": (np.array([{"a": 1}], dtype=object), "not a plain .npy array"),
    }
    for name, (arr, fragment) in cases.items():
        path = tmp_path / name
        np.save(path, arr, allow_pickle=True)
        with pytest.raises(InvalidInputError, match=fragment):
            load_indices(path)
    with pytest.raises(InputNotFoundError):
        load_indices(tmp_path / "missing.npy")


def test_perf_subset_with_an_unofficial_indices_file_warns(tmp_path) -> None:
    images, labels = make_images(50)
    write_layout(tmp_path, "binary-dir", layout_files("binary", (images, labels)))
    np.save(tmp_path / "perf_samples_idxs.npy", np.array([40, 2, 17], np.int64))
    data = load_dataset(tmp_path, subset="perf")
    np.testing.assert_array_equal(data.labels, labels[[40, 2, 17]])
    assert data.subset == "indices"  # only the official file makes "the perf subset"
    assert any("perf_samples_idxs.npy: differs from the official" in w
               for w in data.source.warnings)
    assert data.describe()["indices_sha256"] == sha256_of(tmp_path / "perf_samples_idxs.npy")


def sha256_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["my.npy", "perf_samples_idxs.npy"])
def test_cli_custom_indices_are_not_called_the_perf_subset(tmp_path, capsys, name) -> None:
    """--subset perf --indices FILE: a file that is not the official one (whatever its name)
    is reported as the images it selects, named by the file and its sha256, in the headline
    and the JSON; indices_sha256 is the file's sha256, the one the checks print."""
    import json

    from resnet8_onnx.cli import main

    images, labels = make_images(60)
    data = write_layout(tmp_path, "binary-dir", layout_files("binary", (images, labels)))
    indices = tmp_path / "idx" / name
    indices.parent.mkdir()
    np.save(indices, np.array([41, 3, 17, 9], np.int64))
    digest = sha256_of(indices)
    argv = ["-q", "data", "--data-dir", str(data), "--subset", "perf", "--indices", str(indices)]
    assert main([*argv, "--json", "-"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["subset"] == "indices"
    assert record["count"] == 4
    assert record["indices_file"] == str(indices)
    assert record["indices_sha256"] == digest
    # A file under the official name whose checksum differs is a warning, never "verified:";
    # a file of another name is simply a selection of its own, named with its sha256.
    where = "warnings" if name == "perf_samples_idxs.npy" else "checks"
    assert any(digest in c for c in record["source"][where])
    assert main(argv) == 0
    headline = " ".join(capsys.readouterr().out.split("source:")[0].split())  # unwrapped
    assert "MLPerf" not in headline
    assert "perf subset" not in headline
    assert f"selected by {name} (sha256 {digest[:12]}" in headline


def test_perf_subset_without_indices_offline(tmp_path) -> None:
    write_layout(tmp_path, "binary-dir", layout_files("binary", make_images(10)))
    with pytest.raises(InputNotFoundError, match=r"idxs\.npy not found.*--indices FILE"):
        load_dataset(tmp_path, subset="perf")


@pytest.mark.shared
def test_real_perf_subset_matches_mlperf_labels() -> None:
    indices_file = shared_path("mlperf-tiny", "perf_samples_idxs.npy")
    data = load_dataset(shared_path("cifar-10", "cifar-10-batches-bin"), subset="perf",
                        indices_file=indices_file)
    assert len(data) == 200
    assert data.per_class == {name: 20 for name in CLASS_NAMES}
    assert data.source.official is True
    assert not data.is_full_official_test_set
    with open(shared_path("mlperf-tiny", "ic01_y_labels.csv"), newline="") as f:
        expected = [int(row[2]) for row in csv.reader(f)]
    assert data.labels.tolist() == expected
    np.testing.assert_array_equal(data.indices, np.load(indices_file))


@pytest.mark.shared
def test_real_official_indices_under_any_name_are_the_perf_subset(tmp_path, capsys) -> None:
    """The official file is recognised by its checksum, not its name; the calibration indices
    (another MLCommons file, 500 images) are not the perf subset."""
    import json
    import shutil

    from resnet8_onnx.cli import main

    official = shared_path("mlperf-tiny", "perf_samples_idxs.npy")
    renamed = shutil.copyfile(official, tmp_path / "my.npy")
    calibration = shared_path("mlperf-tiny", "calibration_samples_idxs.npy")
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    for indices, subset, count in ((renamed, "perf", 200), (calibration, "indices", 500)):
        assert main(["-q", "data", "--data-dir", str(data), "--subset", "perf", "--indices",
                     str(indices), "--json", "-"]) == 0
        record = json.loads(capsys.readouterr().out)
        assert (record["subset"], record["count"]) == (subset, count)
        assert record["indices_sha256"] == sha256_of(Path(indices))
