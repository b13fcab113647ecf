"""Follow-ups to the merged CLI work: quantize's default output, -q's help, run's int8 gate,
a corrupt model refused before any data search, nothing stray left in the current directory."""

from __future__ import annotations

import os
from pathlib import Path

from resnet8_onnx import errors
from resnet8_onnx.cli import build_parser, main
from test_cli_parser import _all_parsers

README = Path(__file__).resolve().parents[1] / "README.md"


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

    monkeypatch.setattr(commands, "_check_outputs", fake_check_outputs)
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
    row = next(line for line in README.read_text().splitlines()
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
    readme = " ".join(README.read_text().split())
    assert "(`-q` silences both, leaving only errors and warnings)" in readme
