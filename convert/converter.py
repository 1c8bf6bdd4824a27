"""Turn runs/<MODEL>/model.keras into verified, self-describing deployable files.

Writes ``runs/<MODEL>/deploy/``: one file per format of the formats table, ``labels.txt``,
``deploy.json`` (what each file is, for people) and ``convert_report.json`` (the proof: accuracy,
agreement with Keras and the largest probability difference, for every file, on the full test
set). A file that fails its gate is kept as ``<name>.rejected`` and the command exits non-zero.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import formats as formats_mod
from edge_runtime.classifier import Classifier
from edge_runtime.cliutil import atomic_write_bytes, atomic_write_text, dump_json
from edge_runtime.contract import METADATA_KEY, InputSpec, ModelMetadata, OutputSpec, Quantization
from edge_runtime.errors import EdgeError, ModelFileError, OutputError
from edge_runtime.metadata import embed_tflite_entries
from edge_runtime.preprocess import to_input_tensor
from train import evalsets, models, paths

from .exporters import OnnxQuantSettings

log = logging.getLogger("edge_classify.convert")
VERSION = "edge-classify 0.1.0"


class GateError(EdgeError):
    """At least one file failed its parity gate."""

    exit_code = 1


@dataclass(frozen=True)
class ConvertConfig:
    model: str
    runs_dir: str | None = None
    formats: tuple[str, ...] = tuple(fmt.name for fmt in formats_mod.DEPLOYABLE)
    calibration_samples: int = 300  # a few hundred training images: enough for stable min/max ranges
    agreement_min: float = 0.999  # float32/float16 must agree with Keras on >= 99.9% of test images
    max_accuracy_drop: float = 0.005  # dynamic/int8 may lose at most 0.5 accuracy points
    gates: bool = True
    onnx: OnnxQuantSettings = field(default_factory=OnnxQuantSettings)
    eval_limit: int | None = None  # quick tests only; reports say how many images were used
    opencv_check: int = 500  # images checked in OpenCV's DNN module for ONNX files (0: skip)
    data_dir: str | None = None
    force: bool = False
    accept_existing: bool = False  # reuse current files whatever settings made them (quick benchmarks)

    def settings(self) -> dict[str, Any]:
        """What makes two conversions of the same model.keras equal (for skipping)."""
        data = asdict(self)
        for key in ("model", "runs_dir", "data_dir", "force", "formats", "accept_existing"):
            data.pop(key)
        return data


@dataclass
class FileResult:
    format: str
    file: str
    status: str  # ok | rejected | skipped
    size_bytes: int = 0
    accuracy: float = 0.0
    accuracy_drop: float = 0.0
    agreement: float = 0.0
    max_abs_prob_diff: float = 0.0
    gate: str = ""
    backend: str = ""
    opencv_dnn_agreement: float | None = None
    opencv_dnn_note: str | None = None
    sha256: str = ""
    seconds: float = 0.0


@dataclass
class ConvertReport:
    model: str
    deploy_dir: Path
    keras_accuracy: float
    test_set: str
    results: list[FileResult]
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)


def run_dir_for(model: str, runs_dir: str | Path | None) -> Path:
    return (Path(runs_dir).expanduser() if runs_dir else paths.default_runs_dir()) / model


def convert(config: ConvertConfig) -> ConvertReport:
    """Convert one run. Raises ModelFileError/OutputError for bad input, GateError for failed gates."""
    spec = models.get(config.model)
    for name in config.formats:
        formats_mod.get(name)
    run_dir = run_dir_for(config.model, config.runs_dir)
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise ModelFileError(f"no trained model at {model_path}; run `python -m train {config.model}` first")
    keras_sha = _sha256(model_path.read_bytes())
    run_config = _read_json(run_dir / "config.json")
    deploy_dir = run_dir / "deploy"
    previous = _read_json(deploy_dir / "convert_report.json")
    if not config.force and _up_to_date(previous, keras_sha, config, deploy_dir):
        log.info("%s: deploy files are up to date with model.keras (sha256 %s); skipping (--force redoes them)",
                 config.model, keras_sha[:12])
        return _report_from_json(previous, deploy_dir, skipped=True)

    input_spec = _input_spec(spec, run_config)
    model = _load_keras(model_path)
    labels = _labels(run_dir, model)
    _check_input(model, input_spec, model_path, spec)
    try:
        deploy_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {deploy_dir} ({exc.strerror or exc}); check permissions and free space") from None

    log.info("%s: loading test and calibration images", config.model)
    test = evalsets.test_set(spec.dataset, input_spec, run_config=run_config, data_dir=config.data_dir,
                             limit=config.eval_limit)
    calibration = evalsets.calibration_set(spec.dataset, input_spec, config.calibration_samples,
                                           run_config=run_config, data_dir=config.data_dir)
    keras_probs = np.asarray(model.predict(test.images.astype(np.float32), batch_size=500, verbose=0))
    keras_pred = np.argmax(keras_probs, axis=1)
    keras_accuracy = float(np.mean(keras_pred == test.labels))
    log.info("%s: Keras accuracy %.4f on %s", config.model, keras_accuracy, test.name)

    results: list[FileResult] = []
    with tempfile.TemporaryDirectory(prefix="edge-convert-") as tmp:
        saved_model: Path | None = None
        onnx_float: Any = None
        for name in config.formats:
            fmt = formats_mod.get(name)
            started = time.perf_counter()
            if fmt.kind == "tflite":
                from .exporters import export_saved_model, tflite_bytes

                if saved_model is None:
                    saved_model = export_saved_model(model, input_spec, Path(tmp) / "saved_model")
                raw = tflite_bytes(saved_model, fmt.precision, calibration)
            else:
                from .exporters import onnx_float_model, onnx_int8_bytes

                if onnx_float is None:
                    onnx_float = onnx_float_model(model, input_spec)
                raw = onnx_float.SerializeToString() if fmt.precision == "float32" else \
                    onnx_int8_bytes(onnx_float, calibration, config.onnx)
            result = _verify_and_write(fmt, raw, deploy_dir, Path(tmp), config, labels, input_spec, test,
                                       keras_probs, keras_accuracy, keras_sha)
            result.seconds = round(time.perf_counter() - started, 2)
            results.append(result)
            log.info("%s: %-15s %-8s accuracy %.4f agreement %.4f (%.1fs)", config.model, fmt.name, result.status,
                     result.accuracy, result.agreement, result.seconds)

    report = ConvertReport(config.model, deploy_dir, keras_accuracy, test.name, results)
    _write_reports(report, config, labels, input_spec, keras_sha, model_path)
    return report


def _verify_and_write(fmt: formats_mod.Format, raw: bytes, deploy_dir: Path, tmp: Path, config: ConvertConfig,
                      labels: tuple[str, ...], input_spec: InputSpec, test: evalsets.EvalSet,
                      keras_probs: np.ndarray, keras_accuracy: float, keras_sha: str) -> FileResult:
    """Run the new file in the real runtime, gate it, embed its metadata and put it in place."""
    probe = tmp / fmt.file_name
    probe.write_bytes(raw)
    classifier = Classifier.open(probe, labels=labels, input_spec=input_spec)
    try:
        probs = _run_all(classifier, test.images)
        tensor_spec = classifier.input_spec
        out = classifier.backend.output
        output_spec = OutputSpec(dtype=out.dtype, quantization=Quantization(out.scale, out.zero_point)
                                 if out.dtype in ("int8", "uint8") and out.scale > 0 else None)
        backend = f"{classifier.backend.name} {classifier.backend.version}"
    finally:
        classifier.close()
    predicted = np.argmax(probs, axis=1)
    result = FileResult(format=fmt.name, file=fmt.file_name, status="ok", backend=backend,
                        accuracy=float(np.mean(predicted == test.labels)),
                        agreement=float(np.mean(predicted == np.argmax(keras_probs, axis=1))),
                        max_abs_prob_diff=float(np.max(np.abs(probs - keras_probs))) if len(probs) else 0.0)
    result.accuracy_drop = keras_accuracy - result.accuracy
    if fmt.gate == "agreement":
        result.gate = f"agreement >= {config.agreement_min:.3%}"
        passed = result.agreement >= config.agreement_min
    else:
        result.gate = f"accuracy drop <= {100 * config.max_accuracy_drop:.2f} points"
        passed = result.accuracy_drop <= config.max_accuracy_drop + 1e-12
    if config.gates and not passed:
        result.status = "rejected"

    metadata = ModelMetadata(
        model=config.model, format=fmt.name, labels=labels, input=tensor_spec, output=output_spec,
        accuracy={"accuracy": round(result.accuracy, 6), "keras_accuracy": round(keras_accuracy, 6),
                  "agreement": round(result.agreement, 6), "test_images": float(len(test.labels))},
        extra={"created_by": VERSION, "precision": fmt.precision, "description": fmt.description,
               "test_set": test.name, "keras_sha256": keras_sha, "calibration_images": config.calibration_samples,
               "calibration_source": "training split",
               **({"onnx_quantization": asdict(config.onnx)} if fmt.kind == "onnx" and fmt.quantized else {})},
    )
    if fmt.kind == "tflite":
        final_bytes = embed_tflite_entries(raw, {METADATA_KEY: metadata.to_json().encode()})
    else:
        from .exporters import onnx_with_metadata

        final_bytes = onnx_with_metadata(raw, {METADATA_KEY: metadata.to_json()})
    if fmt.kind == "onnx" and config.opencv_check:
        probe.write_bytes(final_bytes)
        result.opencv_dnn_agreement, result.opencv_dnn_note = _opencv_agreement(
            probe, test.images[:config.opencv_check], probs[:config.opencv_check])
    result.size_bytes, result.sha256 = len(final_bytes), _sha256(final_bytes)
    final = deploy_dir / fmt.file_name
    rejected = deploy_dir / (fmt.file_name + formats_mod.REJECTED_SUFFIX)
    if result.status == "ok":
        atomic_write_bytes(final, final_bytes)
        rejected.unlink(missing_ok=True)
    else:
        atomic_write_bytes(rejected, final_bytes)
        final.unlink(missing_ok=True)  # an older file must not pass for a verified one
        result.file = rejected.name
    return result


def _run_all(classifier: Classifier, images: np.ndarray) -> np.ndarray:
    spec = classifier.input_spec
    out = np.empty((len(images), len(classifier.labels)), dtype=np.float32)
    for i, image in enumerate(images):
        out[i] = classifier.infer(to_input_tensor(image[None], spec))
    return out


def _opencv_agreement(onnx_file: Path, images: np.ndarray, runtime_probs: np.ndarray) -> tuple[float | None, str | None]:
    """Top-1 agreement of OpenCV's DNN module with ONNX Runtime on the same file and images.

    OpenCV 5's new DNN engine rejects some QDQ graphs that its classic engine runs, so the
    classic engine is tried when the default one fails; the report names the engine used. (The
    engine choice only takes effect when loading from a path, not from a buffer.)
    """
    import cv2

    engines = [("auto", getattr(cv2.dnn, "ENGINE_AUTO", None)), ("classic", getattr(cv2.dnn, "ENGINE_CLASSIC", None))]
    errors = []
    for engine_name, engine in engines:
        try:
            net = cv2.dnn.readNetFromONNX(str(onnx_file)) if engine is None else \
                cv2.dnn.readNetFromONNX(str(onnx_file), engine)
            agree = 0
            for image, reference in zip(images, runtime_probs):
                net.setInput(image[None].astype(np.float32))
                agree += int(np.argmax(net.forward().reshape(-1)) == np.argmax(reference))
            return agree / max(1, len(images)), (None if engine_name == "auto" else f"ran on OpenCV's {engine_name} engine")
        except cv2.error as exc:
            errors.append(f"{engine_name}: {' '.join(str(exc).split())[-120:]}")
        if engine is None:
            break
    return None, "; ".join(errors)


def _write_reports(report: ConvertReport, config: ConvertConfig, labels: tuple[str, ...], input_spec: InputSpec,
                   keras_sha: str, model_path: Path) -> None:
    deploy_dir = report.deploy_dir
    atomic_write_text(deploy_dir / "labels.txt", "\n".join(labels) + "\n")
    body = {
        "model": report.model,
        "created_by": VERSION,
        "keras_file": str(model_path.name),
        "keras_sha256": keras_sha,
        "keras_accuracy": report.keras_accuracy,
        "test_set": report.test_set,
        "settings": config.settings(),
        "results": [asdict(r) for r in report.results],
    }
    atomic_write_text(deploy_dir / "convert_report.json", dump_json(body))
    deploy = {
        "model": report.model,
        "labels": list(labels),
        "input": input_spec.to_dict(),
        "input_note": "raw 0..255 pixels, NHWC, batch 1; int8 files take int8 input (see each file's quantization)",
        "files": {r.format: {"file": r.file, "status": r.status, "size_bytes": r.size_bytes, "sha256": r.sha256,
                             "accuracy": r.accuracy, "agreement_with_keras": r.agreement,
                             "description": formats_mod.get(r.format).description} for r in report.results},
        "keras_sha256": keras_sha,
    }
    atomic_write_text(deploy_dir / "deploy.json", dump_json(deploy))


def _up_to_date(previous: dict[str, Any] | None, keras_sha: str, config: ConvertConfig, deploy_dir: Path) -> bool:
    if not previous or previous.get("keras_sha256") != keras_sha:
        return False
    if not config.accept_existing and previous.get("settings") != json.loads(json.dumps(config.settings())):
        return False
    by_format = {r["format"]: r for r in previous.get("results", [])}
    for name in config.formats:
        entry = by_format.get(name)
        if not entry or entry.get("status") != "ok":
            return False
        path = deploy_dir / entry["file"]
        if not path.is_file() or path.stat().st_size != entry.get("size_bytes"):
            return False
    return True


def _report_from_json(data: dict[str, Any], deploy_dir: Path, skipped: bool) -> ConvertReport:
    fields = FileResult.__dataclass_fields__
    results = [FileResult(**{k: v for k, v in r.items() if k in fields}) for r in data.get("results", [])]
    return ConvertReport(data["model"], deploy_dir, data.get("keras_accuracy", 0.0), data.get("test_set", ""), results,
                         skipped=skipped)


def _input_spec(spec: models.ModelSpec, run_config: dict[str, Any] | None) -> InputSpec:
    size = (run_config or {}).get("input_size")
    return replace(spec.input, height=size, width=size) if size else spec.input


def _load_keras(path: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types (zip, h5, JSON, ValueError) for bad files
        raise ModelFileError(f"{path}: not a loadable Keras model ({' '.join(str(exc).split())[:150]}); "
                             "retrain it with `python -m train`") from None


def _labels(run_dir: Path, model: Any) -> tuple[str, ...]:
    path = run_dir / "labels.txt"
    try:
        labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    except OSError:
        raise ModelFileError(f"{path} is missing; the run folder is incomplete, retrain with `python -m train`") from None
    classes = int(model.output_shape[-1])
    if len(labels) != classes:
        raise ModelFileError(f"{path} has {len(labels)} labels but the model outputs {classes} classes")
    return labels


def _check_input(model: Any, input_spec: InputSpec, path: Path, spec: models.ModelSpec) -> None:
    actual = tuple(model.input_shape[1:])
    expected = (input_spec.height, input_spec.width, input_spec.channels)
    if actual != expected:
        raise ModelFileError(f"{path}: model input {actual} does not match the registry entry {spec.name!r} "
                             f"{expected}; it was not trained as {spec.name}")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def format_table(report: ConvertReport) -> str:
    lines = [f"{report.model}: Keras accuracy {report.keras_accuracy:.4f} on {report.test_set}"
             + ("  (up to date, not reconverted)" if report.skipped else ""),
             f"{'format':16s} {'file':32s} {'size KB':>8s} {'accuracy':>9s} {'drop pts':>9s} {'agree':>8s} "
             f"{'max|dp|':>8s} {'OpenCV':>7s}  status"]
    for r in report.results:
        cv = "-" if r.opencv_dnn_agreement is None and not r.opencv_dnn_note else \
            ("error" if r.opencv_dnn_agreement is None else f"{r.opencv_dnn_agreement:.3f}")
        lines.append(f"{r.format:16s} {r.file:32s} {r.size_bytes / 1024:8.1f} {r.accuracy:9.4f} "
                     f"{100 * r.accuracy_drop:9.2f} {r.agreement:8.4f} {r.max_abs_prob_diff:8.4f} {cv:>7s}  "
                     f"{r.status}{'' if r.status == 'ok' else ' (' + r.gate + ')'}")
    return "\n".join(lines)
