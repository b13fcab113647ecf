"""cli.parser: every command, its options, its help and examples; usage errors in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cli_runner import assert_one_line_error, cli
from model_factory import make_classifier
from resnet8_onnx.cli import build_parser, main
from resnet8_onnx.support import errors

COMMANDS = ("data", "convert", "verify", "evaluate", "run", "compare", "benchmark", "annotate",
            "quantize", "tune")


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


def test_every_command_runs_its_own_function_with_the_documented_defaults() -> None:
    from resnet8_onnx.cli import commands
    from resnet8_onnx.convert.keras_to_onnx import DEFAULT_OPSET
    from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE

    parser = build_parser()
    argv = {"data": [], "convert": ["m.h5", "-o", "m.onnx"], "verify": ["a.h5", "b.onnx"],
            "evaluate": ["m.onnx"], "run": [], "compare": ["a.onnx", "b.onnx"],
            "benchmark": ["m.onnx"], "annotate": ["m.onnx", "-o", "o.onnx"],
            "quantize": ["m.onnx", "--calibration-data", "cal"],
            "tune": ["m.onnx", "-o", "t.onnx", "--calibration-data", "cal"]}
    assert set(argv) == set(COMMANDS)
    for command, rest in argv.items():
        args = parser.parse_args([command, *rest])
        assert args.func is getattr(commands, f"cmd_{command}")
        assert args.quiet is False
        assert args.debug is False
    evaluate = parser.parse_args(["evaluate", "m.onnx"])
    assert (evaluate.batch_size, evaluate.split, evaluate.subset, evaluate.limit) == (
        DEFAULT_BATCH_SIZE, None, "full", None)  # split None: test, or a split folder's default
    run = parser.parse_args(["run"])
    assert (run.out, run.opset, run.min_accuracy) == ("resnet8-report", DEFAULT_OPSET, 0.85)
    tune = parser.parse_args(["tune", "m.onnx", "-o", "t.onnx", "--calibration-data", "c"])
    assert (tune.tolerance, tune.data_dir) == (0.005, None)  # 0.5 points; no test set
    assert parser.parse_args(["convert", "m.h5", "-o", "x", "--input-shape", "any",
                              "--num-classes", "any"]).input_shape is None


@pytest.mark.parametrize("argv", [["nonsense"], [], ["evaluate"], ["run", "--split", "valid"],
                                  ["benchmark", "m.onnx", "--optimization", "max"]])
def test_malformed_command_lines_are_one_usage_line(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == errors.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("resnet8-onnx: error: ")
    assert err[0].endswith(" --help)")



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
    others = ("resnet8_onnx.bench", "resnet8_onnx.quantize", "resnet8_onnx.convert.keras_to_onnx",
              "resnet8_onnx.backends.keras.files", "resnet8_onnx.verify", "http.client",
              "urllib.request", "openvino", "nncf", "resnet8_onnx.quantize.tune")
    code = (f"import sys\nfrom resnet8_onnx.cli import main\n"
            f"assert main(['-q', 'evaluate', {str(model)!r}, '--data-dir', {str(data)!r}, "
            f"'--json', {str(tmp_path / 'e.json')!r}]) == 0\n"
            f"print('imported:', *(m for m in {others!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env={**os.environ, "RESNET8_ONNX_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "imported:"
    assert json.loads((tmp_path / "e.json").read_text())["metrics"]["total"] == 10




# --------------------------------------------------------------------------- issue 19, item 14
def _all_parsers(parser):
    """The top-level parser and every subcommand's, options added (the eager parser)."""
    import argparse

    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.values())
    return found


def test_benchmark_help_says_it_compares_with_onnx_runtimes_matmul(capsys,
                                                                    monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "sgemm" not in out
    assert "roofline" not in out
    assert "ONNX Runtime's own 1024×1024 float32 MatMul" in out


def test_no_parser_accepts_abbreviated_options() -> None:
    parsers = _all_parsers(build_parser())
    assert len(parsers) == len(COMMANDS) + 1
    assert all(p.allow_abbrev is False for p in parsers), [
        p.prog for p in parsers if p.allow_abbrev]


@pytest.mark.parametrize("argv", [["convert", "m.h5", "--out", "y.onnx"],
                                  ["evaluate", "m.onnx", "--batch", "7"],
                                  ["benchmark", "m.onnx", "--save-opt", "o.onnx"],
                                  ["--qu", "data"]])
def test_an_abbreviated_option_is_a_usage_error_naming_it(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == errors.USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "unrecognized arguments" in err[0], err
    assert next(a for a in argv if a.startswith("--")) in err[0]


@pytest.mark.parametrize(("argv", "command"), [
    (["nonsense"], None), (["evaluate"], "evaluate"), (["convert", "m.h5", "--bogus"], "convert"),
    (["run", "--split", "valid"], "run"), (["data", "--limit", "0"], "data"),
    (["quantize", "m.onnx"], "quantize")])
def test_every_usage_error_has_the_one_prefix_and_names_the_commands_help(argv, command,
                                                                          capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == errors.USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("resnet8-onnx: error: "), line
    help_command = f"resnet8-onnx {command} --help" if command else "resnet8-onnx --help"
    assert line.endswith(f"(see {help_command})"), line


def test_model_help_lists_exactly_the_suffixes_the_runtimes_load() -> None:
    import re

    from resnet8_onnx.backends import LOADERS

    loadable = {s for loader in LOADERS.values() for s in loader.suffixes}
    for command, dest in (("evaluate", "model"), ("compare", "models"),
                          ("benchmark", "models")):
        parser = next(p for p in _all_parsers(build_parser()) if p.prog.endswith(command))
        (model,) = [a for a in parser._actions if a.dest == dest]
        assert set(re.findall(r"\.[a-z0-9]+", model.help)) == loadable, (command, model.help)


# --------------------------------------------------------------------------- issue 19, item 20
def test_convert_without_o_writes_into_the_current_directory(tmp_path, monkeypatch,
                                                             capsys) -> None:
    """Not beside the input (a shared, maybe read-only folder): ./STEM.onnx, as help says."""
    import resnet8_onnx.convert.keras_to_onnx as convert_module

    source = tmp_path / "shared" / "models"
    source.mkdir(parents=True)
    (source / "net.v2.h5").write_bytes(b"not read: convert is replaced")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    seen = []

    def fake_convert(model, output, **_kwargs):
        seen.append(output)
        raise errors.InvalidInputError("stop here")

    monkeypatch.setattr(convert_module, "convert", fake_convert)
    assert main(["-q", "convert", str(source / "net.v2.h5")]) == errors.INVALID_INPUT
    assert [os.path.abspath(p) for p in seen] == [str(work / "net.v2.onnx")]
    (output,) = [a for a in next(
        p for p in _all_parsers(build_parser()) if p.prog.endswith(" convert"))._actions
        if a.dest == "output"]
    assert "current directory" in output.help
