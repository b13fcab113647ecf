"""The README and the docs site: short README, set-up commands kept in one place and equal
to what CI runs, generated reference pages current, every page in the site's navigation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from resnet8_onnx.cli import reference

PROJECT = Path(__file__).resolve().parents[1]
README = PROJECT / "README.md"
DOCS = PROJECT / "docs"
CI_RUN = PROJECT / ".ci" / "run"
MAIN_COMMAND = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && "
                "resnet8-onnx run --data-dir ../shared --out resnet8-report --force")
CI_MARKER = "# The README's test set-up command, verbatim:"


def _bash_lines(text: str) -> list[str]:
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    return [line for block in blocks for line in block.splitlines()]


def _readme_test_command() -> str:
    (line,) = [line for line in _bash_lines(README.read_text(encoding="utf-8"))
               if line.startswith("pip install -e \".[test")]
    return line


def test_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8")) <= 8_000


def test_readme_gives_both_set_up_commands_with_their_times() -> None:
    text = README.read_text(encoding="utf-8")
    assert MAIN_COMMAND in _bash_lines(text)
    assert _readme_test_command().endswith(
        " && ruff check src tests benchmarks && mypy src && pytest")
    setup = text[text.index("[start:setup]"):text.index("[end:setup]")]
    assert "40 s" in setup
    assert "6–8 minutes" in setup


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """The one copy of the test command is the README's (the docs include it from there):
    .ci/run's line after its marker must be the same text."""
    lines = CI_RUN.read_text(encoding="utf-8").splitlines()
    assert lines[lines.index(CI_MARKER) + 1] == _readme_test_command()


def test_docs_take_the_set_up_commands_from_the_readme() -> None:
    """No second copy to drift: the docs pages include the README's set-up section."""
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        assert _readme_test_command() not in text, page
        assert MAIN_COMMAND not in text, page
    assert '--8<-- "README.md:setup"' in (DOCS / "getting-started.md").read_text()


def test_ci_builds_the_docs_strictly_after_the_tests() -> None:
    text = CI_RUN.read_text(encoding="utf-8")
    assert "mkdocs build --strict" in text
    assert text.index("mkdocs build --strict") > text.index(_readme_test_command())
    assert 'pip install -e ".[docs]"' in text


@pytest.mark.parametrize("name", reference.PAGES)
def test_generated_reference_pages_are_current(name: str) -> None:
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == reference.render()[name], (
        f"docs/{name} is stale: regenerate it with `{reference.REGENERATE}`")


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    """mkdocs build --strict checks this in CI; here without mkdocs installed."""
    nav = re.findall(r":\s*(\S+\.md)\s*$", (PROJECT / "mkdocs.yml").read_text(), flags=re.M)
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")
             if not p.name.startswith("notes-")}  # engineers' notes: excluded in mkdocs.yml
    assert set(nav) == pages


def test_readme_links_point_at_pages_that_exist() -> None:
    """mkdocs checks the links inside docs/; the README is outside it, so check its own."""
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    assert links
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert (PROJECT / link).is_file(), link
