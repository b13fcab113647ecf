"""One function per command: options → library calls → exit code; rendering is report/'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from resnet8_onnx.cli.options import (
    SPEC_OPTIONS,
    check_device,
    check_models,
    cli_console,
    emit_json,
    emit_text,
    load_data,
    refuse_outputs,
    runtime_options,
    spec_overrides,
)
from resnet8_onnx.records import Record
from resnet8_onnx.support import errors


# --------------------------------------------------------------------------- commands
def cmd_data(args: argparse.Namespace) -> int:
    refuse_outputs(args, files=[args.json], inputs=[args.indices])
    dataset = load_data(args)
    data = dataset.info()
    if args.json == "-":
        emit_json(data, "-", force=True)
        return errors.OK
    from resnet8_onnx.report import render

    render(data, cli_console())
    emit_json(data, args.json, force=args.force)
    return errors.OK


def cmd_convert(args: argparse.Namespace) -> int:
    from resnet8_onnx.convert import applicable, convert, direction_for

    # Default: ./STEM.onnx in the current directory, never beside the input (often a shared,
    # read-only folder of models).
    output = args.output or f"{Path(args.model).stem}.onnx"
    refuse_outputs(args, files=[output, args.json], inputs=[args.model], models=[args.model])
    check_models([args.model], by_suffix=False)  # convert reads its own suffixes
    direction_for(args.model, output)  # an output suffix convert cannot write: refused first
    # Flags with a default (builder, shape, classes) go to the directions that take them; a
    # spec option or --output-name given for a direction that takes none is refused there.
    options = {**applicable(args.model, output, {
        "builder": args.torch_builder, "input_shape": args.input_shape,
        "num_classes": args.num_classes}),
        "opset": args.opset, "preprocessing": spec_overrides(args) or None,
        "output_name": args.output_name}
    result = convert(args.model, output, force=args.force, **options)
    from resnet8_onnx.report import render

    render(result, cli_console(stderr=args.json == "-"))
    emit_json(result.to_dict(), args.json, force=args.force)
    return errors.OK


def cmd_verify(args: argparse.Namespace) -> int:
    from resnet8_onnx.backends import (
        applicable_options,
        backend_for,
        load_backend,
        refuse_unused_options,
        runtimes_for,
    )
    from resnet8_onnx.verify import verify

    refuse_outputs(args, files=[args.json], inputs=[args.reference, args.onnx, args.indices],
                   models=[args.reference, args.onnx])
    check_models([args.reference], by_suffix=args.reference_backend is None)
    check_models([args.onnx])
    # Both models are read (a corrupt or unsafe one refused) before any data is searched.
    check_device(args, [args.onnx])  # the reference runs where its runtime runs
    # Each side resolves its own spec; options describe whichever sides take a spec (ONNX),
    # as in compare: a Keras or LiteRT reference takes raw pixels, a .pt2 states its own.
    options = {"preprocessing": spec_overrides(args), "output": args.output_name,
               "provider": args.provider, "device": args.device, **runtime_options(args)}
    ref_name = args.reference_backend or backend_for(args.reference)
    name = runtimes_for([args.onnx], [args.runtime])[0]  # --runtime: the candidate's
    refuse_unused_options([name], runtime_options(args))
    if options["preprocessing"] and "preprocessing" not in {
            *applicable_options(ref_name, options), *applicable_options(name, options)}:
        raise errors.UsageError(
            f"spec options (--{', --'.join(options['preprocessing'])}) describe ONNX models; "
            f"neither {args.reference} nor {args.onnx} is one (a .pt2 states its own spec)")
    reference = load_backend(args.reference, ref_name, threads=args.threads,
                             **applicable_options(ref_name, options))
    candidate = load_backend(args.onnx, name, threads=args.threads,
                             **applicable_options(name, options))
    dataset = load_data(args, [reference, candidate])
    report = verify(reference, candidate, dataset.images, indices=dataset.indices,
                    atol=args.atol, rtol=args.rtol, layerwise=args.layerwise,
                    batch_size=args.batch_size, image_shape=tuple(dataset.images.shape[1:]),
                    num_classes=reference.info.num_classes or len(dataset.class_names))
    report.data = dataset.info()
    from resnet8_onnx.report import render

    render(report, cli_console(stderr=args.json == "-"))
    emit_json(report, args.json, force=args.force)
    return errors.OK if report.passed else errors.VERIFICATION_FAILED


def _planned_runtime(args: argparse.Namespace) -> str:
    """The runtime ``evaluate`` will run the model with, known before loading it: the report's
    confusion PNG carries its name. A model whose kind cannot be told yet is refused by the
    model checks that follow; its placeholder name is never written."""
    from resnet8_onnx.backends import backend_for, runtimes_for

    try:
        if args.runtime is not None:
            return runtimes_for([args.model], [args.runtime])[0]
        return str(args.backend or backend_for(args.model))
    except errors.UsageError:
        return "model"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from resnet8_onnx.backends import load_backend, runtimes_for
    from resnet8_onnx.backends.base import HasSession, able
    from resnet8_onnx.backends.onnxrt.testdata import check_destination
    from resnet8_onnx.evaluate import evaluate
    from resnet8_onnx.metrics import meets_accuracy
    from resnet8_onnx.report import evaluation_files

    out_dir = refuse_outputs(args, files=[args.json],
                             reports=evaluation_files(_planned_runtime(args)),
                             inputs=[args.model, args.indices], models=[args.model],
                             directories=[(args.save_test_data,
                                           lambda d: check_destination(d, force=args.force))])
    check_models([args.model], by_suffix=args.backend is None, backend_option=True)
    name = args.backend
    if args.runtime is not None:
        if args.backend not in (None, args.runtime):
            raise errors.UsageError(f"--backend {args.backend} and --runtime {args.runtime} "
                                    "disagree; give one")
        name = runtimes_for([args.model], [args.runtime])[0]
    backend = load_backend(args.model, name, threads=args.threads,
                           preprocessing=spec_overrides(args), output=args.output_name,
                           provider=args.provider, device=args.device, **runtime_options(args))
    if args.save_test_data is not None and able(backend, HasSession) is None:
        raise errors.UsageError("--save-test-data needs an ONNX model")
    dataset = load_data(args, [backend])
    record = evaluate(backend, dataset, batch_size=args.batch_size)
    metrics = record.metrics
    below = args.min_accuracy is not None and not meets_accuracy(
        metrics.correct, metrics.total, args.min_accuracy)
    from resnet8_onnx.report import render

    render(record, cli_console(stderr=args.json == "-"))
    if args.save_test_data is not None:
        from resnet8_onnx.backends.onnxrt.testdata import save_test_data

        saved = save_test_data(backend, dataset.images, args.save_test_data,
                               count=args.count, force=args.force)
        record.extra["test_data"] = saved
        cli_console(stderr=True).print(f"test data: {len(saved['sets'])} sets in "
                                    f"{saved['directory']}")
    emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, record, force=args.force)
    if not below:  # last, once nothing can fail; a failure says it in its own one line
        _print_warnings([record])
    if below:
        from resnet8_onnx.report import format_threshold

        why = "".join(f"; {w[w.find('near chance'):]}" for w in record.warnings or ()
                      if "near chance" in w)
        raise errors.AccuracyBelowThresholdError(
            f"{args.model}: accuracy {metrics.accuracy:.2%} ({metrics.correct:,}/"
            f"{metrics.total:,}) is below --min-accuracy {format_threshold(args.min_accuracy)}"
            f"{why}")
    return errors.OK


def cmd_annotate(args: argparse.Namespace) -> int:
    from resnet8_onnx.convert.annotate import annotate, check_output_suffix, read_class_names
    refuse_outputs(args, files=[args.json, args.output_file],
                   inputs=[args.model, args.class_names],
                   models=[args.model])  # before loading any data
    check_models([args.model], by_suffix=False)  # annotate says what it takes
    check_output_suffix(args.output_file)
    names = read_class_names(args.class_names) if args.class_names else None
    from resnet8_onnx.cli.dataopts import geometry_options

    images = load_data(args).images if args.embed else None
    account = annotate(args.model, args.output_file,
                       preprocessing={**spec_overrides(args), **geometry_options(args)},
                       class_names=names, output=args.output_name, embed_preprocessing=args.embed,
                       images=images, atol=args.atol, rtol=args.rtol, force=args.force)
    from resnet8_onnx.report import render_annotation_terminal

    render_annotation_terminal(account, cli_console(stderr=args.json == "-"))
    emit_json(account, args.json, force=args.force)
    return errors.OK


def _print_warnings(records: Any) -> None:
    """Each model record's warnings (e.g. accuracy near chance), one stderr line each; they
    are in the JSON too."""
    for record in records:
        for warning in record.warnings or ():
            print(f"resnet8-onnx: warning: {warning}", file=sys.stderr)


def _write_reports_locked(out_dir: Path | None, record: Record, *, force: bool) -> None:
    """Create ``out_dir``, hold its lock while :func:`report.write` writes ``record``'s report
    set, list the files; a failed write leaves neither files nor a directory this invocation
    created."""
    if out_dir is None:
        return
    from resnet8_onnx.report import check_planned, files_for, write
    from resnet8_onnx.support.fsutil import report_directory

    targets = check_planned(out_dir, files_for(record), force=force).values()
    with report_directory(out_dir, targets):
        written = write(record, out_dir, force=force)
    _list_written(written.values())


def _list_written(paths: Any) -> None:
    """Every command lists the files it wrote the same way: one line on stderr."""
    cli_console(stderr=True).print("reports: " + ", ".join(str(p) for p in paths), markup=False,
                                soft_wrap=True)


def cmd_run(args: argparse.Namespace) -> int:
    from resnet8_onnx.pipeline import check_outputs, model_files, run_pipeline
    from resnet8_onnx.report import render, write
    from resnet8_onnx.support.fsutil import refuse_overwriting_inputs, report_directory

    if args.min_agreement is not None and not args.int8:
        raise errors.UsageError("--min-agreement is --int8's quality gate; add --int8")
    targets = check_outputs(args.out, force=args.force, int8=args.int8)  # before anything
    json_file = [args.json] if args.json not in (None, "-") else []
    refuse_overwriting_inputs([*targets, *json_file], ())  # --json onto a report file
    refuse_outputs(args, files=[args.json],
                   inputs=[args.model, args.indices, args.calibration_data],
                   models=[args.model])
    check_models([args.model], by_suffix=False)  # the pipeline says what it takes
    # A failed or interrupted run takes back what it wrote, so the same command can be rerun.
    with errors.remedies(_run_remedies()), report_directory(args.out, targets) as out_dir:
        comparison = run_pipeline(
            model=args.model, data_dir=args.data_dir, out_dir=out_dir, split=args.split or "test",
            subset=args.subset,
            indices_file=args.indices, limit=args.limit, opset=args.opset,
            min_accuracy=args.min_accuracy, atol=args.atol, rtol=args.rtol,
            batch_size=args.batch_size, threads=args.threads, force=args.force,
            download=False if args.offline else None,
            int8=args.int8, calibration_data=args.calibration_data, also_outputs=json_file,
            min_agreement=args.min_agreement,
        )
        reports = write(comparison, out_dir, force=args.force)
    models = model_files(out_dir, int8=comparison.int8 is not None)
    comparison.files = {k: str(v) for k, v in {**reports, **models}.items()}
    written = list(comparison.files.values())
    if args.json is not None:  # run's record: report.json's very text
        emit_text(Path((comparison.files or {})["json"]).read_text(encoding="utf-8"), args.json,
                   force=args.force)
        written += json_file
    render(comparison, cli_console(stderr=args.json == "-"))
    _list_written(written)
    _print_warnings(comparison.models)
    if comparison.parity is None or not comparison.parity.passed:
        return errors.VERIFICATION_FAILED
    if comparison.verdict is None or not comparison.verdict.meets_threshold:
        return errors.ACCURACY_BELOW_THRESHOLD
    if comparison.extra.get("int8_failed"):  # --int8's model failed quantize's quality gate
        cli_console(stderr=True).print(comparison.extra["int8_failed"], markup=False,
                                    soft_wrap=True)
        return errors.VERIFICATION_FAILED
    return errors.OK


def cmd_compare(args: argparse.Namespace) -> int:
    from resnet8_onnx.compare import compare_models
    from resnet8_onnx.report import compare_files, render

    if len(args.models) < 2:
        raise errors.UsageError("compare needs at least two models (the first is the reference)")
    out_dir = refuse_outputs(args, files=[args.json], reports=compare_files(),
                             inputs=[*args.models, args.indices], models=args.models)
    check_models(args.models)
    check_device(args, args.models)
    from resnet8_onnx.backends import refuse_unused_options, runtimes_for
    from resnet8_onnx.compare import per_model_options

    names = runtimes_for(args.models, args.runtime)
    refuse_unused_options(names, runtime_options(args))
    options = per_model_options(args.models, {
        **{name: getattr(args, name) for name in SPEC_OPTIONS}, "output": args.output_name,
        **runtime_options(args)}, backends=names)
    # Every model is loaded (a corrupt one refused) before the data is searched.
    record = compare_models(args.models, lambda models: load_data(args, models),
                            backends=names, batch_size=args.batch_size, threads=args.threads,
                            options=options, provider=args.provider, device=args.device)
    render(record, cli_console(stderr=args.json == "-"))
    emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, record, force=args.force)
    _print_warnings(record.models)  # last: a refusal above stays one line
    return errors.OK


def cmd_quantize(args: argparse.Namespace) -> int:
    from resnet8_onnx.quantize import (
        Recipe,
        auto_grid,
        inspect_float_model,
        load_calibration_data,
        quantize,
    )
    from resnet8_onnx.report import (
        quantization_files,
        render,
    )

    model = Path(args.model)
    # Default: ./STEM_int8.onnx in the current directory, as convert: never beside the input.
    output = args.output or f"{model.stem}_int8.onnx"
    # Before any work, nothing written on refusal; never onto the model or calibration images.
    out_dir = refuse_outputs(args, files=[args.json, output],
                             reports=quantization_files(),
                             inputs=[args.model, args.calibration_data,
                                     args.calibration_indices, args.indices],
                             models=[args.model])
    check_models([args.model], by_suffix=False)  # inspect_float_model says what it takes
    if args.provider is not None:
        from resnet8_onnx.backends.onnxrt.runner import DEFAULT_PROVIDER, resolve_provider

        if resolve_provider(args.provider) != DEFAULT_PROVIDER:
            raise errors.UsageError(f"--provider {args.provider}: quantize measures int8 "
                                    "against fp32 on the CPU (CPUExecutionProvider) only")
    from resnet8_onnx.records.recipe import UNSUPPORTED_TYPES, unsupported_types_message

    if (args.activations, args.weights) in UNSUPPORTED_TYPES:  # a usage error, before any work
        raise errors.UsageError(unsupported_types_message(args.activations, args.weights))
    preprocessing = spec_overrides(args)
    output_name = getattr(args, "output_name", None)
    # A missing, non-ONNX or quantised model, or a bad spec, fails before the data.
    inspect_float_model(model, preprocessing=preprocessing, output=output_name)
    if args.auto:
        recipe: Any = auto_grid(
            formats=[args.format] if args.format else None,
            activations=[args.activations] if args.activations else None,
            methods=[args.method] if args.method else None, weights=args.weights,
            per_channel=args.per_channel, exclude=args.exclude or (),
            float_pooling=None if args.float_pooling is None else [args.float_pooling])
    else:
        recipe = Recipe(format=args.format or "qdq", activations=args.activations or "uint8",
                        weights=args.weights, per_channel=args.per_channel,
                        method=args.method or "minmax", exclude=tuple(args.exclude or ()),
                        float_pooling=True if args.float_pooling is None else args.float_pooling)
    from resnet8_onnx.backends.onnxrt.runner import load as load_onnx
    from resnet8_onnx.cli.dataopts import folder_request

    # The fp32 model's class names and input size fit a labelled image set to it.
    fp32 = [load_onnx(model, preprocessing=preprocessing, output=output_name)]
    with errors.remedies(_quantize_remedies(args)):
        calibration = load_calibration_data(args.calibration_data,
                                            indices_file=args.calibration_indices,
                                            download=False,
                                            allow_test=args.allow_test_calibration,
                                            request=folder_request(args, fp32))
        test_data = load_data(args, fp32) if args.data_dir is not None else None
        record = quantize(model, output, calibration, recipe,
                          calibration_count=args.calibration_count, tolerance=args.tolerance,
                          min_agreement=args.min_agreement, test_data=test_data,
                          batch_size=args.batch_size, threads=args.threads,
                          diagnose=True if args.layer_errors else None, force=args.force,
                          preprocessing=preprocessing, output=output_name,
                          standard_ops=args.standard_ops)
    render(record, cli_console(stderr=args.json == "-"))
    emit_json(record, args.json, force=args.force)
    _write_reports_locked(out_dir, record, force=args.force)
    _print_warnings([record])  # e.g. fp32 near chance: the spec looks wrong
    return errors.OK


def _quantize_remedies(args: argparse.Namespace) -> dict[str, str]:
    """How quantize's own options fix a calibration refusal (the library names none)."""
    from resnet8_onnx.quantize.calibration import (
        GATE_HOLDOUT_TOO_SMALL,
        HOLDOUT_TOO_SMALL,
        NO_TRAINING_IMAGES,
        TEST_IMAGES,
    )

    test = ("it holds no test batch either" if args.allow_test_calibration else
            "or --allow-test-calibration for an official test batch directory")
    return {
        NO_TRAINING_IMAGES: "give --calibration-data training images (an image folder such as "
                            "train-2000-png, or an official layout with training batches), "
                            f"--calibration-indices FILE for test-set indices, {test}",
        TEST_IMAGES: "pass --allow-test-calibration if you mean to calibrate on them",
        HOLDOUT_TOO_SMALL: "lower --calibration-count, or fix the recipe with --no-auto",
        GATE_HOLDOUT_TOO_SMALL: "lower --calibration-count, give more images, or "
                                "--min-agreement 0 to skip the gate",
    }


def _run_remedies() -> dict[str, str]:
    """How run's own options fix a calibration refusal of --int8 (run has no quantize knobs)."""
    from resnet8_onnx.quantize.calibration import (
        GATE_HOLDOUT_TOO_SMALL,
        HOLDOUT_TOO_SMALL,
        MIN_HOLDOUT,
        NO_TRAINING_IMAGES,
        TEST_IMAGES,
    )

    training = "name a folder of training images with --calibration-data DIR, e.g. train-2000-png"
    return {
        NO_TRAINING_IMAGES: training,
        TEST_IMAGES: f"run calibrates on training images only: {training}",
        HOLDOUT_TOO_SMALL: f"give --calibration-data at least {2 * MIN_HOLDOUT} images",
        GATE_HOLDOUT_TOO_SMALL: f"give --calibration-data at least {2 * MIN_HOLDOUT} images, "
                                "or --min-agreement 0 to skip the gate",
    }


def cmd_benchmark(args: argparse.Namespace) -> int:
    from resnet8_onnx.bench import (
        DEFAULT_MIN_ITERATIONS,
        DEFAULT_MIN_SECONDS,
        DEFAULT_WARMUP_SECONDS,
        QUICK_MIN_SECONDS,
        QUICK_WARMUP_SECONDS,
        benchmark,
        check_benchmark_request,
        probe_models,
    )
    from resnet8_onnx.report import render, throughput_png

    refuse_outputs(args, files=[args.json, args.plot, args.save_optimized], inputs=args.models,
                   models=args.models)
    check_models(args.models)
    check_device(args, args.models)
    from resnet8_onnx.backends import refuse_unused_options, runtimes_for

    names = runtimes_for(args.models, args.runtime)
    refuse_unused_options(names, runtime_options(args))
    check_benchmark_request(  # the models and options alone, before any data search
        args.models, backends=names, batch_sizes=args.batch_sizes, threads=args.threads,
        optimization_levels=args.optimization, images=None,
        save_optimized=args.save_optimized, force=args.force)
    onnx_options = {"preprocessing": spec_overrides(args), "output": args.output_name,
                    "provider": args.provider, **runtime_options(args)}
    probe_models(args.models, onnx_options=onnx_options, device=args.device,
                 backends=names)  # before data
    images = data = None
    if args.data_dir is not None:
        dataset = load_data(args)
        images, data = dataset.images, dataset.info()
    record = benchmark(
        args.models, backends=names, batch_sizes=args.batch_sizes, threads=args.threads,
        optimization_levels=args.optimization, full_grid=args.full_grid,
        min_seconds=args.min_seconds if args.min_seconds is not None else (
            QUICK_MIN_SECONDS if args.quick else DEFAULT_MIN_SECONDS),
        min_iterations=args.min_iterations or DEFAULT_MIN_ITERATIONS,
        warmup_seconds=QUICK_WARMUP_SECONDS if args.quick else DEFAULT_WARMUP_SECONDS,
        images=images, data=data, save_optimized=args.save_optimized, force=args.force,
        onnx_options=onnx_options, device=args.device)
    render(record, cli_console(stderr=args.json == "-"))
    emit_json(record, args.json, force=args.force)
    if args.plot is not None:
        from resnet8_onnx.support.fsutil import write_bytes_atomic

        write_bytes_atomic(args.plot, throughput_png(record), force=args.force)
        cli_console(stderr=True).print(f"plot: {args.plot}")
    return errors.OK




def cmd_tune(args: argparse.Namespace) -> int:
    from resnet8_onnx.quantize import inspect_float_model, load_calibration_data
    from resnet8_onnx.quantize.calibration import HOLDOUT_TOO_SMALL
    from resnet8_onnx.quantize.tune import output_files, tune
    from resnet8_onnx.report import render

    configurations = tuple(c.strip() for c in args.configurations.split(",") if c.strip())
    files = output_files(args.output)
    planned = [*files["onnx"], *(files["ir"] if "openvino-int8" in configurations else [])]
    refuse_outputs(args, files=[args.json, *map(str, planned)],
                   inputs=[args.model, args.calibration_data, args.indices], models=[args.model])
    check_models([args.model], by_suffix=False)  # inspect_float_model says what it takes
    preprocessing = spec_overrides(args)
    inspect_float_model(args.model, preprocessing=preprocessing, output=args.output_name)
    remedies = {**_quantize_remedies(args),
                HOLDOUT_TOO_SMALL: "give --calibration-data more images, or lower "
                                   "--calibration-count"}
    with errors.remedies(remedies):
        calibration = load_calibration_data(args.calibration_data, download=False,
                                            allow_test=args.allow_test_calibration)
        test_data = load_data(args) if args.data_dir is not None else None
        record = tune(args.model, args.output, calibration, tolerance=args.tolerance,
                      test_data=test_data, calibration_count=args.calibration_count,
                      batch_size=args.batch_size, threads=args.threads, force=args.force,
                      preprocessing=preprocessing or None, output=args.output_name,
                      configurations=configurations)
    render(record, cli_console(stderr=args.json == "-"))
    emit_json(record, args.json, force=args.force)
    return errors.OK
