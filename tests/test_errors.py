"""The one helper that quotes someone else's message in a one-line error."""

from __future__ import annotations

from resnet8_onnx.errors import one_line


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
