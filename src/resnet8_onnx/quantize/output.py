"""The chosen int8 model made into the file ``quantize`` writes, and its test-set figures.

The file keeps the float input and carries the source's metadata (class names, output kind)
plus the resolved preprocessing spec, so later commands need no flags; opset imports no node
uses are dropped, and whether only standard ONNX ops remain is measured, not assumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from resnet8_onnx import __version__
from resnet8_onnx.backends.onnxrt import runner as onnxrt
from resnet8_onnx.evaluate import evaluate
from resnet8_onnx.quantize.calibration import images_sha256
from resnet8_onnx.quantize.engine import FloatModel, library_versions, time_sessions
from resnet8_onnx.quantize.opsets import prune_opset_imports, uses_standard_ops_only
from resnet8_onnx.records import Figures, QuantEvaluation, Recipe
from resnet8_onnx.support.errors import InvalidInputError, one_line
from resnet8_onnx.verify import compare_outputs

if TYPE_CHECKING:
    from resnet8_onnx.data import Dataset


def stated_spec(model: FloatModel) -> dict[str, str]:
    """The spec entries of the int8 file: the sentence, and in ``preprocessing_spec`` only the
    fields given by option or read from the source's metadata. A field guessed from the input
    shape or defaulted is left out, so a later stage guesses it again and says so, as
    quantize did (never "metadata" for a guess)."""
    from resnet8_onnx.preprocess import METADATA, METADATA_SPEC, OPTION

    stated = {k: v for k, v in model.spec.to_dict().items()
              if model.spec_sources.get(k) in (OPTION, METADATA)}
    return {**model.spec.to_metadata(), METADATA_SPEC: json.dumps(stated, sort_keys=True)}


def finalise(path: Path, model: FloatModel, recipe: Recipe, dataset: Dataset,
             cal_images: np.ndarray) -> tuple[bytes, bool]:
    """(the chosen model with the source's metadata, the spec and the quantisation's, checked;
    whether it uses standard ONNX ops only)."""
    import onnx

    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(model.metadata)  # class names, output kind … of the source
    props.update(stated_spec(model))  # what was given; the rest resolves again as it did
    versions = library_versions()
    props.update({
        "quantization_recipe": json.dumps(recipe.to_dict(), sort_keys=True),
        "quantization_calibration_source": dataset.source.path,
        "quantization_calibration_split": dataset.split,
        "quantization_calibration_count": str(len(cal_images)),
        "quantization_calibration_sha256": images_sha256(cal_images),
        "quantization_calibration_test_images": str(dataset.split == "test").lower(),
        "quantization_source_sha256": model.sha256,
        "quantization_tool": f"resnet8-onnx {__version__}",
        "quantization_versions": json.dumps(versions, sort_keys=True),
    })
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    prune_opset_imports(proto)
    standard = uses_standard_ops_only(proto)
    ops = "Standard ONNX ops only" if standard else "Uses ONNX Runtime contrib ops (com.microsoft)"
    proto.doc_string = (f"int8 ({recipe.label}) of {Path(model.path).name} (sha256 "
                        f"{model.sha256}), quantised by resnet8-onnx {__version__} with ONNX "
                        f"Runtime {versions.get('onnxruntime')}; calibrated on "
                        f"{len(cal_images):,} {'TEST' if dataset.split == 'test' else ''} "
                        f"images. Input is float: {model.spec.describe()}. "
                        f"{ops}."
                        .replace("  ", " "))
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # pragma: no cover - ORT's quantiser output should always pass
        raise InvalidInputError(f"{model.path}: the quantised model fails the ONNX checker "
                                f"({one_line(exc)})") from exc
    return proto.SerializeToString(), standard


def evaluate_pair(model: FloatModel, int8_path: Path, shown_path: str, test_data: Dataset,
                  batch_size: int, threads: int | None, timing_images: int,
                  rounds: int) -> tuple[QuantEvaluation, float, float]:
    """Both models on the test images, each fed by the model's spec: accuracy, per class,
    agreement, |Δ|, speed."""
    fp32_backend, int8_backend = (
        onnxrt.load(path, threads=threads, preprocessing=model.spec, output=model.output_name)
        for path in (model.path, int8_path))
    fp32 = evaluate(fp32_backend, test_data, batch_size=batch_size)
    int8 = evaluate(int8_backend, test_data, batch_size=batch_size)
    fp32_session, int8_session = fp32_backend.onnx_session(), int8_backend.onnx_session()
    fp32_ips, int8_ips = time_sessions(
        [fp32_session.session, int8_session.session], model.feed,
        test_data.images[:timing_images], batch_size, rounds)
    cmp = compare_outputs(fp32.live_outputs(), int8.live_outputs(), indices=test_data.indices)
    n, agreeing = len(test_data), cmp.argmax_agreement or 0  # always counted here
    return QuantEvaluation(
        data=test_data.info(),
        fp32=Figures.of_result(fp32, model.path, round(fp32_ips, 1)),
        int8=Figures.of_result(int8, int8_path, round(int8_ips, 1), shown_path=shown_path),
        agreement=agreeing, agreement_fraction=agreeing / n if n else None,
        disagreements=n - agreeing,
        first_disagreements=[int(i) for i in cmp.first_disagreements][:10],
        max_abs_diff=cmp.max_abs_diff, mean_abs_diff=cmp.mean_abs_diff,
    ), fp32_ips, int8_ips
