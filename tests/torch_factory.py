"""What the PyTorch tests share: a tiny exported ResNet8, archive rewriting for hostile
variants, a pickle payload that leaves a marker file if anything ever runs it, and a bare
ONNX Runtime run to check exports against."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from resnet8_onnx.cli import main


def ort_output(model: Any, x: Any) -> Any:
    """Outputs of an in-memory ONNX model, straight from an ONNX Runtime session."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


class Marker:
    """Pickles to a call that creates a marker file: what a hostile model file would do."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def make_tiny_pt2(out: Path) -> Path:
    """A ResNet8 with random weights, exported as we export the real one (no shared data)."""
    import torch

    from resnet8_onnx.backends.pytorch.resnet8 import ResNet8
    from resnet8_onnx.backends.pytorch.safe_io import save_exported_program
    from resnet8_onnx.convert.to_torch import export_program

    torch.manual_seed(0)
    module = ResNet8().eval()
    save_exported_program(export_program(module, (32, 32, 3)), out,
                          {"output_kind": "probabilities", "input_shape": ["N", 32, 32, 3],
                           "num_classes": 10, "builder": "native"})
    return out


def rewrite_pt2(source: Path, target: Path, edit) -> Path:
    """Copy a .pt2 archive, letting ``edit(relative name, bytes) -> bytes | None`` change it."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            root, relative = info.filename.split("/", 1)
            data = edit(relative, src.read(info))
            if data is not None:
                dst.writestr(info.filename, data)
        extra = edit("<new>", b"")
        if extra:
            name, data = extra
            dst.writestr(f"{root}/{name}", data)
    return target


def evaluate_cli(path: Path, capsys) -> tuple[int, str]:
    """``resnet8-onnx -q evaluate PATH`` with no data: (exit code, stderr)."""
    code = main(["-q", "evaluate", str(path), "--data-dir", "/nonexistent", "--offline"])
    return code, capsys.readouterr().err
