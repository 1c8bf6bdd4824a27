"""Keras model -> bytes of each deployable format (the recipes that work on TF 2.21 / Keras 3).

One ``export_<format name>(context)`` function per row of the formats table
(:mod:`edge_runtime.formats`), and one ``embed_<kind>`` per file kind: a new format is a row
plus a function.

- TFLite goes through a SavedModel exported with a fixed batch-1 signature named ``image``
  (``from_concrete_functions`` on Keras 3 models yields NaNs; a dynamic batch adds SHAPE and
  STRIDED_SLICE ops that other consumers cannot load).
- ONNX uses ``tf2onnx.convert.from_function`` with the same named signature (``from_keras``
  fails on some Sequential models), opset 17.
- ONNX int8 is ONNX Runtime static quantization in QDQ form with per-channel weights.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge_runtime.contract import InputSpec

log = logging.getLogger("edge_classify.convert")
ONNX_OPSET = 17


@dataclass(frozen=True)
class OnnxQuantSettings:
    """ORT static quantization choices.

    x86 without VNNI (this project's reference CPU): uint8 activations, int8 weights and
    ``reduce_range`` (7-bit weights), because the AVX2 U8S8 kernel (VPMADDUBSW) can saturate
    with full-range weights. ARM (Pi, Jetson): int8 activations and weights, no reduce_range.
    """

    activation_type: str = "uint8"
    weight_type: str = "int8"
    reduce_range: bool = True
    per_channel: bool = True
    calibration_method: str = "minmax"


def export_saved_model(model: Any, spec: InputSpec, folder: Path) -> Path:
    import tensorflow as tf

    signature = [tf.TensorSpec([1, spec.height, spec.width, spec.channels], tf.float32, name="image")]
    model.export(str(folder), format="tf_saved_model", input_signature=signature, verbose=False)
    return folder


def tflite_bytes(saved_model: Path, precision: str, calibration: np.ndarray | None = None) -> bytes:
    """Convert a SavedModel to TFLite at ``precision`` (float32, float16, dynamic, int8)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if calibration is None or not len(calibration):
            raise ValueError("int8 conversion needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif precision != "float32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    return bytes(converter.convert())


def onnx_float_model(model: Any, spec: InputSpec) -> Any:
    """An ``onnx.ModelProto`` of the Keras model, batch 1, input named ``image``."""
    import tensorflow as tf
    import tf2onnx

    signature = [tf.TensorSpec([1, spec.height, spec.width, spec.channels], tf.float32, name="image")]

    @tf.function(input_signature=signature)
    def serve(image: Any) -> Any:
        outputs = model(image, training=False)
        if isinstance(outputs, (list, tuple)):  # the out-of-class score rides along as a second output
            return {"probabilities": outputs[0], "unknown": outputs[1]}
        return {"probabilities": outputs}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=ONNX_OPSET)
    return proto


def onnx_int8_bytes(float_model: Any, calibration: np.ndarray, settings: OnnxQuantSettings) -> bytes:
    """Static QDQ quantization of a float ONNX model with ORT, calibrated on ``calibration``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = float_model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._items, None)
            return None if image is None else {input_name: image[None].astype(np.float32)}

    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="edge-onnx-") as tmp:
        raw, prepared, quantized = Path(tmp, "float.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        onnx.save(float_model, str(raw))
        # Symbolic shape inference needs sympy; shapes are static (batch 1), so skip it.
        quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
        with _quiet_root_logger():
            quantize_static(
                str(prepared),
                str(quantized),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=types[settings.activation_type],
                weight_type=types[settings.weight_type],
                calibrate_method=methods[settings.calibration_method],
            )
        return quantized.read_bytes()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs a line per adjusted scale on the root logger (83 for one model),
    and with uint8 weights a warning per bias whose int32 scale it had to widen (30 for Lite0, with
    no change in accuracy: the gates measure the file); they are shown only with --verbose (the root
    logger at DEBUG)."""
    root = logging.getLogger()
    level = root.level
    if level > logging.DEBUG:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def onnx_with_metadata(model_bytes_or_proto: Any, entries: dict[str, str]) -> bytes:
    """Serialized ONNX with ``metadata_props`` entries set (replacing same-named ones)."""
    import onnx

    proto = model_bytes_or_proto
    if isinstance(proto, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(proto))
    kept = [prop for prop in proto.metadata_props if prop.key not in entries]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


@dataclass
class ExportContext:
    """What every exporter reads: the Keras model, its input, calibration images and ONNX settings.

    The intermediate forms (a SavedModel for TFLite, a float ONNX graph for ONNX) are built once,
    on first use, and shared by every format that starts from them.
    """

    model: Any
    input_spec: InputSpec
    workdir: Path
    calibration: np.ndarray | None = None
    onnx: OnnxQuantSettings = field(default_factory=OnnxQuantSettings)

    @cached_property
    def saved_model(self) -> Path:
        return export_saved_model(self.model, self.input_spec, self.workdir / "saved_model")

    @cached_property
    def onnx_float(self) -> Any:
        return onnx_float_model(self.model, self.input_spec)

    def need_calibration(self) -> np.ndarray:
        if self.calibration is None or not len(self.calibration):
            raise ValueError("int8 export needs calibration images")
        return self.calibration


def export_tflite_float32(context: ExportContext) -> bytes:
    return tflite_bytes(context.saved_model, "float32")


def export_tflite_float16(context: ExportContext) -> bytes:
    return tflite_bytes(context.saved_model, "float16")


def export_tflite_dynamic(context: ExportContext) -> bytes:
    return tflite_bytes(context.saved_model, "dynamic")


def export_tflite_int8(context: ExportContext) -> bytes:
    return tflite_bytes(context.saved_model, "int8", context.need_calibration())


def export_onnx_float32(context: ExportContext) -> bytes:
    return context.onnx_float.SerializeToString()


def export_onnx_int8(context: ExportContext) -> bytes:
    return onnx_int8_bytes(context.onnx_float, context.need_calibration(), context.onnx)


# Format name (edge_runtime.formats) -> the function that builds its bytes.
EXPORTERS: dict[str, Callable[[ExportContext], bytes]] = {
    "tflite_float32": export_tflite_float32,
    "tflite_float16": export_tflite_float16,
    "tflite_dynamic": export_tflite_dynamic,
    "tflite_int8": export_tflite_int8,
    "onnx_float32": export_onnx_float32,
    "onnx_int8": export_onnx_int8,
}


def exporter(format_name: str) -> Callable[[ExportContext], bytes]:
    """The function that builds ``format_name``'s bytes."""
    try:
        return EXPORTERS[format_name]
    except KeyError:
        raise ValueError(
            f"no exporter for format {format_name!r}; add it to EXPORTERS in convert/exporters.py"
        ) from None


def embed_tflite(raw: bytes, entries: dict[str, str]) -> bytes:
    from edge_runtime.metadata import embed_tflite_entries

    return embed_tflite_entries(raw, {key: value.encode() for key, value in entries.items()})


def embed_onnx(raw: bytes, entries: dict[str, str]) -> bytes:
    return onnx_with_metadata(raw, entries)


def embedder(kind: str) -> Callable[[bytes, dict[str, str]], bytes]:
    """The function that writes metadata entries into a file of ``kind`` ("tflite" or "onnx")."""
    return {"tflite": embed_tflite, "onnx": embed_onnx}[kind]
