"""machine (memory): the per-image estimate, where available memory is read from, and the
refusal of a benchmark batch that cannot fit (one line, exit 2) before anything is allocated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from model_factory import make_classifier
from resnet8_onnx import machine
from resnet8_onnx.support import errors


def test_estimate_is_input_pixels_and_six_resnet8_activations() -> None:
    assert machine.BYTES_PER_IMAGE == 32 * 32 * 3 * 4 + 32 * 32 * 3 + 6 * 32 * 32 * 16 * 4
    assert machine.batch_bytes(1000) == 1000 * machine.BYTES_PER_IMAGE
    # conservative: above the ~240 KiB per image ONNX Runtime was measured at
    assert machine.BYTES_PER_IMAGE > 240 * 1024


def test_meminfo_and_cgroup_are_read(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000000 kB\nMemFree:  100 kB\nMemAvailable:  2000000 kB\n")
    assert machine._meminfo_available(meminfo) == 2_000_000 * 1024
    assert machine._meminfo_available(tmp_path / "missing") is None
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1000000000\n")
    (v2 / "memory.current").write_text("400000000\n")
    assert machine._cgroup_available(v2) == 600_000_000
    (v2 / "memory.max").write_text("max\n")
    assert machine._cgroup_available(v2) is None
    assert machine._cgroup_available(tmp_path / "none") is None


def test_available_bytes_is_the_least_known(monkeypatch) -> None:
    monkeypatch.setattr(machine, "_meminfo_available", lambda: 8 << 30)
    monkeypatch.setattr(machine, "_cgroup_available", lambda: 1 << 30)
    assert machine.available_bytes() == (1 << 30, "the container's memory limit")
    monkeypatch.setattr(machine, "_cgroup_available", lambda: None)
    assert machine.available_bytes() == (8 << 30, "MemAvailable in /proc/meminfo")


def test_cli_benchmark_refuses_a_batch_no_machine_has_memory_for(tmp_path: Path) -> None:
    """100,000,000 images need an estimated 41 TB: refused at once, whatever the machine."""
    model = make_classifier(tmp_path / "m.onnx")
    proc = subprocess.run([sys.executable, "-m", "resnet8_onnx", "-q", "benchmark", str(model),
                           "--quick", "--batch-sizes", "1,100000000"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == errors.USAGE, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("resnet8-onnx: error: --batch-sizes 100,000,000: one batch "
                               "needs an estimated")
    assert "399 KiB" in lines[0]
    assert "available" in lines[0]
    assert proc.stdout == ""


def test_cli_benchmark_refusal_follows_available_memory(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    from resnet8_onnx.cli import main

    monkeypatch.setattr(machine, "available_bytes",
                        lambda: (100 * machine.BYTES_PER_IMAGE, "a test limit"))
    model = make_classifier(tmp_path / "m.onnx")
    code = main(["-q", "benchmark", str(model), "--quick", "--batch-sizes", "8,101"])
    err = capsys.readouterr().err
    assert code == errors.USAGE
    assert "use a batch size of at most 100" in err
    assert "(a test limit)" in err


@pytest.mark.parametrize("room", [0, 10])
def test_check_batch_fits_without_room(monkeypatch, room: int) -> None:
    monkeypatch.setattr(machine, "available_bytes", lambda: (room, "nothing"))
    with pytest.raises(errors.UsageError, match="only 0 MB is available"):
        machine.check_batch_fits(1)
