"""Peak memory of evaluating a labelled image folder: decoded at once against streamed.

Generates COUNT 224×224 JPEG images in 10 class folders in a temporary directory, writes a
small ONNX classifier that takes 224×224 NHWC pixels, and runs ``resnet8-onnx evaluate`` on
them in a fresh process twice: with the set decoded at once, and streamed (decoded batch by
batch with the next batch ahead; ``data.stream.STREAM_BYTES`` forced to 0). For each it
prints the child's peak RSS (``ru_maxrss``), the wall time and what the decoded set would
take, so the streamed figure can be read against a few batches of 224×224×3 bytes.

    python benchmarks/bench_folder.py --count 2000 [--batch-size 128] [--json FILE]

The issue's figure is for 50,000 images (``--count 50000``: about 1.3 GB of JPEG files and
7.5 GB decoded, so do not run it at once on a shared machine). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

CHILD = textwrap.dedent("""
    import sys
    from resnet8_onnx.data import stream
    if sys.argv[1] == "streamed":
        stream.STREAM_BYTES = 0
    else:
        stream.STREAM_BYTES = 1 << 62
    from resnet8_onnx.cli import main
    sys.exit(main(["-q", "evaluate", sys.argv[2], "--data-dir", sys.argv[3],
                   "--batch-size", sys.argv[4], "--json", sys.argv[5]]))
""")


def write_images(root: Path, count: int, size: int = 224) -> None:
    """``count`` JPEGs, smooth gradients plus noise (like photos, unlike random pixels)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None] + ramp[:, None, None]) / 2
    for i in range(count):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        noise = rng.normal(0, 12, (size, size, 3)).astype(np.float32)
        pixels = np.clip(base * tint + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


def write_model(path: Path, size: int = 224, classes: int = 10) -> None:
    """Input [N, size, size, 3] float32 → mean over H, W → MatMul → 10 logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (3, classes)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    nodes = [helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
             helper.make_node("MatMul", ["pooled", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "folder_bench",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))


def measure(mode: str, model: Path, data: Path, batch: int, work: Path) -> dict:
    """One evaluate in a fresh process: its peak RSS (MiB), wall seconds, accuracy."""
    out = work / f"{mode}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(model), str(data),
                           str(batch), str(out)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: exit {proc.returncode}: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    record = json.loads(out.read_text())
    return {"mode": mode, "peak_rss_mib": round(max(peak, before) / 1024, 1),
            "seconds": round(seconds, 2), "images": record["metrics"]["total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="images to generate")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--streamed-only", action="store_true",
                        help="skip the decoded-at-once run (for counts too large to hold)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_images(work / "images", args.count)
        write_model(work / "model.onnx")
        decoded = args.count * 224 * 224 * 3 / 2**20
        batch = args.batch_size * 224 * 224 * 3 / 2**20
        # Streamed first: ru_maxrss of RUSAGE_CHILDREN is the largest child so far.
        rows = [measure(m, work / "model.onnx", work / "images", args.batch_size, work)
                for m in (("streamed",) if args.streamed_only else ("streamed", "at-once"))]
    print(f"{args.count:,} images of 224×224: {decoded:,.0f} MiB decoded, one batch of "
          f"{args.batch_size} is {batch:,.1f} MiB (uint8) / {batch * 4:,.1f} MiB (float32)")
    for row in rows:
        print(f"  {row['mode']:>9}: peak RSS {row['peak_rss_mib']:,.1f} MiB, "
              f"{row['seconds']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"count": args.count, "decoded_mib": decoded,
                                               "batch_mib": batch, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
