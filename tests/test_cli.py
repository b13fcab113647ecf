"""The command line: exit codes, one-line errors, machine-readable output, the whole job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED, shared_path
from model_factory import make_classifier
from resnet8_onnx import errors
from resnet8_onnx.cli import main

# TensorFlow turns oneDNN on by itself only on some CPUs (AVX-512 ones), and then absl prints
# start-up lines on fd 2 that TF_CPP_MIN_LOG_LEVEL cannot silence. Forcing it on makes every
# CLI test see those lines on any x86 CPU, so "stderr holds only our lines" is checked everywhere.
FORCE_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run the installed entry point in a subprocess, as a user would."""
    full_env = {**os.environ, **FORCE_ONEDNN, **(env or {})}
    return subprocess.run([sys.executable, "-m", "resnet8_onnx", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False)


def assert_one_line_error(proc, code: int, fragment: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "convert", "verify", "evaluate", "run", "compare", "benchmark",
                    "quantize"):
        assert command in out
    assert "exit codes" in out


def test_usage_error_is_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "m.onnx", "--batch-size", "0"])
    assert exit_info.value.code == errors.USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_missing_model_exit_code(tmp_path, capsys) -> None:
    code = main(["evaluate", str(tmp_path / "nope.onnx"), "--data-dir", str(tmp_path)])
    assert code in (errors.NOT_FOUND,)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1


def test_debug_shows_traceback(tmp_path) -> None:
    proc = cli("--debug", "evaluate", str(tmp_path / "nope.onnx"), "--data-dir", str(tmp_path))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_evaluate_json_to_stdout_and_threshold(tmp_path, resnet8_onnx) -> None:
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    proc = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--limit", "500",
               "--json", "-", "--min-accuracy", "0.99")
    assert proc.returncode == errors.ACCURACY_BELOW_THRESHOLD, proc.stderr
    record = json.loads(proc.stdout)
    assert record["metrics"]["total"] == 500
    assert record["data"]["full_official_test_set"] is False
    assert "below --min-accuracy" in proc.stderr


@pytest.mark.slow
def test_evaluate_out_dir_refuses_overwrite(tmp_path, resnet8_onnx) -> None:
    data = shared_path("cifar-10", "perf-png")
    out = tmp_path / "reports"
    first = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--out", str(out))
    assert first.returncode == 0, first.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert any(n.endswith(".png") for n in names)
    assert any(n.endswith(".csv") for n in names)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--out", str(out))
    assert_one_line_error(second, errors.OUTPUT_ERROR, "already exists")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_run_whole_job(tmp_path) -> None:
    """The README's main command, on the real model and the full official test set."""
    shared_path("models", "pretrainedResnet.h5")
    shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    out = tmp_path / "report"
    proc = cli("-q", "run", "--data-dir", str(SHARED), "--out", str(out))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for name in ("report.json", "report.md", "model.onnx"):
        assert (out / name).is_file(), name
    assert list(out.glob("*.csv"))
    assert list(out.glob("*.png"))
    report = json.loads((out / "report.json").read_text())
    keras, onnx_ = report["models"]
    assert keras["model"]["backend"] == "keras"
    assert onnx_["model"]["backend"] == "onnxruntime"
    for record in (keras, onnx_):
        metrics = record["metrics"]
        assert metrics["total"] == 10_000
        assert 0.85 < metrics["accuracy"] <= 1.0
        assert len(metrics["per_class"]) == 10
        assert {"name", "accuracy", "correct", "total"} <= set(metrics["per_class"][0])
        assert len(metrics["confusion_matrix"]) == 10
        assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
        assert record["data"]["full_official_test_set"] is True
    assert keras["metrics"]["correct"] == onnx_["metrics"]["correct"]
    assert report["parity"]["passed"] is True
    assert report["parity"]["argmax_agreement"] == 10_000
    assert report["verdict"]["passed"] is True
    assert "10,000" in (out / "report.md").read_text()
    assert "PASS" in proc.stdout
    foreign = [line for line in proc.stderr.splitlines()
               if line.strip() and not line.startswith("reports: ")]
    assert foreign == [], "run -q printed lines the project did not write"


@pytest.mark.slow
def test_quiet_convert_of_the_real_model_writes_nothing_to_stderr(tmp_path) -> None:
    """oneDNN forced on: TensorFlow's start-up lines must not reach the user."""
    model = shared_path("models", "pretrainedResnet.h5")
    proc = cli("-q", "convert", str(model), "-o", str(tmp_path / "m.onnx"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert (tmp_path / "m.onnx").is_file()


@pytest.mark.slow
def test_quiet_evaluate_of_a_tflite_model_writes_nothing_to_stderr() -> None:
    """LiteRT announces its XNNPACK delegate on fd 2; with -q the user sees nothing."""
    model = shared_path("models", "pretrainedResnet.tflite")
    data = shared_path("cifar-10", "perf-png")
    proc = cli("-q", "evaluate", str(model), "--data-dir", str(data), "--limit", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_closed_stdout_ends_quietly_with_exit_0(tmp_path) -> None:
    """`resnet8-onnx data | head -1`: the reader goes away; exit 0, nothing on stderr.

    The read end is closed before the command writes anything, so every write meets a closed
    pipe whatever the machine's speed (``head`` would race with it)."""
    data = tmp_path / "data"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (32, 32), (i, i, i)).save(data / ("cat", "dog")[i % 2] / f"{i}.png")
    for json_args in ((), ("--json", "-")):
        proc = subprocess.Popen(
            [sys.executable, "-m", "resnet8_onnx", "data", "--data-dir", str(data), *json_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **FORCE_ONEDNN})
        proc.stdout.close()
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == errors.OK, stderr.decode()
        assert stderr.decode().strip() == "", stderr.decode()


def test_run_refuses_missing_parent_before_work(tmp_path) -> None:
    proc = cli("-q", "run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "a" / "b"))
    assert_one_line_error(proc, errors.OUTPUT_ERROR, "does not exist")
    assert not (tmp_path / "a").exists()


def test_evaluate_generated_model_offline_without_data(tmp_path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("evaluate", str(model), "--data-dir", str(empty), "--offline")
    assert_one_line_error(proc, errors.NOT_FOUND, "CIFAR-10")
    assert not Path(tmp_path / "report").exists()


# --------------------------------------------------------------------------- issue 14 (new user)
COMMANDS = ("data", "convert", "verify", "evaluate", "run", "compare", "benchmark", "annotate",
            "quantize")


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_lists_quiet_and_debug_and_ends_with_examples(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "-q, --quiet" in out
    assert "--debug" in out
    examples = out.rstrip().rsplit("examples:", 1)
    assert len(examples) == 2, out
    lines = [line.strip() for line in examples[1].strip().splitlines()]
    assert 1 <= len(lines) <= 2
    assert all(line.startswith(f"resnet8-onnx {command} ") for line in lines)
    # The data-location paragraph is for commands that read CIFAR-10, not for convert.
    assert ("RESNET8_ONNX_DATA_DIR" in out) == (command != "convert")


def test_the_lazy_parser_gives_the_same_help_and_parses_alike(capsys, monkeypatch) -> None:
    """main() adds only the parsed command's options; every help text stays what the parser
    with all commands built says, and so do the parsed values."""
    from resnet8_onnx.cli import build_parser

    monkeypatch.setenv("COLUMNS", "100")
    eager = build_parser()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out == eager.format_help()
    subcommands = next(a for a in eager._actions if a.dest == "command").choices
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert capsys.readouterr().out == subcommands[command].format_help(), command
    argv = ["-q", "evaluate", "m.onnx", "--batch-size", "7", "--scale", "1/255", "--debug"]
    assert vars(build_parser(lazy=True).parse_args(argv)) == vars(eager.parse_args(argv))


def test_evaluate_imports_nothing_of_the_other_commands(tmp_path) -> None:
    from cifar_factory import make_images, write_png_folder

    model = make_classifier(tmp_path / "m.onnx")
    images, labels = make_images(10)
    data = write_png_folder(tmp_path / "pngs", images, labels, [f"{i:05d}" for i in range(10)])
    others = ("resnet8_onnx.bench", "resnet8_onnx.quantize", "resnet8_onnx.convert",
              "resnet8_onnx.keras_io", "resnet8_onnx.verify", "http.client", "urllib.request")
    code = (f"import sys\nfrom resnet8_onnx.cli import main\n"
            f"assert main(['-q', 'evaluate', {str(model)!r}, '--data-dir', {str(data)!r}, "
            f"'--json', {str(tmp_path / 'e.json')!r}]) == 0\n"
            f"print('imported:', *(m for m in {others!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "RESNET8_ONNX_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "imported:"
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["total"] == 10


def test_quiet_and_debug_work_after_the_command_name(tmp_path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("evaluate", str(model), "--data-dir", str(empty), "--offline", "-q", "--debug")
    assert proc.returncode == errors.NOT_FOUND, proc.stderr  # not a usage error
    assert "Traceback" in proc.stderr  # --debug after the command took effect
    quiet = cli("evaluate", str(model), "--data-dir", str(empty), "--offline", "--quiet")
    assert_one_line_error(quiet, errors.NOT_FOUND, "CIFAR-10")
    both = cli("-q", "evaluate", str(model), "--data-dir", str(empty), "--offline", "-q")
    assert_one_line_error(both, errors.NOT_FOUND, "CIFAR-10")


@pytest.mark.parametrize(
    ("value", "fragments"),
    [("abc", ["--min-accuracy", "'abc' is not an accuracy", "87.5%"]),
     ("1.01", ["--min-accuracy", "ambiguous", "1.01%"]),
     ("85", ["--min-accuracy", "ambiguous", "85%"]),
     ("101%", ["--min-accuracy", "between 0 and 100%"]),
     ("-0.1", ["--min-accuracy", "between 0 and 100%"]),
     ("nan", ["--min-accuracy", "not an accuracy"])],
)
def test_min_accuracy_errors_speak_the_users_words(value, fragments, capsys) -> None:
    for command in (["evaluate", "m.onnx"], ["run"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--min-accuracy", value])
        assert exit_info.value.code == errors.USAGE
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        for fragment in fragments:
            assert fragment in err, err
        assert "_fraction" not in err
        assert "_accuracy" not in err


@pytest.mark.parametrize("value", ["0.875", "87.5%", " 87.5 % ", "1", "100%", "0", "0%"])
def test_min_accuracy_accepts_fractions_and_percentages(value, tmp_path) -> None:
    # Parsing succeeds, so the command gets as far as the missing model (exit 3, not 2).
    code = main(["evaluate", str(tmp_path / "nope.onnx"), "--min-accuracy", value,
                 "--data-dir", str(tmp_path)])
    assert code == errors.NOT_FOUND


@pytest.mark.slow
def test_evaluate_threshold_is_inclusive_and_printed_exactly(resnet8_onnx) -> None:
    """8,719/10,000 meets 87.19 % (given either way) and fails 87.2 %, which prints as such."""
    data = shared_path("cifar-10", "cifar-10-batches-bin")
    accuracy = None
    for threshold in ("0.8719", "87.19%"):
        proc = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data), "--json", "-",
                   "--min-accuracy", threshold)
        assert proc.returncode == 0, proc.stderr
        metrics = json.loads(proc.stdout)["metrics"]
        accuracy = (metrics["correct"], metrics["total"])
    assert accuracy == (8_719, 10_000)  # the real model on the real test set
    proc = cli("-q", "evaluate", str(resnet8_onnx), "--data-dir", str(data),
               "--min-accuracy", "0.872")
    assert proc.returncode == errors.ACCURACY_BELOW_THRESHOLD
    assert "below --min-accuracy 87.2%" in proc.stderr
    assert "(8,719/10,000)" in proc.stderr


@pytest.mark.slow
def test_run_passes_a_threshold_equal_to_the_accuracy(tmp_path) -> None:
    """`run --min-accuracy 0.8719` on a model at exactly 87.19 % passes (≥, like evaluate)."""
    shared_path("models", "pretrainedResnet.h5")
    shared_path("cifar-10", "cifar-10-batches-bin", "test_batch.bin")
    out = tmp_path / "report"
    proc = cli("-q", "run", "--data-dir", str(SHARED), "--out", str(out),
               "--min-accuracy", "0.8719")
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"]["onnx_correct"] == 8_719, proc.stdout
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["verdict"]["meets_threshold"] is True
    assert report["verdict"]["accuracy_threshold"] == 0.8719
    for record in (report, *report["models"]):
        assert record["settings"]["batch_size"] == 128
        assert record["settings"]["threads"] is None  # the runtimes' default
    assert "at least 87.19%" in proc.stdout
    assert "NOT" not in proc.stdout
    # The written files are listed on stderr, as by evaluate and compare.
    listed = [line for line in proc.stderr.splitlines() if line.startswith("reports: ")]
    assert len(listed) == 1, proc.stderr
    for name in ("report.json", "per_class.csv", "confusion_onnxruntime.png", "model.onnx"):
        assert str(out / name) in listed[0]
    assert "report files" not in proc.stdout
    assert str(out / "per_class.csv") not in proc.stdout


def _perf_png() -> Path:
    return shared_path("cifar-10", "perf-png")


def test_threads_above_the_core_count_warn_once_and_every_record_states_them(
        tmp_path, capsys) -> None:
    from resnet8_onnx.bench import available_cores

    model = make_classifier(tmp_path / "m.onnx")
    other = make_classifier(tmp_path / "other.onnx", seed=1)
    data = str(_perf_png())
    too_many = available_cores() + 1

    def warnings_in(err: str) -> list[str]:
        return [line for line in err.splitlines() if "warning" in line and "--threads" in line]

    assert main(["-q", "evaluate", str(model), "--data-dir", data, "--threads", str(too_many),
                 "--batch-size", "50", "--json", "-"]) == 0
    captured = capsys.readouterr()
    warned = warnings_in(captured.err)
    assert len(warned) == 1, captured.err
    assert f"--threads {too_many}" in warned[0]
    assert f"{available_cores()} core" in warned[0]
    settings = json.loads(captured.out)["settings"]
    assert settings == {"threads": too_many, "available_cores": available_cores(),
                        "batch_size": 50, "ort_optimization": "all"}

    assert main(["-q", "evaluate", str(model), "--data-dir", data, "--threads", "1",
                 "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert warnings_in(captured.err) == []
    assert json.loads(captured.out)["settings"]["threads"] == 1

    assert main(["-q", "compare", str(model), str(other), "--data-dir", data, "--threads",
                 str(too_many), "--json", "-"]) == 0
    captured = capsys.readouterr()
    assert len(warnings_in(captured.err)) == 1
    record = json.loads(captured.out)
    assert record["settings"]["threads"] == too_many
    assert record["settings"]["batch_size"] == 128
    assert all(m["settings"]["threads"] == too_many for m in record["models"])

    # Any backend's file can be the reference, so verify runs here without TensorFlow.
    main(["-q", "verify", str(model), str(model), "--data-dir", data, "--threads", "1",
          "--batch-size", "64", "--json", "-"])
    captured = capsys.readouterr()
    assert warnings_in(captured.err) == []
    assert json.loads(captured.out)["settings"] == {
        "threads": 1, "available_cores": available_cores(), "batch_size": 64,
        "ort_optimization": "all"}


def test_evaluate_and_run_name_report_files_alike_and_list_them_on_stderr(tmp_path) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    out = tmp_path / "reports"
    proc = cli("-q", "evaluate", str(model), "--data-dir", str(_perf_png()), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    # The same names as a `run` report directory (its per_class.csv, confusion_<backend>.png).
    assert names == ["confusion_onnxruntime.png", "per_class.csv", "report.json", "report.md"]
    listed = [line for line in proc.stderr.splitlines() if line.startswith("reports: ")]
    assert len(listed) == 1, proc.stderr
    assert all(str(out / name) in listed[0] for name in names)
    assert "reports:" not in proc.stdout


def test_run_without_a_model_names_the_option_that_gives_one(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli("-q", "run", "--data-dir", str(empty), "--offline", "--out", str(tmp_path / "o"))
    assert_one_line_error(proc, errors.NOT_FOUND, "pretrainedResnet.h5")
    assert "--model FILE" in proc.stderr


# --------------------------------------------------------------------------- failed runs
@pytest.mark.parametrize("existing", [False, True], ids=["new-dir", "existing-dir"])
def test_failed_run_leaves_nothing_it_created(tmp_path, existing: bool) -> None:
    """A run that fails (here: no data, offline) removes the report directory it created, and
    in a directory that existed leaves no file of its own but the hidden lock."""
    from test_hardening import LOCK_NAME, keras_layer, keras_model, write_h5

    model = write_h5(tmp_path / "safe.h5", keras_model(
        keras_layer("Conv2D", "conv", "in", filters=4, kernel_size=[1, 1])))
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    if existing:
        out.mkdir()
    argv = ["-q", "run", "--model", str(model), "--data-dir", str(empty), "--offline",
            "--out", str(out)]
    for _ in range(2):  # and the same command fails the same way again, not on its leftovers
        proc = cli(*argv)
        assert_one_line_error(proc, errors.NOT_FOUND, "CIFAR-10")
        assert out.exists() == existing
        if existing:
            assert [p.name for p in out.iterdir() if p.name != LOCK_NAME] == []
