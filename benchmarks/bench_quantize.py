"""int8 against fp32 on the full test set, measured in one run, on this CPU (issue 12).

Quantises the converted ResNet8 with ``resnet8-onnx quantize`` (the default ``--auto``,
calibrated on ``train-2000-png``), then evaluates fp32, the chosen int8 model, a few fixed
recipes for comparison and MLCommons' int8 TFLite on all 10,000 test images, and times fp32
against each of them in interleaved passes (best of ``--repeat``) in this one process.

    python benchmarks/bench_quantize.py --data-dir ../shared [--repeat 3] [--json FILE]

Prints the CPU (model name and int8-relevant flags from /proc/cpuinfo) and a table; nothing
here asserts, a benchmark reports. Targets: ≥ 8,680/10,000 correct, ≥ 97 % agreement with
fp32, ≥ 1.5× fp32's images/s on a CPU with VNNI; stretch: fp32's accuracy (87.19 %) with
≥ 98.5 % agreement.
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

from resnet8_onnx.data import load_dataset
from resnet8_onnx.evaluate import DEFAULT_BATCH_SIZE
from resnet8_onnx.quantize import Recipe, load_calibration_data, quantize, read_cpuinfo

# Fixed recipes shown beside the automatic choice: the table, plus float pooling.
FIXED = [Recipe(format="qdq", activations="uint8", method="minmax"),
         Recipe(format="qdq", activations="uint8", method="minmax", float_pooling=True),
         Recipe(format="qdq", activations="uint8", method="percentile", float_pooling=True),
         Recipe(format="qdq", activations="int8", method="minmax"),
         Recipe(format="qoperator", activations="int8", method="minmax")]


def predict(run, images: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    """Outputs over ``images`` and the seconds spent inside the runtime."""
    outputs, spent = [], 0.0
    for i in range(0, len(images), batch):
        x = images[i:i + batch].astype(np.float32)
        start = time.perf_counter()
        outputs.append(run(x))
        spent += time.perf_counter() - start
    return np.concatenate(outputs), spent


def ort_runner(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def litert_runner(path: str):
    from resnet8_onnx.backends.litert import runner as litert

    return litert.load(path).predict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--onnx", default=None, help="float ONNX model (default: convert now)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per model (best)")
    parser.add_argument("--timing-images", type=int, default=10_000,
                        help="images per timed pass of fp32 and the chosen int8 model")
    parser.add_argument("--other-timing-images", type=int, default=2_000,
                        help="images per timed pass of the other recipes (some are slow)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    shared = Path(args.data_dir)
    test = load_dataset(next(shared.rglob("test_batch.bin")).parent, download=False)
    calibration = load_calibration_data(next(shared.rglob("train-2000-png")))
    cpu = read_cpuinfo()
    cli = [sys.executable, "-m", "resnet8_onnx", "-q"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        onnx_path = args.onnx or str(tmp / "resnet8.onnx")
        if args.onnx is None:
            subprocess.run([*cli, "convert", str(next(shared.rglob("pretrainedResnet.h5"))),
                            "-o", onnx_path], check=True)
        auto_path, record_path = tmp / "auto_int8.onnx", tmp / "quantize.json"
        start = time.perf_counter()
        subprocess.run([*cli, "quantize", onnx_path, "-o", str(auto_path),
                        "--calibration-data", str(calibration.source.path),
                        "--json", str(record_path)], check=True, stdout=subprocess.DEVNULL)
        quantize_seconds = time.perf_counter() - start
        record = json.loads(record_path.read_text())
        models = [("fp32 ONNX", onnx_path, ort_runner, args.timing_images),
                  (f"int8 auto: {record['recipe']['label']}", str(auto_path), ort_runner,
                   args.timing_images)]
        for k, recipe in enumerate(FIXED):
            path = tmp / f"fixed_{k}.onnx"
            quantize(onnx_path, path, calibration, recipe, calibration_count=1000,
                     timing_images=64, timing_rounds=1)
            models.append((f"int8 {recipe.label}", str(path), ort_runner,
                           args.other_timing_images))
        tflite = next(shared.rglob("pretrainedResnet_quant.tflite"), None)
        if tflite is not None:
            models.append(("MLCommons int8 TFLite (LiteRT)", str(tflite), litert_runner,
                           args.other_timing_images))

        runners = [(name, path, make(path), n) for name, path, make, n in models]
        fp32_run = runners[0][2]
        reference, _ = predict(fp32_run, test.images, args.batch_size)
        rows = []
        for name, path, run, n in runners:
            outputs, _ = predict(run, test.images, args.batch_size)
            images = test.images[:n]
            best_fp32 = best = float("inf")
            for _ in range(args.repeat):  # fp32 and this model alternately, best of each
                best_fp32 = min(best_fp32, predict(fp32_run, images, args.batch_size)[1])
                best = min(best, predict(run, images, args.batch_size)[1])
            pred = outputs.argmax(1)
            rows.append({
                "model": name, "correct": int((pred == test.labels).sum()),
                "agreement_with_fp32": float((pred == reference.argmax(1)).mean()),
                "images_per_second": round(len(images) / best, 1),
                "fp32_images_per_second": round(len(images) / best_fp32, 1),
                "ratio_vs_fp32": round(best_fp32 / best, 3), "timed_images": len(images),
                "size_bytes": Path(path).stat().st_size,
            })

    print(f"CPU: {cpu.model_name} ({cpu.cores} cores available); int8-relevant flags: "
          f"{', '.join(cpu.flags) or 'none'}; int8 dot product: {cpu.int8_dot_product}")
    print(f"quantize --auto: {quantize_seconds:.1f} s wall; chose {record['recipe']['label']} "
          f"({record['selection']['reason']})")
    print(f"test images: {len(test):,}; batch {args.batch_size}; best of {args.repeat} "
          "interleaved passes (fp32, model, fp32, model, ...)")
    print(f"\n{'model':48} {'correct':>8} {'agree':>8} {'img/s':>8} {'fp32/s':>8} "
          f"{'ratio':>6} {'timed':>6}")
    for r in rows:
        print(f"{r['model'][:48]:48} {r['correct']:>8,} {r['agreement_with_fp32']:>8.2%} "
              f"{r['images_per_second']:>8,.0f} {r['fp32_images_per_second']:>8,.0f} "
              f"{r['ratio_vs_fp32']:>5.2f}× {r['timed_images']:>6,}")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu.to_dict(), "rows": rows,
                                               "quantize_seconds": quantize_seconds,
                                               "auto_record": record}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
