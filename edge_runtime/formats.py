"""The formats table: every file a model is exported to, read by convert, benchmarks and tests.

Each deployable row is built by ``convert.exporters.export_<name>``: a new format is one row here
and one function there (a test checks that every row has its exporter).

Names tell the truth: ``dynamic`` files have int8 weights and float activations and are never
called int8; ``int8`` files compute in integers end to end (int8 input and output).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_common.errors import EdgeError, suggest


@dataclass(frozen=True)
class Format:
    name: str
    file_name: str
    kind: str  # "keras" (the reference), "tflite" or "onnx"
    precision: str  # float32 | float16 | dynamic | int8
    gate: str  # "agreement": must match Keras' top-1; "accuracy": may lose a little accuracy
    description: str

    @property
    def deployable(self) -> bool:
        return self.kind != "keras"

    @property
    def quantized(self) -> bool:
        return self.precision in ("dynamic", "int8")


FORMATS: tuple[Format, ...] = (
    Format("keras", "model.keras", "keras", "float32", "agreement", "Keras reference model (TensorFlow needed)"),
    Format("tflite_float32", "model_float32.tflite", "tflite", "float32", "agreement", "TFLite, float32"),
    Format(
        "tflite_float16",
        "model_float16.tflite",
        "tflite",
        "float16",
        "agreement",
        "TFLite, float16 weights (half the size; computed in float32 on CPUs)",
    ),
    Format(
        "tflite_dynamic",
        "model_dynamic.tflite",
        "tflite",
        "dynamic",
        "accuracy",
        "TFLite dynamic-range: int8 weights, float activations (not an int8 model)",
    ),
    Format(
        "tflite_int8",
        "model_int8.tflite",
        "tflite",
        "int8",
        "accuracy",
        "TFLite full integer: int8 weights and activations, per-channel, int8 input and output",
    ),
    Format("onnx_float32", "model_float32.onnx", "onnx", "float32", "agreement", "ONNX opset 17, float32"),
    Format(
        "onnx_int8",
        "model_int8.onnx",
        "onnx",
        "int8",
        "accuracy",
        "ONNX static QDQ int8, per-channel weights (float input and output)",
    ),
)
BY_NAME = {fmt.name: fmt for fmt in FORMATS}
DEPLOYABLE = tuple(fmt for fmt in FORMATS if fmt.deployable)
REJECTED_SUFFIX = ".rejected"


def get(name: str) -> Format:
    try:
        return BY_NAME[name]
    except KeyError:
        raise EdgeError(f"unknown format {name!r}{suggest(name, BY_NAME)}; choose from {', '.join(BY_NAME)}") from None
