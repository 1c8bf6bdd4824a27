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

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np

from edge_common.cli import option
from edge_common.errors import EdgeError, OutputError
from edge_common.files import atomic_write_bytes, atomic_write_text, dump_json, read_json, sha256_bytes
from edge_runtime import formats as formats_mod
from edge_runtime.classifier import Classifier
from edge_runtime.contract import METADATA_KEY, InputSpec, ModelMetadata, OutputSpec, Quantization, UnknownSpec
from edge_runtime.errors import ModelFileError
from edge_runtime.preprocess import to_input_tensor
from train import evalsets, models, runfolder
from train.runfolder import RunFolder, read_labels
from train.unknown import has_unknown_output, split_outputs

from . import exporters
from .exporters import OnnxQuantSettings

log = logging.getLogger("edge_classify.convert")
_FORMAT_NAMES = tuple(fmt.name for fmt in formats_mod.DEPLOYABLE)
_RANDOM_CHECK_IMAGES = 64  # without any images, float files are compared with Keras on seeded random pixels


def created_by() -> str:
    """``edge-classify <version>`` from the installed package metadata."""
    try:
        return f"edge-classify {package_metadata.version('edge-classify')}"
    except package_metadata.PackageNotFoundError:  # a checkout that was never installed
        return "edge-classify (not installed)"



@dataclass(frozen=True)
class ConvertConfig:
    """One conversion; every field but ``model`` and ``accept_existing`` is a ``python -m convert`` option."""

    model: str = option("", cli=False)  # registry name, run folder or .keras file
    runs_dir: str | None = option(help="folder holding run folders (default: runs/ in the checkout, or "
                                       "$EDGE_RUNS_DIR)")
    formats: tuple[str, ...] | None = option(help="formats to write (default: the registry entry's, else all): "
                                                   + ", ".join(_FORMAT_NAMES), choices=_FORMAT_NAMES,
                                      metavar="FORMAT")
    # A few hundred training images: enough for stable min/max ranges.
    calibration_samples: int = option(300, "training images for int8 calibration")
    agreement_min: float = option(0.999, "float32/float16 gate: top-1 agreement with Keras")
    max_accuracy_drop: float = option(0.005, "dynamic/int8 gate: accuracy loss against Keras as a fraction "
                                             "(0.005 = 0.5 points)")
    unlabelled_agreement_min: float | None = option(help="dynamic/int8 gate when the real check photos have no "
                                                         "labels (a model with no test set here): top-1 agreement "
                                                         "with Keras (default: the registry entry's, else 0.9)")
    gates: bool = option(True, "report gate failures but keep every file")
    onnx_activations: str = option("uint8", "ONNX int8 activation type: uint8 for x86, int8 for ARM",
                                   choices=("uint8", "int8"))
    onnx_reduce_range: bool | None = option(help="7-bit ONNX weights, for x86 CPUs without VNNI (default: the "
                                                  "registry entry's, else on; turn off for ARM/VNNI)", both=True)
    eval_limit: int | None = option(help="check on the first N test images only (quick runs)")
    opencv_check: int = option(500, "images to check in OpenCV DNN per ONNX file (0: skip)")
    data_dir: str | None = option(help="Fashion-MNIST folder (default: search; see README)")
    force: bool = option(False, "convert even when deploy files are up to date")
    labels: str | None = option(help="a bare .keras file: its labels file, one class per line (default: "
                                     "labels.txt beside it)", group="a bare .keras file")
    test: str | None = option(help="a folder dataset DIR/<class>/*.jpg to measure accuracy on (a bare .keras "
                                   "file has no recorded test set)", metavar="DIR", group="a bare .keras file")
    calibration: str | None = option(help="a folder of training images DIR/<class>/*.jpg for int8 calibration",
                                     metavar="DIR", group="a bare .keras file")
    color_order: str | None = option(help="a bare .keras file with 3 input channels: the colour order it was "
                                           "trained on (default: RGB)", choices=("RGB", "BGR"),
                                      group="a bare .keras file")
    verbose: bool = option(False, "show the quantizers' own progress lines (hundreds of them for ONNX int8)")
    # reuse current files whatever settings made them (quick benchmarks)
    accept_existing: bool = option(False, cli=False)

    @property
    def onnx(self) -> OnnxQuantSettings:
        reduce_range = True if self.onnx_reduce_range is None else self.onnx_reduce_range
        return OnnxQuantSettings(activation_type=self.onnx_activations, reduce_range=reduce_range)

    def validate(self) -> None:
        if self.calibration_samples < 1 or (self.eval_limit is not None and self.eval_limit < 1):
            raise EdgeError("--calibration-samples and --eval-limit must be at least 1")
        for name in self.formats or ():
            formats_mod.get(name)

    def for_model(self, model: str) -> "ConvertConfig":
        """Options left unset filled from ``model``'s registry entry: the formats it ships (else all)
        and the conversion options it changes."""
        spec = models.REGISTRY.get(model)
        changes: dict[str,
                      Any] = {"formats": self.formats or (spec.formats if spec and spec.formats else _FORMAT_NAMES)}
        for key, value in (spec.convert if spec else {}).items():
            if getattr(self, key) is None:
                changes[key] = value
        return replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """What makes two conversions of the same model.keras equal (for skipping)."""
        settings = {"calibration_samples": self.calibration_samples, "agreement_min": self.agreement_min,
                    "max_accuracy_drop": self.max_accuracy_drop, "gates": self.gates, "onnx": asdict(self.onnx),
                    "eval_limit": self.eval_limit, "opencv_check": self.opencv_check}
        if self.unlabelled_agreement_min is not None:  # only matters without labels; older reports lack it
            settings["unlabelled_agreement_min"] = self.unlabelled_agreement_min
        for key in ("test", "calibration", "color_order"):  # a bare file's images and contract
            if getattr(self, key) is not None:
                settings[key] = getattr(self, key)
        return settings


DROP_SIGNIFICANCE = 0.05  # the accuracy gate's level: a larger drop with p >= this is put down to chance


@dataclass
class FileResult:
    format: str
    file: str
    status: str  # ok | rejected | skipped
    size_bytes: int = 0
    accuracy: float | None = None  # None: no labelled test images
    accuracy_drop: float | None = None
    # One-sided exact McNemar test on the images only one of Keras and the file gets right: the chance
    # that a file as good as Keras loses at least this many of them. None: no labels.
    drop_p_value: float | None = None
    agreement: float = 0.0
    max_abs_prob_diff: float = 0.0
    # Files with the out-of-class output: how often the file's unknown verdict matched Keras', and
    # the largest score difference, on the check images.
    unknown_agreement: float | None = None
    max_abs_unknown_diff: float | None = None
    gate: str = ""  # the gate, or why the format was skipped
    backend: str = ""
    opencv_dnn_agreement: float | None = None
    opencv_dnn_note: str | None = None
    sha256: str = ""
    seconds: float = 0.0

    @property
    def measured(self) -> str:
        """What the gate measured, in the gate's own terms ("accuracy drop 1.20 points")."""
        if self.gate.startswith("accuracy drop") and self.accuracy_drop is not None:
            p_value = "" if self.drop_p_value is None else f" (McNemar p {self.drop_p_value:.3f})"
            return f"accuracy drop {100 * self.accuracy_drop:.2f} points{p_value}"
        return f"agreement {self.agreement:.1%}"

    @property
    def verdict(self) -> str:
        """The status column: a rejection says what was measured against what was allowed."""
        if self.status == "rejected":
            return f"REJECTED: {self.measured}, gate {self.gate}"
        return self.status


@dataclass
class ConvertReport:
    model: str
    deploy_dir: Path
    keras_accuracy: float | None
    test_set: str
    results: list[FileResult]
    skipped: bool = False  # up to date: nothing was converted

    @property
    def ok(self) -> bool:
        return all(r.status != "rejected" for r in self.results)


@dataclass
class _Subject:
    """What is converted: a model file, its contract and labels, and where its images come from."""

    name: str
    model_file: Path
    deploy_dir: Path
    labels: tuple[str, ...] | None  # None: read after the model is loaded (bare files)
    input_spec: InputSpec | None  # None: from the model's input shape (bare files)
    run: RunFolder | None = None
    registry: str | None = None  # the registry entry it was trained as (its conversion options)

    def unknown_threshold(self, model: Any) -> float | None:
        """The out-of-class threshold training calibrated (None: the model has no such output).

        Raises:
            ModelFileError: the model has the output but nothing says its threshold.
        """
        if not has_unknown_output(model):
            return None
        recorded = self.run.unknown if self.run is not None else None
        if not recorded or not isinstance(recorded.get("threshold"), (int, float)):
            raise ModelFileError(f"{self.model_file}: the model has an out-of-class output but no calibrated "
                                 "threshold; convert it from its run folder (metrics.json holds the threshold)")
        return float(recorded["threshold"])


@dataclass
class _Job:
    """What every format of one conversion shares: the model's contract, the check images, and where
    files go."""

    name: str
    config: "ConvertConfig"
    labels: tuple[str, ...]
    input_spec: InputSpec
    check: "_Check"
    keras_sha: str
    calibration_source: str
    deploy_dir: Path
    workdir: Path
    unknown: UnknownSpec | None = None  # the out-of-class output's contract, where the model has one


@dataclass
class _Check:
    """The images every file is compared with Keras on, and Keras' own answers."""

    images: np.ndarray
    labels: np.ndarray | None  # None: no labelled test set; accuracy cannot be measured
    name: str
    keras_probs: np.ndarray
    keras_unknown: np.ndarray | None = None  # Keras' out-of-class scores, where the model has them
    keras_accuracy: float | None = None
    real: bool = True  # real images; False: random pixels, which say nothing about a quantized file
    output_kind: str = "probabilities"  # "logits": the model has no softmax; the runtime applies it


def convert(config: ConvertConfig) -> ConvertReport:
    """Convert one model. Raises ModelFileError/OutputError/DatasetError for bad input."""
    config.validate()
    subject = _subject(config)
    keras_sha = sha256_bytes(subject.model_file.read_bytes())
    previous = read_json(subject.deploy_dir / "convert_report.json")
    config = config.for_model(subject.registry or subject.name)
    if not config.force and _up_to_date(previous, keras_sha, config, subject.deploy_dir):
        log.info("%s: deploy files are up to date with %s (sha256 %s); skipping (--force redoes them)",
                 subject.name, subject.model_file.name, keras_sha[:12])
        return _report_from_json(previous, subject.deploy_dir, skipped=True)

    model = _load_keras(subject.model_file)
    labels, input_spec = _contract(subject, model, config)
    try:
        subject.deploy_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {subject.deploy_dir} ({exc.strerror or exc}); check permissions and free "
                          "space") from None
    log.info("%s: loading test and calibration images", subject.name)
    calibration = _calibration(subject, config, input_spec)
    check = _reference(subject, config, input_spec, labels, model, calibration)
    threshold = subject.unknown_threshold(model)
    unknown = UnknownSpec(threshold=threshold) if threshold is not None else None
    with tempfile.TemporaryDirectory(prefix="edge-convert-") as tmp:
        job = _Job(subject.name, config, labels, input_spec, check, keras_sha, calibration_source(subject, config),
                   subject.deploy_dir, Path(tmp), unknown)
        results = _convert_formats(job, model, calibration)
    report = ConvertReport(subject.name, subject.deploy_dir, check.keras_accuracy, check.name, results)
    _write_reports(report, config, labels, input_spec, keras_sha, subject.model_file)
    return report


# --- what is converted -------------------------------------------------------------------------

def _subject(config: ConvertConfig) -> _Subject:
    given = Path(config.model).expanduser()
    if given.suffix == ".keras":
        if not given.is_file():
            raise ModelFileError(f"{given}: no such file; pass a trained .keras file, a run folder or a model name")
        labels_file = Path(config.labels).expanduser() if config.labels else given.parent / runfolder.LABELS_FILE
        if not labels_file.is_file():
            raise ModelFileError(f"{given}: no labels; put labels.txt (one class per line) beside it or pass --labels")
        # model.keras is a run folder's and converts into deploy/; any other bare file gets its own
        # NAME_deploy/, so two files in one folder never overwrite each other's.
        if given.stem == "model":
            name, deploy = given.parent.resolve().name, given.parent / runfolder.DEPLOY_DIR
        else:
            name, deploy = given.stem, given.parent / f"{given.stem}_deploy"
        return _Subject(name, given, deploy, read_labels(labels_file), None)
    if config.model not in models.REGISTRY and given.is_dir():
        run = RunFolder.open(given)
    else:
        run = RunFolder.for_model(config.model, config.runs_dir)
    # The files carry the run's own name (a --name or folder run is not the registry entry it started from).
    return _Subject(run.path.resolve().name, run.model_file, run.deploy_dir, run.labels, run.input_spec, run,
                    registry=run.model)


def _contract(subject: _Subject, model: Any, config: ConvertConfig) -> tuple[tuple[str, ...], InputSpec]:
    """Labels and input contract, checked against the model itself."""
    shape = tuple(model.input_shape[1:])
    if subject.input_spec is None:  # a bare file: the contract is the model's own input
        if len(shape) != 3 or None in shape or shape[2] not in (1, 3):
            raise ModelFileError(f"{subject.model_file}: input shape {shape} is not HxWx1 or HxWx3 with a fixed size")
        input_spec = InputSpec(height=shape[0], width=shape[1], channels=shape[2],
                               color_order="GRAY" if shape[2] == 1 else (config.color_order or "RGB"))
    else:
        input_spec = subject.input_spec
        expected = (input_spec.height, input_spec.width, input_spec.channels)
        if shape != expected:
            raise ModelFileError(f"{subject.model_file}: model input {shape} does not match the input contract "
                                 f"{expected} recorded for {subject.name!r}; it was not trained as that run")
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    if len(shapes) > 1 and not has_unknown_output(model):
        raise ModelFileError(f"{subject.model_file}: the model has {len(shapes)} outputs {shapes}; convert takes a "
                             "classifier with one output of shape (batch, classes)")
    if len(shapes[0]) != 2 or shapes[0][-1] is None:
        raise ModelFileError(f"{subject.model_file}: the output shape {shapes[0]} is not (batch, classes) (a "
                             "per-pixel or sequence output?); convert takes image classifiers")
    classes = int(shapes[0][-1])
    labels = subject.labels or ()
    if len(labels) != classes:
        raise ModelFileError(f"{subject.name}: {len(labels)} labels but the model outputs {classes} classes; "
                             "the labels file does not belong to this model")
    return labels, input_spec


def _calibration(subject: _Subject, config: ConvertConfig, input_spec: InputSpec) -> np.ndarray | None:
    if config.calibration:
        return evalsets.folder_calibration_set(config.calibration, input_spec, config.calibration_samples)
    if subject.run is not None:
        return subject.run.calibration_set(config.calibration_samples, data_dir=config.data_dir)
    return None


def _reference(subject: _Subject, config: ConvertConfig, input_spec: InputSpec, labels: tuple[str, ...],
               model: Any, calibration: np.ndarray | None) -> _Check:
    """Test images (labelled when there is a test set) and Keras' predictions on them."""
    if config.test:
        test = evalsets.folder_test_set(config.test, input_spec, labels, limit=config.eval_limit)
        images, truth, name = test.images, test.labels, test.name
    elif subject.run is not None and subject.run.dataset == "imagenet":
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
        log.warning("%s: the model's outputs are not probabilities (they range %.3g..%.3g and do not sum to 1): "
                    "recorded as logits, so the runtime applies softmax", subject.name, keras_probs.min(),
                    keras_probs.max())
        keras_probs = _softmax(keras_probs)
    check = _Check(images, truth, name, keras_probs, keras_unknown, real="random-pixel" not in name,
                   output_kind=output_kind)
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
        log.warning("%s: %d of the %d calibration images are also test images; the int8 accuracy is then measured "
                    "on what it was calibrated on (pass --calibration with other images)", name, shared,
                    len(calibration))


# --- converting each format --------------------------------------------------------------------

def _convert_formats(job: _Job, model: Any, calibration: np.ndarray | None) -> list[FileResult]:
    """Export, verify and put in place every format of the job, or say why one is skipped."""
    results: list[FileResult] = []
    context = exporters.ExportContext(model, job.input_spec, job.workdir, calibration, job.config.onnx)
    for name in job.config.formats:
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
        result.seconds = round(time.perf_counter() - started, 2)
        results.append(result)
        accuracy = "-" if result.accuracy is None else f"{result.accuracy:.4f}"
        log.info("%s: %-15s %-8s accuracy %s agreement %.4f (%.1fs)", job.name, fmt.name, result.status,
                 accuracy, result.agreement, result.seconds)
    return results


def _cannot_build(fmt: formats_mod.Format, check: _Check, calibration: np.ndarray | None) -> str | None:
    """Why a format cannot be honestly built and checked with the images at hand, if it cannot."""
    if fmt.precision == "int8" and calibration is None:
        return "int8 needs calibration images (--calibration DIR)"
    if fmt.gate == "accuracy" and check.labels is None and not check.real:
        return "its gate is an accuracy drop, which needs labelled test images (--test DIR)"
    return None


def calibration_source(subject: _Subject, config: ConvertConfig) -> str:
    if config.calibration:
        return config.calibration
    if subject.run is not None and subject.run.dataset == "imagenet":
        return f"{evalsets.PHOTOS}/train (real photos)"
    return "training split"


def _verify(fmt: formats_mod.Format, raw: bytes, job: _Job) -> tuple[FileResult, bytes]:
    """Run the new file in the real runtime, gate it and embed its metadata."""
    probe = job.workdir / fmt.file_name
    probe.write_bytes(raw)
    probs, scores, tensor_spec, output_spec, backend = _run_in_runtime(probe, job.labels, job.input_spec,
                                                                        job.check.images, job.unknown,
                                                                        job.check.output_kind)
    result = _compare(fmt, probs, job.check, backend)
    _compare_unknown(result, scores, job)
    _gate(result, fmt, job.config)
    metadata = _metadata(fmt, result, job, tensor_spec, output_spec)
    final_bytes = exporters.embedder(fmt.kind)(raw, {METADATA_KEY: metadata.to_json()})
    limit = job.config.opencv_check
    if fmt.kind == "onnx" and limit:
        probe.write_bytes(final_bytes)
        result.opencv_dnn_agreement, result.opencv_dnn_note = _opencv_agreement(
            probe, job.check.images[:limit], probs[:limit])
    result.size_bytes, result.sha256 = len(final_bytes), sha256_bytes(final_bytes)
    return result, final_bytes


def _run_in_runtime(path: Path, labels: tuple[str, ...], input_spec: InputSpec, images: np.ndarray,
                    unknown: UnknownSpec | None, output_kind: str = "probabilities",
                    ) -> tuple[np.ndarray, np.ndarray | None, InputSpec, OutputSpec, str]:
    """Probabilities (and out-of-class scores) of every image through the device runtime, and the
    file's tensor contract."""
    with Classifier.open(path, labels=labels, input_spec=input_spec, output_kind=output_kind) as classifier:
        probs = np.empty((len(images), len(labels)), dtype=np.float32)
        scores = np.empty(len(images), dtype=np.float32) if classifier.backend.unknown is not None else None
        for i, image in enumerate(images):
            probs[i], score = classifier.infer_all(to_input_tensor(image[None], classifier.input_spec))
            if scores is not None:
                scores[i] = score
        out, extra = classifier.backend.output, classifier.backend.unknown
        if unknown is not None and extra is not None:
            unknown = replace(unknown, dtype=extra.dtype, quantization=_quantization(extra))
        output_spec = OutputSpec(kind=output_kind, dtype=out.dtype, quantization=_quantization(out), unknown=unknown)
        return (probs, scores, classifier.input_spec, output_spec,
                f"{classifier.backend.name} {classifier.backend.version}")


def _quantization(tensor: Any) -> Quantization | None:
    return Quantization(tensor.scale, tensor.zero_point) if tensor.dtype in ("int8", "uint8") and tensor.scale > 0 \
        else None


def _compare_unknown(result: FileResult, scores: np.ndarray | None, job: _Job) -> None:
    """How closely the file's out-of-class verdicts follow Keras' on the check images."""
    keras_scores = job.check.keras_unknown
    if job.unknown is None or scores is None or keras_scores is None:
        return
    threshold = job.unknown.threshold
    result.unknown_agreement = float(np.mean((scores > threshold) == (keras_scores > threshold)))
    result.max_abs_unknown_diff = float(np.max(np.abs(scores - keras_scores))) if len(scores) else 0.0


def _compare(fmt: formats_mod.Format, probs: np.ndarray, check: _Check, backend: str) -> FileResult:
    predicted = np.argmax(probs, axis=1)
    result = FileResult(format=fmt.name, file=fmt.file_name, status="ok", backend=backend,
                        agreement=float(np.mean(predicted == np.argmax(check.keras_probs, axis=1))),
                        max_abs_prob_diff=float(np.max(np.abs(probs - check.keras_probs))) if len(probs) else 0.0)
    if check.labels is not None:
        result.accuracy = float(np.mean(predicted == check.labels))
        result.accuracy_drop = check.keras_accuracy - result.accuracy
        keras_right = np.argmax(check.keras_probs, axis=1) == check.labels
        file_right = predicted == check.labels
        result.drop_p_value = mcnemar_p(int(np.sum(keras_right & ~file_right)), int(np.sum(file_right & ~keras_right)))
    return result


def mcnemar_p(lost: int, gained: int) -> float:
    """P(at least ``lost`` of the ``lost + gained`` discordant images go against the file) when each
    goes either way with even odds: small when the file is really worse, not just unlucky."""
    from math import comb

    total = lost + gained
    if total == 0:
        return 1.0
    return float(sum(comb(total, k) for k in range(lost, total + 1)) / 2 ** total)


def _gate(result: FileResult, fmt: formats_mod.Format, config: ConvertConfig) -> None:
    if fmt.gate == "agreement":
        result.gate = f"agreement >= {config.agreement_min:.3%}"
        passed = result.agreement >= config.agreement_min
    elif result.accuracy_drop is None:  # real photos without labels: the quantized file must answer like Keras
        minimum = 0.9 if config.unlabelled_agreement_min is None else config.unlabelled_agreement_min
        result.gate = f"agreement >= {minimum:.1%} (no labels)"
        passed = result.agreement >= minimum
    else:
        # A drop fails only when it is both larger than allowed and more than chance explains: on 12
        # held-out photos one image is 8.3 points, and a file that loses one and gains none is no
        # evidence of a worse file (p = 0.5).
        result.gate = (f"accuracy drop <= {100 * config.max_accuracy_drop:.2f} points, or not significant "
                       f"(McNemar p >= {DROP_SIGNIFICANCE})")
        passed = (result.accuracy_drop <= config.max_accuracy_drop + 1e-12
                  or (result.drop_p_value is not None and result.drop_p_value >= DROP_SIGNIFICANCE))
    if config.gates and not passed:
        result.status = "rejected"


def _metadata(fmt: formats_mod.Format, result: FileResult, job: _Job, tensor_spec: InputSpec,
              output_spec: OutputSpec) -> ModelMetadata:
    """What travels inside the file: labels, the input contract, and what conversion measured."""
    check, config = job.check, job.config
    accuracy = {"agreement": round(result.agreement, 6), "test_images": float(len(check.images))}
    if result.accuracy is not None:
        accuracy.update(accuracy=round(result.accuracy, 6), keras_accuracy=round(check.keras_accuracy, 6))
    return ModelMetadata(
        model=job.name, format=fmt.name, labels=job.labels, input=tensor_spec, output=output_spec, accuracy=accuracy,
        extra={"created_by": created_by(), "precision": fmt.precision, "description": fmt.description,
               "test_set": check.name, "keras_sha256": job.keras_sha, "calibration_images": config.calibration_samples,
               "calibration_source": job.calibration_source,
               **({"onnx_quantization": asdict(config.onnx)} if fmt.kind == "onnx" and fmt.quantized else {})},
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


def _opencv_agreement(onnx_file: Path, images: np.ndarray,
                      runtime_probs: np.ndarray) -> tuple[float | None, str | None]:
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
                outputs = [np.asarray(o).reshape(-1) for o in net.forward(net.getUnconnectedOutLayersNames())]
                scores = next((o for o in outputs if o.size == reference.size), outputs[0])  # not the unknown score
                agree += int(np.argmax(scores) == np.argmax(reference))
            note = None if engine_name == "auto" else f"ran on OpenCV's {engine_name} engine"
            return agree / max(1, len(images)), note
        except cv2.error as exc:
            errors.append(f"{engine_name}: {' '.join(str(exc).split())[-120:]}")
        if engine is None:
            break
    return None, "; ".join(errors)


# --- reports -----------------------------------------------------------------------------------

def _write_reports(report: ConvertReport, config: ConvertConfig, labels: tuple[str, ...], input_spec: InputSpec,
                   keras_sha: str, model_path: Path) -> None:
    deploy_dir = report.deploy_dir
    atomic_write_text(deploy_dir / runfolder.LABELS_FILE, "\n".join(labels) + "\n")
    body = {
        "model": report.model,
        "created_by": created_by(),
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
                             "description": formats_mod.get(r.format).description}
                  for r in report.results if r.status != "skipped"},
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
        if not entry or entry.get("status") not in ("ok", "skipped"):
            return False
        if entry["status"] == "skipped":  # same settings, same images: still cannot be built
            continue
        path = deploy_dir / entry["file"]
        if not path.is_file() or path.stat().st_size != entry.get("size_bytes"):
            return False
    return True


def _report_from_json(data: dict[str, Any], deploy_dir: Path, skipped: bool) -> ConvertReport:
    fields = FileResult.__dataclass_fields__
    results = [FileResult(**{k: v for k, v in r.items() if k in fields}) for r in data.get("results", [])]
    return ConvertReport(data["model"], deploy_dir, data.get("keras_accuracy"), data.get("test_set", ""), results,
                         skipped=skipped)


def _load_keras(path: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types (zip, h5, JSON, ValueError) for bad files
        raise ModelFileError(f"{path}: not a loadable Keras model ({' '.join(str(exc).split())[:150]}); "
                             "retrain it with `python -m train`") from None


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: ConvertReport) -> str:
    keras = "unknown (no labelled test images)" if report.keras_accuracy is None else f"{report.keras_accuracy:.4f}"
    lines = [f"{report.model}: Keras accuracy {keras} on {report.test_set}"
             + ("  (up to date, not reconverted)" if report.skipped else ""),
             f"{'format':16s} {'file':32s} {'size KB':>8s} {'accuracy':>9s} {'drop pts':>9s} {'agree':>8s} "
             f"{'max|dp|':>8s} {'OpenCV':>7s}  status"]
    for r in report.results:
        if r.status == "skipped":
            lines.append(f"{r.format:16s} {'-':32s} {'':>8s} {'':>9s} {'':>9s} {'':>8s} {'':>8s} {'':>7s}  "
                         f"skipped ({r.gate})")
            continue
        cv = "-" if r.opencv_dnn_agreement is None and not r.opencv_dnn_note else \
            ("error" if r.opencv_dnn_agreement is None else f"{r.opencv_dnn_agreement:.3f}")
        drop = None if r.accuracy_drop is None else 100 * r.accuracy_drop
        lines.append(f"{r.format:16s} {r.file:32s} {r.size_bytes / 1024:8.1f} {_number(r.accuracy, '9.4f'):>9s} "
                     f"{_number(drop, '9.2f'):>9s} {r.agreement:8.4f} {r.max_abs_prob_diff:8.4f} {cv:>7s}  "
                     f"{r.verdict}")
    return "\n".join(lines)
