"""Performance figures for the evaluation path, each against a baseline measured in the same run.

Targets (issue 4): the whole ``evaluate`` process on the full test set within 1.25× a bare
ONNX Runtime loop over the same arrays; inference at ≥ 0.9 of a numpy sgemm's GFLOP/s; peak
RSS of ``evaluate`` ≤ 400 MB; the whole ``run`` job ≤ 20 s on 2 cores.

The GFLOP/s figures are ratios to large square matrix products measured in the same run —
numpy's sgemm and ONNX Runtime's own MatMul — not shares of a roofline: convolutions can beat
a square product on some CPUs, so a ratio above 1 is possible. The CPU model is printed with
the figures, because they belong to it.

    python benchmarks/bench_evaluate.py --data-dir ../shared [--repeat 3] [--json FILE]

Prints a table; nothing here asserts, a benchmark reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from resnet8_onnx.bench import ort_matmul_gflops, sgemm_gflops
from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE
from resnet8_onnx.machine import available_cores, cpu_model

BARE_LOOP = textwrap.dedent("""
    import sys, time
    import numpy as np
    import onnxruntime as ort
    path, data, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    raw = np.fromfile(data, dtype=np.uint8).reshape(-1, 3073)
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        session.run(None, {name: images[i:i + batch].astype(np.float32)})
    print(time.perf_counter() - start)
""")


def timed_process(args: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of a child process, measured by a wrapper.

    The wrapper is a fresh interpreter so ``RUSAGE_CHILDREN`` holds this child alone.
    """
    wrapper = textwrap.dedent("""
        import resource, subprocess, sys, time, json
        start = time.perf_counter()
        proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        wall = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps({"wall": wall, "rss": rss, "rc": proc.returncode,
                          "out": proc.stdout, "err": proc.stderr[-2000:]}))
    """)
    out = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"benchmark child failed ({result['rc']}): {' '.join(args)}\n"
                         f"{result['err']}")
    return result["wall"], result["rss"], result["out"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--onnx", default=None, help="ONNX model (default: convert the h5 now)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each process")
    parser.add_argument("--skip-run", action="store_true", help="do not time the `run` job")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    shared = Path(args.data_dir)
    test_batch = next(shared.rglob("test_batch.bin"))
    cli = [sys.executable, "-m", "resnet8_onnx", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx
        if onnx_path is None:
            onnx_path = str(Path(tmp) / "resnet8.onnx")
            model = next(shared.rglob("pretrainedResnet.h5"))
            subprocess.run([*cli, "convert", str(model), "-o", onnx_path], check=True)

        from resnet8_onnx.backends.onnxrt.graph import structure_report

        macs = structure_report(onnx_path)["macs_per_image"]
        flops_per_image = 2 * macs

        bare, evaluate, rss = [], [], []
        inner = []
        for i in range(args.repeat):
            wall, _, out = timed_process([sys.executable, "-c", BARE_LOOP, onnx_path,
                                          str(test_batch), str(args.batch_size)])
            bare.append(wall)
            inner.append(float(out.strip()))
            report = Path(tmp) / f"eval{i}.json"
            wall, peak, _ = timed_process([*cli, "evaluate", onnx_path, "--data-dir",
                                           str(test_batch.parent), "--batch-size",
                                           str(args.batch_size), "--json", str(report)])
            evaluate.append(wall)
            rss.append(peak)
        images = json.loads(report.read_text())["metrics"]["total"]
        run_wall = run_rss = None
        if not args.skip_run:
            run_wall, run_rss, _ = timed_process([*cli, "run", "--data-dir", str(shared),
                                                  "--out", str(Path(tmp) / "run"), "--force"])

    cores = available_cores()
    gemm = sgemm_gflops(cores)
    matmul = ort_matmul_gflops(cores)
    loop_gflops = flops_per_image * images / min(inner) / 1e9
    figures = {
        "cpu_model": cpu_model(),
        "images": images,
        "macs_per_image": macs,
        "bare_ort_process_seconds": round(min(bare), 3),
        "bare_ort_loop_seconds": round(min(inner), 3),
        "evaluate_process_seconds": round(min(evaluate), 3),
        "evaluate_vs_bare_ratio": round(min(evaluate) / min(bare), 3),
        "inference_gflops": round(loop_gflops, 1),
        "numpy_sgemm_gflops": round(gemm, 1) if gemm else None,
        "ratio_to_numpy_sgemm": round(loop_gflops / gemm, 3) if gemm else None,
        "ort_matmul_gflops": round(matmul, 1) if matmul else None,
        "ratio_to_ort_matmul": round(loop_gflops / matmul, 3) if matmul else None,
        "evaluate_peak_rss_mb": round(max(rss), 1),
        "run_seconds": round(run_wall, 2) if run_wall is not None else None,
        "run_peak_rss_mb": round(run_rss, 1) if run_wall is not None else None,
        "cpu_count": os.cpu_count(),
        "available_cores": cores,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    targets = {"evaluate_vs_bare_ratio": ("<=", 1.25), "ratio_to_numpy_sgemm": (">=", 0.9),
               "evaluate_peak_rss_mb": ("<=", 400), "run_seconds": ("<=", 20)}
    print(f"{'figure':32} {'value':>12}  target")
    for key, value in figures.items():
        target = targets.get(key)
        mark = ""
        if target and value is not None:
            op, bound = target
            ok = value <= bound if op == "<=" else value >= bound
            mark = f"{op} {bound}  {'met' if ok else 'NOT met'}"
        print(f"{key:32} {value!s:>12}  {mark}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
