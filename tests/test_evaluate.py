"""evaluate: the streaming loop, compatibility checks, records, and real-data accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from model_factory import make_classifier, synthetic_dataset
from resnet8_onnx.backends.onnxrt.runner import load as load_onnx
from resnet8_onnx.evaluate import evaluate, run_inference
from resnet8_onnx.support.errors import InvalidInputError


def test_outputs_equal_direct_session_run(tmp_path) -> None:
    backend = load_onnx(make_classifier(tmp_path / "m.onnx"))
    data = synthetic_dataset(37)
    outputs, seconds = run_inference(backend, data, batch_size=8)
    direct = backend.onnx_session().session.run(
        None, {"input": data.images.astype(np.float32)})[0]
    np.testing.assert_allclose(outputs, direct, rtol=1e-6, atol=1e-7)
    assert seconds > 0


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batch_size_does_not_change_predictions(tmp_path, batch_size) -> None:
    backend = load_onnx(make_classifier(tmp_path / "m.onnx"))
    data = synthetic_dataset(30)
    reference = evaluate(backend, data, batch_size=30)
    result = evaluate(backend, data, batch_size=batch_size)
    np.testing.assert_array_equal(result.predictions, reference.predictions)
    assert result.metrics.correct == reference.metrics.correct


def test_record_fields_and_determinism(tmp_path) -> None:
    from sklearn.metrics import accuracy_score

    backend = load_onnx(make_classifier(tmp_path / "m.onnx"))
    data = synthetic_dataset(50)
    first = evaluate(backend, data).to_dict()
    second = evaluate(backend, data).to_dict()
    assert first["metrics"]["accuracy"] == pytest.approx(
        accuracy_score(data.labels, evaluate(backend, data).predictions))
    first.pop("timings")
    second.pop("timings")
    assert json.dumps(first, sort_keys=True, default=str) == json.dumps(
        second, sort_keys=True, default=str)
    assert first["model"]["backend"] == "onnxruntime"
    assert first["data"]["count"] == 50


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"channels": 1}, "model input is 32×32×1"), ({"classes": 100}, "100 outputs"),
     ({"height": 28, "width": 28}, "model input is 28×28×3")],
)
def test_incompatible_model_is_refused(tmp_path, kwargs, fragment) -> None:
    backend = load_onnx(make_classifier(tmp_path / "m.onnx", **kwargs))
    with pytest.raises(InvalidInputError, match=fragment):
        evaluate(backend, synthetic_dataset(10))


def test_nan_outputs_are_an_error(tmp_path) -> None:
    backend = load_onnx(make_classifier(tmp_path / "m.onnx", nan_output=True,
                                                 softmax=False))
    with pytest.raises(InvalidInputError, match="NaN"):
        evaluate(backend, synthetic_dataset(10))


def test_logits_model_is_detected(tmp_path) -> None:
    backend = load_onnx(make_classifier(tmp_path / "m.onnx", softmax=False))
    result = evaluate(backend, synthetic_dataset(40))
    assert result.metrics.output_kind == "logits"


def test_evaluation_never_imports_tensorflow(tmp_path) -> None:
    """The ONNX path must not pay TensorFlow's or PyTorch's import (seconds, hundreds of MB)."""
    model = make_classifier(tmp_path / "m.onnx")
    tests_dir = str(Path(__file__).parent)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {tests_dir!r})
        from model_factory import synthetic_dataset
        from resnet8_onnx.backends import load_backend
        from resnet8_onnx.evaluate import evaluate
        from resnet8_onnx.report import to_json
        r = evaluate(load_backend({str(model)!r}), synthetic_dataset(20))
        to_json(r.to_dict())
        heavy = ("tensorflow", "keras", "tf2onnx", "sklearn", "torch", "onnx2torch")
        print(",".join(sorted(m for m in heavy if m in sys.modules)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_real_onnx_accuracy_and_keras_equality(
    resnet8_onnx, cifar_test, keras_full_outputs
) -> None:
    result = evaluate(load_onnx(resnet8_onnx), cifar_test)
    assert result.metrics.total == 10_000
    assert result.metrics.accuracy > 0.85
    keras_correct = int((keras_full_outputs.argmax(1) == cifar_test.labels).sum())
    assert result.metrics.correct == keras_correct
    assert result.to_dict()["data"]["full_official_test_set"] is True


@pytest.mark.slow
def test_perf_subset_binary_and_png_folder_agree(resnet8_onnx) -> None:
    from conftest import shared_path
    from resnet8_onnx.data import load_dataset

    indices = shared_path("mlperf-tiny", "perf_samples_idxs.npy")
    binary = load_dataset(shared_path("cifar-10", "cifar-10-batches-bin"), subset="perf",
                          indices_file=indices, download=False)
    folder = load_dataset(shared_path("cifar-10", "perf-png"), subset="perf",
                          indices_file=indices, download=False)
    backend = load_onnx(resnet8_onnx)
    a, b = evaluate(backend, binary), evaluate(backend, folder)
    assert len(binary) == len(folder) == 200
    assert sorted(binary.indices.tolist()) == sorted(folder.indices.tolist())
    order_a, order_b = np.argsort(binary.indices), np.argsort(folder.indices)
    np.testing.assert_array_equal(a.outputs[order_a], b.outputs[order_b])
    assert a.metrics.correct == b.metrics.correct
    assert a.metrics.confusion_matrix == b.metrics.confusion_matrix
    assert a.to_dict()["data"]["full_official_test_set"] is False


# --------------------------------------------------------------------------- the CLI
def _twenty_images(root: Path) -> Path:
    from cifar_factory import layout_files, make_images, write_layout

    return write_layout(root, "binary-dir", layout_files("binary", make_images(20)))


def test_cli_batch_larger_than_the_data_runs_at_the_data_size(tmp_path, capsys) -> None:
    """--batch-size 100000 on 20 images: one batch of 20, a note on stderr, and the JSON
    records the batch size used (and the one asked for)."""
    from resnet8_onnx.cli import main

    model = make_classifier(tmp_path / "m.onnx")
    data = _twenty_images(tmp_path / "data")
    code = main(["evaluate", str(model), "--data-dir", str(data), "--batch-size",
                 "100000", "--json", "-"])  # not -q: that silences notes
    out, err = capsys.readouterr()
    assert code == 0, err
    timings = json.loads(out)["timings"]
    assert timings["batch_size"] == 20
    assert timings["requested_batch_size"] == 100_000
    assert "--batch-size 100,000 is more than the 20 images; running batches of 20" in err
    assert main(["-q", "evaluate", str(model), "--data-dir", str(data), "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["timings"]["batch_size"] == 20  # the default 128, capped as well
    assert json.loads(out)["timings"]["requested_batch_size"] == 128
    assert "note:" not in err  # but no note about a size the user did not choose


def test_cli_memory_check_uses_the_batch_actually_run(tmp_path, capsys, monkeypatch) -> None:
    """With room for 50 images only, a 100000 batch over 20 images still runs (20 fit), but
    a 60-image batch over 100 images is refused with one line, exit 2, before inference."""
    from cifar_factory import layout_files, make_images, write_layout
    from resnet8_onnx import machine
    from resnet8_onnx.cli import main
    from resnet8_onnx.support import errors

    monkeypatch.setattr(machine, "available_bytes",
                        lambda: (50 * machine.BYTES_PER_IMAGE, "a test limit"))
    model = make_classifier(tmp_path / "m.onnx")
    small = _twenty_images(tmp_path / "small")
    assert main(["-q", "evaluate", str(model), "--data-dir", str(small), "--batch-size",
                 "100000"]) == 0
    capsys.readouterr()
    large = write_layout(tmp_path / "large", "binary-dir",
                         layout_files("binary", make_images(100)))
    code = main(["-q", "evaluate", str(model), "--data-dir", str(large), "--batch-size", "60"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == errors.USAGE
    assert len(err) == 1
    assert "--batch-size 60: one batch needs an estimated" in err[0]
    assert "use a batch size of at most 50" in err[0]


def test_evaluate_returns_the_record_with_its_arrays_unsaved(tmp_path) -> None:
    """One shape: evaluate() gives the report record itself; the raw outputs and labels
    compare/verify/quantize need ride along on it but never reach its JSON."""
    from resnet8_onnx import evaluate as evaluate_module
    from resnet8_onnx.records import EvaluationRecord

    backend = load_onnx(make_classifier(tmp_path / "m.onnx"))
    data = synthetic_dataset(23)
    record = evaluate(backend, data, batch_size=5)
    assert type(record) is EvaluationRecord
    assert not hasattr(evaluate_module, "EvaluationResult")
    assert not hasattr(record, "record")
    assert not hasattr(record, "to_record")
    direct = backend.onnx_session().session.run(
        None, {"input": data.images.astype(np.float32)})[0]
    np.testing.assert_allclose(record.outputs, direct, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(record.labels, data.labels)
    np.testing.assert_array_equal(record.predictions, direct.argmax(1))
    assert record.metrics.correct == int((direct.argmax(1) == data.labels).sum())
    saved = record.to_dict()
    assert not {"outputs", "labels", "predictions"} & set(saved)
    again = EvaluationRecord.from_dict(json.loads(json.dumps(saved)))
    assert again == record  # the arrays are not part of what a record is equal by
    assert again.outputs is None
    assert again.labels is None
    assert again.to_dict() == saved
    assert "outputs" not in repr(record)
    with pytest.raises(ValueError, match="not saved"):
        again.predictions  # noqa: B018 - a read-back record has nothing to predict from


def test_the_record_is_built_typed_with_the_keys_it_reads_back_to(tmp_path) -> None:
    """Issue 20: the data block is built by the data layer (no mapping bridged into it), and
    the record has exactly the keys, in the same order, and the values of itself read back."""
    import dataclasses

    from resnet8_onnx.records import DataInfo, EvaluationRecord, SourceInfo

    backend = load_onnx(make_classifier(tmp_path / "m.onnx"))
    plain = synthetic_dataset(20)
    odd = dataclasses.replace(plain.with_limit(50), skipped=2, class_source="folder names")
    for data in (plain, plain.with_limit(7), odd):
        record = evaluate(backend, data, batch_size=8)
        assert type(record.data) is DataInfo
        assert type(record.data.source) is SourceInfo
        produced = record.to_dict()
        again = EvaluationRecord.from_dict(produced).to_dict()
        assert json.dumps(produced) == json.dumps(again)  # keys, their order, values
        assert EvaluationRecord.from_dict(json.loads(json.dumps(produced))) == record
    assert list(record.data.extra) == ["requested_limit", "skipped_images", "class_source"]
