"""The docs' "As a library" example (docs/library.md), run from the project root with
../shared beside it:

    python examples/library.py

It makes the files it uses — model.onnx (the MLCommons .h5 converted) and export.onnx (a
PyTorch-style export of it) — and writes perf-report/. force=True lets a second run replace
what the first wrote (without it an existing output is refused).
"""

import json

from pytorch_style import pytorch_style  # examples/pytorch_style.py

from resnet8_onnx.backends import load_backend
from resnet8_onnx.convert.keras_to_onnx import convert
from resnet8_onnx.data import load_dataset
from resnet8_onnx.evaluate import evaluate
from resnet8_onnx.records import record_from_dict
from resnet8_onnx.report import render, write
from resnet8_onnx.verify import verify

h5 = "../shared/models/pretrainedResnet.h5"
convert(h5, "model.onnx", force=True)        # Keras → ONNX with tf2onnx, checked
pytorch_style("model.onnx", "export.onnx")  # stand-in for your own torch.onnx.export

data = load_dataset("../shared", subset="perf")
record = evaluate(load_backend("model.onnx"), data)  # an EvaluationRecord (records/)
render(record)  # the terminal view, chosen by the record's type
write(record, "perf-report", force=True)  # report.json, report.md, CSV, PNG
with open("perf-report/report.json", encoding="utf-8") as f:  # a saved record reads back typed
    saved = record_from_dict(json.load(f))
print(saved.SCHEMA, saved.metrics.accuracy, saved.data.full_official_test_set)

# a PyTorch-style export: the spec fields as options would give them
backend = load_backend("export.onnx", preprocessing={"layout": "nchw", "scale": 1 / 255,
                       "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)})
print(backend.input_spec.preprocessing.describe(), backend.input_spec.fixed_batch)
print(backend.input_spec, backend.output_kind, sorted(backend.abilities))
onnx = backend.onnx_session()  # the "session" ability: session, names, spec sources
print(onnx.input_name, onnx.output_name, onnx.preprocessing_sources)

# verify: two runners, one pass over the images each, then a pure comparison of the outputs
report = verify(load_backend(h5), load_backend("model.onnx"), data.images)
print(report.passed, report.parity.max_abs_diff)   # a VerificationRecord
