"""Figures for ``tune`` (issue 22), each against ONNX Runtime fp32 measured in the same run.

Targets: on a CPU with AMX/bf16 the chosen configuration ≥ 3× ONNX Runtime fp32 at ≥ 99.5 %
test agreement; on a VNNI-only CPU ≥ 2× at ≥ 98 %. The CPU's name and flags are printed
with the figures, because they belong to it.

1. ``resnet8-onnx tune`` runs as a user would run it (a subprocess) and its record gives the
   choice, its speedup (held-out images, interleaved passes) and its test agreement.
2. Independently of the package, the written file is run by its own runtime with the
   settings its metadata states, against a bare ONNX Runtime session on the same test
   images, in interleaved passes in this process: the speedup and the agreement again.
3. Every OpenVINO precision this CPU has is timed the same way, for the table.

    python benchmarks/bench_tune.py --data-dir ../shared [--rounds 5] [--json FILE]
    python benchmarks/bench_tune.py --data-dir ../shared --limit 500 --configurations \\
        openvino-f32 --rounds 2          # a tiny setting: checks the script runs

Do not run it while other work loads the machine: the figures would be noise. Prints a
table; nothing here asserts, a benchmark reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from resnet8_onnx.machine import read_cpuinfo

RECORD = 3073


def test_images(data_dir: Path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The official test set (or its first ``limit`` images) as float32 NHWC, read directly."""
    path = next(data_dir.rglob("test_batch.bin"))
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD)[:limit]
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32)
    return np.ascontiguousarray(images), raw[:, 0].astype(np.int64)


def bare_runners(model: Path, precisions: list[str]) -> dict[str, object]:
    """name -> a function running one float32 NHWC batch: ORT fp32 and OpenVINO per precision."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    runners: dict[str, object] = {"onnxruntime-fp32": lambda x: session.run(None, {name: x})[0]}
    if precisions:
        import openvino as ov

        core = ov.Core()
        for p in precisions:
            compiled = core.compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": p,
                                                              "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()

            def run(x, request=request):
                request.infer({0: x})
                return request.get_output_tensor(0).data.copy()
            runners[f"openvino-{p}"] = run
    return runners


def written_runner(path: Path) -> tuple[str, object]:
    """The file tune wrote, run by the runtime and precision its metadata names."""
    import onnx

    if path.suffix == ".xml":
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run_ir(x):
            request.infer({0: x})
            return request.get_output_tensor(0).data.copy()
        return "openvino int8 IR", run_ir
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    runtime, precision = meta.get("runtime", "onnxruntime"), meta.get("inference_precision")
    if runtime == "openvino":
        runners = bare_runners(path, [precision or "f32"])
        return f"openvino {precision}", runners[f"openvino-{precision or 'f32'}"]
    runners = bare_runners(path, [])
    return "onnxruntime", runners["onnxruntime-fp32"]


def interleaved(runners: dict[str, object], x: np.ndarray, batch: int, rounds: int
                ) -> dict[str, float]:
    """Best images/s of each runner over ``rounds`` interleaved passes (A, B, …, A, B, …)."""
    batches = [x[i:i + batch] for i in range(0, len(x), batch)]
    for run in runners.values():
        run(batches[0])  # warm-up
    best = dict.fromkeys(runners, 0.0)
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for b in batches:
                run(b)
            best[name] = max(best[name], len(x) / (time.perf_counter() - start))
    return best


def outputs(run, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


def target(flags: tuple[str, ...]) -> tuple[str, float, float] | None:
    """The issue's target for this CPU class: (class, speedup, agreement)."""
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        return "AMX/bf16", 3.0, 0.995
    if any(f in flags for f in ("avx512_vnni", "avx_vnni")):
        return "VNNI-only", 2.0, 0.98
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared"))
    parser.add_argument("--model", type=Path, default=None,
                        help="float ONNX model (default: convert ../shared's ResNet8 .h5)")
    parser.add_argument("--calibration-data", type=Path, default=None,
                        help="default: DATA_DIR/cifar-10/train-2000-png")
    parser.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    parser.add_argument("--configurations", default=None, help="passed to tune")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    cpu = read_cpuinfo()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tune."))
    model = args.model
    cli = [sys.executable, "-m", "resnet8_onnx", "-q"]
    if model is None:
        model = tmp / "resnet8.onnx"
        h5 = args.data_dir / "models" / "pretrainedResnet.h5"
        subprocess.run([*cli, "convert", str(h5), "-o", str(model)], check=True)
    calibration = args.calibration_data or args.data_dir / "cifar-10" / "train-2000-png"
    data = next(args.data_dir.rglob("test_batch.bin")).parent
    tuned, record_path = tmp / "tuned.onnx", tmp / "tuning.json"
    command = [*cli, "tune", str(model), "-o", str(tuned), "--calibration-data",
               str(calibration), "--data-dir", str(data), "--json", str(record_path)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    if args.configurations:
        command += ["--configurations", args.configurations]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    tune_seconds = time.perf_counter() - started
    record = json.loads(record_path.read_text())
    chosen = record["chosen"]

    x, labels = test_images(args.data_dir, args.limit)
    import openvino as ov

    have = [p for p, cap in (("f32", "FP32"), ("bf16", "BF16"), ("f16", "FP16"))
            if cap in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    runners = bare_runners(model, have)
    written_label, runners["written file"] = written_runner(Path(chosen["files"][0]))
    speed = interleaved(runners, x, args.batch_size, args.rounds)
    reference = outputs(runners["onnxruntime-fp32"], x, args.batch_size).argmax(1)
    rows = []
    for name, run in runners.items():
        top1 = outputs(run, x, args.batch_size).argmax(1)
        rows.append({"name": name, "images_per_second": round(speed[name], 1),
                     "speedup": round(speed[name] / speed["onnxruntime-fp32"], 3),
                     "agreement": float((top1 == reference).mean()),
                     "accuracy": float((top1 == labels).mean())})
    goal = target(cpu.flags)
    written = rows[-1]
    result = {"cpu": cpu.to_dict(), "openvino_capabilities": have, "test_images": len(x),
              "tune_seconds": round(tune_seconds, 1), "tune_chosen": chosen,
              "written_file": written_label, "bare": rows,
              "target": None if goal is None else {
                  "cpu_class": goal[0], "speedup": goal[1], "agreement": goal[2],
                  "met": written["speedup"] >= goal[1] and written["agreement"] >= goal[2]}}
    print(f"CPU: {cpu.model_name} ({cpu.cores} cores); flags: {', '.join(cpu.flags)}; "
          f"OpenVINO precisions: {', '.join(have)}")
    print(f"tune ({tune_seconds:.0f} s): chose {chosen['name']}, {chosen['speedup']}× ONNX "
          f"Runtime fp32 on held-out images, test agreement {chosen['test_agreement']:.2%}")
    print(f"{'bare loops, ' + str(len(x)) + ' test images':<34}{'images/s':>10}{'× fp32':>9}"
          f"{'agreement':>11}{'accuracy':>10}")
    for r in rows:
        label = f"{r['name']} ({written_label})" if r["name"] == "written file" else r["name"]
        print(f"{label:<34}{r['images_per_second']:>10,.0f}{r['speedup']:>8.2f}×"
              f"{r['agreement']:>11.2%}{r['accuracy']:>10.2%}")
    if goal is not None:
        t = result["target"]
        print(f"target ({goal[0]} CPU): ≥ {goal[1]:g}× at ≥ {goal[2]:.1%} agreement: "
              f"{'met' if t['met'] else 'NOT met'} ({written['speedup']:.2f}×, "
              f"{written['agreement']:.2%})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
