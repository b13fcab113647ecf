"""cli.options: option types (accuracy, counts, shapes, lists), the --threads warning, and the
output checks every command makes before work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_path
from model_factory import make_classifier
from resnet8_onnx.cli import build_parser, main
from resnet8_onnx.support import errors


def _perf_png() -> Path:
    return shared_path("cifar-10", "perf-png")


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
        assert "parse_accuracy" not in err


@pytest.mark.parametrize("value", ["0.875", "87.5%", " 87.5 % ", "1", "100%", "0", "0%"])
def test_min_accuracy_accepts_fractions_and_percentages(value, tmp_path) -> None:
    # Parsing succeeds, so the command gets as far as the missing model (exit 3, not 2).
    code = main(["evaluate", str(tmp_path / "nope.onnx"), "--min-accuracy", value,
                 "--data-dir", str(tmp_path)])
    assert code == errors.NOT_FOUND


def test_threads_above_the_core_count_warn_once_and_every_record_states_them(
        tmp_path, capsys) -> None:
    from resnet8_onnx.machine import available_cores

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


def test_shapes_counts_lists_and_levels_parse_as_documented() -> None:
    from resnet8_onnx.machine import available_cores

    parser = build_parser()
    convert = parser.parse_args(["convert", "m.h5", "-o", "m.onnx", "--input-shape", "28x28x1",
                                 "--num-classes", "100"])
    assert (convert.input_shape, convert.num_classes) == ((28, 28, 1), 100)
    bench = parser.parse_args(["benchmark", "m.onnx", "--batch-sizes", "1, 8,64",
                               "--threads", "1,all", "--optimization", "Basic,all",
                               "--min-seconds", "0"])
    assert bench.batch_sizes == [1, 8, 64]
    assert bench.threads == [1, available_cores()]
    assert bench.optimization == ["basic", "all"]
    assert bench.min_seconds == 0.0
    assert parser.parse_args(["quantize", "m.onnx", "--calibration-data", "c",
                              "--tolerance", "0.5%"]).tolerance == 0.005


@pytest.mark.parametrize(("argv", "fragment"), [
    (["convert", "m.h5", "-o", "o", "--input-shape", "32,32"], "is not H,W,C"),
    (["convert", "m.h5", "-o", "o", "--input-shape", "0,32,3"], "is not H,W,C"),
    (["convert", "m.h5", "-o", "o", "--num-classes", "0"], "must be at least 1"),
    (["evaluate", "m.onnx", "--limit", "ten"], "is not a whole number"),
    (["benchmark", "m.onnx", "--batch-sizes", "1,,8"], "is not a whole number"),
    (["benchmark", "m.onnx", "--min-seconds", "-1"], "must be 0 or more seconds"),
    (["benchmark", "m.onnx", "--min-seconds", "nan"], "must be 0 or more seconds"),
    (["benchmark", "m.onnx", "--optimization", ","], "comma-separated subset"),
    (["evaluate", "m.onnx", "--scale", "1/0"], "--scale"),
])
def test_bad_values_name_the_option_and_what_it_takes(argv, fragment, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == errors.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert fragment in err[0]


def test_a_json_output_onto_the_model_is_refused_before_work(tmp_path, capsys) -> None:
    """--json naming the model itself: exit 8 even with --force, and the model is intact."""
    model = make_classifier(tmp_path / "m.onnx")
    before = model.read_bytes()
    code = main(["-q", "evaluate", str(model), "--json", str(model), "--force",
                 "--data-dir", str(tmp_path / "nowhere")])
    assert code == errors.OUTPUT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "would overwrite the input" in err[0]
    assert model.read_bytes() == before


def test_json_to_a_file_is_written_whole_and_never_over_an_existing_one(tmp_path,
                                                                        capsys) -> None:
    model = make_classifier(tmp_path / "m.onnx")
    data = str(_perf_png())
    target = tmp_path / "r.json"
    assert main(["-q", "evaluate", str(model), "--data-dir", data, "--limit", "20",
                 "--json", str(target)]) == 0
    record = json.loads(target.read_text())
    assert record["metrics"]["total"] == 20
    assert target.read_text().endswith("}\n")
    capsys.readouterr()
    assert main(["-q", "evaluate", str(model), "--data-dir", data, "--limit", "10",
                 "--json", str(target)]) == errors.OUTPUT_ERROR
    assert "already exists" in capsys.readouterr().err
    assert json.loads(target.read_text()) == record



# --------------------------------------------------------------------------- issue 19, item 14
def test_device_cuda_on_an_onnx_model_points_to_provider(tmp_path, capsys) -> None:
    from cli_runner import assert_refused

    model = make_classifier(tmp_path / "m.onnx")
    assert_refused(capsys, errors.USAGE, "--provider cuda", "evaluate", str(model),
                   "--device", "cuda", "--data-dir", str(tmp_path), "--offline")


def test_save_optimized_with_two_models_is_refused_before_the_data_search(tmp_path,
                                                                           capsys) -> None:
    from cli_runner import assert_refused

    a = make_classifier(tmp_path / "a.onnx")
    b = make_classifier(tmp_path / "b.onnx", seed=1)
    # No data under the directory: the data search would fail with exit 3 first.
    assert_refused(capsys, errors.USAGE, "--save-optimized needs exactly one ONNX model",
                   "benchmark", str(a), str(b), "--save-optimized", str(tmp_path / "o.onnx"),
                   "--data-dir", str(tmp_path / "nothing"), "--offline",
                   outputs=(tmp_path / "o.onnx",))


def test_quantize_tolerance_is_points_in_help_and_in_the_choice() -> None:
    from resnet8_onnx.quantize.recipe import Trial, select_candidate

    quantize = build_parser()._subparsers._group_actions[0].choices["quantize"]
    (tolerance,) = [a for a in quantize._actions if a.dest == "tolerance"]
    assert "0.5 points" in tolerance.help % {"default": tolerance.default}
    working = [Trial(agreement=990, ips=100.0), Trial(agreement=986, ips=300.0),
               Trial(agreement=984, ips=500.0)]
    chosen, reason = select_candidate(working, "auto", 0.005, 1000)
    # 98.6 % is within 0.5 points of 99.0 %, 98.4 % is not (an independent check of the rule)
    assert chosen is working[1]
    assert [c.eligible for c in working] == [True, True, False]
    assert "within 0.5 points of the best" in reason
    assert "within 0.5%" not in reason  # agreement is in points; the timing noise is a %


def test_an_existing_output_names_force_true_in_the_library_and_force_in_the_cli(
        tmp_path, capsys) -> None:
    """Library errors speak of the library's argument; the CLI maps it to its option."""
    import pickle

    from cli_runner import assert_refused
    from resnet8_onnx.report import check_planned, evaluation_files
    from resnet8_onnx.support.fsutil import write_text_atomic

    existing = tmp_path / "r.json"
    existing.write_text("{}\n")
    for write in (lambda: write_text_atomic(existing, "x"),
                  lambda: check_planned(tmp_path, evaluation_files("onnxruntime"), force=False)):
        (tmp_path / "report.json").write_text("{}\n")
        with pytest.raises(errors.OutputError) as excinfo:
            write()
        assert "force=True" in str(excinfo.value)
        assert "--" not in str(excinfo.value)
        # the error crosses process boundaries whole
        assert str(pickle.loads(pickle.dumps(excinfo.value))) == str(excinfo.value)
    model = make_classifier(tmp_path / "m.onnx")
    assert_refused(capsys, errors.OUTPUT_ERROR, "already exists (use --force to overwrite)",
                   "evaluate", str(model), "--json", str(existing))


# --------------------------------------------------------------------------- issue 19, item 20
def test_records_hold_absolute_paths_and_the_terminal_shows_them_as_given(
        tmp_path, monkeypatch, capsys) -> None:
    """Run from another directory with relative paths: every record says where the files
    are (resolved), wherever it is read later; the terminal speaks the user's words."""
    from cifar_factory import make_images, write_png_folder

    (tmp_path / "w").mkdir()
    model = make_classifier(tmp_path / "w" / "m.onnx").resolve()
    images, labels = make_images(10)
    data = write_png_folder(tmp_path / "d", images, labels,
                            [f"{i:05d}" for i in range(10)]).resolve()
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "verify", "w/m.onnx", "w/m.onnx", "--data-dir", "d",
                 "--json", "v.json"]) == 0
    assert "Verified w/m.onnx against w/m.onnx" in capsys.readouterr().out
    verification = json.loads(Path("v.json").read_text())
    assert verification["structure"]["path"] == str(model)
    assert verification["reference"]["model_path"] == str(model)
    assert verification["data"]["source"]["path"] == str(data)
    assert main(["-q", "evaluate", "w/m.onnx", "--data-dir", "d", "--json", "e.json"]) == 0
    evaluation = json.loads(Path("e.json").read_text())
    assert evaluation["model"]["path"] == str(model)
    assert evaluation["data"]["source"]["path"] == str(data)
    capsys.readouterr()
    assert main(["-q", "data", "--data-dir", "d"]) == 0
    assert "source: image-folder at d\n" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["compare", "benchmark", "verify"])
def test_device_cuda_with_only_onnx_models_is_refused_not_ignored(command, tmp_path,
                                                                 capsys) -> None:
    """--device places PyTorch models; with none among the models it would be silently
    ignored (the run on the CPU), so it is refused, naming --provider, before the data."""
    from cli_runner import assert_refused

    a = make_classifier(tmp_path / "a.onnx")
    b = make_classifier(tmp_path / "b.onnx", seed=1)
    data = ["--data-dir", str(tmp_path / "nothing"), "--offline"]
    assert_refused(capsys, errors.USAGE, "--provider cuda", command, str(a), str(b),
                   "--device", "cuda", *data)


def test_conversion_accounts_hold_absolute_paths(tmp_path, monkeypatch, capsys) -> None:
    """run's record carries the conversion block (and convert --json prints it): the files
    are named resolved there, while the message names them as given."""
    pytest.importorskip("torch")
    (tmp_path / "w").mkdir()
    make_classifier(tmp_path / "w" / "m.onnx", seed=2)
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "convert", "w/m.onnx", "-o", "w/m.pt2", "--json", "-"]) == errors.OK
    captured = capsys.readouterr()
    account = json.loads(captured.out)
    assert account["output_path"] == str((tmp_path / "w" / "m.pt2").resolve())
    assert account["source_path"] == str((tmp_path / "w" / "m.onnx").resolve())
    assert "w/m.onnx → w/m.pt2" in captured.err
    assert {"target", "builder", "checks", "output_sha256", "source_sha256"} <= set(account)
    assert not {"opset", "onnx_sha256", "input_name"} & set(account)




def test_evaluate_refuses_its_existing_confusion_png_before_the_model_loads(
        tmp_path, capsys, monkeypatch) -> None:
    """The pre-run check plans the PNG under the runtime the run will use
    (confusion_onnxruntime.png), so an existing one is refused before any work, not after."""
    import resnet8_onnx.backends as backends
    from cli_runner import assert_refused

    model = make_classifier(tmp_path / "m.onnx")
    out = tmp_path / "out"
    out.mkdir()
    (out / "confusion_onnxruntime.png").write_bytes(b"kept")

    def no_load(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(backends, "load_backend", no_load)
    assert_refused(capsys, errors.OUTPUT_ERROR, "confusion_onnxruntime.png", "evaluate",
                   str(model), "--out", str(out), "--limit", "8")
    assert (out / "confusion_onnxruntime.png").read_bytes() == b"kept"
