"""report/sections.py: the sentences and rows both the terminal and Markdown writers show."""

from __future__ import annotations

from report_factory import make_comparison
from resnet8_onnx import records as r
from resnet8_onnx.report import int8_verdict_line, parameters_text, provenance_line
from resnet8_onnx.report.sections import compare_rows, parity_lines


def test_parameters_text_says_what_the_graph_holds_of_batch_normalization() -> None:
    # tf2onnx: 7 Conv → Mul → Add chains over 240 channels, 2 vectors where Keras has 4.
    structure = r.Structure(parameters=78_186, parameter_dtypes={"float32": 78_186},
                            op_inventory={"Conv": 9, "Mul": 7, "Add": 11},
                            batchnorm_mul_add=7, batchnorm_channels=240)
    assert parameters_text(structure) == "78,186 parameters"
    text = parameters_text(structure, 78_666, 7)
    assert text == ("78,186 parameters (the Keras model has 78,666: its 7 BatchNormalization "
                    "layers appear as Mul+Add after their Conv, two per-channel vectors each "
                    "where Keras stores four)")
    assert "folded" not in text
    # Counts that do not add up get no explanation of the difference.
    assert parameters_text(structure, 78_000, 7).endswith("appear as Mul+Add after their Conv)")
    kept = r.Structure(parameters=78_666, op_inventory={"BatchNormalization": 7})
    assert parameters_text(kept, 78_000, 7).endswith("are BatchNormalization nodes)")
    gone = r.Structure(parameters=77_706, parameter_dtypes={"int32": 346, "int8": 77_360},
                       op_inventory={"QLinearConv": 9}, batchnorm_mul_add=0)
    assert parameters_text(gone, 78_666, 7) == (
        "77,706 parameters (346 int32, 77,360 int8) (the Keras model has 78,666: its 7 "
        "BatchNormalization layers have no node of their own (no BatchNormalization node, no "
        "Mul+Add after a Conv))")
    torch_kept = r.Structure(kind="PyTorch", parameters=78_666, op_inventory={
        "convolution": 9, "_native_batch_norm_legit_no_training": 7})
    assert parameters_text(torch_kept, 78_000, 7).endswith(
        "are _native_batch_norm_legit_no_training nodes)")
    torch_folded = r.Structure(kind="PyTorch", parameters=77_706,
                               op_inventory={"convolution": 9})
    assert parameters_text(torch_folded, 78_666, 7).endswith(
        "have no node of their own (no batch-norm operation))")
    assert parameters_text(r.Structure()) is None


def test_provenance_line_says_which_file_came_from_which() -> None:
    other = r.Provenance(converted_from_reference=False, onnx_source_file="retrained.h5",
                         onnx_source_sha256="a" * 64, reference_sha256="b" * 64)
    line = provenance_line(other, "/x/m.onnx", "/x/m.h5")
    assert line.startswith("m.onnx was NOT converted from m.h5: its metadata names retrained.h5")
    same = r.Provenance(converted_from_reference=True, reference_sha256="b" * 64)
    assert provenance_line(same, "m.onnx", "m.h5").startswith("m.onnx was converted from m.h5")
    assert provenance_line(r.Provenance(note="no checksum")) == "not checked: no checksum"
    assert provenance_line(r.Provenance()) is None


def test_parity_lines_include_the_dynamic_batch_and_interface_problems() -> None:
    parity = r.Parity.from_dict({
        "passed": False, "samples": 10, "argmax_agreement": 9, "max_abs_diff": 0.25,
        "atol": 1e-5, "rtol": 1e-5, "elements_over_tolerance": 3, "first_disagreements": [7],
        "dynamic_batch": {"passed": False, "batch_sizes": {"1": {}, "7": {}}},
        "interface_problems": ["output 'y' has shape [N, 9], expected [N, 10]"]})
    lines = parity_lines(parity)
    assert lines[0] == "top-1 agreement 9/10 images"
    assert "max |Δ output| 0.25 (tolerance atol 1e-05, rtol 1e-05)" in lines
    assert "dynamic batch (1, 7): FAILED" in lines
    assert "first disagreeing images: 7" in lines
    assert lines[-1].startswith("interface problem: output 'y'")


def test_compare_rows_one_cell_per_model_and_dashes_for_the_reference() -> None:
    comparison = make_comparison()
    comparison.models[0].label, comparison.models[1].label = "#1 Keras", "#2 ONNX"
    comparison.models[1].versus_reference = {"samples": 2000, "agreement": 1990,
                                             "agreement_fraction": 0.995, "disagreements": 10,
                                             "comparable": True, "max_abs_diff": 0.5}
    rows = {label.strip(): cells for label, cells, _ in compare_rows(comparison)}
    assert rows["agreement with #1 Keras"] == ["—", "99.50%"]  # the reference has no entry
    assert rows["disagreeing images"] == ["—", "10"]
    assert rows["max |Δ output| vs #1 Keras"] == ["—", "5.00e-01"]
    assert len(rows["top-1 accuracy"]) == 2


def test_int8_verdict_line_reads_the_typed_record() -> None:
    record = r.QuantizationRecord(
        evaluation={"fp32": {"accuracy": 0.8719, "correct": 8719, "total": 10_000},
                    "int8": {"accuracy": 0.8717, "correct": 8717, "total": 10_000},
                    "agreement_fraction": 0.9883},
        speed={"speedup": 1.9}, calibration={"test_images": True})
    line = int8_verdict_line(record)
    assert line.startswith("int8 accuracy 87.17% vs fp32 87.19%, agreement 98.83%, 1.9× faster")
    assert line.endswith("— calibrated on TEST images.")
