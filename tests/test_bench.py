"""benchmark: the timing loop, the plan, figures on a tiny generated model, JSON, PNG, CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_classifier, synthetic_dataset
from resnet8_onnx import bench, records
from resnet8_onnx.backends import load_backend
from resnet8_onnx.backends.litert.runner import tflite_macs
from resnet8_onnx.bench import (
    OPTIMIZATION_LEVELS,
    Config,
    available_cores,
    benchmark,
    ort_matmul_gflops,
    plan_configs,
    sgemm_gflops,
    time_predict,
)
from resnet8_onnx.records import BenchmarkRecord, DataInfo
from resnet8_onnx.report import render_benchmark_terminal, throughput_png, to_json
from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import OutputError, UsageError

# make_classifier: 1×1 conv 3 → 8 channels on 32×32, then an 8 → 10 dense layer.
TINY_MACS = 32 * 32 * 8 * 3 + 8 * 10
FAST = {"min_seconds": 0.02, "min_iterations": 3, "warmup_seconds": 0.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_classifier(tmp_path_factory.mktemp("bench") / "tiny.onnx")


@pytest.fixture(scope="module")
def record(tiny):
    """One small benchmark, shared by the tests that only read its record."""
    return benchmark([tiny], batch_sizes=(1, 8, 32), threads=sorted({1, available_cores()}),
                     optimization_levels=("disable", "all"), **FAST)


def test_time_predict_meets_both_minimums_and_orders_percentiles() -> None:
    calls = []

    def predict(batch):
        calls.append(len(batch))
        time.sleep(0.002)

    timing = time_predict(predict, np.zeros((4, 1)), min_seconds=0.05, min_iterations=5,
                          warmup_seconds=0.01)
    lat = timing["latency_ms"]
    assert timing["iterations"] >= 5
    assert timing["seconds"] >= 0.05 * 0.9
    assert len(calls) > timing["iterations"]  # the warm-up calls are not timed
    assert timing["images"] == 4 * timing["iterations"]
    assert timing["images_per_second"] == pytest.approx(timing["images"] / timing["seconds"])
    assert 2.0 <= lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    with pytest.raises(UsageError):
        time_predict(predict, np.zeros((1, 1)), min_iterations=0)


def test_plan_is_a_cross_by_default_and_a_product_on_request() -> None:
    names = ["onnxruntime", "litert", "keras"]
    cross = plan_configs(names, batch_sizes=[1, 8], threads=[1, 4],
                         optimization_levels=list(OPTIMIZATION_LEVELS))
    onnx = {(c.threads, c.optimization) for c in cross if c.model == 0}
    assert onnx == {(4, "disable"), (4, "basic"), (4, "extended"), (4, "all"), (1, "all")}
    assert {(c.threads, c.optimization) for c in cross if c.model == 1} == {(1, None),
                                                                            (4, None)}
    assert {(c.threads, c.optimization) for c in cross if c.model == 2} == {(None, None)}
    assert Config(0, 4, "all", 8) in cross
    full = plan_configs(names, batch_sizes=[1, 8], threads=[1, 4],
                        optimization_levels=list(OPTIMIZATION_LEVELS), full_grid=True)
    assert len([c for c in full if c.model == 0]) == 2 * 4 * 2


def test_figures_on_a_tiny_model_are_sane(record, tiny) -> None:
    threads = sorted({1, available_cores()})
    groups = 2 + (len(threads) - 1)  # two levels at most threads, one more per thread count
    record = record.to_dict()  # the figures as the JSON report holds them
    results = record["results"]
    assert len(results) == groups * 3
    assert record["models"][0]["macs_per_image"] == TINY_MACS == load_backend(tiny).macs()
    roofs = record["machine"]["matmul_reference"]["gflops"]
    assert set(roofs) == {str(t) for t in threads}
    for r in results:
        lat = r["latency_ms"]
        assert r["iterations"] >= 3
        assert r["images_per_second"] > 0
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r["gflops"] == pytest.approx(2 * TINY_MACS * r["images_per_second"] / 1e9)
        roof = roofs[str(r["threads"])]
        assert roof is None or roof > 0
        if roof:
            assert r["ratio_to_matmul"] == pytest.approx(r["gflops"] / roof)
    assert {(r["optimization"], r["batch_size"]) for r in results} >= {
        ("disable", 1), ("disable", 32), ("all", 8)}
    best = record["best"][0]
    assert best["images_per_second"] == max(r["images_per_second"] for r in results)


def test_record_is_valid_json_and_renders(record) -> None:
    from rich.console import Console

    parsed = json.loads(to_json(record))
    assert parsed["kind"] == "benchmark"
    assert parsed["inputs"]["kind"] == "synthetic"

    def rendered(rec) -> str:
        console = Console(file=io.StringIO(), width=80, color_system=None)
        render_benchmark_terminal(rec, console)
        return console.file.getvalue()

    text = rendered(record)
    assert rendered(BenchmarkRecord.from_dict(parsed)) == text  # a saved record renders alike
    assert "p99 ms" in text
    assert "MACs/image" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_record_is_built_typed_with_the_keys_it_reads_back_to(record, tiny,
                                                                  tmp_path) -> None:
    """Issue 20: every part is built as itself (no mapping bridged into it), and the record
    has exactly the keys, in the same order, and the values of itself read back."""
    data = synthetic_dataset(6).with_limit(5)
    fed = benchmark([tiny], batch_sizes=[8], threads=[1], optimization_levels=["basic"],
                    images=data.images, data=data.info(), save_optimized=tmp_path / "o.onnx",
                    reference=False, **FAST)
    assert fed.inputs.data == data.info()
    assert type(fed.optimized_model) is records.OptimizedModel
    for rec in (record, fed):
        assert type(rec.inputs) is records.BenchInputs
        assert type(rec.settings) is records.BenchSettings
        assert type(rec.machine.matmul_reference) is records.MatmulReference
        assert {type(p) for p in rec.models} == {records.BenchModel}
        assert {type(p) for p in [*rec.results, *rec.best]} == {records.BenchResult}
        produced = rec.to_dict()
        again = BenchmarkRecord.from_dict(produced).to_dict()
        assert json.dumps(produced) == json.dumps(again)  # keys, their order, values
        assert BenchmarkRecord.from_dict(json.loads(to_json(rec))).to_dict() == produced
    result = fed.to_dict()["results"][0]
    assert list(result) == ["model", "label", "optimization", "threads", "batch_size",
                            "images_per_second", "latency_ms", "gflops", "ratio_to_matmul",
                            "backend", "iterations", "images", "seconds", "matmul_gflops"]
    assert list(fed.to_dict()["models"][0])[:11] == [
        "label", "path", "backend", "runtime_version", "macs_per_image", "macs_source", "notes",
        "input_description", "sha256", "input_shape", "input_dtype"]  # then the runner's


def test_plot_is_a_png(record) -> None:
    from PIL import Image

    png = throughput_png(record)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.format == "PNG"
        assert image.size[0] > 800
        assert image.size[1] > 500


def test_sgemm_roofline_is_measured() -> None:
    gflops = sgemm_gflops(1, n=256, repeat=2)
    assert gflops is not None
    assert gflops > 0.1


def test_ort_matmul_reference_is_measured() -> None:
    gflops = ort_matmul_gflops(1, n=256, repeat=2)
    assert gflops is not None
    assert gflops > 0.1


def test_real_images_and_fixed_batch(tmp_path) -> None:
    fixed = make_classifier(tmp_path / "fixed.onnx", batch=1)
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    rec = benchmark([fixed], batch_sizes=(1, 8), threads=[1], optimization_levels=["all"],
                    images=images, data=DataInfo(count=5), reference=False, **FAST).to_dict()
    assert [r["batch_size"] for r in rec["results"]] == [1]
    assert any("fixed batch" in note for note in rec["models"][0]["notes"])
    assert rec["inputs"]["kind"] == "data"
    assert rec["inputs"]["repeated"] is True  # 5 images fill batches of up to 8
    assert rec["results"][0]["ratio_to_matmul"] is None


def test_save_optimized_model(tiny, tmp_path) -> None:
    import onnxruntime as ort

    target = tmp_path / "tiny.opt.onnx"
    rec = benchmark([tiny], batch_sizes=[4], threads=[1], optimization_levels=["basic"],
                    save_optimized=target, reference=False, **FAST)
    assert rec.optimized_model.level == "basic"
    assert target.is_file()
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype(np.float32)
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0] for p in (tiny, target)]
    np.testing.assert_allclose(run[0], run[1], atol=1e-6)
    with pytest.raises(OutputError, match="already exists"):  # refused before any timing
        benchmark([tiny], save_optimized=target, reference=False)
    with pytest.raises(UsageError, match="exactly one ONNX model"):
        benchmark([tiny, tiny], save_optimized=tmp_path / "other.onnx")


def test_an_unknown_backend_name_is_refused_before_any_model_loads(tiny) -> None:
    with pytest.raises(UsageError, match="unknown backend 'tensorrt'; choose one of onnxrun"):
        benchmark([tiny], backends=["tensorrt"], reference=False)


def test_cli_json_on_stdout_and_plot(tiny, tmp_path) -> None:
    plot = tmp_path / "throughput.png"
    proc = subprocess.run(
        [sys.executable, "-m", "resnet8_onnx", "-q", "benchmark", str(tiny), "--quick",
         "--batch-sizes", "1,4", "--threads", "1", "--optimization", "basic,all",
         "--json", "-", "--plot", str(plot)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "RESNET8_ONNX_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    parsed = json.loads(proc.stdout)
    assert len(parsed["results"]) == 4
    assert parsed["settings"]["min_seconds"] == pytest.approx(0.1)
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "images/s" in proc.stderr  # the table went to stderr


@pytest.mark.parametrize("option", [["--optimization", "fastest"], ["--batch-sizes", "0"],
                                    ["--threads", "x"], ["--min-seconds", "-1"]])
def test_cli_rejects_bad_options(tiny, option, capsys) -> None:
    from resnet8_onnx.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["benchmark", str(tiny), *option])
    assert exit_info.value.code == errors.USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- real models
@pytest.mark.slow
@pytest.mark.shared
def test_macs_agree_across_formats(keras_backend, resnet8_onnx) -> None:
    """ONNX, Keras and both TFLite files count the same ≈12.5 M MACs MLPerf Tiny quotes."""
    from ai_edge_litert.interpreter import Interpreter

    from conftest import shared_path

    counts = {"onnx": load_backend(resnet8_onnx).macs(), "keras": keras_backend.macs()}
    for name in ("pretrainedResnet.tflite", "pretrainedResnet_quant.tflite"):
        interpreter = Interpreter(model_path=str(shared_path("models", name)))
        interpreter.allocate_tensors()
        counts[name] = tflite_macs(interpreter)
    print(counts)
    assert len(set(counts.values())) == 1
    assert 12.0e6 < counts["onnx"] < 13.0e6


@pytest.mark.slow
@pytest.mark.shared
def test_keras_and_litert_are_benchmarked(resnet8_h5) -> None:
    from conftest import shared_path

    quant = shared_path("models", "pretrainedResnet_quant.tflite")
    rec = benchmark([resnet8_h5, quant], batch_sizes=[16], threads=[1], reference=False,
                    **FAST).to_dict()
    keras, litert = rec["models"]
    assert keras["backend"] == "keras"
    assert any("thread pools" in n for n in keras["notes"])
    assert litert["label"] == "#2 LiteRT int8"
    assert keras["macs_per_image"] == litert["macs_per_image"]
    assert [(r["model"], r["threads"]) for r in rec["results"]] == [(0, None), (1, 1)]
    assert all(r["images_per_second"] > 0 for r in rec["results"])


# --------------------------------------------------------------------------- issue 14 (new user)
QUICK = ["--quick", "--batch-sizes", "1,8", "--threads", "1", "--optimization", "all"]


def test_cli_names_the_reference_for_what_it_is_and_the_cpu(tiny, capsys) -> None:
    from resnet8_onnx.cli import main

    assert main(["-q", "benchmark", str(tiny), *QUICK, "--json", "-"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    text = " ".join(captured.err.split())  # the terminal report goes to stderr here
    assert "roofline" not in text.lower().replace("not a roofline", "")
    assert "sgemm" not in text.lower()
    assert "reference: ONNX Runtime MatMul 1024×1024 float32" in text
    reference = record["machine"]["matmul_reference"]
    assert "ONNX Runtime MatMul" in reference["what"]
    for r in record["results"]:
        ref = reference["gflops"][str(r["threads"])]
        assert r["matmul_gflops"] == ref
        assert r["ratio_to_matmul"] == pytest.approx(r["gflops"] / ref)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():  # Linux: the model name, read here independently
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.lower().startswith("model name")]
        if names:
            assert record["machine"]["cpu"] == names[0]
            assert names[0] in text


@pytest.mark.parametrize(("busy", "warned"), [(0.0, False), (0.9, True)])
def test_busy_warning_comes_from_cpu_use_just_before_measuring_not_the_load_average(
        tiny, busy, warned, monkeypatch, capsys) -> None:
    from resnet8_onnx.cli import main

    cores = available_cores()
    # A load average that the old rule (> 0.5 per core) called busy: left over from the
    # previous command, not work competing with this benchmark.
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5 * cores + 0.01,) * 3)
    monkeypatch.setattr(bench, "cpu_busy_fraction", lambda seconds=0.5: busy)
    assert main(["-q", "benchmark", str(tiny), *QUICK]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("the machine was busy" in out) is warned
    if warned:
        assert f"other work used 90% of the {cores} cores" in out


def test_busy_warning_also_comes_from_other_work_while_measuring(tiny, monkeypatch,
                                                                 capsys) -> None:
    """Idle just before, busy while the models were timed (readings faked: this process
    used 100 of each 1,000 jiffies, other work 700)."""
    import itertools

    from resnet8_onnx import machine
    from resnet8_onnx.cli import main

    counter = itertools.count()

    def sample() -> tuple[int, int, float]:
        k = next(counter)
        return k * 800, k * 1000, k * 100.0
    monkeypatch.setattr(bench, "cpu_busy_fraction", lambda seconds=0.5: 0.0)
    monkeypatch.setattr(machine.LoadMeter, "sample", staticmethod(sample))
    out_json = tiny.parent / "b.json"
    assert main(["-q", "benchmark", str(tiny), *QUICK, "--json", str(out_json)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "the machine was busy during the benchmark (other work used 70%" in out
    assert json.loads(out_json.read_text())["machine"]["cpu_busy_during"] == 0.7


def test_cpu_busy_fraction_is_a_share() -> None:
    busy = bench.cpu_busy_fraction(0.05)
    if Path("/proc/stat").is_file():
        assert busy is not None
        assert 0.0 <= busy <= 1.0


def test_macs_and_how_they_were_counted_come_from_the_runner(tiny) -> None:
    from resnet8_onnx.backends.keras import runner as keras
    from resnet8_onnx.backends.litert import runner as litert
    from resnet8_onnx.backends.onnxrt import runner as onnxrt
    from resnet8_onnx.backends.pytorch import runner as pytorch
    from resnet8_onnx.bench import macs_of

    assert macs_of(load_backend(tiny)) == (TINY_MACS, "counted from the ONNX graph")
    # The labels records have always carried, now declared by each runner.
    assert {cls.macs_source for cls in (keras.KerasBackend, litert.LiteRTBackend,
                                        pytorch.TorchBackend)} == {
        "counted from the Keras layers", "counted from the TFLite operators",
        "counted by torch's FLOP counter (convolutions, matmuls)"}
    assert onnxrt.OnnxRuntimeBackend.macs_source == "counted from the ONNX graph"

    class Counted:  # a runtime bench has never heard of
        info = load_backend(tiny).info
        abilities = frozenset({"macs"})
        macs_source = "counted by hand"

        def macs(self) -> int:
            return 7

    assert macs_of(Counted()) == (7, "counted by hand")
