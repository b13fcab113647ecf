"""backends.base: what a runner declares (input spec, description) and the protocol that
callers check instead of probing attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from resnet8_onnx.backends.base import InputSpec, RawPixelRunner, Runner, cast_pixels
from resnet8_onnx.records import RunnerInfo, VerificationRecord


def test_the_input_spec_says_the_batch_and_the_model_shape() -> None:
    dynamic = InputSpec(shape=(None, 32, 32, 3), pixel_shape=(32, 32, 3))
    fixed = InputSpec(shape=(8, 3, 24, 16), pixel_shape=(24, 16, 3), layout="nchw")
    assert dynamic.fixed_batch is None
    assert fixed.fixed_batch == 8
    assert InputSpec(shape=(), pixel_shape=()).fixed_batch is None
    assert dynamic.model_shape((24, 16, 3)) == (24, 16, 3)
    assert fixed.model_shape((24, 16, 3)) == (3, 24, 16)


def test_a_description_is_plain_json_and_leaves_out_an_empty_extra() -> None:
    info = RunnerInfo(name="onnxruntime", model_path="m.onnx", model_sha256="ab",
                      runtime_version="1.0", input_shape=(None, 32, 32, 3), num_classes=10)
    d = json.loads(json.dumps(info.to_dict()))
    assert list(d) == ["name", "model_path", "model_sha256", "runtime_version", "input_shape",
                       "input_dtype", "num_classes"]
    assert d["input_shape"] == [None, 32, 32, 3]
    assert d["input_dtype"] == "float32"
    with_extra = RunnerInfo(**{**info.__dict__, "extra": {"threads": 2}}).to_dict()
    assert with_extra["extra"] == {"threads": 2}
    assert list(with_extra)[-1] == "extra"


def test_a_runners_info_is_the_record_verify_keeps(tmp_path) -> None:
    """One shape: the runner's own block stays under ``extra`` (not spread over the part),
    the path is recorded absolute, and keys of a newer version survive a round trip."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    info = RunnerInfo(name="onnxruntime", model_path=str(model), model_sha256="ab",
                      runtime_version="1.0", input_shape=(None, 32, 32, 3), num_classes=10,
                      extra={"threads": 2, "provider": "CPUExecutionProvider"})
    saved = json.loads(json.dumps(info.to_dict()))
    assert saved["model_path"] == str(model.resolve())
    assert saved["extra"] == {"threads": 2, "provider": "CPUExecutionProvider"}
    assert "threads" not in saved
    back = RunnerInfo.from_dict({**saved, "new_key": 1})
    assert back.extra == info.extra
    assert back.input_shape == (None, 32, 32, 3)
    assert back.unknown == {"new_key": 1}
    assert back.to_dict() == {**saved, "new_key": 1}
    record = VerificationRecord(reference=info, candidate=info)
    again = VerificationRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again.candidate.to_dict() == saved


def test_casting_copies_only_when_it_must() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    cast = cast_pixels(pixels)
    assert cast.dtype == np.float32
    assert cast.flags.c_contiguous
    np.testing.assert_array_equal(cast, pixels)
    assert cast_pixels(cast) is cast  # already what the model takes: no copy
    strided = cast[:, ::2]
    assert cast_pixels(strided).flags.c_contiguous


class _Doubling(RawPixelRunner):
    info = None
    input_spec = InputSpec(shape=(None, 4, 4, 3), pixel_shape=(4, 4, 3))
    output_kind = "logits"
    abilities = frozenset()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(batch, np.float32).reshape(len(batch), -1)[:, :2] * 2


def test_a_raw_pixel_runner_prepares_by_casting_and_runs_by_predicting() -> None:
    runner = _Doubling()
    pixels = np.full((3, 4, 4, 3), 7, np.uint8)
    assert isinstance(runner, Runner)
    np.testing.assert_array_equal(runner.run(runner.prepare(pixels)), runner.predict(pixels))
    assert runner.prepare(pixels).dtype == np.float32


def test_the_protocol_needs_every_method() -> None:
    class NoRun:
        info = input_spec = output_kind = None
        abilities = frozenset()

        def predict(self, batch):  # pragma: no cover - never called
            return batch

        def prepare(self, pixels):  # pragma: no cover - never called
            return pixels

    assert not isinstance(NoRun(), Runner)
    assert isinstance(_Doubling(), Runner)


def test_an_ability_is_what_the_runner_declares_typed_by_its_protocol() -> None:
    """``able`` hands a runner back typed when it declares the ability; the declaration
    decides (methods alone do not), and declaring without the methods is a loud bug."""
    from resnet8_onnx.backends.base import MACS, CountsMacs, HasSession, able

    class Counted(_Doubling):
        abilities = frozenset({MACS})
        macs_source = "counted by hand"

        def macs(self) -> int:
            return 7

    class Undeclared(Counted):
        abilities = frozenset()

    class Broken(_Doubling):
        abilities = frozenset({MACS})  # declared, but no macs()

    counted = able(Counted(), CountsMacs)
    assert counted is not None
    assert counted.macs() == 7
    assert able(Counted(), HasSession) is None
    assert able(Undeclared(), CountsMacs) is None
    with pytest.raises(TypeError, match="declares 'macs'"):
        able(Broken(), CountsMacs)
