"""One writer per format for every record: terminal, Markdown, JSON, CSV, PNG.

Records (``records``) are rendered here and nowhere else. Every writer takes a typed record
and reads its attributes; a saved ``*.json`` re-renders without the models once read back with
its record's ``from_dict`` (``records.record_from_dict`` picks the kind by ``schema``). The
rendering libraries (rich, matplotlib) are imported inside the functions that need them, so
importing this package loads neither.

  text.py      numbers, names and the data statement every writer shares
  sections.py  lines and rows built from a record, shared by terminal and Markdown
  terminal.py  rich output of every record; render(record) picks the view by type
  markdown.py  Markdown reports
  jsonio.py    JSON (deterministic) and the plain-JSON conversion
  csv_.py      per-class and per-model CSV
  png.py       confusion matrix, throughput plot
  conversion.py  convert's and annotate's results on the terminal
  tuning.py    tune's record on the terminal
  files.py     each command's report set, checked before and written atomically
"""

from resnet8_onnx.report.conversion import render_annotation_terminal, render_conversion_terminal
from resnet8_onnx.report.csv_ import (
    CSV_COLUMNS,
    compare_csv,
    compare_per_class_csv,
    comparison_per_class_csv,
    csv_number,
    csv_text,
    per_class_csv,
)
from resnet8_onnx.report.files import (
    check_planned,
    compare_files,
    comparison_files,
    evaluation_files,
    files_for,
    quantization_files,
    write,
    write_all,
    write_compare_reports,
    write_comparison_reports,
    write_quantization_reports,
    write_reports,
)
from resnet8_onnx.report.jsonio import jsonable, to_json
from resnet8_onnx.report.markdown import (
    compare_markdown,
    comparison_markdown,
    markdown_summary,
    markdown_table,
    quantization_markdown,
)
from resnet8_onnx.report.png import confusion_matrix_png, throughput_png
from resnet8_onnx.report.sections import (
    calibration_phrase,
    int8_verdict_line,
    parameters_text,
    provenance_line,
)
from resnet8_onnx.report.terminal import (
    render,
    render_benchmark_terminal,
    render_compare_terminal,
    render_comparison_terminal,
    render_data_terminal,
    render_quantization_terminal,
    render_terminal,
    render_verification_terminal,
)
from resnet8_onnx.report.text import (
    CIFAR10_TEST_SIZE,
    DASH,
    backend_label,
    describe_data,
    format_int,
    format_pct,
    format_threshold,
    is_number,
    model_name,
    preprocessing_line,
    runtime_label,
)
from resnet8_onnx.report.tuning import render_tuning_terminal

__all__ = [
    "CIFAR10_TEST_SIZE",
    "CSV_COLUMNS",
    "DASH",
    "backend_label",
    "calibration_phrase",
    "check_planned",
    "compare_csv",
    "compare_files",
    "compare_markdown",
    "compare_per_class_csv",
    "comparison_files",
    "comparison_markdown",
    "comparison_per_class_csv",
    "confusion_matrix_png",
    "csv_number",
    "csv_text",
    "describe_data",
    "evaluation_files",
    "files_for",
    "format_int",
    "format_pct",
    "format_threshold",
    "int8_verdict_line",
    "is_number",
    "jsonable",
    "markdown_summary",
    "markdown_table",
    "model_name",
    "parameters_text",
    "per_class_csv",
    "preprocessing_line",
    "provenance_line",
    "quantization_files",
    "quantization_markdown",
    "render",
    "render_annotation_terminal",
    "render_benchmark_terminal",
    "render_compare_terminal",
    "render_comparison_terminal",
    "render_conversion_terminal",
    "render_data_terminal",
    "render_quantization_terminal",
    "render_terminal",
    "render_tuning_terminal",
    "render_verification_terminal",
    "runtime_label",
    "throughput_png",
    "to_json",
    "write",
    "write_all",
    "write_compare_reports",
    "write_comparison_reports",
    "write_quantization_reports",
    "write_reports",
]
