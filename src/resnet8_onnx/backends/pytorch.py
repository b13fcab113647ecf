"""PyTorch backend: a ``.pt2`` ExportedProgram, or a native ResNet8 state dict.

Files are loaded through :mod:`resnet8_onnx.torch_io`, which pre-scans them so nothing in a
file runs. Inference is set up for parity first and speed second:

* TF32 is **off** for CUDA matmuls and cuDNN convolutions (PyTorch's GPU default rounds
  convolution inputs to 10-bit mantissas, which flipped a prediction on the test set);
* weights are channels-last and the NHWC input becomes a channels-last NCHW view inside the
  model, so no layout copy is made on the way in;
* every call runs under ``torch.inference_mode``.

The module is named ``pytorch`` so that it never shadows the ``torch`` package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import cpuload
from ..errors import InvalidInputError, UsageError
from ..fsutil import file_digest
from ..torch_convert import _program_input_shape, import_torch, load_torch_model
from .base import MACS, STRUCTURE, BackendInfo, InputSpec, RawPixelRunner

DEVICES = ("cpu", "cuda")


def resolve_device(device: str | None) -> str:
    """``cpu`` (default) or ``cuda``; ``cuda`` without a usable GPU is a usage error (exit 2)."""
    name = (device or "cpu").lower()
    if name not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if name == "cuda":
        torch = import_torch()
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: PyTorch sees no CUDA GPU on this machine "
                             "(torch.cuda.is_available() is False)")
    return name


def configure_precision(torch: Any) -> None:
    """Full float32 everywhere: TF32 off for matmuls and cuDNN (see module docstring)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def cap_default_threads(torch: Any) -> None:
    """PyTorch's default intra-op threads, never more than the cores this process may use.

    torch sizes its pool by the host's physical cores, which in a container or under
    ``taskset`` can exceed the affinity mask: the extra threads then compete for the
    allowed cores, and each intra-op barrier waits for a thread that is not running.
    """
    allowed = len(cpuload.allowed_cpus())
    if torch.get_num_threads() > allowed:
        torch.set_num_threads(allowed)


def load(path: str | os.PathLike[str], *, threads: int | None = None,
         device: str | None = None) -> TorchBackend:
    """The loader: a PyTorch file (pre-scanned, nothing in it runs) → a runner on ``device``."""
    torch = import_torch()
    chosen = resolve_device(device)
    configure_precision(torch)
    if threads is not None:
        if threads < 1:
            raise UsageError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    else:
        cap_default_threads(torch)
    module, program, metadata = load_torch_model(Path(path))
    return TorchBackend(module, program, metadata, path, threads=threads, device=chosen)


class TorchBackend(RawPixelRunner):
    """The runner of a loaded PyTorch model on the CPU (default) or a CUDA GPU."""

    abilities = frozenset({MACS, STRUCTURE})
    macs_source = "counted by torch's FLOP counter (convolutions, matmuls)"

    def __init__(self, module: Any, program: Any, metadata: dict[str, Any],
                 path: str | os.PathLike[str], *, threads: int | None = None,
                 device: str = "cpu") -> None:
        self.path = Path(path)
        torch = import_torch()
        self._torch = torch
        self.device = device
        self._threads = threads
        self.program = program
        self.metadata = metadata
        module = module.to(self.device)
        self.module = module.to(memory_format=torch.channels_last)
        shape = [None if not isinstance(d, int) else int(d)
                 for d in (metadata.get("input_shape") or [])]
        if len(shape) != 4:
            shape = [None, *self._program_image_shape()]
        self._image_shape = tuple(int(d) for d in shape[1:])  # type: ignore[arg-type]
        num_classes = metadata.get("num_classes")
        if not isinstance(num_classes, int):
            num_classes = int(self.predict(np.zeros((1, *self._image_shape), np.float32))
                              .shape[1])
        kind = metadata.get("output_kind")
        self.output_kind = kind if kind in ("probabilities", "logits") else None
        self.input_spec = InputSpec(shape=(None, *self._image_shape),
                                    pixel_shape=self._image_shape)
        self.info = BackendInfo(
            name="torch",
            model_path=str(self.path),
            model_sha256=file_digest(self.path),
            runtime_version=str(torch.__version__),
            input_shape=(None, *self._image_shape),
            num_classes=num_classes,
            extra={
                "device": self.device + (f" ({torch.cuda.get_device_name()})"
                                         if self.device == "cuda" else ""),
                "compute_dtype": "float32",
                "tf32": False,
                "memory_format": "channels_last",
                "inference_mode": True,
                "format": "pt2" if program is not None else "state_dict",
                "builder": metadata.get("builder", "unknown"),
                "threads": torch.get_num_threads(),
                **({"output_kind": self.output_kind} if self.output_kind else {}),
            },
        )

    def _program_image_shape(self) -> tuple[int, ...]:
        if self.program is None:
            return tuple(self.module.config.input_shape)
        return _program_input_shape(self.program)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs ``(N, num_classes)`` for a float32 ``(N, H, W, C)`` batch."""
        torch = self._torch
        x = np.asarray(batch)
        if x.ndim != 4 or (self._image_shape is not None
                           and tuple(x.shape[1:]) != self._image_shape):
            raise InvalidInputError(f"{self.path}: batch has shape {x.shape}, expected (N, "
                                    f"{', '.join(map(str, self._image_shape or ()))})")
        if self._threads and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)  # another backend may have changed it
        elif not self._threads:
            cap_default_threads(torch)
        tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.device != "cpu":
            tensor = tensor.to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.module(tensor)
        return out.float().cpu().numpy()

    def macs(self) -> int:
        """Multiply-accumulates per image of convolutions and matrix products (FLOPs / 2)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.predict(np.zeros((1, *self._image_shape), np.float32))
        return int(counter.get_total_flops() // 2)

    def structure(self) -> dict[str, Any]:
        """What the file is, for ``verify``: the same keys as an ONNX structure report."""
        from collections import Counter

        if self.program is not None:
            graph = self.program.graph
            ops = Counter(str(n.target).split(".")[-2] if str(n.target).count(".") > 1
                          else str(n.target) for n in graph.nodes if n.op == "call_function")
            nodes = sum(ops.values())
            params = sum(int(t.numel()) for t in self.program.state_dict.values()
                         if t.dtype.is_floating_point)
            fmt = "torch.export ExportedProgram (.pt2)"
        else:
            ops = Counter(type(m).__name__ for m in self.module.modules()
                          if not list(m.children()))
            nodes = sum(ops.values())
            params = sum(int(t.numel()) for t in self.module.state_dict().values()
                         if t.dtype.is_floating_point)
            fmt = "native ResNet8 state dict"
        shape_in = ["N", *self._image_shape]
        return {
            "kind": "PyTorch",
            "path": str(self.path),
            "sha256": self.info.model_sha256,
            "file_bytes": self.path.stat().st_size,
            "format": fmt,
            "checker": "passed (safe pre-scan, loaded)",
            "shape_inference": "n/a",
            "producer": f"torch {self._torch.__version__}",
            "inputs": [{"name": "input", "shape": shape_in, "dtype": "float32"}],
            "outputs": [{"name": self.output_kind or "output",
                         "shape": ["N", self.info.num_classes], "dtype": "float32"}],
            "nodes": nodes,
            "op_inventory": dict(sorted(ops.items())),
            "parameters": params,
            "macs_per_image": self.macs(),
            "metadata": {k: v for k, v in self.metadata.items() if isinstance(v, str | int)},
        }
