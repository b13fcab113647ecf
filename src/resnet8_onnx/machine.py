"""The machine a figure was measured on, read by every stage and stated by every record.

One leaf (it imports only ``errors``), so records, reports and measurements all read the same
facts the same way: the cores this process may use, the CPU's name and the flags that decide
int8 speed, how busy other work kept those cores during a measurement, the memory a batch
needs against the memory there is, and the library versions that affect the numbers.

Busy/load: read from ``/proc/stat`` (busy and total jiffies of the CPUs in this process's
affinity mask) and this process's own CPU time, so a measurement can be judged by what *else*
ran during it: other work's share = (busy ticks − this process's ticks) / total ticks. The
load average does not do: it lags a minute behind and counts the previous command of the same
session. Without ``/proc/stat`` (not Linux) every reading is ``None`` and nothing is claimed.

Memory: the estimate is deliberately conservative and simple, because it must be made before
a model is loaded: per image, the float32 input batch (32×32×3 × 4 B = 12 KiB), the uint8
pixels it is made from (3 KiB), and six live copies of ResNet8's largest activation, 32×32×16
float32 (64 KiB each: a residual block holds its input, two convolution outputs and their sum
while the runtime's arena keeps spare buffers). That is 399 KiB per image; ONNX Runtime was
measured at about 240 KiB per image (24 GB resident for a batch of 100,000), so the estimate
errs on the side of refusing, instead of being killed by the kernel (exit 137, nothing printed).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet8_onnx.support.errors import UsageError


# --------------------------------------------------------------------------- cores and CPU
def available_cores() -> int:
    """CPUs this process may run on (the affinity mask in a container, not the host's count)."""
    return max(1, len(allowed_cpus()))


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask; all of them where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux): speed figures are about a CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def environment(backend_versions: dict[str, str] | None = None) -> dict[str, str]:
    """Library versions that affect the numbers; deterministic for one installation."""
    import numpy as np

    from resnet8_onnx import __version__

    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": f"{platform.system()} {platform.machine()}",
        "resnet8_onnx": __version__,
    }
    env.update(backend_versions or {})
    return env


# CPU features that decide int8 speed, as /proc/cpuinfo names them. VNNI (x86) and the
# dot-product extension (ARM "asimddp") multiply-accumulate 8-bit values in one instruction;
# without them int8 convolutions take several instructions per product.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimddp",
             "amx_bf16", "avx512_fp16", "amx_fp16")  # the last three: bf16/f16 speed (OpenVINO)
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


# --------------------------------------------------------------------------- busy cores
# Other work's share of the cores above which speed figures are flagged as noisy.
BUSY_WARNING = 0.25


def cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies of the given CPUs from /proc/stat; None where there is none."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def load_sample() -> tuple[int, int, float] | None:
    """One reading: (busy jiffies, total jiffies of this process's CPUs, this process's own
    CPU time in jiffies), or None where the system does not say."""
    ticks = cpu_ticks(allowed_cpus())
    if ticks is None:
        return None
    times = os.times()
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return ticks[0], ticks[1], (times.user + times.system) * hz


def others_share(before: tuple[int, int, float] | None,
                 after: tuple[int, int, float] | None) -> float | None:
    """Other work's share of this process's cores between two :func:`load_sample` readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    others = (after[0] - before[0]) - (after[2] - before[2])
    return round(min(1.0, max(0.0, others / (after[1] - before[1]))), 3)


def busy_before(seconds: float = 0.5) -> float | None:
    """Share of this process's cores busy over ``seconds``, sampled while it sleeps: taken
    just before measuring, so it sees other work only (the benchmark's check)."""
    before = load_sample()
    if before is None:
        return None
    time.sleep(seconds)
    return others_share(before, load_sample())


class LoadMeter:
    """Other work's share of the cores *during* a measurement: ``with LoadMeter() as m: …``,
    then ``m.busy`` (None where it cannot be told)."""

    busy: float | None = None
    # The reading taken at both ends; tests replace it to force a busy or an idle machine.
    sample = staticmethod(load_sample)

    def __enter__(self) -> LoadMeter:
        self._before = self.sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self.busy = others_share(self._before, self.sample())


def busy_warning(busy: float | None, cores: int | None, when: str = "during the measurement",
                 what: str = "images/s") -> str | None:
    """The one warning line for a busy machine, or None when it was not (or unknown)."""
    if busy is None or busy <= BUSY_WARNING:
        return None
    return (f"the machine was busy {when} (other work used {busy:.0%} of the "
            f"{cores or '?'} cores this process may use): {what} are noisy")


# --------------------------------------------------------------------------- memory
INPUT_BYTES = 32 * 32 * 3 * 4  # one float32 image
PIXEL_BYTES = 32 * 32 * 3  # the uint8 image it is converted from
ACTIVATION_BYTES = 32 * 32 * 16 * 4  # ResNet8's largest activation, float32
LIVE_ACTIVATIONS = 6
BYTES_PER_IMAGE = INPUT_BYTES + PIXEL_BYTES + LIVE_ACTIVATIONS * ACTIVATION_BYTES

_KIB = 1024


def batch_bytes(batch_size: int) -> int:
    """Estimated bytes one inference call on ``batch_size`` images needs (see module doc)."""
    return batch_size * BYTES_PER_IMAGE


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * _KIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Room left under a container's memory limit (cgroup v2, else v1), if there is one."""
    for limit_name, usage_name in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_name).read_text().strip()
            usage = int((root / usage_name).read_text().strip())
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 1 << 60:  # "max", or v1's "no limit"
            return None
        return max(0, int(limit) - usage)
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def available_bytes() -> tuple[int, str] | None:
    """``(bytes, where from)``: the least of the kernel's MemAvailable (else free pages) and
    the room under a container limit; ``None`` where neither can be read."""
    found = []
    kernel = _meminfo_available()
    if kernel is not None:
        found.append((kernel, "MemAvailable in /proc/meminfo"))
    else:
        free = _sysconf_available()
        if free is not None:
            found.append((free, "free physical pages"))
    cgroup = _cgroup_available()
    if cgroup is not None:
        found.append((cgroup, "the container's memory limit"))
    return min(found) if found else None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def check_batch_fits(batch_size: int, *, option: str = "--batch-size") -> None:
    """Refuse (exit 2, one line) a batch whose estimated memory exceeds what is available."""
    available = available_bytes()
    if available is None:
        return
    room, source = available
    need = batch_bytes(batch_size)
    if need <= room:
        return
    largest = room // BYTES_PER_IMAGE
    raise UsageError(
        f"{option} {batch_size:,}: one batch needs an estimated {_gb(need)} (per image "
        f"{BYTES_PER_IMAGE // _KIB} KiB: {INPUT_BYTES // _KIB} KiB float32 input, "
        f"{PIXEL_BYTES // _KIB} KiB pixels, {LIVE_ACTIVATIONS} live 32×32×16 float32 "
        f"activations of {ACTIVATION_BYTES // _KIB} KiB) but only {_gb(room)} is available "
        f"({source}); use a batch size of at most {largest:,}"
        if largest >= 1 else
        f"{option} {batch_size:,}: one batch needs an estimated {_gb(need)} but only "
        f"{_gb(room)} is available ({source})"
    )
