"""report/png.py: the confusion matrix PNG (readable, deterministic)."""

from __future__ import annotations

import copy
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from report_factory import PNG_MAGIC, make_record
from resnet8_onnx import records as r
from resnet8_onnx import report


@pytest.fixture(scope="module")
def record() -> r.EvaluationRecord:
    return make_record()


@pytest.fixture(scope="module")
def png(record: r.EvaluationRecord) -> bytes:
    """Rendered once per module: a PNG takes about half a second."""
    return report.confusion_matrix_png(record)


def test_confusion_png_is_a_readable_image(png: bytes) -> None:
    assert png.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG"
    assert 600 <= image.width <= 2500
    assert 600 <= image.height <= 2500
    pixels = np.asarray(image.convert("RGB")).astype(np.uint32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 50  # not blank: shades of blue, anti-aliased text


def test_confusion_png_decodes_with_matplotlib(png: bytes) -> None:
    import matplotlib.image as mpimg

    array = mpimg.imread(io.BytesIO(png), format="png")
    assert array.ndim == 3
    assert array.shape[2] in (3, 4)


def test_confusion_png_is_deterministic(record: r.EvaluationRecord, png: bytes) -> None:
    assert report.confusion_matrix_png(copy.deepcopy(record)) == png


def test_confusion_png_needs_a_matrix() -> None:
    with pytest.raises(ValueError, match="confusion matrix"):
        report.confusion_matrix_png(r.EvaluationRecord())


def test_importing_report_loads_neither_matplotlib_nor_sklearn() -> None:
    code = ("import sys, resnet8_onnx.report; "
            "sys.exit(any(n.split('.')[0] in ('matplotlib', 'sklearn', 'tensorflow', 'rich') "
            "for n in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _saved_benchmark(cores: int | None) -> r.BenchmarkRecord:
    """A saved benchmark: one model at the runtime's default threads and at one thread."""
    results = [r.BenchResult(model=0, label="#1 ONNX", optimization="all", threads=t,
                             batch_size=b, images_per_second=1000.0 * b / (b + 1) * (t or 2))
               for t in (None, 1) for b in (1, 8, 64)]
    return r.BenchmarkRecord(models=[r.BenchModel(label="#1 ONNX", path="/m/model.onnx",
                                                  backend="onnxruntime")],
                             results=results, machine=r.Machine(cores=cores, cpu="Test CPU"))


@pytest.mark.parametrize("cores", [3, None])
def test_a_saved_benchmark_renders_from_what_it_says_not_this_machine(monkeypatch,
                                                                     cores) -> None:
    """The throughput plot of a saved record names the cores it was measured on (or says
    they are not recorded), whatever machine re-renders it."""
    import os

    from matplotlib.axes import Axes

    titles: list[str] = []
    set_title = Axes.set_title
    monkeypatch.setattr(Axes, "set_title",
                        lambda ax, text, *a, **k: titles.append(text) or set_title(ax, text, *a,
                                                                                    **k))
    rendered = []
    for here in ({0}, set(range(64))):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, here=here: here,
                            raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda here=here: len(here))
        rendered.append(report.throughput_png(_saved_benchmark(cores)))
    assert rendered[0] == rendered[1]
    assert titles[0] == titles[1]
    assert ("3 cores (Test CPU)" if cores else "cores not recorded (Test CPU)") in titles[0]
