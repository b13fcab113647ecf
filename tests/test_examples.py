"""The README's examples run as written, twice in a row, and write files that make sense.

Each example lives in ``examples/`` (the README shows the same text, checked here) and runs
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


# --------------------------------------------------------------------------- README = examples/
def _commands(script: str) -> list[str]:
    """The command lines of a shell text: continuations joined, comments and set-up dropped;
    a ``a && b`` line gives the parts that are examples (the tool or an example script)."""
    joined = re.sub(r"\\\n\s*", "", script)
    found = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        for part in line.split(" && "):
            if part.startswith(("resnet8-onnx ", "python examples/")):
                found.append(" ".join(part.split()))
    return found


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(encoding="utf-8"),
                      flags=re.M | re.S)


def test_every_readme_shell_example_is_in_an_example_script_and_back() -> None:
    readme = [c for block in _blocks("bash") for c in _commands(block)]
    scripts = [c for s in sorted(EXAMPLES.glob("*.sh")) for c in _commands(s.read_text())]
    assert readme, "no examples found in the README"
    assert sorted(readme) == sorted(scripts)


def test_the_readme_library_example_is_examples_library_py() -> None:
    text = (EXAMPLES / "library.py").read_text(encoding="utf-8")
    code = text[text.index('"""', 3) + 3:].lstrip("\n")  # without its module docstring
    assert code in _blocks("python")


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
    shared = tmp_path / "shared"
    (shared / "cifar-10").mkdir(parents=True)
    for parts in (("models",), ("mlperf-tiny",), ("cifar-10", "perf-png")):
        (shared.joinpath(*parts)).symlink_to(shared_path(*parts), target_is_directory=True)
    root = tmp_path / "project"
    shutil.copytree(EXAMPLES, root / "examples")
    tool = Path(sys.executable).parent  # the venv's python and resnet8-onnx
    monkeypatch.setenv("PATH", f"{tool}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PROJECT_ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return root


def _run_twice(project: Path, *command: str) -> str:
    """Run ``command`` in ``project`` twice; both runs must succeed. The second's stdout."""
    for _ in range(2):
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
