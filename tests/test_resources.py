"""Resource bounds: memory follows the uint8 images plus one batch, not a multiple of the data.

What "roughly flat" can honestly mean here: the data set is held in memory as uint8 (so a
report can say exactly which images were evaluated, and ``--subset``/``--limit`` select from it),
so 50,000 images are 147 MiB that must be resident. Everything else (the float32 batch, the
runtime's buffers, outputs and metrics) must not grow with the data. The tests therefore
bound the growth of peak memory by the growth of the uint8 data itself, with a small margin,
and the non-data part by a few MiB. Before the binary loader parsed in chunks straight into
one array, 50,000 images peaked at 489 MiB against 139 MiB for 10,000 (growth 3.0× the extra data).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_classifier
from resnet8_onnx.data import load_dataset

MiB = 1 << 20
IMAGE_BYTES = 32 * 32 * 3
META_TXT = "".join(f"{n}\n" for n in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                      "frog", "horse", "ship", "truck")).encode()


def write_batches(directory: Path, per_batch: int, seed: int = 0) -> Path:
    """A binary layout with a test batch and five training batches of ``per_batch`` images."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in ["test_batch.bin", *(f"data_batch_{i}.bin" for i in range(1, 6))]:
        records = rng.integers(0, 256, (per_batch, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(per_batch) % 10
        records.tofile(directory / name)
    (directory / "batches.meta.txt").write_bytes(META_TXT)
    return directory


@pytest.mark.parametrize(("split", "files"), [("test", 1), ("train", 5)])
def test_loading_allocates_the_images_once(tmp_path: Path, split: str, files: int) -> None:
    """Peak Python/numpy allocation while loading is the uint8 images plus small buffers:
    no whole-file read, no transposed copy, no concatenation of the five training batches."""
    directory = write_batches(tmp_path / "cifar-10-batches-bin", per_batch=2_000)
    tracemalloc.start()
    try:
        dataset = load_dataset(directory, split=split, download=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    data_bytes = dataset.images.nbytes
    assert len(dataset) == 2_000 * files
    assert data_bytes == 2_000 * files * IMAGE_BYTES
    assert peak < data_bytes + 8 * MiB, f"peak {peak / MiB:.1f} MiB for {data_bytes / MiB:.1f} MiB"


PEAK_RSS = """
import json, resource, sys
from resnet8_onnx.backends import load_backend
from resnet8_onnx.data import load_dataset
from resnet8_onnx.evaluate import evaluate

data_dir, split, model = sys.argv[1:4]
dataset = load_dataset(data_dir, split=split, download=False)
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = evaluate(load_backend(model), dataset, batch_size=250)
print(json.dumps({
    "images": len(dataset), "evaluated": result.metrics.total,
    "data_bytes": dataset.images.nbytes,
    "rss_after_load": loaded * 1024,
    "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


def measure(data: Path, split: str, model: Path) -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, str(data), split, str(model)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_peak_memory_of_evaluate_grows_only_by_the_data(tmp_path: Path) -> None:
    """10,000 test images against 50,000 training images, each evaluated in its own process:
    peak RSS (ru_maxrss) may grow by the extra uint8 data ×1.5 at most, and the part that is
    not the data by less than 24 MiB (outputs, 4 bytes × 10 classes per image, are 1.5 MiB)."""
    data = write_batches(tmp_path / "cifar-10-batches-bin", per_batch=10_000)
    model = make_classifier(tmp_path / "m.onnx")
    small = measure(data, "test", model)
    large = measure(data, "train", model)
    assert (small["images"], small["evaluated"]) == (10_000, 10_000)
    assert (large["images"], large["evaluated"]) == (50_000, 50_000)
    extra = large["data_bytes"] - small["data_bytes"]
    growth = large["peak_rss"] - small["peak_rss"]
    overhead_growth = (large["peak_rss"] - large["data_bytes"]) - (
        small["peak_rss"] - small["data_bytes"])
    figures = (f"peak RSS {small['peak_rss'] / MiB:.0f} MiB for 10,000 images, "
               f"{large['peak_rss'] / MiB:.0f} MiB for 50,000: growth {growth / MiB:.0f} MiB "
               f"for {extra / MiB:.0f} MiB more uint8 data ({growth / extra:.2f}×); "
               f"non-data part grew {overhead_growth / MiB:.1f} MiB")
    print(figures)
    assert growth < 1.5 * extra, figures
    assert overhead_growth < 24 * MiB, figures
