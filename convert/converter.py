"""Turn a trained Keras model into verified, self-describing deployable files.

What is converted: a registry model's run (``runs/<MODEL>/``), any run folder, or a bare
``.keras`` file (labels from ``labels.txt`` beside it or ``--labels``; test and calibration images
from ``--test DIR`` / ``--calibration DIR``). Writes ``deploy/`` beside the model: one file per
format of the formats table, ``labels.txt``, ``deploy.json`` (what each file is, for people) and
``convert_report.json`` (the proof: accuracy, agreement with Keras and the largest probability
difference, for every file). A file that fails its gate is kept as ``<name>.rejected`` and the
command exits non-zero. A format that cannot be honestly built or checked with what was given is
skipped, and the report says why.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.errors import OutputError
from edge_common.files import atomic_write_bytes, read_json, sha256_bytes
from edge_runtime import formats as formats_mod
from edge_runtime.contract import METADATA_KEY, InputSpec, ModelMetadata, OutputSpec
from edge_runtime.errors import ModelFileError
from train import evalsets, runfolder
from train.datasets import kinds
from train.unknown import split_outputs

from . import checks, edgetpu, exporters
from . import report as reports
from .config import ConvertConfig, created_by
from .report import ConvertReport, FileResult
from .subject import Subject, contract_of, subject_of

log = logging.getLogger("edge_classify.convert")
_RANDOM_CHECK_IMAGES = 64  # without any images, float files are compared with Keras on seeded random pixels


def convert(config: ConvertConfig) -> ConvertReport:
    """Convert one model. Raises ModelFileError/OutputError/DatasetError for bad input."""
    config.validate()
    subject = subject_of(config)
    keras_sha = sha256_bytes(subject.model_file.read_bytes())
    previous = read_json(subject.deploy_dir / runfolder.CONVERT_REPORT_FILE)
    config = config.for_model(subject.registry or subject.name)
    if (
        not config.force
        and previous is not None
        and reports.up_to_date(previous, keras_sha, config, subject.deploy_dir)
    ):
        log.info(
            "%s: deploy files are up to date with %s (sha256 %s); skipping (--force redoes them)",
            subject.name,
            subject.model_file.name,
            keras_sha[:12],
        )
        return reports.report_from_json(previous, subject.deploy_dir, skipped=True)

    model = _load_keras(subject.model_file)
    labels, input_spec = contract_of(subject, model, config)
    try:
        subject.deploy_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create {subject.deploy_dir} ({exc.strerror or exc}); check permissions and free space"
        ) from None
    log.info("%s: loading test and calibration images", subject.name)
    calibration = _calibration(subject, config, input_spec)
    check = _reference(subject, config, input_spec, labels, model, calibration)
    unknown = subject.unknown_spec(model)
    with tempfile.TemporaryDirectory(prefix="edge-convert-") as tmp:
        job = checks.Job(
            subject.name,
            config,
            labels,
            input_spec,
            check,
            keras_sha,
            calibration_source(subject, config),
            subject.deploy_dir,
            Path(tmp),
            unknown,
            subject.second_look(unknown),
        )
        results = _convert_formats(job, model, calibration)
    report = ConvertReport(subject.name, subject.deploy_dir, check.keras_accuracy, check.name, results)
    reports.write_reports(report, config, labels, input_spec, keras_sha, subject.model_file)
    return report


# --- what is converted -------------------------------------------------------------------------


def _calibration(subject: Subject, config: ConvertConfig, input_spec: InputSpec) -> np.ndarray | None:
    if config.calibration:
        return evalsets.folder_calibration_set(config.calibration, input_spec, config.calibration_samples)
    if subject.run is not None:
        return subject.run.calibration_set(config.calibration_samples, data_dir=config.data_dir)
    return None


def _reference(
    subject: Subject,
    config: ConvertConfig,
    input_spec: InputSpec,
    labels: tuple[str, ...],
    model: Any,
    calibration: np.ndarray | None,
) -> checks.Check:
    """Test images (labelled when there is a test set) and Keras' predictions on them."""
    if config.test:
        test = evalsets.folder_test_set(config.test, input_spec, labels, limit=config.eval_limit)
        images, truth, name = test.images, test.labels, test.name
    elif subject.run is not None and not kinds.get(subject.run.dataset).labelled_test_set:
        images, truth = evalsets.photo_check_set(input_spec, config.eval_limit), None
        name = f"{len(images)} held-out real photos ({evalsets.PHOTOS}; no ImageNet labels: agreement with Keras)"
    elif subject.run is not None:
        test = subject.run.test_set(data_dir=config.data_dir, limit=config.eval_limit)
        images, truth, name = test.images, test.labels, test.name
    elif calibration is not None:
        images, truth, name = calibration, None, f"{len(calibration)} calibration images (no labels)"
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (_RANDOM_CHECK_IMAGES,) + input_spec.shape[1:], dtype=np.uint8)
        truth, name = None, f"{_RANDOM_CHECK_IMAGES} random-pixel images (no test or calibration images given)"
    keras_probs, keras_unknown = split_outputs(model.predict(images.astype(np.float32), batch_size=64, verbose=0))
    output_kind = "probabilities" if _is_distribution(keras_probs) else "logits"
    if output_kind == "logits":
        log.warning(
            "%s: the model's outputs are not probabilities (they range %.3g..%.3g and do not sum to 1): "
            "recorded as logits, so the runtime applies softmax",
            subject.name,
            keras_probs.min(),
            keras_probs.max(),
        )
        keras_probs = _softmax(keras_probs)
    check = checks.Check(
        images, truth, name, keras_probs, keras_unknown, real="random-pixel" not in name, output_kind=output_kind
    )
    if calibration is not None:
        _warn_if_calibrated_on_test(subject.name, calibration, images)
    if truth is not None:
        check.keras_accuracy = float(np.mean(np.argmax(keras_probs, axis=1) == truth))
        log.info("%s: Keras accuracy %.4f on %s", subject.name, check.keras_accuracy, name)
    return check


def _is_distribution(outputs: np.ndarray, tolerance: float = 1e-3) -> bool:
    """Whether every row is a probability distribution (a softmax output), not raw logits."""
    return bool(np.all(outputs >= -tolerance) and np.all(np.abs(outputs.sum(axis=1) - 1.0) <= tolerance))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _warn_if_calibrated_on_test(name: str, calibration: np.ndarray, test: np.ndarray) -> None:
    """Calibrating int8 on the test images flatters the int8 accuracy measured on them: say so."""
    import hashlib

    seen = {hashlib.sha1(image.tobytes()).digest() for image in test}
    shared = sum(hashlib.sha1(image.tobytes()).digest() in seen for image in calibration)
    if shared:
        log.warning(
            "%s: %d of the %d calibration images are also test images; the int8 accuracy is then measured "
            "on what it was calibrated on (pass --calibration with other images)",
            name,
            shared,
            len(calibration),
        )


# --- converting each format --------------------------------------------------------------------


def _convert_formats(job: checks.Job, model: Any, calibration: np.ndarray | None) -> list[FileResult]:
    """Export, verify and put in place every format of the job, or say why one is skipped."""
    results: list[FileResult] = []
    context = exporters.ExportContext(model, job.input_spec, job.workdir, calibration, job.config.onnx)
    for name in job.config.formats or ():
        fmt = formats_mod.get(name)
        why_not = _cannot_build(fmt, job.check, calibration)
        if why_not:
            log.warning("%s: %s skipped: %s", job.name, fmt.name, why_not)
            results.append(FileResult(fmt.name, fmt.file_name, "skipped", gate=why_not))
            continue
        started = time.perf_counter()
        raw = exporters.exporter(fmt.name)(context)
        result, final_bytes = _verify(fmt, raw, job)
        _put_in_place(result, final_bytes, fmt, job.deploy_dir)
        if fmt.name == "tflite_int8":
            result.edgetpu = edgetpu.check(final_bytes)
            if result.status == "ok":
                result.edgetpu.update(edgetpu.compile_beside(job.deploy_dir / fmt.file_name))
            log.info("%s: %-15s Edge TPU: %s", job.name, fmt.name, result.edgetpu["summary"])
        result.seconds = round(time.perf_counter() - started, 2)
        results.append(result)
        accuracy = "-" if result.accuracy is None else f"{result.accuracy:.4f}"
        log.info(
            "%s: %-15s %-8s accuracy %s agreement %.4f (%.1fs)",
            job.name,
            fmt.name,
            result.status,
            accuracy,
            result.agreement,
            result.seconds,
        )
        if result.default_session_agreement is not None:
            plain = "-" if result.default_session_accuracy is None else f"{result.default_session_accuracy:.4f}"
            log.info(
                "%s: %-15s in a default ONNX Runtime session: accuracy %s agreement %.4f%s",
                job.name,
                fmt.name,
                plain,
                result.default_session_agreement,
                f"; {result.default_session_problem}" if result.default_session_problem else "",
            )
    return results


def _cannot_build(fmt: formats_mod.Format, check: checks.Check, calibration: np.ndarray | None) -> str | None:
    """Why a format cannot be honestly built and checked with the images at hand, if it cannot."""
    if fmt.precision == "int8" and calibration is None:
        return "int8 needs calibration images (--calibration DIR)"
    if fmt.gate == "accuracy" and check.labels is None and not check.real:
        return "its gate is an accuracy drop, which needs labelled test images (--test DIR)"
    return None


def calibration_source(subject: Subject, config: ConvertConfig) -> str:
    if config.calibration:
        return config.calibration
    if subject.run is not None and not kinds.get(subject.run.dataset).labelled_test_set:
        return f"{evalsets.PHOTOS}/train (real photos)"
    return "training split"


def _verify(fmt: formats_mod.Format, raw: bytes, job: checks.Job) -> tuple[FileResult, bytes]:
    """Run the new file in the real runtime, gate it and embed its metadata."""
    probe = job.workdir / fmt.file_name
    probe.write_bytes(raw)
    probs, scores, tensor_spec, output_spec, backend = checks.run_in_runtime(
        probe, job.labels, job.input_spec, job.check.images, job.unknown, job.check.output_kind
    )
    result = checks.compare(fmt, probs, job.check, backend)
    checks.compare_unknown(result, scores, job)
    checks.gate(result, fmt, job.config)
    metadata = _metadata(fmt, result, job, tensor_spec, output_spec)
    final_bytes = exporters.embedder(fmt.kind)(raw, {METADATA_KEY: metadata.to_json()})
    limit = job.config.opencv_check
    if fmt.kind == "onnx" and fmt.quantized:
        probe.write_bytes(final_bytes)
        checks.gate_default_session(
            result, checks.default_session(probe, job.check.images, job.check, tensor_spec), job.config, job.check
        )
    if fmt.kind == "onnx" and limit:
        probe.write_bytes(final_bytes)
        result.opencv_dnn_agreement, result.opencv_dnn_note = checks.opencv_agreement(
            probe, job.check.images[:limit], probs[:limit]
        )
    result.size_bytes, result.sha256 = len(final_bytes), sha256_bytes(final_bytes)
    return result, final_bytes


def _metadata(
    fmt: formats_mod.Format, result: FileResult, job: checks.Job, tensor_spec: InputSpec, output_spec: OutputSpec
) -> ModelMetadata:
    """What travels inside the file: labels, the input contract, and what conversion measured."""
    check, config = job.check, job.config
    accuracy = {"agreement": round(result.agreement, 6), "test_images": float(len(check.images))}
    if result.accuracy is not None and check.keras_accuracy is not None:
        accuracy.update(accuracy=round(result.accuracy, 6), keras_accuracy=round(check.keras_accuracy, 6))
    return ModelMetadata(
        model=job.name,
        format=fmt.name,
        labels=job.labels,
        input=tensor_spec,
        output=output_spec,
        accuracy=accuracy,
        second_look=job.second_look,
        extra={
            "created_by": created_by(),
            "precision": fmt.precision,
            "description": fmt.description,
            "test_set": check.name,
            "keras_sha256": job.keras_sha,
            "calibration_images": config.calibration_samples,
            "calibration_source": job.calibration_source,
            **({"onnx_quantization": asdict(config.onnx)} if fmt.kind == "onnx" and fmt.quantized else {}),
        },
    )


def _put_in_place(result: FileResult, final_bytes: bytes, fmt: formats_mod.Format, deploy_dir: Path) -> None:
    """A passing file takes its final name; a failing one is kept as .rejected and never passes for verified."""
    final = deploy_dir / fmt.file_name
    rejected = deploy_dir / (fmt.file_name + formats_mod.REJECTED_SUFFIX)
    if result.status == "ok":
        atomic_write_bytes(final, final_bytes)
        rejected.unlink(missing_ok=True)
    else:
        atomic_write_bytes(rejected, final_bytes)
        final.unlink(missing_ok=True)
        result.file = rejected.name


# --- reports -----------------------------------------------------------------------------------


def _load_keras(path: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types (zip, h5, JSON, ValueError) for bad files
        raise ModelFileError(
            f"{path}: not a loadable Keras model ({' '.join(str(exc).split())[:150]}); "
            "retrain it with `python -m train`"
        ) from None
