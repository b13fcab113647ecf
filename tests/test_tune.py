"""``tune`` (issue 22): one measured search over runtime × precision × recipe, the fastest
configuration within the tolerance written with its settings, proven to reproduce."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cli_runner import assert_refused, run
from conftest import CIFAR_RECORD, in_ci, shared_path, train_subset
from model_factory import make_classifier
from resnet8_onnx.quantize import tune as tune_mod
from resnet8_onnx.quantize.trials import TRIALS, Trial
from resnet8_onnx.records import TuningRecord, record_from_dict

if not in_ci():  # CI installs the openvino extra: there a missing package fails
    pytest.importorskip("openvino")


def synthetic_calibration(root, n: int, seed: int = 0):
    """``n`` random training-style PNGs (names that are no test-set indices)."""
    from cifar_factory import make_images, write_png_folder

    images, labels = make_images(n, seed=seed)
    return write_png_folder(root, images, labels, [f"train-{i:05d}" for i in range(n)])


def bare_outputs(path, runtime: str, precision: str | None, x: np.ndarray) -> np.ndarray:
    """The written file run by its runtime directly, with the settings its metadata states:
    nothing of this package."""
    if runtime == "onnxruntime":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU",
                                       {"INFERENCE_PRECISION_HINT": precision or "f32"})
    return compiled(x)[compiled.outputs[0]]


def perf_images() -> np.ndarray:
    """The 200 MLPerf Tiny perf images, read from test_batch.bin by their indices."""
    idx = np.load(shared_path("mlperf-tiny", "perf_samples_idxs.npy"))
    raw = np.fromfile(shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin"),
                      dtype=np.uint8).reshape(-1, CIFAR_RECORD)[idx]
    return raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)


@pytest.mark.slow
@pytest.mark.shared
def test_tune_writes_the_fastest_faithful_configuration(resnet8_onnx, tmp_path,
                                                        capsys) -> None:
    calibration = train_subset(tmp_path / "train")  # 200 training images: 100 held out
    out = tmp_path / "tuned.onnx"
    code, stdout, err = run(capsys, "tune", str(resnet8_onnx), "-o", str(out),
                            "--calibration-data", str(calibration), "--data-dir",
                            str(shared_path("cifar-10", "perf-png")), "--allow-test-calibration",
                            "--json", "-")
    assert code == 0, err
    data = json.loads(stdout)
    assert data["schema"] == "resnet8-onnx/tuning"
    record = TuningRecord.from_dict(data)
    assert [c.name for c in record.candidates] == list(TRIALS)
    chosen = next(c for c in record.candidates if c.chosen)
    assert chosen.name == record.chosen.name
    assert chosen.eligible
    # the rule, checked on the record: nothing eligible is faster beyond the noise
    noise = record.speed["noise"]
    for c in record.candidates:
        if c.eligible:
            assert c.images_per_second <= chosen.images_per_second * (1 + noise) + 1e-6
        if c.agreement_fraction is not None:
            assert c.eligible == (c.agreement_fraction >= 1 - record.tolerance - 1e-9)
    assert record.chosen.speedup == chosen.speedup
    assert record.chosen.reproduced["passed"] is True
    # the written file states its settings; run by them directly, it agrees with a bare
    # ONNX Runtime loop on the perf images as often as the record says
    written = record.chosen.files[0]
    meta = ({p.key: p.value for p in onnx.load(written).metadata_props}
            if written.endswith(".onnx") else {})
    if written.endswith(".onnx"):
        assert meta["runtime"] == chosen.runtime
        assert meta.get("inference_precision") == chosen.settings.get("precision")
    x = perf_images()
    ref = bare_outputs(resnet8_onnx, "onnxruntime", None, x).argmax(1)
    got = bare_outputs(written, chosen.runtime, chosen.settings.get("precision"), x).argmax(1)
    assert record.chosen.test_agreement == pytest.approx(float((ref == got).mean()))
    assert record.chosen.test_images == 200


def test_too_few_calibration_images_to_hold_out_is_exit_4(tmp_path, capsys) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    calibration = synthetic_calibration(tmp_path / "cal", 150)  # 75 held out: too few
    out = tmp_path / "t.onnx"
    assert_refused(capsys, 4, "needs at least 100", "tune", str(model), "-o", str(out),
                   "--calibration-data", str(calibration), outputs=(out,))


def test_nothing_is_written_when_the_written_file_does_not_reproduce(tmp_path, capsys,
                                                                     monkeypatch) -> None:
    """The file staged for the choice is another model (as if its settings were lost): the
    reload check refuses it, exit 6, and no output exists."""
    model = make_classifier(tmp_path / "m.onnx", seed=0)
    other = make_classifier(tmp_path / "other.onnx", seed=1)
    calibration = synthetic_calibration(tmp_path / "cal", 200)
    real_stage = tune_mod._stage

    def stage_other(trial, float_model, tmp):
        staged = real_stage(trial, float_model, tmp)
        staged[0].write_bytes(other.read_bytes())
        return staged

    monkeypatch.setattr(tune_mod, "_stage", stage_other)
    out = tmp_path / "t.onnx"
    assert_refused(capsys, 6, "tuned model NOT written", "tune", str(model), "-o", str(out),
                   "--calibration-data", str(calibration), "--configurations",
                   "openvino-f32", "--json", str(tmp_path / "t.json"),
                   outputs=(out, tmp_path / "t.json"))


def test_tiny_model_round_trip_and_settings_in_metadata(tmp_path, capsys) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    calibration = synthetic_calibration(tmp_path / "cal", 200)
    out = tmp_path / "t.onnx"
    code, stdout, err = run(capsys, "tune", str(model), "-o", str(out), "--calibration-data",
                            str(calibration), "--configurations", "openvino-f32",
                            "--tolerance", "99", "--json", "-")
    assert code == 0, err
    record = record_from_dict(json.loads(stdout))
    assert isinstance(record, TuningRecord)
    assert TuningRecord.from_dict(record.to_dict()).to_dict() == record.to_dict()
    assert [c.name for c in record.candidates] == ["onnxruntime-fp32", "openvino-f32"]
    assert record.tolerance == pytest.approx(0.99)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["runtime"] == record.chosen.runtime
    assert meta["tuned_configuration"] == record.chosen.name
    assert record.chosen.test_agreement is None  # no --data-dir


def test_an_openvino_int8_choice_is_written_as_ir_that_evaluate_reads(tmp_path, capsys,
                                                                     monkeypatch) -> None:
    """Whichever wins on this CPU, force the NNCF int8 choice: it is written as OUT.xml +
    OUT.bin with the spec and settings in its rt_info, and evaluate runs it unprompted."""
    from cifar_factory import make_images, write_png_folder

    model = make_classifier(tmp_path / "m.onnx")
    calibration = synthetic_calibration(tmp_path / "cal", 200)
    real_choose = tune_mod.choose

    def choose_int8(trials, *args):
        _, reason = real_choose(trials, *args)
        return next(t for t in trials if t.name == "openvino-int8"), reason

    monkeypatch.setattr(tune_mod, "choose", choose_int8)
    out = tmp_path / "t.onnx"
    code, stdout, err = run(capsys, "tune", str(model), "-o", str(out), "--calibration-data",
                            str(calibration), "--configurations", "openvino-int8", "--scale",
                            "1/255", "--json", "-")
    assert code == 0, err
    record = TuningRecord.from_dict(json.loads(stdout))
    assert record.chosen.files == [str((tmp_path / "t.xml").resolve()),
                                   str((tmp_path / "t.bin").resolve())]
    assert not out.exists()
    imgs, labels = make_images(20, seed=3)
    data = write_png_folder(tmp_path / "test", imgs, labels, [f"{i:05d}" for i in range(20)])
    code, stdout, err = run(capsys, "evaluate", str(tmp_path / "t.xml"), "--data-dir",
                            str(data), "--json", "-")
    assert code == 0, err
    info = json.loads(stdout)["model"]
    assert (info["backend"], info["quantization"]) == ("openvino", "int8")
    # the spec given to tune travels in the IR's rt_info: evaluate needs no --scale
    assert info["preprocessing"]["scale"] == pytest.approx(1 / 255)
    assert info["preprocessing"]["sources"]["scale"] == "metadata"


def test_unknown_configuration_is_a_usage_error(tmp_path, capsys) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    calibration = synthetic_calibration(tmp_path / "cal", 200)
    assert_refused(capsys, 2, "choose among onnxruntime-fp32", "tune", str(model), "-o",
                   str(tmp_path / "t.onnx"), "--calibration-data", str(calibration),
                   "--configurations", "tensorrt-fp8")


def _trial(name: str, ips: float, agreement: int, mean: float = 0.0) -> Trial:
    t = Trial(name, "openvino", "x", {})
    t.ips, t.agreement, t.mean_abs_diff = ips, agreement, mean
    return t


def test_choice_fastest_within_tolerance_speeds_within_noise_tie_to_fidelity() -> None:
    def pick(noise: float) -> str:
        trials = [_trial("ref", 50, 1000), _trial("fast", 105, 996, 0.01),
                  _trial("faithful", 102, 1000, 0.001), _trial("fastest", 200, 980, 0.1)]
        chosen, reason = tune_mod.choose(trials, 0.005, noise, 1000)
        assert not trials[3].eligible
        assert "outside the tolerance: fastest" in reason
        return chosen.name

    assert pick(0.05) == "faithful"  # 105 vs 102 is within 5 %: equal speed, more faithful
    assert pick(0.01) == "fast"  # beyond 1 %: the faster one


def test_tolerance_is_in_percentage_points() -> None:
    from resnet8_onnx.cli.parser import _points

    assert _points("0.5") == pytest.approx(0.005)
    assert _points("1%") == pytest.approx(0.01)
    with pytest.raises(Exception, match="below 100"):
        _points("100")


def test_onnx_runtime_says_when_a_file_was_tuned_for_another_runtime(tmp_path) -> None:
    from resnet8_onnx.backends import load_backend

    path = make_classifier(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"runtime": "openvino",
                                        "tuned_configuration": "openvino-bf16"})
    onnx.save(proto, str(path))
    notes = load_backend(path).info.extra["notes"]
    assert any("tuned for openvino-bf16" in n and "--runtime openvino" in n for n in notes)
