"""PyTorch on the CPU against ONNX Runtime, on the full test set, in the same run.

Target (issue 13): the PyTorch backend reaches ≥ 0.5× ONNX Runtime's images/s on the CPU.
Measured side by side, through the same backend objects ``evaluate`` uses, on the same
float32 batches (converted once, so only inference is timed):

* ONNX Runtime on the tf2onnx conversion (the baseline);
* the ``.pt2`` from the native builder (BatchNorm folded into the convolutions);
* the ``.pt2`` from onnx2torch (the ONNX graph as onnx2torch builds it);
* the native module in eager mode from its ``.safetensors`` state dict, and the same module
  with its BatchNorm layers kept (what fine-tuning code runs).

Runs are interleaved (A B C D E, A B C D E, ...) and the best of ``--repeat`` counts, so a
busy neighbour on a shared machine hurts every runtime alike; the load average is printed.

    python benchmarks/bench_torch.py --data-dir ../shared [--repeat 3] [--threads N] [--json FILE]

Prints a table; nothing here asserts, a benchmark reports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE
from resnet8_onnx.machine import available_cores


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--model", default=None, help="Keras .h5 (default: found under --data-dir)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="threads for every runtime (default: all cores)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N passes per runtime")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    import torch

    from resnet8_onnx.backends import load_backend
    from resnet8_onnx.backends.pytorch.runner import configure_precision
    from resnet8_onnx.convert import convert
    from resnet8_onnx.convert.to_torch import native_from_state_dict
    from resnet8_onnx.data import load_dataset

    data = load_dataset(args.data_dir, download=False)
    model = Path(args.model) if args.model else next(Path(args.data_dir).rglob(
        "pretrainedResnet.h5"))
    images = data.images.astype(np.float32)
    batches = [images[i:i + args.batch_size] for i in range(0, len(images), args.batch_size)]

    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        onnx_path = tmp_dir / "r8.onnx"
        convert(model, onnx_path)
        convert(model, tmp_dir / "native.pt2", builder="native")
        convert(onnx_path, tmp_dir / "onnx2torch.pt2", builder="onnx2torch")
        convert(model, tmp_dir / "native.safetensors")

        runners: dict[str, object] = {
            "ONNX Runtime (tf2onnx .onnx)": load_backend(onnx_path, threads=args.threads).predict,
            "PyTorch .pt2, native builder": load_backend(tmp_dir / "native.pt2",
                                                         threads=args.threads).predict,
            "PyTorch .pt2, onnx2torch": load_backend(tmp_dir / "onnx2torch.pt2",
                                                     threads=args.threads).predict,
            "PyTorch eager, native (BN folded)": load_backend(tmp_dir / "native.safetensors",
                                                              threads=args.threads).predict,
        }
        module, _ = native_from_state_dict(tmp_dir / "native.safetensors")
        module = module.to(memory_format=torch.channels_last)
        configure_precision(torch)

        def eager_unfolded(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x)).numpy()

        runners["PyTorch eager, native (BN kept)"] = eager_unfolded
        reference = np.concatenate([runners["ONNX Runtime (tf2onnx .onnx)"](b) for b in batches])
        diffs, best = {}, dict.fromkeys(runners, 0.0)
        load_before = os.getloadavg()[0]
        for name, run in runners.items():  # warm-up and parity, once
            out = np.concatenate([run(b) for b in batches])
            diffs[name] = (float(np.abs(out - reference).max()),
                           int((out.argmax(1) == reference.argmax(1)).sum()))
        for _ in range(args.repeat):
            for name, run in runners.items():
                start = time.perf_counter()
                for b in batches:
                    run(b)
                best[name] = max(best[name], len(images) / (time.perf_counter() - start))
        load_after = os.getloadavg()[0]

    base = best["ONNX Runtime (tf2onnx .onnx)"]
    print(f"{len(images):,} test images, batch {args.batch_size}, {args.threads} threads, "
          f"best of {args.repeat}; {cpu_model()}; torch {torch.__version__}; load average "
          f"{load_before:.1f} → {load_after:.1f}")
    print(f"{'runtime':<36}{'images/s':>10}{'× ORT':>8}{'max |Δ| vs ORT':>16}{'agree':>8}")
    for name, ips in best.items():
        diff, agree = diffs[name]
        print(f"{name:<36}{ips:>10,.0f}{ips / base:>8.2f}{diff:>16.2e}{agree:>8,}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "images": len(images), "batch_size": args.batch_size, "threads": args.threads,
            "repeat": args.repeat, "cpu": cpu_model(), "torch": torch.__version__,
            "load_average": [load_before, load_after],
            "images_per_second": best, "ratio_to_onnxruntime": {k: v / base for k, v in
                                                                 best.items()},
            "max_abs_diff_vs_onnxruntime": {k: v[0] for k, v in diffs.items()},
        }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
