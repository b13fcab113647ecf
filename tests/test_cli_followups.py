"""Follow-ups to the merged CLI work: quantize's default output, -q's help, run's int8 gate,
a corrupt model refused before any data search, nothing stray left in the current directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnet8_onnx.cli import build_parser, main
from resnet8_onnx.support import errors
from test_cli_parser import _all_parsers

COMMANDS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "commands.md"


# --------------------------------------------------------------------------- item 1
def test_quantize_without_o_writes_into_the_current_directory(tmp_path, monkeypatch) -> None:
    """Not beside the input (a shared, maybe read-only folder): ./STEM_int8.onnx, as convert."""
    import resnet8_onnx.cli.commands as commands

    source = tmp_path / "shared" / "models"
    source.mkdir(parents=True)
    (source / "net.v2.onnx").write_bytes(b"not read: the command stops at its output check")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    seen: list[list[str | None]] = []

    def fake_check_outputs(args, *, files=(), **_kwargs):
        seen.append(list(files))
        raise errors.InvalidInputError("stop here")

    monkeypatch.setattr(commands, "refuse_outputs", fake_check_outputs)
    assert main(["-q", "quantize", str(source / "net.v2.onnx"), "--calibration-data",
                 "x"]) == errors.INVALID_INPUT
    (files,) = seen
    assert [os.path.abspath(p) for p in files if p is not None] == [
        str(work / "net.v2_int8.onnx")]
    (output,) = [a for a in next(
        p for p in _all_parsers(build_parser()) if p.prog.endswith(" quantize"))._actions
        if a.dest == "output"]
    assert "current directory" in output.help
    assert "not beside MODEL" in output.help
    row = next(line for line in COMMANDS_PAGE.read_text().splitlines()
               if line.startswith("| `resnet8-onnx quantize"))
    assert "current directory" in row


# --------------------------------------------------------------------------- item 3
def test_quiet_help_says_it_silences_notes_too() -> None:
    """-q leaves only errors and warnings (progress.set_notes): both definitions say so."""
    helps = []
    for parser in _all_parsers(build_parser()):
        (quiet,) = [a for a in parser._actions if "-q" in a.option_strings]
        helps.append(quiet.help)
    assert len(helps) == len(_all_parsers(build_parser())) > 2
    for text in helps:
        assert "note" in text, text
        assert "errors and warnings" in text, text
    page = " ".join(COMMANDS_PAGE.read_text().split())
    assert "(`-q` silences both, leaving only errors and warnings)" in page


# --------------------------------------------------------------------------- item 4
@pytest.mark.parametrize(("given", "expected"), [
    ([], None), (["--min-agreement", "90%"], 0.9), (["--min-agreement", "0.97"], 0.97),
    (["--min-agreement", "0"], 0.0)])
def test_run_int8_passes_min_agreement_to_the_pipeline(given, expected, tmp_path,
                                                       monkeypatch) -> None:
    """run parses --min-agreement as quantize does; the pipeline gets it (None: the default)."""
    import resnet8_onnx.pipeline as pipeline

    seen = []

    def fake_run_pipeline(**kwargs):
        seen.append(kwargs)
        raise errors.InvalidInputError("stop here")

    monkeypatch.setattr(pipeline, "run_pipeline", fake_run_pipeline)
    monkeypatch.chdir(tmp_path)
    code = main(["-q", "run", "--int8", "--out", str(tmp_path / "r"), *given])
    assert code == errors.INVALID_INPUT
    (kwargs,) = seen
    assert kwargs["min_agreement"] == expected


def test_run_min_agreement_without_int8_is_a_usage_error(tmp_path, capsys) -> None:
    from cli_runner import assert_refused

    assert_refused(capsys, errors.USAGE, "--min-agreement", "run", "--min-agreement", "90%",
                   "--out", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("given", [None, 0.9, 0.0])
def test_pipeline_int8_step_gives_quantize_the_gate(given, tmp_path, monkeypatch) -> None:
    """The int8 step calls quantize with run's gate (quantize's default when not given)."""
    import resnet8_onnx.pipeline as pipeline
    from resnet8_onnx.quantize import DEFAULT_MIN_AGREEMENT

    seen = []

    def fake_quantize(*_args, **kwargs):
        seen.append(kwargs)
        raise errors.VerificationFailedError("stop here")

    monkeypatch.setattr(pipeline, "quantize", fake_quantize)
    monkeypatch.setattr(pipeline, "load_calibration_data", lambda *_a, **_k: object())
    with pytest.raises(errors.VerificationFailedError):
        pipeline._int8(tmp_path / "m.onnx", tmp_path / "m_int8.onnx", None, None,
                       data_dir=None, calibration_data=tmp_path, batch_size=8, threads=None,
                       force=False, download=False, min_agreement=given)
    (kwargs,) = seen
    assert kwargs["min_agreement"] == (DEFAULT_MIN_AGREEMENT if given is None else given)


# --------------------------------------------------------------------------- item 6
def _fake_load(monkeypatch, share: float) -> None:
    """Every LoadMeter reading as if other work used ``share`` of the cores in between."""
    from resnet8_onnx.machine import LoadMeter

    ticks = iter(range(1, 10_000))

    def sample():
        k = next(ticks)
        return round(share * 1000 * k), 1000 * k, 0.0

    monkeypatch.setattr(LoadMeter, "sample", staticmethod(sample))


@pytest.mark.parametrize("share", [0.9, 0.05])
def test_quantize_records_the_load_and_warns_when_busy(share, tmp_path, monkeypatch) -> None:
    """quantize's speed line and candidate timings carry the busy-machine warning that
    evaluate/compare/benchmark give: the reading is recorded, the line printed when busy."""
    from rich.console import Console

    from quantize_helpers import quick
    from resnet8_onnx.machine import busy_warning
    from resnet8_onnx.records import QuantizationRecord
    from resnet8_onnx.report import render_quantization_terminal, write_quantization_reports

    _fake_load(monkeypatch, share)
    _model, _data, record = quick(tmp_path)
    assert record.speed.cpu_busy == pytest.approx(share)
    again = QuantizationRecord.from_dict(record.to_dict())  # the JSON carries it
    assert again.speed.cpu_busy == pytest.approx(share)
    console = Console(record=True, width=300, highlight=False)
    render_quantization_terminal(again, console)
    text = console.export_text()
    warnings = [line for line in text.splitlines() if "the machine was busy" in line]
    md = write_quantization_reports(again, tmp_path / "r")["markdown"].read_text()
    if share > 0.25:
        (line,) = warnings
        assert line.startswith("warning: ")
        assert f"{share:.0%}" in line
        assert line.removeprefix("warning: ") == busy_warning(
            share, again.cpu.cores, "while quantize timed fp32 and int8",
            "images/s and speed-ups")
        assert line.removeprefix("warning: ") in md
    else:
        assert warnings == []
        assert "the machine was busy" not in md


# --------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("command", ["compare", "benchmark"])
@pytest.mark.parametrize("broken", ["onnx", "tflite"])
def test_a_corrupt_model_is_refused_before_any_data_search(command, broken, tmp_path) -> None:
    """A truncated model is one stderr line, exit 4, even where the data search would fail
    (exit 3) or print: every model is read before the data is looked for."""
    from cli_runner import assert_one_line_error, cli
    from model_factory import make_classifier

    good = make_classifier(tmp_path / "good.onnx")
    whole = good.read_bytes() if broken == "onnx" else bytes(range(256)) * 40
    bad = tmp_path / f"bad.{broken}"
    bad.write_bytes(whole[:len(whole) // 2])
    no_data = tmp_path / "empty"
    no_data.mkdir()
    models = [str(good), str(bad)] if command == "compare" else [str(bad)]
    proc = cli("-q", command, *models, "--data-dir", str(no_data), "--offline", timeout=120)
    assert_one_line_error(proc, errors.INVALID_INPUT, str(bad))
    assert proc.stdout == ""


# --------------------------------------------------------------------------- item 2
def test_benchmark_says_what_each_model_was_fed(tmp_path, monkeypatch) -> None:
    """Random pixels go through each model's spec: the record and the terminal say the spec
    in effect and the tensor's dtype and layout, per model where they differ. What was fed
    is seen independently: every tensor handed to the runtime is captured."""
    import numpy as np
    import onnx
    from rich.console import Console

    from model_factory import CIFAR_MEAN, CIFAR_STD, make_classifier, wrap_pytorch_style
    from resnet8_onnx.backends.onnxrt.runner import OnnxRuntimeBackend
    from resnet8_onnx.bench import benchmark
    from resnet8_onnx.preprocess import Preprocessing
    from resnet8_onnx.report import render_benchmark_terminal

    raw = make_classifier(tmp_path / "raw.onnx")
    torch_style = wrap_pytorch_style(raw, tmp_path / "torch_style.onnx")
    spec = Preprocessing(layout="nchw", scale=1 / 255, mean=CIFAR_MEAN, std=CIFAR_STD)
    model = onnx.load(str(torch_style))
    onnx.helper.set_model_props(model, spec.to_metadata())
    onnx.save(model, str(torch_style))

    fed: dict[str, list[np.ndarray]] = {}
    original_run = OnnxRuntimeBackend.run

    def spy(self, x):
        fed.setdefault(self.info.model_path, []).append(x)
        return original_run(self, x)

    monkeypatch.setattr(OnnxRuntimeBackend, "run", spy)
    record = benchmark([raw, torch_style], batch_sizes=[4], threads=[1],
                       optimization_levels=["all"], reference=False, min_seconds=0.0,
                       min_iterations=1, warmup_seconds=0.0)
    x_raw, x_torch = fed[str(raw)][0], fed[str(torch_style)][0]
    assert (x_raw.dtype, x_raw.shape[1:]) == (np.float32, (32, 32, 3))
    assert (x_torch.dtype, x_torch.shape[1:]) == (np.float32, (3, 32, 32))
    assert x_raw.max() > 1.5  # raw pixels; the other normalised (independently computed)
    pixels = np.rint(x_raw).astype(np.uint8)
    expected = ((pixels / 255.0 - np.array(CIFAR_MEAN)) / np.array(CIFAR_STD)).transpose(
        0, 3, 1, 2)
    np.testing.assert_allclose(x_torch, expected, atol=1e-5)

    first, second = (m.input_description for m in record.models)
    assert first.startswith("float32 NHWC [N,32,32,3]")
    assert "raw 0-255" in first
    assert second.startswith("float32 NCHW [N,3,32,32]")
    assert spec.describe() in second
    assert "as float32" not in (record.inputs.description or "")
    assert "random uint8 pixels (seed 0)" in record.inputs.description
    console = Console(record=True, width=400, highlight=False)
    render_benchmark_terminal(record, console)
    text = console.export_text()
    assert f"fed: {first}" in text
    assert f"fed: {second}" in text
    alone = benchmark([torch_style], batch_sizes=[4], threads=[1], optimization_levels=["all"],
                      reference=False, min_seconds=0.0, min_iterations=1, warmup_seconds=0.0)
    assert alone.inputs.description == f"random uint8 pixels (seed 0), fed as {second}"
    console = Console(record=True, width=400, highlight=False)
    render_benchmark_terminal(alone, console)
    (line,) = [t for t in console.export_text().splitlines() if t.startswith("Inputs:")]
    assert line == f"Inputs: random uint8 pixels (seed 0); fed: {second}"


# --------------------------------------------------------------------------- item 5
def _empty_dirs(tmp_path, monkeypatch):
    """(an empty current directory, an empty temporary directory every library uses)."""
    import tempfile

    cwd, scratch = tmp_path / "cwd", tmp_path / "scratch"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return cwd, scratch


def test_quantize_leaves_only_its_outputs(tmp_path, monkeypatch, capsys) -> None:
    """No external-data or shape-inference file of ONNX Runtime's quantiser (calibration,
    pre-processing, per-layer errors) in the current directory, and no temporary left:
    only the int8 model and the reports asked for."""
    from quantize_helpers import cli_setup

    (tmp_path / "inputs").mkdir()
    model, cal, _out = cli_setup(tmp_path / "inputs")
    before_inputs = sorted(p.name for p in model.parent.iterdir())
    cwd, scratch = _empty_dirs(tmp_path, monkeypatch)
    code = main(["-q", "quantize", str(model), "--calibration-data", str(cal),
                 "--no-auto", "--method", "entropy", "--layer-errors", "--out", "rep",
                 "--json", "q.json"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in cwd.iterdir()) == ["m_int8.onnx", "q.json", "rep"]
    # the report directory's lock stays on purpose (README: two processes, one lock)
    assert sorted(p.name for p in (cwd / "rep").iterdir()) == [
        ".resnet8-onnx.lock", "quantize.json", "quantize.md"]
    # ONNX Runtime keeps its session-id file ($TMPDIR/.ses, a timestamp and a uuid) itself
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
    assert sorted(p.name for p in model.parent.iterdir()) == before_inputs  # beside: nothing


@pytest.mark.slow
def test_convert_leaves_only_its_outputs(tmp_path) -> None:
    """convert (tf2onnx, and torch.export/torch.onnx for .pt2 both ways) from an empty
    current directory: only the files asked for appear there."""
    import subprocess
    import sys

    from cli_runner import FORCE_ONEDNN
    from conftest import shared_path

    h5 = shared_path("models", "pretrainedResnet.h5")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, **FORCE_ONEDNN}
    for args in ([str(h5)], [str(h5), "-o", "a.pt2"], ["a.pt2", "-o", "b.onnx"]):
        proc = subprocess.run([sys.executable, "-m", "resnet8_onnx", "-q", "convert", *args],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in cwd.iterdir()) == ["a.pt2", "b.onnx",
                                                     "pretrainedResnet.onnx"]


def test_annotate_has_no_provider_it_would_ignore(tmp_path) -> None:
    """`annotate --provider cuda` was accepted and silently ignored."""
    from resnet8_onnx.cli.parser import build_parser

    annotate = build_parser()._subparsers._group_actions[0].choices["annotate"]
    assert "provider" not in {a.dest for a in annotate._actions}
