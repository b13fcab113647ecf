"""data.parsers: binary records and the restricted unpickler, on generated and hostile bytes."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cifar_factory import (
    binary_records,
    make_images,
    python_batch,
)
from resnet8_onnx.data import load_dataset, parse_binary_records, restricted_loads
from resnet8_onnx.support.errors import InvalidInputError, UnsafeInputError


# ------------------------------------------------------------------------------ binary parser
def test_binary_record_layout_is_label_then_rgb_planes() -> None:
    # Distinct bytes everywhere so a wrong plane or row order cannot pass.
    record = bytearray([7])
    record += bytes((ch * 101 + r * 7 + c * 3) % 256 for ch in range(3) for r in range(32)
                    for c in range(32))
    images, labels = parse_binary_records(bytes(record) * 2, name="x.bin")
    assert images.shape == (2, 32, 32, 3)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert labels.tolist() == [7, 7]
    for r, c, ch in [(0, 0, 0), (0, 1, 0), (1, 0, 0), (31, 31, 2), (5, 17, 1), (12, 3, 2)]:
        assert images[1, r, c, ch] == record[1 + ch * 1024 + r * 32 + c]


@pytest.mark.parametrize("n", [23, 2 * 1024 + 5])  # one read, and three with a short last one
def test_binary_roundtrip_of_generated_records(n: int) -> None:
    images, labels = make_images(n)
    got_images, got_labels = parse_binary_records(binary_records(images, labels), name="t")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


@pytest.mark.parametrize(
    ("size", "fragment"),
    [(0, "empty file"), (3072, "3,072 bytes is not a multiple of 3,073-byte records"),
     (3 * 3073 + 5, "truncated: 9,224 bytes")],
)
def test_binary_wrong_sizes(size: int, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment) as info:
        parse_binary_records(bytes(size), name="test_batch.bin")
    assert str(info.value).startswith("test_batch.bin: ")


def test_binary_label_out_of_range_names_the_record() -> None:
    images, labels = make_images(20)
    labels[17] = 12
    with pytest.raises(InvalidInputError, match=r"label 12 out of range 0–9 at record 17"):
        parse_binary_records(binary_records(images, labels), name="test_batch.bin")


def _outcome(fn, *args, **kwargs) -> tuple[str | None, object]:
    """(error message, None) for a tool error, (None, result) otherwise; anything else raises."""
    try:
        return None, fn(*args, **kwargs)
    except (InvalidInputError, UnsafeInputError) as exc:
        return str(exc), None


_records = st.integers(1, 3).flatmap(lambda k: st.binary(min_size=k * 3073, max_size=k * 3073))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=7000), _records))
def test_binary_parser_only_raises_invalid_input(data: bytes) -> None:
    message, result = _outcome(parse_binary_records, data, name="fuzz.bin")
    if message is not None:
        assert message.startswith("fuzz.bin: ")
        assert "\n" not in message
        return
    images, labels = result
    assert len(data) % 3073 == 0
    assert images.shape == (len(data) // 3073, 32, 32, 3)
    assert labels.min() >= 0
    assert labels.max() <= 9


# ------------------------------------------------------------------------------ safe unpickler
def test_restricted_loads_reads_python2_batches() -> None:
    images, labels = make_images(5)
    raw = python_batch(images, labels)
    assert b"numpy.core.multiarray\n_reconstruct" in raw  # written as Python 2 wrote it
    obj = restricted_loads(raw, name="test_batch")
    assert set(obj) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert obj[b"labels"] == labels.tolist()
    assert obj[b"data"].dtype == np.uint8
    assert obj[b"data"].shape == (5, 3072)


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [_System, _Exec])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, payload, protocol) -> None:
    marker = tmp_path / "marker"
    evil = pickle.dumps({"data": payload(marker), "labels": [0]}, protocol=protocol)
    with pytest.raises(UnsafeInputError) as info:
        restricted_loads(evil, name="test_batch")
    message = str(info.value)
    assert message.startswith("test_batch: refused pickled global ")
    assert ("system" in message) if payload is _System else ("exec" in message)
    assert not marker.exists()


def test_hostile_test_batch_in_a_python_dir_is_refused(tmp_path) -> None:
    marker = tmp_path / "marker"
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    (directory / "test_batch").write_bytes(pickle.dumps(_System(marker), protocol=2))
    with pytest.raises(UnsafeInputError, match="test_batch: refused pickled global"):
        load_dataset(directory)
    assert not marker.exists()


def test_numpy_globals_outside_the_allow_list_are_refused() -> None:
    payload = b"\x80\x02cnumpy\nload\nq\x00."
    with pytest.raises(UnsafeInputError, match=r"numpy\.load"):
        restricted_loads(payload, name="b")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512), st.binary(max_size=512).map(lambda b: b"\x80\x02" + b)))
def test_restricted_loads_random_bytes_only_raise_tool_errors(data: bytes) -> None:
    message, _ = _outcome(restricted_loads, data, name="fuzz")
    if message is not None:
        assert message.startswith("fuzz: ")
        assert "\n" not in message


_VALID = python_batch(*make_images(2, seed=3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(_VALID)))
def test_restricted_loads_mutated_batches_only_raise_tool_errors(flips, cut) -> None:
    data = bytearray(_VALID)
    for pos, value in flips:
        data[pos] = value
    message, _ = _outcome(restricted_loads, bytes(data[:cut]), name="fuzz")
    assert message is None or message.startswith("fuzz: ")
