"""quantize.cpu: the CPU features that decide int8 speed, and the sentence about the speed."""

from __future__ import annotations

import json

import pytest

from quantize_helpers import NO_VNNI, WITH_VNNI
from resnet8_onnx import quantize as q


def test_read_cpuinfo(tmp_path) -> None:
    x86 = tmp_path / "cpuinfo"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f "
                   "avx512_vnni\n\nprocessor\t: 1\nmodel name\t: Some CPU\nflags\t\t: avx2\n")
    info = q.read_cpuinfo(x86)
    assert info.model_name == "Some CPU"
    assert info.flags == ("avx2", "avx512f", "avx512_vnni")
    assert info.int8_dot_product is True
    x86.write_text("model name\t: Old CPU\nflags\t\t: fpu sse2 avx2\n")
    assert q.read_cpuinfo(x86).int8_dot_product is False
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert q.read_cpuinfo(arm).int8_dot_product is True
    missing = q.read_cpuinfo(tmp_path / "nope")
    assert missing.int8_dot_product is None
    assert not missing.known


@pytest.mark.parametrize(
    ("speedup", "cpu", "claims", "cpu_words"),
    [(2.0, WITH_VNNI, "2.0× as fast", "avx512_vnni"),
     (0.42, NO_VNNI, "SLOWER than fp32", "no VNNI"),
     (1.0, NO_VNNI, "about as fast", "no VNNI"),
     (3.0, q.CpuInfo(None, (), 1, "?", known=False), "3.0× as fast", "unknown")],
)
def test_speed_verdict_says_what_was_measured(speedup, cpu, claims, cpu_words) -> None:
    text = q.speed_verdict(speedup, cpu)
    assert claims in text
    assert cpu_words in text


@pytest.mark.parametrize("speedup", [None, float("nan"), float("inf"), 0.0, -1.0])
def test_no_measured_speed_claims_nothing(speedup) -> None:
    assert q.speed_verdict(speedup, WITH_VNNI) == "int8 speed was not measured."


def test_a_cpuinfo_without_flags_means_unknown_features(tmp_path) -> None:
    """A container's /proc/cpuinfo may name the CPU yet list no flags: that is not "no VNNI"."""
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Hidden CPU\n")
    info = q.read_cpuinfo(path)
    assert info.model_name == "Hidden CPU"
    assert info.known is False
    assert info.int8_dot_product is None
    assert "no CPU flags" in info.source
    assert "unknown" in q.speed_verdict(2.0, info)


@pytest.mark.parametrize("cpu", [NO_VNNI, WITH_VNNI,
                                 q.CpuInfo(None, (), 4, "unreadable", known=False)])
def test_cpu_survives_a_saved_record(cpu) -> None:
    again = q.CpuInfo.from_dict(json.loads(json.dumps(cpu.to_dict())))
    assert again == cpu
    assert again.int8_dot_product == cpu.int8_dot_product
