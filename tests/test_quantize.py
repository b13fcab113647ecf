"""quantize: recipe choice, the record, the written model, bad input, and the real model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from conftest import shared_path
from model_factory import make_classifier, synthetic_dataset
from resnet8_onnx import errors
from resnet8_onnx import quantize as q
from resnet8_onnx.cli import main
from resnet8_onnx.errors import InvalidInputError, UsageError
from resnet8_onnx.records import QuantizationRecord
from resnet8_onnx.report import to_json

SOURCE_METADATA = {"preprocessing": "raw 0-255 float32 NHWC RGB, no normalisation",
                   "output_kind": "probabilities", "class_names": '["a"]'}
NO_VNNI = q.CpuInfo("Test CPU without VNNI", ("avx2",), 2, "test")
WITH_VNNI = q.CpuInfo("Test CPU with VNNI", ("avx2", "avx512f", "avx512_vnni"), 2, "test")


def float_model(path: Path, seed: int = 0) -> Path:
    """The test classifier with a converter's metadata, like a file from ``convert``."""
    make_classifier(path, seed=seed)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, SOURCE_METADATA)
    onnx.save(model, str(path))
    return path


def train_images(n: int):
    """Random images labelled as a training split (``synthetic_dataset`` says test)."""
    import dataclasses

    return dataclasses.replace(synthetic_dataset(n, seed=1), split="train", indices=None)


def quick(tmp_path: Path, recipe=None, n: int = 240, **kwargs):
    """A small quantisation (tiny model, random images, short timing) for unit tests."""
    model = float_model(tmp_path / "m.onnx")
    data = train_images(n)
    record = q.quantize(model, tmp_path / "m_int8.onnx", data, recipe, timing_images=64,
                        timing_rounds=2, batch_size=32, **kwargs)
    return model, data, record


# --------------------------------------------------------------------------- pure parts
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


def test_read_cpuinfo(tmp_path) -> None:
    x86 = tmp_path / "cpuinfo"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f "
                   "avx512_vnni\n\nprocessor\t: 1\nmodel name\t: Some CPU\nflags\t\t: avx2\n")
    info = q.read_cpuinfo(x86)
    assert info.model_name == "Some CPU"
    assert info.flags == ("avx2", "avx512f", "avx512_vnni")
    assert info.int8_dot_product is True
    x86.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2 avx2\n")
    assert q.read_cpuinfo(x86).int8_dot_product is False
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert q.read_cpuinfo(arm).int8_dot_product is True
    missing = q.read_cpuinfo(tmp_path / "nope")
    assert missing.int8_dot_product is None
    assert not missing.known


@pytest.mark.parametrize(
    ("speedup", "cpu", "claims", "cpu_words"),
    [(2.0, WITH_VNNI, "2.0× as fast", "avx512_vnni"),
     (0.42, NO_VNNI, "SLOWER than fp32", "no VNNI"),
     (1.0, NO_VNNI, "about as fast", "no VNNI"),
     (3.0, q.CpuInfo(None, (), 1, "?", known=False), "3.0× as fast", "unknown")],
)
def test_speed_verdict_says_what_was_measured(speedup, cpu, claims, cpu_words) -> None:
    text = q.speed_verdict(speedup, cpu)
    assert claims in text
    assert cpu_words in text


def test_select_candidate_is_the_fastest_within_tolerance() -> None:
    cands = [{"agreement": 990, "ips": 100.0}, {"agreement": 986, "ips": 300.0},
             {"agreement": 970, "ips": 900.0}, {"agreement": 985, "ips": 250.0}]
    chosen, reason = q.select_candidate(cands, "auto", 0.005, 1000)
    assert chosen is cands[1]
    assert [c["eligible"] for c in cands] == [True, True, False, True]
    assert "0.5%" in reason
    assert "990/1,000" in reason
    chosen, _ = q.select_candidate(cands, "auto", 0.0, 1000)
    assert chosen is cands[0]


def test_select_candidate_breaks_speed_ties_by_fidelity() -> None:
    """Speeds within 5 % are noise on a shared machine: the more faithful one wins."""
    cands = [{"agreement": 988, "ips": 300.0, "mean_abs_diff": 0.004},
             {"agreement": 988, "ips": 290.0, "mean_abs_diff": 0.002},
             {"agreement": 987, "ips": 299.0, "mean_abs_diff": 0.001},
             {"agreement": 990, "ips": 200.0, "mean_abs_diff": 0.001}]
    chosen, reason = q.select_candidate(cands, "auto", 0.005, 1000)
    assert chosen is cands[1]
    assert "most faithful of the 3 fastest" in reason
    cands[1]["ips"] = 280.0  # now more than 5 % slower than the fastest
    chosen, _ = q.select_candidate(cands, "auto", 0.005, 1000)
    assert chosen is cands[0]


def test_recipe_validation_and_grid() -> None:
    with pytest.raises(UsageError, match="unknown format"):
        q.Recipe(format="qlinear")
    grid = q.auto_grid()
    assert len(grid) == len(q.METHODS) * (2 * 2 + 2)  # QDQ with and without float pooling
    assert len(set(grid)) == len(grid)
    assert q.Recipe.from_dict(grid[3].to_dict()) == grid[3]
    assert {r.format for r in q.auto_grid(formats=["qdq"])} == {"qdq"}


# --------------------------------------------------------------------------- the job
def test_auto_quantisation_record_and_model(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(q.job, "read_cpuinfo", lambda: NO_VNNI)  # not this machine's CPU
    grid = q.auto_grid(methods=["minmax"])
    _model, data, record = quick(tmp_path, grid)
    out = tmp_path / "m_int8.onnx"
    d = json.loads(to_json(record.to_dict()))
    assert d["schema"] == q.SCHEMA
    assert d["schema_version"] == q.SCHEMA_VERSION
    assert len(d["candidates"]) == len(grid)
    chosen = [c for c in d["candidates"] if c["chosen"]]
    assert len(chosen) == 1
    assert chosen[0]["recipe"] == d["recipe"]
    eligible = [c for c in d["candidates"] if c["eligible"] and not c["pruned"]]
    fastest = max(c["images_per_second"] for c in eligible)
    assert chosen[0]["images_per_second"] >= (1 - q.SPEED_NOISE) * fastest - 0.1
    best = max(c["holdout_agreement"] for c in d["candidates"] if not c["pruned"])
    for c in eligible:
        assert c["holdout_agreement"] >= best - 0.005 * c["holdout_count"]
    # calibration and held-out images: disjoint halves, identified by their pixels
    cal_pos, hold_pos = q.split_positions(len(data), len(data) // 2, q.DEFAULT_HOLDOUT_COUNT)
    assert d["calibration"]["count"] == len(cal_pos) == d["holdout"]["count"]
    assert d["calibration"]["sha256"] == q.images_sha256(data.images[cal_pos])
    assert d["holdout"]["sha256"] == q.images_sha256(data.images[hold_pos])
    # honest speed statement from the (forced) CPU features and the measured ratio
    assert d["cpu"]["model_name"] == "Test CPU without VNNI"
    assert "no VNNI" in d["speed_verdict"]
    word = "SLOWER" if d["speed"]["speedup"] < 0.95 else "as fast"
    assert word in d["speed_verdict"]
    # the saved JSON reads back into the same typed record, and writes the same JSON again
    from resnet8_onnx.records import record_from_dict

    again = record_from_dict(d)
    assert isinstance(again, QuantizationRecord)
    assert again == QuantizationRecord.from_dict(json.loads(to_json(record.to_dict())))
    assert again.recipe == record.recipe
    assert again.cpu == NO_VNNI
    assert again.chosen == record.chosen
    assert json.loads(to_json(again.to_dict())) == d
    # the written model: checked, quantised, float input, source + quantisation metadata
    written = onnx.load(str(out))
    onnx.checker.check_model(written)
    ops = {n.op_type for n in written.graph.node}
    assert ops & q.QUANTIZED_OPS
    assert written.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in written.metadata_props}
    assert {k: meta[k] for k in SOURCE_METADATA} == SOURCE_METADATA
    assert json.loads(meta["quantization_recipe"])["label"] == d["recipe"]["label"]
    assert meta["quantization_calibration_sha256"] == d["calibration"]["sha256"]
    assert meta["quantization_source_sha256"] == d["source"]["sha256"]
    assert d["output"]["size_bytes"] == out.stat().st_size
    # evaluate/compare/verify read it like any ONNX file and know it is int8
    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.evaluate import evaluate

    result = evaluate(load_backend(out), data)
    assert result.to_record()["model"]["quantization"] == "int8"
    assert result.metrics.total == len(data)


def test_renderers_read_only_the_record(tmp_path) -> None:
    import io

    from rich.console import Console

    from resnet8_onnx.report import (
        int8_verdict_line,
        quantization_markdown,
        render_quantization_terminal,
    )

    _, _data, record = quick(tmp_path, q.Recipe(), diagnose=True, test_data=synthetic_dataset(50))
    d = json.loads(to_json(record.to_dict()))
    saved = QuantizationRecord.from_dict(d)  # read back from the JSON alone
    console = Console(file=io.StringIO(), width=120, color_system=None)
    render_quantization_terminal(saved, console)
    text = console.file.getvalue()
    md = quantization_markdown(saved)
    assert md == quantization_markdown(record)
    for out in (text, md):
        assert d["recipe"]["label"] in out
        assert "images/s" in out
        assert d["speed_verdict"].split(";")[0] in " ".join(out.split())
    line = int8_verdict_line(saved)
    assert line.startswith("int8 accuracy")
    assert "agreement" in line
    assert "TEST" not in line
    assert d["calibration"]["test_images"] is False


def test_layer_errors_name_nodes_of_the_model(tmp_path) -> None:
    model, _, record = quick(tmp_path, q.Recipe(float_pooling=False), diagnose=True)
    errors_ = record.layer_errors
    assert errors_, record.layer_errors_note
    names = {n.name for n in onnx.load(str(model)).graph.node}
    assert any(e.node in names for e in errors_)
    sqnr = [e.local_sqnr_db for e in errors_]
    assert sqnr == sorted(sqnr)


def test_exclude_keeps_a_node_float(tmp_path) -> None:
    _, _, record = quick(tmp_path, q.Recipe(exclude=("conv",)))
    written = onnx.load(str(tmp_path / "m_int8.onnx"))
    conv = [n for n in written.graph.node if n.name == "conv"]
    assert conv
    assert conv[0].op_type == "Conv"
    producers = {o: n.op_type for n in written.graph.node for o in n.output}
    assert producers.get(conv[0].input[1]) != "DequantizeLinear"  # float weights
    assert record.recipe.exclude == ("conv",)
    with pytest.raises(UsageError, match="no such node"):
        quick(tmp_path, q.Recipe(exclude=("nope",)), force=True)


def test_calibration_on_test_images_is_flagged(tmp_path) -> None:
    data = synthetic_dataset(120, seed=2)  # split="test"
    record = q.quantize(float_model(tmp_path / "m.onnx"), tmp_path / "o.onnx", data, q.Recipe(),
                        timing_images=32, timing_rounds=1)
    d = record.to_dict()
    assert d["calibration"]["test_images"] is True
    assert any("TEST images" in n for n in d["notes"])
    from resnet8_onnx.report import int8_verdict_line

    assert "TEST" in int8_verdict_line(record)


def test_quantize_never_imports_tensorflow(tmp_path) -> None:
    model = float_model(tmp_path / "m.onnx")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from model_factory import synthetic_dataset
        from resnet8_onnx.quantize import Recipe, quantize
        quantize({str(model)!r}, {str(tmp_path / "o.onnx")!r}, synthetic_dataset(100),
                 Recipe(), timing_images=32, timing_rounds=1)
        print(",".join(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])


# --------------------------------------------------------------------------- bad input (CLI)
def png_folder(root: Path, n_per_class: int, size: int = 32, stem: str = "train-{:05d}") -> Path:
    from resnet8_onnx.data import CLASS_NAMES

    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASS_NAMES):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{stem.format(c * 1000 + i)}.png")
    return root


def run_cli(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["-q", "quantize", *args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


@pytest.fixture
def setup(tmp_path):
    model = float_model(tmp_path / "m.onnx")
    return model, png_folder(tmp_path / "cal", 4), tmp_path / "out.onnx"


def test_bad_model_files(tmp_path, setup, capsys) -> None:
    _, cal, out = setup
    text = tmp_path / "notes.onnx"
    text.write_text("not a model\n")
    cases = [(tmp_path / "missing.onnx", errors.NOT_FOUND, "not found"),
             (text, errors.INVALID_INPUT, "not an ONNX model")]
    quantised = tmp_path / "already.onnx"
    q.quantize(setup[0], quantised, synthetic_dataset(40), q.Recipe(), timing_images=16,
               timing_rounds=1)
    cases.append((quantised, errors.INVALID_INPUT, "already quantised"))
    for model, code, fragment in cases:
        got, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(cal))
        assert got == code, err
        assert len(err) == 1, err
        assert fragment in err[0], err
        assert not out.exists()


def test_bad_calibration_sources(tmp_path, setup, capsys) -> None:
    model, cal, out = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    small = png_folder(tmp_path / "small", 2, size=16)
    broken = png_folder(tmp_path / "broken", 1)
    (broken / "cat" / "train-03000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cases = [([str(empty)], errors.NOT_FOUND, "CIFAR-10"),
             ([str(small)], errors.INVALID_INPUT, "expected 32×32"),
             ([str(broken)], errors.INVALID_INPUT, "cannot read image"),
             ([str(cal), "--calibration-count", "41"], errors.INVALID_INPUT, "fewer than"),
             ([str(cal), "--calibration-count", "30"], errors.INVALID_INPUT, "held out")]
    for extra, code, fragment in cases:
        got, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", *extra)
        assert got == code, (extra, err)
        assert len(err) == 1, (extra, err)
        assert fragment in err[0], (extra, err)
        assert not out.exists()


def test_output_exists_and_usage_errors(setup, capsys) -> None:
    model, cal, out = setup
    out.write_bytes(b"keep me")
    got, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(cal))
    assert got == errors.OUTPUT_ERROR
    assert len(err) == 1
    assert "already exists" in err[0]
    assert out.read_bytes() == b"keep me"
    out.unlink()
    got, err = run_cli(capsys, str(model), "-o", str(out), "--calibration-data", str(cal),
                       "--no-auto", "--exclude", "no-such-node")
    assert got == errors.USAGE
    assert len(err) == 1
    assert "no such node" in err[0]
    assert not out.exists()


def test_cli_writes_model_and_reports(setup, tmp_path, capsys) -> None:
    model, cal, out = setup
    code = main(["-q", "quantize", str(model), "-o", str(out), "--calibration-data", str(cal),
                 "--no-auto", "--json", str(tmp_path / "q.json"), "--out",
                 str(tmp_path / "rep")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "q.json").read_text())
    assert record["selection"]["mode"] == "fixed"
    assert record["calibration"]["count"] == 40
    assert record["calibration"]["test_images"] is False
    assert record["holdout"] is None  # a fixed recipe calibrates on all 40 images
    assert (tmp_path / "rep" / "quantize.md").is_file()
    assert out.is_file()
    assert "int8 model written" in capsys.readouterr().out


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="session")
def resnet8_int8(tmp_path_factory, resnet8_onnx, cifar_test):
    """The real model quantised on train-2000-png with the default fixed recipe, test-set
    figures included (one quantisation per session)."""
    calibration = q.load_calibration_data(shared_path("cifar-10", "train-2000-png"))
    out = tmp_path_factory.mktemp("int8") / "resnet8_int8.onnx"
    record = q.quantize(resnet8_onnx, out, calibration, q.Recipe(float_pooling=True),
                        calibration_count=1000, test_data=cifar_test)
    return out, record


@pytest.mark.slow
def test_real_int8_accuracy_and_agreement_on_the_full_test_set(resnet8_int8) -> None:
    """The issue's bar: ≥ 8,680/10,000 correct and ≥ 97 % agreement with fp32."""
    _, record = resnet8_int8
    ev = record.to_dict()["evaluation"]
    assert ev["data"]["full_official_test_set"] is True
    assert ev["int8"]["total"] == 10_000
    assert ev["int8"]["correct"] >= 8_680, ev["int8"]["correct"]
    assert ev["agreement_fraction"] >= 0.97, ev["agreement_fraction"]
    assert ev["fp32"]["correct"] == 8_719  # the float model is the converted one, unchanged
    assert record.calibration.test_images is False
    assert record.calibration.count == 1000
    assert record.holdout.count == 1000
    assert ev["int8"]["size_bytes"] < ev["fp32"]["size_bytes"] / 2


@pytest.mark.slow
def test_compare_fp32_int8_onnx_and_mlcommons_int8_in_one_table(resnet8_int8, resnet8_onnx,
                                                                  tmp_path) -> None:
    int8_path, _ = resnet8_int8
    tflite = shared_path("models", "pretrainedResnet_quant.tflite")
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    proc = subprocess.run(
        [sys.executable, "-m", "resnet8_onnx", "-q", "compare", str(resnet8_onnx),
         str(int8_path), str(tflite), "--data-dir", str(data), "--limit", "500", "--json", "-"],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert [m["label"] for m in record["models"]] == ["#1 ONNX", "#2 ONNX int8",
                                                      "#3 LiteRT int8"]
    assert all(m["quantized"] for m in record["models"][1:])
    assert record["models"][1]["versus_reference"]["agreement_fraction"] > 0.95


@pytest.mark.slow
def test_run_int8_adds_a_column_and_a_verdict_line(tmp_path) -> None:
    """``run --int8`` on 500 test images, calibrated on 200 real training images (quick)."""
    import shutil

    shared_path("models", "pretrainedResnet.h5")
    train = shared_path("cifar-10", "train-2000-png")
    calibration = tmp_path / "train-200"
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        (calibration / folder.name).mkdir(parents=True)
        for png in sorted(folder.glob("*.png"))[:20]:
            shutil.copy(png, calibration / folder.name / png.name)
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "resnet8_onnx", "-q", "run", "--data-dir", str(shared_path()),
         "--out", str(out), "--limit", "500", "--int8", "--calibration-data", str(calibration)],
        capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    report = json.loads((out / "report.json").read_text())
    _keras, _fp32, int8 = report["models"]
    assert int8["model"]["quantization"] == "int8"
    assert int8["metrics"]["total"] == 500
    assert report["int8"]["calibration"]["count"] == 100  # half of 200; the rest held out
    assert report["int8"]["calibration"]["test_images"] is False
    line = next(s for s in report["verdict"]["summary"] if s.startswith("Int8 accuracy"))
    assert "agreement" in line
    assert "fp32" in line
    assert report["verdict"]["passed"] is True
    assert "ONNX int8" in proc.stdout
    assert (out / "model_int8.onnx").is_file()
    assert (out / "confusion_onnxruntime.png").is_file()
    assert (out / "confusion_onnxruntime_int8.png").is_file()
