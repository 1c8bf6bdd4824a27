"""How each file is proven: run in the real runtime on the check images, compared with Keras
(agreement, accuracy and the McNemar test of an accuracy drop, out-of-class verdicts), gated, and
cross-checked in OpenCV's DNN module."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import formats as formats_mod
from edge_runtime.classifier import Classifier
from edge_runtime.contract import InputSpec, OutputSpec, Quantization, UnknownSpec
from edge_runtime.preprocess import to_input_tensor
from edge_runtime.second_look import SecondLook

from .config import ConvertConfig
from .report import FileResult

log = logging.getLogger("edge_classify.convert")


DROP_SIGNIFICANCE = 0.05  # the accuracy gate's level: a larger drop with p >= this is put down to chance


@dataclass
class Job:
    """What every format of one conversion shares: the model's contract, the check images, and where
    files go."""

    name: str
    config: "ConvertConfig"
    labels: tuple[str, ...]
    input_spec: InputSpec
    check: "Check"
    keras_sha: str
    calibration_source: str
    deploy_dir: Path
    workdir: Path
    unknown: UnknownSpec | None = None  # the out-of-class output's contract, where the model has one
    second_look: SecondLook | None = None  # the runtime's second look, where the file asks for one


@dataclass
class Check:
    """The images every file is compared with Keras on, and Keras' own answers."""

    images: np.ndarray
    labels: np.ndarray | None  # None: no labelled test set; accuracy cannot be measured
    name: str
    keras_probs: np.ndarray
    keras_unknown: np.ndarray | None = None  # Keras' out-of-class scores, where the model has them
    keras_accuracy: float | None = None
    real: bool = True  # real images; False: random pixels, which say nothing about a quantized file
    output_kind: str = "probabilities"  # "logits": the model has no softmax; the runtime applies it


def run_in_runtime(
    path: Path,
    labels: tuple[str, ...],
    input_spec: InputSpec,
    images: np.ndarray,
    unknown: UnknownSpec | None,
    output_kind: str = "probabilities",
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
            unknown = replace(unknown, dtype=extra.dtype, quantization=quantization(extra))
        output_spec = OutputSpec(kind=output_kind, dtype=out.dtype, quantization=quantization(out), unknown=unknown)
        return (
            probs,
            scores,
            classifier.input_spec,
            output_spec,
            f"{classifier.backend.name} {classifier.backend.version}",
        )


def quantization(tensor: Any) -> Quantization | None:
    return (
        Quantization(tensor.scale, tensor.zero_point)
        if tensor.dtype in ("int8", "uint8") and tensor.scale > 0
        else None
    )


def compare_unknown(result: FileResult, scores: np.ndarray | None, job: Job) -> None:
    """How closely the file's out-of-class verdicts follow Keras' on the check images."""
    keras_scores = job.check.keras_unknown
    if job.unknown is None or scores is None or keras_scores is None:
        return
    verdict = job.unknown.is_unknown
    result.unknown_agreement = float(np.mean(verdict(scores) == verdict(keras_scores)))
    result.max_abs_unknown_diff = float(np.max(np.abs(scores - keras_scores))) if len(scores) else 0.0


def compare(fmt: formats_mod.Format, probs: np.ndarray, check: Check, backend: str) -> FileResult:
    predicted = np.argmax(probs, axis=1)
    result = FileResult(
        format=fmt.name,
        file=fmt.file_name,
        status="ok",
        backend=backend,
        agreement=float(np.mean(predicted == np.argmax(check.keras_probs, axis=1))),
        max_abs_prob_diff=float(np.max(np.abs(probs - check.keras_probs))) if len(probs) else 0.0,
    )
    if check.labels is not None and check.keras_accuracy is not None:
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
    return float(sum(comb(total, k) for k in range(lost, total + 1)) / 2**total)


def gate_default_session(result: FileResult, found: dict[str, Any], config: ConvertConfig, check: Check) -> None:
    """An int8 ONNX file must also be right in a default session: the same gate as through the
    runtime, on the default session's own answers, and no saturation risk on CPUs without VNNI."""
    result.default_session_agreement = found["agreement"]
    result.default_session_accuracy = found.get("accuracy")
    problems = []
    if found["saturation_risk"]:
        problems.append(found["saturation_risk"])
    drop = (
        None
        if found.get("accuracy") is None or check.keras_accuracy is None
        else check.keras_accuracy - found["accuracy"]
    )
    if drop is not None and drop > config.max_accuracy_drop + 1e-12 and found["accuracy"] < (result.accuracy or 0):
        problems.append(f"a default ONNX Runtime session loses {100 * drop:.2f} points against Keras")
    if problems:
        result.default_session_problem = "; ".join(problems)
        if config.gates:
            result.status = "rejected"


def gate(result: FileResult, fmt: formats_mod.Format, config: ConvertConfig) -> None:
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
        result.gate = (
            f"accuracy drop <= {100 * config.max_accuracy_drop:.2f} points, or not significant "
            f"(McNemar p >= {DROP_SIGNIFICANCE})"
        )
        passed = result.accuracy_drop <= config.max_accuracy_drop + 1e-12 or (
            result.drop_p_value is not None and result.drop_p_value >= DROP_SIGNIFICANCE
        )
    if config.gates and not passed:
        result.status = "rejected"


def default_session(onnx_file: Path, images: np.ndarray, check: Check, spec: InputSpec) -> dict[str, Any]:
    """The file in a plain ``onnxruntime.InferenceSession(path)``, as an integrator embeds it (no
    session options): its agreement with Keras and accuracy on the check images, and whether its
    int8 weights can saturate a default session on an x86 CPU without VNNI (see
    :func:`saturation_risk`: that cannot be seen by running it on a CPU that has VNNI)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    scores = outputs.index("probabilities") if "probabilities" in outputs else 0
    probs = np.stack(
        [
            np.asarray(session.run(None, {name: to_input_tensor(image[None], spec)})[scores]).reshape(-1)
            for image in images
        ]
    )
    predicted = np.argmax(probs, axis=1)
    found: dict[str, Any] = {"agreement": float(np.mean(predicted == np.argmax(check.keras_probs, axis=1)))}
    if check.labels is not None:
        found["accuracy"] = float(np.mean(predicted == check.labels))
    found["saturation_risk"] = saturation_risk(onnx_file.read_bytes())
    return found


def saturation_risk(data: bytes) -> str | None:
    """Why a default ONNX Runtime session on an x86 CPU without VNNI (AVX2 only) can answer wrongly
    for this QDQ file, or None when it cannot.

    There the uint8 x int8 kernels (VPMADDUBSW) add two products in 16 bits: 255 x 127 x 2 = 64,770
    overflows 32,767, so full-range int8 weights with uint8 activations can saturate. 7-bit weights
    (ONNX Runtime's reduce_range: |w| <= 64, 255 x 128 = 32,640) or uint8 weights (U8U8, widened
    before multiplying) cannot. Only an exactness
    option (``session.x64quantprecision``, which this runtime sets) avoids it, and integrators'
    default sessions do not set it.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    weights = {init.name: init for init in model.graph.initializer}
    activations_uint8 = any(
        init.data_type == onnx.TensorProto.UINT8
        for init in model.graph.initializer
        if init.name.endswith("zero_point") and init.name not in _weight_zero_points(model)
    )
    if not activations_uint8:
        return None
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in weights:
            continue
        tensor = weights[node.input[0]]
        if tensor.data_type != onnx.TensorProto.INT8:
            continue
        values = numpy_helper.to_array(tensor)
        if values.size and (values.min() < -64 or values.max() > 64):
            return (
                f"weights {node.input[0]} use more than 7 bits ({int(values.min())}..{int(values.max())}) "
                "with uint8 activations: a default ONNX Runtime session on an x86 CPU without VNNI can saturate; "
                "quantize with --onnx-weights uint8 or --onnx-reduce-range"
            )
    return None


def _weight_zero_points(model: Any) -> set[str]:
    """The zero points that belong to weights (constant DequantizeLinear inputs), not activations."""
    constants = {init.name for init in model.graph.initializer}
    return {
        node.input[2]
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and node.input[0] in constants and len(node.input) > 2
    }


def opencv_agreement(onnx_file: Path, images: np.ndarray, runtime_probs: np.ndarray) -> tuple[float | None, str | None]:
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
            net = (
                cv2.dnn.readNetFromONNX(str(onnx_file))
                if engine is None
                else cv2.dnn.readNetFromONNX(str(onnx_file), engine)
            )
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
