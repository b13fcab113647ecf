"""machine (busy cores): other work's share of this process's cores, and the busy warning
every images/s figure carries. The busy condition is forced by faking the load readings,
never by loading the machine."""

from __future__ import annotations

import itertools

import numpy as np

from model_factory import make_classifier, synthetic_dataset
from report_factory import make_record, terminal_text
from resnet8_onnx import machine
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.evaluate import evaluate
from resnet8_onnx.records import ComparisonRecord
from resnet8_onnx.report import render_terminal
from resnet8_onnx.report.markdown import compare_markdown, markdown_summary
from resnet8_onnx.report.terminal import render_compare_terminal, render_comparison_terminal


def _fake_load(monkeypatch, others: float) -> None:
    """Readings 1,000 jiffies apart in which this process used 100 and other work ``others``
    of the rest: (busy, total, own)."""
    counter = itertools.count()

    def sample() -> tuple[int, int, float]:
        k = next(counter)
        return int(k * (100 + others * 1000)), k * 1000, k * 100.0
    monkeypatch.setattr(machine.LoadMeter, "sample", staticmethod(sample))


def test_others_share_subtracts_this_processs_own_ticks() -> None:
    assert machine.others_share((0, 0, 0.0), (700, 1000, 200.0)) == 0.5
    assert machine.others_share((0, 0, 0.0), (100, 1000, 200.0)) == 0.0  # never negative
    assert machine.others_share(None, (1, 2, 0.0)) is None
    assert machine.others_share((5, 10, 0.0), (5, 10, 0.0)) is None  # no time passed


def test_evaluate_records_the_load_during_its_pass_and_warns(tmp_path, monkeypatch) -> None:
    model = onnxrt.load(make_classifier(tmp_path / "m.onnx"))
    data = synthetic_dataset(32)
    _fake_load(monkeypatch, 0.6)
    busy = evaluate(model, data, batch_size=8)
    assert busy.timings.cpu_busy == 0.6
    text = " ".join(terminal_text(render_terminal, busy).split())
    assert "warning: the machine was busy during the measurement (other work used 60%" in text
    assert "images/s are noisy" in text
    assert "the machine was busy" in markdown_summary(busy)

    _fake_load(monkeypatch, 0.1)
    idle = evaluate(model, data, batch_size=8)
    assert idle.timings.cpu_busy == 0.1
    assert "busy" not in terminal_text(render_terminal, idle)
    assert "busy" not in markdown_summary(idle)


def test_compare_and_run_tables_warn_in_one_line_naming_the_busy_models() -> None:
    models = [make_record(backend="keras"), make_record(), make_record()]
    models[1].timings.cpu_busy = 0.8
    models[2].timings.cpu_busy = 0.05
    for i, m in enumerate(models):
        m.label = f"#{i + 1}"
    record = ComparisonRecord(models=models, data=models[0].data)
    for text in (terminal_text(render_compare_terminal, record),
                 compare_markdown(record)):
        lines = [line for line in text.splitlines() if "the machine was busy" in line]
        assert len(lines) == 1
        assert "while measuring #2 (other work used 80%" in lines[0]
    run = [line for line in terminal_text(render_comparison_terminal, record).splitlines()
           if "the machine was busy" in line]
    assert len(run) == 1
    models[1].timings.cpu_busy = 0.1
    assert "busy" not in terminal_text(render_compare_terminal, record)
    assert np.isclose(machine.BUSY_WARNING, 0.25)
