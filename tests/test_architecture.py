"""The package's import graph: no cycle between top-level units, records/ a leaf, machine.py
plumbing, and the renderer reading only what a record says.

The graph is read from the source (every internal import, lazy and TYPE_CHECKING ones
included), so a function-level import cannot hide a cycle from this test. A unit is a root
module (``bench.py``) or a sub-package (``report/``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "resnet8_onnx"
#: Units records/ may import: plumbing that knows nothing of results.
RECORDS_MAY_IMPORT = {"support", "machine"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_in(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """Internal modules the module ``name`` (its ``source``) imports anywhere in its file."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for candidate in [target, *(f"{target}.{a.name}" for a in node.names)]:
                if candidate in known:
                    found.add(candidate)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
    return found


def _unit(module: str) -> str:
    """The top-level unit: ``resnet8_onnx.report.text`` → ``report`` (the root → "")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def unit_graph() -> dict[str, set[str]]:
    """unit → the other units it imports (the package root, ``__version__``, left out)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        for target in imports_in(source, name, path.name == "__init__.py", set(modules)):
            a, b = _unit(name), _unit(target)
            if a and b and a != b:
                graph.setdefault(a, set()).add(b)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return unit_graph()


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "x": {"a", "c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c", "d"}, "d": {"b"}}) == ["b", "d", "b"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_import_reader_sees_lazy_and_type_checking_imports() -> None:
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d", "pkg.e"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import d\n"  # pkg.sub and its module d
        "from ..a import x\n"
        "import pkg.e\n"
        "if TYPE_CHECKING:\n    from ..b import Thing\n"
        "def f():\n    from ..c import g\n    return g\n"
    )
    assert imports_in(source, "pkg.sub.m", False, known) == {
        "pkg.sub", "pkg.sub.d", "pkg.a", "pkg.e", "pkg.b", "pkg.c"}
    # in a package's __init__.py, "." is the package itself
    assert imports_in("from . import d\n", "pkg.sub", True, known) == {"pkg.sub", "pkg.sub.d"}
    assert imports_in("from . import c\n", "pkg.sub.m", False, known) == {"pkg.sub"}


def test_no_import_cycle_between_top_level_units(graph) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_records_is_a_leaf(graph) -> None:
    outside = graph.get("records", set()) - RECORDS_MAY_IMPORT
    assert not outside, f"records/ imports {sorted(outside)}"


@pytest.mark.parametrize("unit", ["support", "machine"])
def test_plumbing_imports_nothing_that_measures(graph, unit: str) -> None:
    assert (PACKAGE / unit).is_dir() or (PACKAGE / f"{unit}.py").is_file()
    assert graph.get(unit, set()) <= {"support"}


def test_the_package_root_shows_the_layers() -> None:
    """At most ten modules at the root; every other lives in a package named for its layer."""
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 10, root


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_over_600_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 600


def test_the_renderer_reads_records_not_runtimes(graph) -> None:
    """report/ renders a saved record from what it says: no runtime, no evaluation."""
    assert not graph["report"] & {"backends", "evaluate", "bench", "compare", "quantize"}
    for command in ("bench", "compare"):
        assert "report" not in graph[command], f"{command} imports the renderer"


def test_the_backends_import_nothing_of_the_converter(graph) -> None:
    assert not graph["backends"] & {"convert", "verify", "pipeline", "cli"}


def test_reading_a_record_loads_only_records_and_plumbing() -> None:
    """Building and saving a quantisation record loads records/, errors and machine only."""
    code = ("import sys\n"
            "from resnet8_onnx.records import QuantizationRecord, record_from_dict\n"
            "record_from_dict(QuantizationRecord().to_dict())\n"
            "print(' '.join(m for m in sys.modules if m.startswith('resnet8_onnx')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    units = {_unit(m) for m in out} - {""}
    assert units <= {"records", "support", "machine"}, sorted(out)


#: Calls that make a function an argument-parser builder (long by nature: one line per option).
PARSER_CALLS = {"add_argument", "add_parser", "add_argument_group",
                "add_mutually_exclusive_group"}


def long_functions(source: str, limit: int = 80) -> list[tuple[str, int]]:
    """(name, lines) of every function in ``source``, nested ones included, longer than
    ``limit`` lines (decorators and docstring counted), argument-parser builders aside."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        length = (node.end_lineno or node.lineno) - first + 1
        builds_parser = any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                            and c.func.attr in PARSER_CALLS for c in ast.walk(node))
        if length > limit and not builds_parser:
            found.append((node.name, length))
    return found


def _lines(n: int, indent: int) -> str:
    return "".join(f"{' ' * indent}x{i} = {i}\n" for i in range(n))


def test_the_length_reader_counts_nested_functions_and_spares_parser_builders() -> None:
    assert long_functions(f"def f():\n{_lines(80, 4)}") == [("f", 81)]
    assert long_functions(f"def f():\n{_lines(79, 4)}") == []
    assert long_functions(f"@decorator\ndef f():\n{_lines(79, 4)}") == [("f", 81)]
    nested = f"class C:\n  def outer(self):\n    def inner():\n{_lines(80, 6)}"
    assert sorted(long_functions(nested)) == [("inner", 81), ("outer", 82)]
    parser = "def build(p):\n" + "".join(f"    p.add_argument('--o{i}')\n" for i in range(90))
    assert long_functions(parser) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_function_over_80_lines(path: Path) -> None:
    assert long_functions(path.read_text(encoding="utf-8")) == []


# --------------------------------------------------------------------------- one shape
#: The only ``X.from_dict`` calls outside records/, each reading JSON-shaped data it did not
#: build: (file, class) → what it reads.
READS_JSON = {
    ("preprocess.py", "Preprocessing"): "the spec stored in a model's metadata",
    ("backends/pytorch/state_dict.py", "ResNet8Config"): "the config stored beside weights",
    ("verify.py", "Structure"): "the structure report a runner's `structure()` returns",
}


def from_dict_calls(source: str) -> list[tuple[int, str]]:
    """(line, class) of each ``Class.from_dict(...)`` call in ``source``."""
    return [(node.lineno, ast.unparse(node.func.value)) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "from_dict"]


def test_the_from_dict_reader_finds_calls() -> None:
    source = "x = Speed.from_dict({'a': 1})\ny = f(a=records.P.from_dict(d))\n"
    assert from_dict_calls(source) == [(1, "Speed"), (2, "records.P")]
    assert from_dict_calls("def from_dict(d):\n    return d\n") == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_producers_build_records_directly(path: Path) -> None:
    """One shape per result: producers construct record parts by keyword; ``from_dict`` is
    for JSON read back (records/ itself, and the reads listed in READS_JSON)."""
    relative = path.relative_to(PACKAGE).as_posix()
    if relative.startswith("records/"):
        return
    bridged = [(line, kind) for line, kind in from_dict_calls(path.read_text(encoding="utf-8"))
               if (relative, kind) not in READS_JSON]
    assert not bridged, f"{relative}: a record part bridged through from_dict at {bridged}"


# --------------------------------------------------------------------------- visible seams
def private_imports(source: str) -> list[tuple[int, str]]:
    """(line, name) of each ``_private`` name imported from this package in ``source``."""
    return [(node.lineno, alias.name) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom)
            and (node.level or (node.module or "").startswith("resnet8_onnx"))
            for alias in node.names
            if alias.name.startswith("_") and not alias.name.startswith("__")]


def test_the_private_import_reader_finds_them() -> None:
    source = ("from resnet8_onnx.report.text import _fixed, DASH\n"
              "def f():\n    from .sections import _g\n"
              "from numpy import _core\nfrom resnet8_onnx import __version__\n")
    assert private_imports(source) == [(1, "_fixed"), (3, "_g")]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    """What one module uses of another is its public surface: a ``_name`` imported across
    files is a seam nobody can see from the definition."""
    found = private_imports(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(PACKAGE)} imports private names {found}"
