"""errors: the exit codes (the docs' exit-code page, --help and this module agree) and the
helper that quotes someone else's message in a one-line error."""

from __future__ import annotations

import re
from pathlib import Path

from resnet8_onnx.support import errors
from resnet8_onnx.support.errors import one_line

PROJECT = Path(__file__).resolve().parents[1]


def test_first_line_only_whitespace_collapsed() -> None:
    exc = ValueError("  bad   node\tConv_3 \n\nstack:\n  frame 1\n")
    assert one_line(exc) == "bad node Conv_3"


def test_empty_message_gives_the_type_name() -> None:
    assert one_line(KeyError()) == "KeyError"
    assert one_line(RuntimeError("   \n ")) == "RuntimeError"
    assert one_line("") == ""  # plain text has no type to fall back on


def test_limit_cuts_with_an_ellipsis_and_none_keeps_the_line() -> None:
    text = "x" * 300
    cut = one_line(RuntimeError(text))
    assert len(cut) == 200
    assert cut == text[:199] + "…"
    assert one_line(RuntimeError(text), limit=None) == text
    assert one_line(["a", "b"], 5) == "['a'…"


def test_docs_exit_code_table_matches_errors_module() -> None:
    """The docs' table (docs/exit-codes.md, where the README's moved), the --help epilog and
    errors.py list the same codes."""
    page = (PROJECT / "docs" / "exit-codes.md").read_text()
    table = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|$", page, re.MULTILINE))
    constants = {value for name, value in vars(errors).items()
                 if name.isupper() and isinstance(value, int)}
    assert {int(code) for code in table} == constants
    from resnet8_onnx.cli import EPILOG

    epilog_codes = {int(c) for c in re.findall(r"(\d+) [a-z]", EPILOG.split("data:")[0])}
    assert epilog_codes == constants
    for cls in (errors.UsageError, errors.InputNotFoundError, errors.InvalidInputError,
                errors.UnsafeInputError, errors.VerificationFailedError,
                errors.AccuracyBelowThresholdError, errors.OutputError, errors.DownloadError):
        assert str(cls.exit_code) in table
