"""How busy other work kept this process's cores: the check behind every "figures are noisy"
warning beside an images/s figure (benchmark, evaluate, compare, run).

Read from ``/proc/stat`` (busy and total jiffies of the CPUs in this process's affinity mask)
and this process's own CPU time, so a measurement can be judged by what *else* ran during it:
other work's share = (busy ticks − this process's ticks) / total ticks. The load average does
not do: it lags a minute behind and counts the previous command of the same session.
Without ``/proc/stat`` (not Linux) every reading is ``None`` and nothing is claimed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# Other work's share of the cores above which speed figures are flagged as noisy.
BUSY_WARNING = 0.25


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity mask; all of them where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


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
