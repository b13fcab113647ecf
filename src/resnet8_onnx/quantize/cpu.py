"""The one sentence that says what int8 speed was measured, beside the CPU features behind it.

On x86 with VNNI, uint8 activations × int8 weights run about twice as fast as float; without
it int8 can be slower. The flags come from ``/proc/cpuinfo`` (read in ``machine``); the
verdict from a measurement.
"""

from __future__ import annotations

import numpy as np

from resnet8_onnx.machine import INT8_DOT_FLAGS, CpuInfo


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

