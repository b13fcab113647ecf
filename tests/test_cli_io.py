"""The CLI's files, pipes and data search as a new user meets them (issue 19).

A closed stdout never costs a requested file; a refused output touches nothing; a directory
given as a model is one message and one code everywhere; an explicit ``--data-dir`` is
searched, never downloaded into; ``--limit`` above the data size is said and recorded; ``-q``
silences notes; ``run --json`` writes run's record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifar_factory import binary_records
from cli_runner import FORCE_ONEDNN, assert_refused, run
from quantize_helpers import float_model, png_folder
from resnet8_onnx.support import errors

META_TXT = "".join(f"{n}\n" for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                      "frog", "horse", "ship", "truck")).encode()


def binary_dir(root: Path, n: int = 40) -> Path:
    """A small test set in the official binary layout (``cifar-10-batches-bin``)."""
    data = root / "cifar-10-batches-bin"
    data.mkdir(parents=True)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(n) % 10
    (data / "test_batch.bin").write_bytes(binary_records(images, labels))
    (data / "batches.meta.txt").write_bytes(META_TXT)
    return data


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(a small ONNX classifier, a 40-image binary test set, a scratch directory)."""
    model = float_model(tmp_path / "m.onnx")
    data = binary_dir(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    return model, data, work


def run_loud(capsys, *args: str) -> tuple[int, str, str]:
    """``main ARGS`` in process without ``-q`` (notes print): (exit code, stdout, stderr)."""
    from resnet8_onnx.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def closed_stdout(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with its stdout's reader gone before it writes anything (``| head -1``
    without the race): (exit code, stderr)."""
    env = {**os.environ, **FORCE_ONEDNN, "RESNET8_ONNX_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "resnet8_onnx", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr.decode()


# --------------------------------------------------------------------------- 1: closed stdout
PIPED = {
    "evaluate": (["evaluate", "{model}", "--data-dir", "{data}", "--out", "ev", "--json",
                  "ev.json", "--save-test-data", "td"],
                 ["ev/report.json", "ev/report.md", "ev.json", "td/test_data_set_0/input_0.pb"]),
    "compare": (["compare", "{model}", "{model}", "--data-dir", "{data}", "--out", "cmp"],
                ["cmp/compare.json", "cmp/compare.md"]),
    "verify": (["verify", "{model}", "{model}", "--data-dir", "{data}", "--json", "v.json"],
               ["v.json"]),
    "data": (["data", "--data-dir", "{data}", "--json", "d.json"], ["d.json"]),
    "benchmark": (["benchmark", "{model}", "--batch-sizes", "1", "--threads", "1",
                   "--optimization", "all", "--min-seconds", "0", "--min-iterations", "2",
                   "--plot", "b.png", "--json", "b.json"], ["b.png", "b.json"]),
    "quantize": (["quantize", "{model}", "-o", "q.onnx", "--no-auto", "--calibration-data",
                  "{cal}", "--calibration-count", "120", "--out", "qr"],
                 ["q.onnx", "qr/quantize.json", "qr/quantize.md"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(PIPED))
def test_a_closed_stdout_still_writes_every_requested_file(setup, command) -> None:
    """`evaluate … --out ev --json ev.json | head -1` used to leave neither: the broken pipe
    of the first terminal line ended the command before its files. Now every file is
    written, and the command still ends quietly with its own exit code."""
    model, data, work = setup
    cal = png_folder(work.parent / "cal", 24) if command == "quantize" else work
    template, files = PIPED[command]
    args = [a.format(model=model, data=data, cal=cal) for a in template]
    code, stderr = closed_stdout(args, work)
    assert code == errors.OK, stderr
    assert "Traceback" not in stderr, stderr
    assert "Broken pipe" not in stderr, stderr
    for name in files:
        assert (work / name).is_file(), (name, sorted(p.name for p in work.rglob("*")))
    for name in files:
        if name.endswith(".json"):
            json.loads((work / name).read_text())  # complete, not cut by the pipe


def test_a_closed_stdout_with_json_on_stdout_still_writes_the_reports(setup) -> None:
    """`--json -` into a closed pipe: the record is lost with the pipe, the files are not."""
    model, data, work = setup
    code, stderr = closed_stdout(["-q", "evaluate", str(model), "--data-dir", str(data),
                                  "--out", "ev", "--json", "-"], work)
    assert code == errors.OK, stderr
    assert (work / "ev" / "report.json").is_file()


# --------------------------------------------------------------------------- 3: refused outputs
@pytest.mark.parametrize("option", [["--json", "{data}/new.json"], ["--out", "{data}/ev"],
                                    ["--save-test-data", "{data}/td"]])
def test_an_output_refused_for_the_data_directory_touches_nothing_there(capsys, setup,
                                                                        option) -> None:
    """The refusal (exit 8) used to come after a probe file was created and removed in the
    data directory, changing its mtime: now nothing there is touched at all."""
    model, data, _work = setup
    before = (sorted(os.listdir(data)), data.stat().st_mtime_ns)
    os.utime(data, ns=(before[1] - 10**9, before[1] - 10**9))  # a change could not hide
    before = (sorted(os.listdir(data)), data.stat().st_mtime_ns)
    args = [a.format(data=data) for a in option]
    assert_refused(capsys, errors.OUTPUT_ERROR, "input directory", "evaluate", str(model),
                   "--data-dir", str(data), *args)
    assert (sorted(os.listdir(data)), data.stat().st_mtime_ns) == before


def test_an_output_beside_the_data_under_a_searched_folder_is_still_written(capsys,
                                                                             setup) -> None:
    """Deferring the probe does not refuse a file beside the data set: ``--data-dir`` names
    the folder holding it, the JSON goes into that folder (not into the data set)."""
    model, data, _work = setup
    code, _out, err = run(capsys, "evaluate", str(model), "--data-dir", str(data.parent),
                          "--json", str(data.parent / "ev.json"))
    assert code == errors.OK, err
    assert json.loads((data.parent / "ev.json").read_text())["data"]["count"] == 40


# --------------------------------------------------------------------------- 8: model dirs
MODEL_COMMANDS = {
    "evaluate": ["evaluate", "{m}", "--data-dir", "{data}"],
    "verify reference": ["verify", "{m}", "{model}", "--data-dir", "{data}"],
    "verify candidate": ["verify", "{model}", "{m}", "--data-dir", "{data}"],
    "compare": ["compare", "{model}", "{m}", "--data-dir", "{data}"],
    "benchmark": ["benchmark", "{m}"],
    "quantize": ["quantize", "{m}", "--calibration-data", "{data}"],
    "annotate": ["annotate", "{m}", "-o", "{work}/a.onnx"],
    "convert": ["convert", "{m}", "-o", "{work}/c.onnx"],
    "run": ["run", "--model", "{m}", "--data-dir", "{data}", "--out", "{work}/r"],
}


@pytest.mark.parametrize("inside", [False, True], ids=["plain", "output-inside"])
@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
def test_a_directory_given_as_the_model_is_one_message_and_exit_4_everywhere(
        capsys, setup, command, inside) -> None:
    """It used to be 'model file not found' (3) though it exists, 'unknown model type …
    pass --backend' (2) where there is no --backend, or 4, depending on the command; and exit
    8 ('would be written into the input directory') when an output would land inside it."""
    model, data, work = setup
    folder = work / "resnet8"
    folder.mkdir()
    args = [a.format(m=folder, model=model, data=data, work=work)
            for a in MODEL_COMMANDS[command]]
    extra = ["--json", str(folder / "x.json")] if inside else []
    assert_refused(capsys, errors.INVALID_INPUT, f"{folder}: is a directory, not a model file",
                   *args, *extra)
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", ["verify", "compare", "benchmark", "evaluate"])
def test_only_a_command_with_backend_suggests_it(capsys, setup, command) -> None:
    """'… or pass --backend' is advice only ``evaluate`` can take."""
    model, data, work = setup
    odd = work / "model.bin"
    odd.write_bytes(model.read_bytes())
    args = {"verify": ["verify", str(model), str(odd)], "compare": ["compare", str(model),
                                                                    str(odd)],
            "benchmark": ["benchmark", str(odd)], "evaluate": ["evaluate", str(odd)]}[command]
    code, _out, err = run(capsys, *args, *(["--data-dir", str(data)] if command != "benchmark"
                                           else []))
    assert code == errors.USAGE, err
    assert "unknown model type '.bin'" in err
    assert ("--backend" in err) == (command == "evaluate"), err


# --------------------------------------------------------------------------- 12: named data
def _no_download(*args, **kwargs):
    raise AssertionError("an explicit --data-dir must not fall back to a download")


@pytest.mark.parametrize("online", [False, True], ids=["offline", "online"])
def test_an_explicit_data_dir_without_cifar_is_searched_not_downloaded(
        capsys, monkeypatch, setup, online) -> None:
    """class folders foo/ and bar/ are a labelled set of two classes now (issue 23): a
    10-output model with no names for them is exit 4 saying so, never a download (exit 9,
    'point the tool at a local copy with --data-dir DIR' to a user who just did)."""
    from PIL import Image

    from resnet8_onnx.data import discover, download

    if online:
        monkeypatch.delenv("RESNET8_ONNX_OFFLINE")
    monkeypatch.setattr(discover, "fetch", _no_download)
    monkeypatch.setattr(download, "fetch", _no_download)
    model, _data, work = setup
    imgs = work / "imgs"
    for name in ("foo", "bar"):
        (imgs / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(imgs / name / "0.png")
    code, _out, err = run(capsys, "evaluate", str(model), "--data-dir", str(imgs))
    lines = err.strip().splitlines()
    assert code == errors.INVALID_INPUT, err
    assert len(lines) == 1, err
    assert "model has 10 outputs (output 'probabilities'), the data set has 2 classes" in lines[0]
    assert "--class-names FILE" in lines[0]
    assert "--data-dir DIR" not in lines[0]


def test_an_empty_explicit_data_dir_says_it_is_empty(capsys, setup) -> None:
    model, _data, work = setup
    empty = work / "empty"
    empty.mkdir()
    assert_refused(capsys, errors.NOT_FOUND, f"no CIFAR-10 data under {empty}: it is empty",
                   "evaluate", str(model), "--data-dir", str(empty))


# --------------------------------------------------------------------------- 15: --limit
def test_a_limit_above_the_data_size_is_said_and_recorded_like_batch_size(capsys,
                                                                          setup) -> None:
    """--limit 100 of 40 images used to vanish ("limit": null, nothing said); now a note on
    stderr, like --batch-size, and the requested value in the record (existing keys kept)."""
    model, data, _work = setup
    code, out, err = run_loud(capsys, "evaluate", str(model), "--data-dir", str(data),
                              "--limit", "100", "--json", "-")
    assert code == errors.OK, err
    record = json.loads(out)["data"]
    assert record["limit"] is None  # no limit was applied: every image was used
    assert record["count"] == 40
    assert record["requested_limit"] == 100
    notes = [line for line in err.splitlines() if "--limit" in line]
    assert notes == ["resnet8-onnx: note: --limit 100 is more than the 40 images; using all 40"]


def test_a_limit_within_the_data_records_no_requested_limit(capsys, setup) -> None:
    model, data, _work = setup
    code, out, err = run_loud(capsys, "evaluate", str(model), "--data-dir", str(data),
                              "--limit", "20", "--json", "-")
    assert code == errors.OK, err
    record = json.loads(out)["data"]
    assert (record["limit"], record["count"]) == (20, 20)
    assert "requested_limit" not in record
    assert "--limit" not in err


# --------------------------------------------------------------------------- 18: -q and notes
def two_sources(setup) -> Path:
    """A folder holding the binary test set and an image folder: searching it notes the
    choice ("2 CIFAR-10 sources under …")."""
    from PIL import Image

    _model, data, _work = setup
    folder = data.parent / "pngs" / "airplane"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "00001.png")
    return data.parent


def test_quiet_silences_notes_and_models_are_checked_before_the_data(capsys, setup) -> None:
    """`-q verify bad.h5 m.onnx --data-dir …` printed the "2 CIFAR-10 sources" note, then the
    error: two lines. Now the model fails before any data is searched (one line, with or
    without -q), and -q silences the note of a command that succeeds."""
    model, _data, work = setup
    root = two_sources(setup)
    bad = work / "bad.h5"
    bad.write_bytes(b"not an HDF5 file at all")
    for quiet, command in (([], "verify"), (["-q"], "verify"), ([], "compare"),
                           ([], "benchmark")):
        models = [str(model), str(bad)] if command != "verify" else [str(bad), str(model)]
        code, _out, err = run_loud(capsys, *quiet, command, *models, "--data-dir", str(root))
        lines = err.strip().splitlines()
        assert code == errors.INVALID_INPUT, err
        assert len(lines) == 1, err
        assert str(bad) in lines[0]
    code, _out, err = run_loud(capsys, "evaluate", str(model), "--data-dir", str(root))
    assert code == errors.OK, err
    assert "note: 2 CIFAR-10 sources under" in err
    code, _out, err = run_loud(capsys, "-q", "evaluate", str(model), "--data-dir", str(root),
                               "--limit", "100", "--batch-size", "64")
    assert code == errors.OK, err
    # -q leaves errors and warnings only: the random model's near-chance warning, no note
    assert all(line.startswith("resnet8-onnx: warning:") for line in err.splitlines()), err
    assert "note:" not in err


def test_run_prints_the_data_notes_like_every_other_command(capsys, monkeypatch,
                                                            setup) -> None:
    """The "2 CIFAR-10 sources" note was in run's report.json but never on its stderr."""
    from resnet8_onnx import pipeline

    def stop(path):
        raise errors.InvalidInputError(f"{path}: stopped after the data was found")

    monkeypatch.setattr(pipeline, "inspect_keras_file", lambda path: None)
    monkeypatch.setattr(pipeline, "load_keras_model", stop)
    _model, _data, work = setup
    root = two_sources(setup)
    keras = work / "m.h5"
    keras.write_bytes(b"placeholder: the pipeline is stopped before reading it")
    code, _out, err = run_loud(capsys, "run", "--model", str(keras), "--data-dir", str(root),
                               "--out", str(work / "r"), "--limit", "100")
    assert code == errors.INVALID_INPUT, err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 2, err
    assert "2 CIFAR-10 sources under" in notes[0]
    assert "--limit 100 is more than the 40 images" in notes[1]


# --------------------------------------------------------------------------- 19: run --json
def test_run_json_is_checked_like_every_output_before_any_work(capsys, monkeypatch,
                                                               setup) -> None:
    """`run --json FILE` was 'unrecognized arguments' although the README promises it."""
    from resnet8_onnx import pipeline

    monkeypatch.setattr(pipeline, "inspect_keras_file", lambda path: None)  # data next
    _model, data, work = setup
    keras = work / "m.h5"
    keras.write_bytes(b"never read: the outputs are refused before the model is loaded")
    existing = work / "run.json"
    existing.write_text("{}")
    base = ["run", "--model", str(keras), "--data-dir", str(data), "--out", str(work / "r")]
    assert_refused(capsys, errors.OUTPUT_ERROR, "already exists", *base, "--json",
                   str(existing))
    assert_refused(capsys, errors.OUTPUT_ERROR, "named twice", *base, "--json",
                   str(work / "r" / "report.json"))
    assert_refused(capsys, errors.OUTPUT_ERROR, "would be written into the input directory",
                   *base, "--json", str(data / "run.json"))
    assert existing.read_text() == "{}"
    assert not (work / "r").exists()


@pytest.mark.slow
def test_run_json_writes_runs_full_record(tmp_path) -> None:
    """The file (and ``--json -``) holds run's record, exactly report.json's."""
    from cli_runner import cli
    from conftest import shared_path

    model = shared_path("models", "pretrainedResnet.h5")
    data = shared_path("cifar-10", "perf-png")
    args = ["-q", "run", "--model", str(model), "--data-dir", str(data), "--limit", "20",
            "--min-accuracy", "0"]
    proc = cli(*args, "--out", str(tmp_path / "r"), "--json", str(tmp_path / "run.json"))
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / "r" / "report.json").read_text()
    assert (tmp_path / "run.json").read_text() == report
    assert json.loads(report)["data"]["count"] == 20
    proc = cli(*args, "--out", str(tmp_path / "r2"), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (tmp_path / "r2" / "report.json").read_text()
