"""Memory a batch needs and memory the machine has: refuse a batch that cannot fit before
allocating it, instead of being killed by the kernel (exit 137, nothing printed).

The estimate is deliberately conservative and simple, because it must be made before a model
is loaded: per image, the float32 input batch (32×32×3 × 4 B = 12 KiB), the uint8 pixels it is
made from (3 KiB), and six live copies of ResNet8's largest activation, 32×32×16 float32
(64 KiB each: a residual block holds its input, two convolution outputs and their sum while the
runtime's arena keeps spare buffers). That is 399 KiB per image; ONNX Runtime was measured at
about 240 KiB per image (24 GB resident for a batch of 100,000), so the estimate errs on the
side of refusing.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

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
