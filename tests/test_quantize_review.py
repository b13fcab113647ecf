"""Defects a reviewer found in quantize: the near-chance refusal, histogram calibration on
any count, the gate's minimum held-out count, pruning within the noise, the most faithful
fallback, and unsupported type combinations as usage errors."""

from __future__ import annotations

import numpy as np
import pytest

from quantize_helpers import cli_setup, float_model, run_cli, train_images
from resnet8_onnx import quantize as q
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import InvalidInputError


# ------------------------------------------------------------- item 14: a usage error, exit 2
def test_int8_activations_with_uint8_weights_is_a_usage_error_before_any_work(
        tmp_path, capsys, monkeypatch) -> None:
    model, cal, out = cli_setup(tmp_path)

    def no_work(*_a, **_k):
        raise AssertionError("quantize ran")

    monkeypatch.setattr(q, "quantize", no_work)
    for mode in ("--no-auto", "--auto"):
        code, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(cal),
                            mode, "--activations", "int8", "--weights", "uint8")
        assert code == errors.USAGE, err
        assert len(err) == 1, err
        assert "--activations int8 with --weights uint8" in err[0], err
        assert not out.exists()


# ------------------------------------------------- item 10: the most faithful is by agreement
def test_with_nothing_eligible_the_most_faithful_is_chosen_by_agreement() -> None:
    qdq, qop = q.Recipe(format="qdq"), q.Recipe(format="qoperator")
    working = [q.Trial(recipe=qdq, agreement=800, mean_abs_diff=0.2, ips=9.0, index=0),
               q.Trial(recipe=qop, agreement=900, mean_abs_diff=0.3, ips=5.0, index=1),
               q.Trial(recipe=qop, agreement=900, mean_abs_diff=0.1, ips=4.0, index=2)]
    chosen, reason = q.select_candidate(working, "auto", 0.005, 1000, min_agreement=0.95)
    assert chosen is working[2]  # the best agreement, then the smallest mean |Δ|
    assert "900/1,000" in reason
    assert "most faithful" in reason


# --------------------------------------------- item 5: the gate needs MIN_HOLDOUT held-out images
def test_the_gate_needs_enough_held_out_images_in_fixed_mode(tmp_path, capsys) -> None:
    model = float_model(tmp_path / "m.onnx")
    out = tmp_path / "o.onnx"
    with pytest.raises(InvalidInputError) as info:
        q.quantize(model, out, train_images(240), q.Recipe(), calibration_count=239,
                   timing_images=16, timing_rounds=1, batch_size=32)
    message = str(info.value)
    assert "1 held out" in message
    assert f"at least {q.MIN_HOLDOUT}" in message
    # the library names no option; quantize and run word the remedy with their own options
    from resnet8_onnx.quantize.calibration import GATE_HOLDOUT_TOO_SMALL

    assert "--" not in message
    assert info.value.remedy == GATE_HOLDOUT_TOO_SMALL
    assert not out.exists()
    # with the gate off, one held-out image is fine (it only times)
    record = q.quantize(model, out, train_images(240), q.Recipe(), calibration_count=239,
                        min_agreement=0, timing_images=16, timing_rounds=1, batch_size=32)
    assert record.holdout.count == 1


def test_one_held_out_image_is_singular_in_the_terminal_report(tmp_path) -> None:
    from resnet8_onnx.report.markdown import quantization_markdown

    model = float_model(tmp_path / "m.onnx")
    record = q.quantize(model, tmp_path / "o.onnx", train_images(240), q.Recipe(),
                        calibration_count=239, min_agreement=0, timing_images=16,
                        timing_rounds=1, batch_size=32)
    text = quantization_markdown(record)
    assert "1 other images" not in text
    assert "1 other image" in text


# ----------------------------------- item 4: histogram calibration on any calibration count
def _bare_batches(feed, images):
    return [feed.spec.apply(images[i:i + 1]) for i in range(len(images))]


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods_calibrate_on_a_count_not_a_multiple_of_100(tmp_path, method) -> None:
    model = float_model(tmp_path / "m.onnx")
    record = q.quantize(model, tmp_path / "o.onnx", train_images(240),
                        q.Recipe(method=method), calibration_count=117, min_agreement=0,
                        timing_images=16, timing_rounds=1, batch_size=32)
    assert record.calibration.count == 117


def test_calibration_batches_are_of_equal_size_and_feed_every_image_once() -> None:
    feed = q.Feed("x")
    images = np.random.default_rng(0).integers(0, 256, (617, 4, 4, 3), dtype=np.uint8)
    reader = q.engine.calibration_reader(feed, images)
    seen = []
    while (item := reader.get_next()) is not None:
        seen.append(item["x"])
    assert len({x.shape for x in seen}) == 1
    assert np.array_equal(np.concatenate(seen), images.astype(np.float32))
