"""progress: bars and spinners only on a terminal's stderr, and consoles that let a closed pipe
end the command quietly."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from resnet8_onnx.support import progress


@pytest.fixture(autouse=True)
def _auto_detection():
    """Every test starts and ends with progress decided by whether stderr is a terminal."""
    progress.set_enabled(None)
    yield
    progress.set_enabled(None)


def test_enabled_follows_the_terminal_unless_forced(monkeypatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.is_enabled() is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.is_enabled() is True
    progress.set_enabled(False)  # --quiet on a terminal
    assert progress.is_enabled() is False
    progress.set_enabled(True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert progress.is_enabled() is True


def test_disabled_progress_writes_nothing_and_still_runs_the_work(capfd) -> None:
    progress.set_enabled(False)
    advanced = []
    with progress.track("Working", 3) as advance:
        for _ in range(3):
            advanced.append(advance(1))
    with progress.status("Importing"):
        advanced.append("inside")
    assert advanced == [None, None, None, "inside"]
    assert capfd.readouterr() == ("", "")


def test_a_pipe_gets_plain_text_without_escape_codes() -> None:
    """Piped or redirected output (``… > report.txt``) holds the words, no colour codes."""
    code = textwrap.dedent("""
        import sys
        from resnet8_onnx.support import progress
        progress.console().print("[bold red]accuracy[/bold red] 87.19% of 10,000")
        progress.console(stderr=True).print("[green]note[/green] on stderr")
        with progress.track("Evaluating", 2) as advance:  # stderr is a pipe: no bar
            advance(2)
        with progress.status("Loading"):
            pass
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color"})
    assert proc.stdout == "accuracy 87.19% of 10,000\n"
    assert proc.stderr == "note on stderr\n"


def test_a_closed_pipe_silences_a_console_and_lets_the_work_go_on() -> None:
    """rich's own answer to a closed stdout is SystemExit(1), ours a BrokenPipeError used to
    be: either ended the command before the files it was asked for. Now the console goes
    quiet, stdout is marked closed and the code after the printing runs (exit 42 here)."""
    code = textwrap.dedent("""
        import sys
        from resnet8_onnx.support import progress
        console = progress.console()
        for _ in range(10_000):
            console.print("x" * 200)
        progress.write_stdout("{}\\n" * 10_000)
        progress.flush_stdout()
        sys.exit(42 if progress.stdout_closed() else 0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 42, stderr.decode()
    assert stderr.decode() == ""


def test_output_to_a_file_or_pipe_is_wide_enough_for_the_tables(monkeypatch) -> None:
    """Not a terminal: PIPE_WIDTH columns (rich's 80 cut a three-model table to "8,…");
    COLUMNS, when set, still wins."""
    from resnet8_onnx.support import progress

    monkeypatch.delenv("COLUMNS", raising=False)
    assert progress.console().width == progress.PIPE_WIDTH  # pytest's stdout: no terminal
    monkeypatch.setenv("COLUMNS", "90")
    assert progress.console().width == 90
