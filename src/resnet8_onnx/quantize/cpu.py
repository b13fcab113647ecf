"""The CPU features that decide int8 speed, and the one sentence that says what was measured.

On x86 with VNNI, uint8 activations × int8 weights run about twice as fast as float; without
it int8 can be slower. The flags come from ``/proc/cpuinfo``; the verdict from a measurement.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..bench import available_cores

# CPU features that decide int8 speed, as /proc/cpuinfo names them. VNNI (x86) and the
# dot-product extension (ARM "asimddp") multiply-accumulate 8-bit values in one instruction;
# without them int8 convolutions take several instructions per product.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp")
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")



@dataclass(frozen=True)
class CpuInfo:
    """What the OS says about the CPU: its name and the features that decide int8 speed."""

    model_name: str | None
    flags: tuple[str, ...]  # the CPU_FLAGS present
    cores: int
    source: str  # where the flags came from, or why they are unknown
    known: bool = True

    @property
    def int8_dot_product(self) -> bool | None:
        """True with VNNI (or ARM's dot product), False without, None when unknown."""
        if not self.known:
            return None
        return any(f in self.flags for f in INT8_DOT_FLAGS)

    def to_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "flags": list(self.flags), "cores": self.cores,
                "int8_dot_product": self.int8_dot_product, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CpuInfo:
        """The CPU of a saved record; features unknown where ``int8_dot_product`` is null."""
        return cls(data.get("model_name"), tuple(data.get("flags") or ()),
                   int(data.get("cores") or 0), data.get("source") or "",
                   known=data.get("int8_dot_product") is not None)


def read_cpuinfo(path: str | os.PathLike[str] = "/proc/cpuinfo") -> CpuInfo:
    """CPU name and int8-relevant flags from ``/proc/cpuinfo`` (Linux); unknown elsewhere."""
    cores = available_cores()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return CpuInfo(None, (), cores, f"{path} unreadable: CPU features unknown", known=False)
    name = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and name is None:
            name = value.strip() or None
        elif key in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return CpuInfo(name, (), cores, f"{path} lists no CPU flags: features unknown",
                       known=False)
    return CpuInfo(name, tuple(f for f in CPU_FLAGS if f in flags), cores, str(path))


def speed_verdict(speedup: float | None, cpu: CpuInfo) -> str:
    """One honest sentence: is int8 faster *here*, as measured, and what the CPU has."""
    if speedup is None or not np.isfinite(speedup) or speedup <= 0:
        return "int8 speed was not measured."
    if speedup >= 1.05:
        claim = f"int8 is {speedup:.1f}× as fast as fp32 on this CPU (measured in the same run)"
    elif speedup > 0.95:
        claim = (f"int8 is about as fast as fp32 on this CPU ({speedup:.2f}×, measured in the "
                 "same run): no speed gain")
    else:
        claim = (f"int8 is SLOWER than fp32 on this CPU ({speedup:.2f}×, measured in the same "
                 "run): keep the fp32 model where speed matters")
    dot = cpu.int8_dot_product
    if dot is None:
        cpu_text = "CPU features unknown"
    elif dot:
        cpu_text = "CPU has int8 dot-product instructions (" + ", ".join(
            f for f in cpu.flags if f in INT8_DOT_FLAGS) + ")"
    else:
        cpu_text = ("CPU has no VNNI / int8 dot-product instructions, so int8 convolutions "
                    "need several instructions per product")
    return f"{claim}; {cpu_text}."

