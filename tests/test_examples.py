"""The README's and the docs' examples run as written, twice in a row, and write files that
make sense.

Each example lives in ``examples/`` (the README and docs/ show the same text, checked here) and runs
in a scratch project directory whose ``../shared`` is a small real one: symlinks to the
MLCommons models, the MLPerf Tiny indices and the 200 perf PNGs of ``../shared`` (so
``--data-dir ../shared`` finds that image folder, and each run takes seconds, not minutes).
Their outputs are checked against a bare ONNX Runtime loop over the PNGs, read with PIL.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PROJECT_ROOT, shared_path
from model_factory import hand_preprocess

EXAMPLES = PROJECT_ROOT / "examples"
README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
CI_RUN = PROJECT_ROOT / ".ci" / "run"
# Set-up steps of the README's first command that .ci/run performs in its own form (it
# installs the extras too): not examples, and run by CI.
SETUP = {"pip install -e ."}
# The line before a block that is shown but not meant to run: <!-- not-run: why -->
NOT_RUN = re.compile(r"<!--\s*not-run\b[^>]*-->\s*$")
SHELL = ("bash", "sh", "shell")


# --------------------------------------------------------------------------- docs = examples/
def _commands(script: str) -> list[str]:
    """The command lines of a shell text: continuations joined, comments and set-up dropped;
    a ``a && b`` line gives the parts that are examples (the tool or an example script)."""
    return [p for p in _parts(script) if p.startswith(("resnet8-onnx ", "python examples/"))]


def _parts(script: str) -> list[str]:
    """Every command of a shell text: continuations joined, comments dropped, ``&&`` split."""
    joined = re.sub(r"\\\n\s*", "", script)
    found = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "set -")):
            found += [" ".join(part.split()) for part in line.split(" && ")]
    return found


def _pages() -> list[Path]:
    """The README and every hand-written docs page (docs/reference/ is generated)."""
    return [README, *sorted(p for p in DOCS.rglob("*.md") if "reference" not in p.parts)]


def _fenced(page: Path) -> list[tuple[str, str, bool]]:
    """(language, text, marked not-run) of every fenced block of ``page``."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((match.group(1), match.group(2), bool(NOT_RUN.search(before))))
    return blocks


def _blocks(language: str | tuple[str, ...], *, marked: bool = False) -> list[str]:
    """Blocks in those languages across the README and the docs, unmarked ones by default."""
    languages = (language,) if isinstance(language, str) else language
    return [text for page in _pages() for lang, text, not_run in _fenced(page)
            if lang in languages and not_run == marked]


def _script_commands() -> set[str]:
    return {c for s in sorted(EXAMPLES.glob("*.sh")) for c in _commands(s.read_text())}


def test_every_docs_shell_block_runs_in_an_example_script_and_back() -> None:
    """A shell block in the README or the docs is either marked not-run or made of commands
    of examples/*.sh (which the tests below run) and set-up that .ci/run performs; and every
    command of the scripts is shown somewhere."""
    ci = CI_RUN.read_text(encoding="utf-8")
    scripts = _script_commands()
    shown: set[str] = set()
    blocks = _blocks(SHELL)
    assert len(blocks) >= 8, "too few command blocks found: did the fence style change?"
    for block in blocks:
        for part in _parts(block):
            assert part in scripts or part in ci or part in SETUP, (
                f"{part!r} runs in no test: put it in an examples/*.sh script or mark its "
                "block <!-- not-run: why -->")
            shown.add(part)
    assert scripts <= shown, f"example commands shown nowhere: {sorted(scripts - shown)}"


def test_no_command_block_hides_in_an_unknown_fence() -> None:
    """Blocks are shell (run), python (run), console/text (output, never run) or marked."""
    for page in _pages():
        for lang, text, not_run in _fenced(page):
            assert not_run or lang in (*SHELL, "python", "console", "text"), (page, text)


def _example_code(name: str) -> str:
    text = (EXAMPLES / name).read_text(encoding="utf-8")
    return text[text.index('"""', 3) + 3:].lstrip("\n")  # without its module docstring


def test_every_python_block_is_an_example_script_and_back() -> None:
    """Each unmarked python block is the whole code of an examples/*.py that runs below, and
    each of those scripts is shown (pytorch_style.py is a helper the shell examples run)."""
    scripts = {p.name: _example_code(p.name) for p in EXAMPLES.glob("*.py")
               if p.name != "pytorch_style.py"}
    blocks = _blocks("python")
    for block in blocks:
        assert block in scripts.values(), f"a python block runs in no test:\n{block}"
    for name, code in scripts.items():
        assert code in blocks, f"examples/{name} is shown nowhere"
    for block in _blocks("python", marked=True):  # fragments: lines of a script that runs
        lines = [line for line in block.splitlines() if line.strip()]
        assert any(all(line in code for line in lines) for code in scripts.values()), block


def test_the_readme_library_example_is_examples_quickstart_py() -> None:
    readme = README.read_text(encoding="utf-8")
    assert f"```python\n{_example_code('quickstart.py')}```" in readme
    code = [line for line in _example_code("quickstart.py").splitlines()
            if line and not line.startswith(("from ", "import "))]
    assert len(code) <= 10


# --------------------------------------------------------------------------- running them
def _perf_pngs() -> tuple[np.ndarray, np.ndarray]:
    """The perf PNGs and their labels, read independently of resnet8_onnx.data."""
    from PIL import Image

    root = shared_path("cifar-10", "perf-png")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(root.glob("*/*.png"), key=lambda p: p.stem)  # stems: test-set indices
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return images, np.array([classes.index(f.parent.name) for f in files])


def _predict(model: Path, x: np.ndarray) -> np.ndarray:
    """A bare ONNX Runtime loop: one image at a time, so any batch dimension works."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.array([int(np.argmax(session.run(None, {name: x[i:i + 1]})[0]))
                     for i in range(len(x))])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project root holding examples/, with a small real ../shared beside it."""
    return _project(tmp_path, monkeypatch)


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, training: bool = False) -> Path:
    """The scratch project; ``training``: ../shared holds train-2000-png too (calibration)."""
    shared = tmp_path / "shared"
    (shared / "cifar-10").mkdir(parents=True)
    links = [("models",), ("mlperf-tiny",), ("cifar-10", "perf-png")]
    links += [("cifar-10", "train-2000-png")] if training else []
    for parts in links:
        (shared.joinpath(*parts)).symlink_to(shared_path(*parts), target_is_directory=True)
    root = tmp_path / "project"
    shutil.copytree(EXAMPLES, root / "examples")
    tool = Path(sys.executable).parent  # the venv's python and resnet8-onnx
    monkeypatch.setenv("PATH", f"{tool}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PROJECT_ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return root


def _run_twice(project: Path, *command: str, times: int = 2) -> str:
    """Run ``command`` in ``project`` twice; both runs must succeed. The second's stdout."""
    for _ in range(times):
        proc = subprocess.run(command, cwd=project, capture_output=True, text=True,
                              timeout=900, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_library_example_runs_twice_and_its_report_is_right(project: Path) -> None:
    out = _run_twice(project, "python", "examples/library.py")
    images, labels = _perf_pngs()
    predicted = _predict(project / "model.onnx", images.astype(np.float32))
    record = json.loads((project / "perf-report" / "report.json").read_text())
    assert record["schema"] == "resnet8-onnx/evaluation"
    assert record["metrics"]["total"] == len(labels)
    assert record["metrics"]["correct"] == int((predicted == labels).sum())
    for name in ("report.md", "per_class.csv", "confusion_onnxruntime.png"):
        assert (project / "perf-report" / name).stat().st_size > 0, name
    # the PyTorch-style export takes ToTensor + Normalize NCHW input and predicts the same
    assert (_predict(project / "export.onnx", hand_preprocess(images)) == predicted).all()
    passed, max_abs_diff = out.strip().splitlines()[-1].split()
    assert passed == "True"
    assert 0 <= float(max_abs_diff) < 1e-4


@pytest.mark.slow
def test_run_example_runs_twice_and_writes_a_passing_report(project: Path) -> None:
    _run_twice(project, "bash", "examples/run.sh")
    images, labels = _perf_pngs()
    predicted = _predict(project / "resnet8-report" / "model.onnx", images.astype(np.float32))
    record = json.loads((project / "resnet8-report" / "report.json").read_text())
    assert record["verdict"]["passed"] is True
    assert record["verdict"]["onnx_correct"] == int((predicted == labels).sum())
    assert record["models"][1]["metrics"]["total"] == len(labels)


@pytest.mark.slow
def test_any_onnx_example_runs_twice_on_a_pytorch_style_export(project: Path) -> None:
    import onnx

    out = _run_twice(project, "bash", "examples/any_onnx.sh")
    images, labels = _perf_pngs()
    predicted = _predict(project / "r8.onnx", images.astype(np.float32))
    export = _predict(project / "cifar10_resnet.onnx", hand_preprocess(images))
    assert (export == predicted).all()
    correct = int((predicted == labels).sum())
    assert f"({correct}/{len(labels)})" in out  # evaluate with the spec options
    metadata = {p.key: p.value for p in onnx.load(str(project / "annotated.onnx")).metadata_props}
    spec = json.loads(metadata["preprocessing_spec"])
    assert (spec["layout"], spec["mean"]) == ("nchw", [0.4914, 0.4822, 0.4465])


@pytest.mark.slow
def test_pytorch_example_runs_twice_and_back_onnx_predicts_alike(project: Path) -> None:
    out = _run_twice(project, "bash", "examples/pytorch.sh")
    images, labels = _perf_pngs()
    x = images.astype(np.float32)
    predicted = _predict(project / "r8.onnx", x)
    assert (_predict(project / "back.onnx", x) == predicted).all()
    assert (project / "r8.pt2").stat().st_size > 0
    assert f"({int((predicted == labels).sum())}/{len(labels)})" in out  # evaluate r8.pt2


@pytest.mark.slow
def test_quickstart_example_runs_twice_and_prints_the_true_accuracy(project: Path) -> None:
    out = _run_twice(project, "python", "examples/quickstart.py")
    images, labels = _perf_pngs()
    predicted = _predict(project / "quick.onnx", images.astype(np.float32))
    accuracy, passed = out.strip().splitlines()[-2:]
    assert float(accuracy) == pytest.approx(float((predicted == labels).mean()))
    assert passed == "True"


@pytest.mark.slow
def test_workflow_example_runs_and_its_files_agree(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """convert → verify → evaluate → quantize → compare, as docs/workflow.md shows it; the
    test images are the 200 perf PNGs (the first image folder by name), calibration reads
    train-2000-png. Run once: quantize's measured grid is most of a minute, and the other
    examples already prove that --force makes a second run work."""
    import onnx

    project = _project(tmp_path, monkeypatch, training=True)
    _run_twice(project, "bash", "examples/workflow.sh", times=1)
    images, labels = _perf_pngs()
    x = images.astype(np.float32)
    predicted = _predict(project / "r8.onnx", x)
    int8 = _predict(project / "r8_int8.onnx", x)
    evaluation = json.loads((project / "r8-report" / "report.json").read_text())
    assert evaluation["metrics"]["correct"] == int((predicted == labels).sum())
    record = json.loads((project / "int8-report" / "quantize.json").read_text())
    assert record["schema"] == "resnet8-onnx/quantization-record"
    assert record["calibration"]["test_images"] is False
    assert {n.op_type for n in onnx.load(str(project / "r8_int8.onnx")).graph.node} & {
        "QuantizeLinear", "QLinearConv"}
    compared = json.loads((project / "compare-report" / "compare.json").read_text())
    assert [m["metrics"]["correct"] for m in compared["models"][1:]] == [
        int((predicted == labels).sum()), int((int8 == labels).sum())]
    keras = np.array(compared["models"][0]["metrics"]["correct"])  # the reference's count
    assert keras == int((predicted == labels).sum())  # verify passed: Keras predicts as ONNX
    assert compared["models"][2]["versus_reference"]["agreement"] == int((int8 == predicted).sum())
