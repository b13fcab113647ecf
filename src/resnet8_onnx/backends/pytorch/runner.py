"""PyTorch backend: a ``.pt2`` ExportedProgram, or a native ResNet8 state dict.

Files are loaded through :mod:`resnet8_onnx.backends.pytorch.safe_io`, which pre-scans them so
nothing in a
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resnet8_onnx import machine
from resnet8_onnx.backends.base import (
    CONVERSION_SOURCE,
    MACS,
    STRUCTURE,
    InputSpec,
    chunked,
)
from resnet8_onnx.backends.pytorch.files import (
    load_torch_model,
    program_input,
    resolve_torch_input,
)
from resnet8_onnx.backends.pytorch.safe_io import import_torch
from resnet8_onnx.preprocess import record
from resnet8_onnx.records.parts import RunnerInfo
from resnet8_onnx.support.errors import InvalidInputError, UsageError
from resnet8_onnx.support.fsutil import file_digest

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
    allowed = len(machine.allowed_cpus())
    if torch.get_num_threads() > allowed:
        torch.set_num_threads(allowed)


def load(path: str | os.PathLike[str], *, threads: int | None = None,
         device: str | None = None, preprocessing: Mapping[str, Any] | None = None
         ) -> TorchBackend:
    """The loader: a PyTorch file (pre-scanned, nothing in it runs) → a runner on ``device``.

    ``preprocessing`` (spec options) overrides what the file's metadata says, as for ONNX
    models.
    """
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
    return TorchBackend(module, program, metadata, path, threads=threads, device=chosen,
                        preprocessing=preprocessing)


class TorchBackend:
    """The runner of a loaded PyTorch model on the CPU (default) or a CUDA GPU."""

    abilities = frozenset({MACS, STRUCTURE, CONVERSION_SOURCE})  # convert .pt2 → ONNX
    macs_source = "counted by torch's FLOP counter (convolutions, matmuls)"

    def __init__(self, module: Any, program: Any, metadata: dict[str, Any],
                 path: str | os.PathLike[str], *, threads: int | None = None,
                 device: str = "cpu", preprocessing: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        torch = import_torch()
        self._torch = torch
        self.device = device
        self._threads = threads
        self.program = program
        self.metadata = metadata
        module = module.to(self.device)
        self.module = module.to(memory_format=torch.channels_last)
        if program is not None:
            shape, dtype = program_input(program)
        else:
            shape, dtype = (None, *module.config.input_shape), "float32"
        # The spec resolved as for ONNX models: option, the file's metadata, shape, default.
        self.model_input = resolve_torch_input(metadata, shape, dtype, preprocessing,
                                               where=str(path))
        spec = self.model_input.spec
        self._image_shape = self.model_input.model_dims  # the model's own input dims
        self.fixed_batch = self.model_input.fixed_batch
        self.input_spec = InputSpec(shape=tuple(shape), pixel_shape=self.model_input.pixel_shape,
                                    dtype=spec.dtype, layout=spec.layout,
                                    preprocessing=spec)
        self._run = chunked(self._forward, self.fixed_batch)
        num_classes = metadata.get("num_classes")
        if not isinstance(num_classes, int):
            num_classes = int(self._probe().shape[1])
        kind = metadata.get("output_kind")
        self.output_kind = kind if kind in ("probabilities", "logits") else None
        notes = ([f"the model's batch dimension is fixed at {self.fixed_batch}: images run "
                  f"{self.fixed_batch} at a time, a short last batch padded with copies of "
                  "its last image whose outputs are dropped"] if self.fixed_batch else [])
        self.info = RunnerInfo(
            name="torch",
            model_path=str(self.path),
            model_sha256=file_digest(self.path),
            runtime_version=str(torch.__version__),
            input_shape=tuple(shape),
            num_classes=num_classes,
            input_dtype=spec.dtype,
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
                "preprocessing": record(spec, self.model_input.sources),
                **({"fixed_batch": self.fixed_batch} if self.fixed_batch else {}),
                **({"notes": notes} if notes else {}),
                **({"output_kind": self.output_kind} if self.output_kind else {}),
            },
        )

    def _probe(self) -> np.ndarray:
        return self.predict(np.zeros((1, *self.model_input.pixel_shape), np.uint8))

    def prepare(self, pixels: np.ndarray) -> np.ndarray:
        """NHWC RGB 0–255 pixels as the model takes them, per its preprocessing spec."""
        return self.model_input.spec.apply(pixels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw model outputs ``(N, num_classes)`` for an NHWC RGB 0–255 ``(N, H, W, C)``
        batch (uint8 or float), preprocessed per the model's spec."""
        x = np.asarray(batch)
        want = self.model_input.pixel_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(want):
            raise InvalidInputError(f"{self.path}: batch has shape {x.shape}, expected (N, "
                                    f"{', '.join(map(str, want))}) NHWC pixels")
        return self.run(self.prepare(x))

    def run(self, x: np.ndarray) -> np.ndarray:
        """Outputs for an already prepared batch; a fixed batch size runs in chunks."""
        return self._run(x)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        if self._threads and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)  # another backend may have changed it
        elif not self._threads:
            cap_default_threads(torch)
        x = np.ascontiguousarray(x)
        if not x.flags.writeable:  # torch.from_numpy warns on read-only (mapped) data
            x = x.copy()
        tensor = torch.from_numpy(x)
        if self.device != "cpu":
            tensor = tensor.to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.module(tensor)
        return out.float().cpu().numpy()

    def macs(self) -> int:
        """Multiply-accumulates per image of convolutions and matrix products (FLOPs / 2)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self._probe()
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
        shape_in = [self.fixed_batch or "N", *self._image_shape]
        return {
            "kind": "PyTorch",
            "path": str(self.path),
            "sha256": self.info.model_sha256,
            "file_bytes": self.path.stat().st_size,
            "format": fmt,
            "checker": "passed (safe pre-scan, loaded)",
            "shape_inference": "n/a",
            "producer": f"torch {self._torch.__version__}",
            "inputs": [{"name": "input", "shape": shape_in,
                        "dtype": self.model_input.spec.dtype}],
            "outputs": [{"name": self.output_kind or "output",
                         "shape": ["N", self.info.num_classes], "dtype": "float32"}],
            "nodes": nodes,
            "op_inventory": dict(sorted(ops.items())),
            "parameters": params,
            "macs_per_image": self.macs(),
            "metadata": {k: v for k, v in self.metadata.items() if isinstance(v, str | int)},
        }
